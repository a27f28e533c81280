//! The norms study's cells, one function per part: a net's per-layer norms,
//! the scalar chains, one net of the phase diagram, one Jacobian chain.

use candle_core::{Device, Var};
use gradscope_nets::{
    Activation, Arch, BiasInit, BnMode, Mlp, Net, NetParams, WeightInit, derive_seed,
};
use gradscope_probe::{CaptureOpts, Pass, capture};
use gradscope_stats::singular_values;
use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::{CellOutput, JacobianInit, NormsConfig, critical_sigma_w2, net_params};
use crate::{Result, StudyError};

impl NormsConfig {
    /// The inputs of the layers and phase parts for a net of seed `seed`.
    fn inputs(&self, seed: u64) -> Array2<f64> {
        let p = &self.params;
        if p.input == "grid" {
            return gradscope_probe::scalar_grid(p.batch, -2.0, 2.0);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(derive_seed(seed, "inputs"));
        Array2::from_shape_fn((p.batch, p.input_dim), |_| StandardNormal.sample(&mut rng))
    }

    /// Per-layer norms of one net of the layers part.
    pub(super) fn layers_cell(
        &self,
        arch: Arch,
        act: Activation,
        init: WeightInit,
        seed: usize,
    ) -> Result<CellOutput> {
        let p = &self.params;
        let s = self.net_seed("layers", seed);
        let net = Net::Mlp(Mlp::with_draws(
            &net_params(p, arch, act, init).check()?.with_seed(s),
            &self.draws,
        )?);
        let cap = capture(
            &net,
            self.inputs(s).view(),
            &CaptureOpts {
                bn_mode: BnMode::PerSample,
                ..Default::default()
            },
        )?;
        let elems = (p.batch * p.width) as f64;
        let (mut weight_grads, mut bias_grads) = (vec![], vec![]);
        for ps in &cap.params {
            if ps.name.ends_with(".weight") && !ps.name.contains(".bn") {
                weight_grads.push((ps.name.clone(), ps.grad_norm));
            } else if ps.name.ends_with(".bias") && !ps.name.contains(".bn") {
                bias_grads.push((ps.name.clone(), ps.grad_norm));
            }
        }
        Ok(CellOutput::Layers {
            grad: cap.layers.iter().map(|l| l.grad_norm).collect(),
            second_moment: cap
                .layers
                .iter()
                .map(|l| l.activation_norm.powi(2) / elems)
                .collect(),
            weight_grads,
            bias_grads,
            fault: cap.faults.first().map(|f| {
                (
                    if f.pass == Pass::Forward {
                        "forward"
                    } else {
                        "backward"
                    }
                    .to_string(),
                    f.layer,
                    f.name.clone(),
                    f.nan,
                )
            }),
        })
    }

    /// |dF/dw₁| of every scalar chain, by candle's autograd.
    pub(super) fn chain_cell(&self) -> Result<CellOutput> {
        let p = &self.params;
        let autograd = p
            .chain_weights
            .iter()
            .map(|&w| {
                (1..=p.chain_depth)
                    .map(|len| -> Result<f64> {
                        let ws: Vec<Var> = (0..len)
                            .map(|_| Var::new(w, &Device::Cpu))
                            .collect::<std::result::Result<_, _>>()
                            .map_err(StudyError::from)?;
                        // F = w_L ⋯ w_1 · x with x = 1.
                        let mut f = ws[0].as_tensor().clone();
                        for v in &ws[1..] {
                            f = (f * v.as_tensor()).map_err(StudyError::from)?;
                        }
                        let g = f.backward().map_err(StudyError::from)?;
                        let d = g
                            .get(ws[0].as_tensor())
                            .map_or(0.0, |t| t.to_scalar::<f64>().unwrap_or(f64::NAN));
                        Ok(d.abs())
                    })
                    .collect::<Result<Vec<f64>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(CellOutput::Chain { autograd })
    }

    /// ‖∂L/∂h_l‖ of one net of the phase diagram.
    pub(super) fn phase_cell(
        &self,
        residual: bool,
        act: Activation,
        sigma_w2: f64,
        seed: usize,
    ) -> Result<CellOutput> {
        let p = &self.params;
        let s = self.net_seed("phase", seed);
        let arch = if residual { Arch::RESNET } else { Arch::PLAIN };
        let spec = NetParams {
            bias_init: BiasInit::Zero,
            ..net_params(p, arch, act, WeightInit::Normal { sigma_w2 })
        };
        let net = Net::Mlp(Mlp::with_draws(&spec.check()?.with_seed(s), &self.draws)?);
        // The phase diagram needs ‖∂L/∂h_l‖ only.
        let opts = CaptureOpts {
            param_grads: false,
            ..Default::default()
        };
        let cap = capture(&net, self.inputs(s).view(), &opts)?;
        Ok(CellOutput::Phase {
            grad: cap.layers.iter().map(|l| l.grad_norm).collect(),
        })
    }

    /// Singular values of one chain's Jacobian at each Jacobian depth.
    pub(super) fn jacobian_cell(
        &self,
        residual: bool,
        act: Activation,
        init: JacobianInit,
        seed: usize,
    ) -> Result<CellOutput> {
        let p = &self.params;
        let n = p.jacobian_width;
        let s2 = critical_sigma_w2(act);
        let s = self.net_seed("jacobian", seed);
        let mut rng = rand::rngs::StdRng::seed_from_u64(derive_seed(s, "h0"));
        // h₀ ~ N(0, 1) per unit: the fixed point of the variance map for the critical nets here.
        let mut h: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
        let mut j = Array2::<f64>::eye(n);
        let mut out = vec![];
        let deepest = *p.jacobian_depths.last().unwrap();
        for l in 1..=deepest {
            let w_init = match init {
                JacobianInit::Gaussian => WeightInit::Normal { sigma_w2: s2 },
                JacobianInit::Orthogonal => WeightInit::Orthogonal { gain: s2.sqrt() },
            };
            let w = Array2::from_shape_vec(
                (n, n),
                self.draws
                    .weight(&w_init, n, n, s, &format!("layers.{l}.fc.weight")),
            )
            .expect("n × n");
            let wv = ndarray::Array1::from(h.clone());
            if residual {
                // h_l = h_{l−1} + W φ(h_{l−1}); ∂h_l/∂h_{l−1} = I + W D(h_{l−1}).
                let d: Vec<f64> = h.iter().map(|&z| act.derivative(z)).collect();
                let phi = wv.mapv(|z| act.apply(z));
                let wd = Array2::from_shape_fn((n, n), |(a, b)| w[[a, b]] * d[b]);
                j = &j + &wd.dot(&j);
                h = (&wv + &w.dot(&phi)).to_vec();
            } else {
                // h_l = φ(W h_{l−1}); ∂h_l/∂h_{l−1} = D(z_l) W.
                let z = w.dot(&wv);
                let d: Vec<f64> = z.iter().map(|&v| act.derivative(v)).collect();
                let wj = w.dot(&j);
                j = Array2::from_shape_fn((n, n), |(a, b)| d[a] * wj[[a, b]]);
                h = z.iter().map(|&v| act.apply(v)).collect();
            }
            if p.jacobian_depths.contains(&l) {
                out.push(singular_values(&j));
            }
        }
        Ok(CellOutput::Jacobian {
            singular_values: out,
        })
    }
}
