//! Gradient norms through depth: vanishing and exploding gradients, and why.
//!
//! Four parts, each a set of cells:
//! - **layers**: per-layer ‖∂L/∂h_l‖, ‖∂L/∂W_l‖, ‖∂L/∂b_l‖ of plain and residual
//!   MLPs (with and without BN) on a batch of Gaussian inputs, for each
//!   activation and initialisation, over seeds; the measured per-layer
//!   backward ratio ‖∂L/∂h_{l−1}‖/‖∂L/∂h_l‖ beside the mean-field prediction
//!   √χ₁, χ₁ = σ_w²·E[φ'(z)²], z ~ N(0, q_l), q_l the measured pre-activation
//!   variance (Poole et al. 2016; Schoenholz et al. 2017). ReLU with He init:
//!   χ₁ = 1. A residual block without BN adds its branch's gradient to the
//!   identity's: for a two-layer ReLU branch with He init the squared norm
//!   doubles per block (ratio √2; Var ~ 2^L).
//! - **chain**: the scalar chain F = w_L⋯w_1·x of seed 004, dF/dw₁ = ∏_{l≥2} w_l·x
//!   (= w^{L−1} for equal weights), by autograd against the closed form:
//!   vanishing for w ≤ 0.8, exploding for w ≥ 1.2.
//! - **phase**: log₁₀(‖∂L/∂h₀‖/‖∂L/∂h_L‖) over σ_w² × L, plain vs residual,
//!   with the critical σ_w² (χ₁ = 1) marked.
//! - **jacobian**: singular values of the input–output Jacobian ∂h_L/∂h₀ of a
//!   width-W chain (dynamical isometry, Saxe et al. 2014; Pennington et al.
//!   2017): Gaussian vs orthogonal weights at the critical σ_w², linear vs
//!   ReLU vs tanh, plain vs residual, at several depths; mean and variance of
//!   σ² against depth.
//!
//! NaN or ±inf (e.g. f32 overflow) are recorded with the layer where they
//! first appear; `dtype = "f64"` reruns the same nets without them.

use gradscope_nets::{
    Activation, Arch, BiasInit, BnMode, DrawCache, Mlp, Net, NetParams, Precision, WeightInit,
    derive_seed,
};
use gradscope_probe::{CaptureOpts, Pass, capture};
use gradscope_stats::{MeanStd, quantile};
use ndarray::Array2;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::output::{Csv, create_dir, num, write_json};
use crate::provenance::Provenance;
use crate::runner::RunOptions;
use crate::study::{Study, StudyResults, run_study};
use crate::{Result, StudyError};

/// The Jacobian spectra's singular values, computed in `gradscope_stats`.
pub use gradscope_stats::singular_values;

/// Folder name under the data and report roots.
pub const NAME: &str = "norms";
/// The parts of the study, in run order.
pub const PARTS: [&str; 4] = ["layers", "chain", "phase", "jacobian"];
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.norms/1";

/// Unchecked parameters; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormsParams {
    /// Parts to run: any of `layers`, `chain`, `phase`, `jacobian`.
    pub parts: Vec<String>,
    /// Architectures of the layers part.
    pub archs: Vec<Arch>,
    /// Activations of the layers part.
    pub activations: Vec<Activation>,
    /// Initialisations of the layers part.
    pub inits: Vec<WeightInit>,
    /// Blocks L of the layers and phase parts.
    pub depth: usize,
    /// Hidden width.
    pub width: usize,
    /// Dimension of the Gaussian inputs.
    pub input_dim: usize,
    /// The inputs of the layers and phase parts: `gaussian` (a batch of
    /// N(0, I) vectors of `input_dim`) or `grid` (`batch` evenly spaced
    /// scalars on [−2, 2], as in the shattered study; needs input_dim = 1).
    pub input: String,
    /// Inputs in the batch.
    pub batch: usize,
    /// Nets per configuration.
    pub seeds: usize,
    /// Base seed.
    pub seed: u64,
    /// f32 or f64.
    pub dtype: Precision,
    /// Bias initialisation.
    pub bias_init: BiasInit,
    /// Weights w of the scalar chain.
    pub chain_weights: Vec<f64>,
    /// Longest chain.
    pub chain_depth: usize,
    /// σ_w² values of the phase diagram.
    pub phase_sigma_w2: Vec<f64>,
    /// Activations of the phase diagram.
    pub phase_activations: Vec<Activation>,
    /// Width of the Jacobian chains.
    pub jacobian_width: usize,
    /// Depths at which Jacobian spectra are taken.
    pub jacobian_depths: Vec<usize>,
    /// Activations of the Jacobian part.
    pub jacobian_activations: Vec<Activation>,
}

impl Default for NormsParams {
    fn default() -> Self {
        NormsParams {
            parts: PARTS.iter().map(|s| s.to_string()).collect(),
            archs: vec![Arch::PLAIN, Arch::RESNET, Arch::PLAIN_BN, Arch::RESNET_BN],
            activations: vec![Activation::Relu, Activation::Tanh, Activation::Sigmoid],
            inits: vec![WeightInit::He, WeightInit::Xavier],
            depth: 50,
            width: 128,
            input_dim: 64,
            input: "gaussian".into(),
            batch: 64,
            seeds: 6,
            seed: 0,
            dtype: Precision::F64,
            bias_init: BiasInit::Zero,
            chain_weights: vec![0.5, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5],
            chain_depth: 50,
            phase_sigma_w2: (0..12).map(|k| 0.25 * 2f64.powf(k as f64 / 2.75)).collect(),
            phase_activations: vec![Activation::Relu, Activation::Tanh],
            jacobian_width: 96,
            jacobian_depths: vec![1, 4, 16, 64],
            jacobian_activations: vec![Activation::Identity, Activation::Relu, Activation::Tanh],
        }
    }
}

impl NormsParams {
    /// Small sizes, for tests and a first look.
    pub fn quick() -> Self {
        NormsParams {
            archs: vec![Arch::PLAIN, Arch::RESNET],
            activations: vec![Activation::Relu, Activation::Tanh],
            inits: vec![WeightInit::He],
            depth: 12,
            width: 48,
            batch: 32,
            seeds: 2,
            phase_sigma_w2: vec![0.5, 1.0, 2.0, 4.0],
            jacobian_width: 32,
            jacobian_depths: vec![1, 4, 16],
            ..Default::default()
        }
    }

    /// Validate: the only way to a runnable study.
    pub fn check(&self) -> Result<NormsConfig> {
        let mut p = self.clone();
        if p.parts.is_empty() {
            return Err(StudyError::config(
                "parts",
                format!("list at least one of {}", PARTS.join(", ")),
            ));
        }
        if let Some(bad) = p.parts.iter().find(|x| !PARTS.contains(&x.as_str())) {
            return Err(StudyError::config(
                "parts",
                format!("unknown part {bad:?} (known: {})", PARTS.join(", ")),
            ));
        }
        crate::validate::check_archs(&p.archs, true)?;
        let nonempty = |name: &'static str, n: usize| {
            if n == 0 {
                Err(StudyError::config(name, "list at least one value"))
            } else {
                Ok(())
            }
        };
        nonempty("activations", p.activations.len())?;
        nonempty("inits", p.inits.len())?;
        nonempty("chain_weights", p.chain_weights.len())?;
        nonempty("phase_sigma_w2", p.phase_sigma_w2.len())?;
        nonempty("phase_activations", p.phase_activations.len())?;
        nonempty("jacobian_activations", p.jacobian_activations.len())?;
        crate::validate::check_depths(&mut p.jacobian_depths)?;
        let range = |name: &'static str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(StudyError::config(
                    name,
                    format!("must be {lo}..={hi}, got {v}"),
                ))
            }
        };
        match p.input.as_str() {
            "gaussian" => {}
            "grid" if p.input_dim == 1 => {}
            "grid" => {
                return Err(StudyError::config(
                    "input",
                    "a grid input is scalar: set input_dim = 1",
                ));
            }
            other => {
                return Err(StudyError::config(
                    "input",
                    format!("unknown input {other:?} (known: gaussian, grid)"),
                ));
            }
        }
        range("depth", p.depth, 1, 500)?;
        range("batch", p.batch, 2, 8192)?;
        range("input_dim", p.input_dim, 1, 65536)?;
        range("seeds", p.seeds, 1, 1000)?;
        range("chain_depth", p.chain_depth, 1, 1000)?;
        range("jacobian_width", p.jacobian_width, 2, 1024)?;
        range(
            "jacobian depth",
            *p.jacobian_depths.last().unwrap(),
            1,
            1000,
        )?;
        for &w in &p.chain_weights {
            if !(w.is_finite() && w != 0.0) {
                return Err(StudyError::config(
                    "chain_weights",
                    format!("must be finite and non-zero, got {w}"),
                ));
            }
        }
        for &s in &p.phase_sigma_w2 {
            if !(s.is_finite() && s > 0.0) {
                return Err(StudyError::config(
                    "phase_sigma_w2",
                    format!("must be positive numbers, got {s}"),
                ));
            }
        }
        p.phase_sigma_w2.sort_by(f64::total_cmp);
        p.phase_sigma_w2.dedup();
        for init in &p.inits {
            p.net(Arch::PLAIN, Activation::Relu, *init).check()?;
        }
        for arch in &p.archs {
            p.net(*arch, Activation::Relu, WeightInit::He).check()?;
        }
        Ok(NormsConfig {
            params: p,
            draws: Default::default(),
        })
    }

    fn net(&self, arch: Arch, activation: Activation, weight_init: WeightInit) -> NetParams {
        NetParams {
            arch,
            depth: self.depth,
            width: self.width,
            input_dim: self.input_dim,
            output_dim: 1,
            activation,
            weight_init,
            bias_init: self.bias_init,
            precision: self.dtype,
            seed: 0,
        }
    }
}

/// A validated norms study.
#[derive(Clone, Debug)]
pub struct NormsConfig {
    params: NormsParams,
    /// The Gaussian weight draws per (seed, tensor), shared by the cells: the
    /// nets of one seed differ in activation and init scale (layers) or σ_w²
    /// (phase), and drawing was a fifth of building and running each.
    draws: std::sync::Arc<DrawCache>,
}

/// Gaussian weights at the critical σ_w², or orthogonal ones with the same scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JacobianInit {
    /// W ~ N(0, σ_w²/W).
    Gaussian,
    /// W = √σ_w²·Q, Q Haar-orthogonal.
    Orthogonal,
}

/// One unit of work.
#[derive(Clone, Debug)]
pub enum Cell {
    /// One net of the layers part.
    Layers {
        /// Index into archs.
        arch: usize,
        /// Index into activations.
        activation: usize,
        /// Index into inits.
        init: usize,
        /// Seed index.
        seed: usize,
    },
    /// The scalar chains (cheap: one cell).
    Chain,
    /// One net of the phase diagram.
    Phase {
        /// 0: plain, 1: residual (no BN).
        residual: bool,
        /// Index into phase_activations.
        activation: usize,
        /// Index into phase_sigma_w2.
        sigma: usize,
        /// Seed index.
        seed: usize,
    },
    /// One Jacobian chain.
    Jacobian {
        /// Plain or residual.
        residual: bool,
        /// Index into jacobian_activations.
        activation: usize,
        /// Gaussian or orthogonal.
        init: JacobianInit,
        /// Seed index.
        seed: usize,
    },
}

/// What a cell produces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "part", rename_all = "snake_case")]
pub enum CellOutput {
    /// Per-layer norms of one net.
    Layers {
        /// ‖∂L/∂h_l‖, l = 0 … L.
        #[serde(with = "gradscope_stats::nan::vec")]
        grad: Vec<f64>,
        /// mean(h_l²), l = 0 … L.
        #[serde(with = "gradscope_stats::nan::vec")]
        second_moment: Vec<f64>,
        /// (name, ‖∂L/∂θ‖) of every weight matrix, input to output.
        weight_grads: Vec<(String, f64)>,
        /// (name, ‖∂L/∂θ‖) of every bias vector.
        bias_grads: Vec<(String, f64)>,
        /// First NaN/inf: (pass, layer, name, nan).
        fault: Option<(String, usize, String, bool)>,
    },
    /// |dF/dw₁| by autograd for every weight and length 1 … chain_depth.
    Chain {
        /// One row per weight.
        autograd: Vec<Vec<f64>>,
    },
    /// ‖∂L/∂h_l‖, l = 0 … L, of one phase net.
    Phase {
        /// ‖∂L/∂h_l‖.
        #[serde(with = "gradscope_stats::nan::vec")]
        grad: Vec<f64>,
    },
    /// Singular values of ∂h_L/∂h₀ at each Jacobian depth.
    Jacobian {
        /// One list per depth, descending.
        singular_values: Vec<Vec<f64>>,
    },
}

impl NormsConfig {
    /// The validated parameters.
    pub fn params(&self) -> &NormsParams {
        &self.params
    }

    /// Run every cell and summarise (see [`run_study`]).
    pub fn run(&self, opts: &RunOptions) -> Result<NormsResults> {
        run_study(self, opts)
    }

    fn net_seed(&self, part: &str, s: usize) -> u64 {
        derive_seed(self.params.seed, &format!("{part}-seed{s}"))
    }

    /// The critical σ_w² of a plain net without biases (χ₁ = 1): for
    /// (leaky) ReLU, whose χ₁ does not depend on q, 1/E[φ'(z)²] (2 for ReLU);
    /// for smooth activations the fixed point q* → 0, where χ₁ → σ_w²·φ'(0)²,
    /// so 1/φ'(0)² (1 for tanh and linear nets).
    pub fn critical_sigma_w2(a: Activation) -> f64 {
        match a {
            Activation::Relu | Activation::LeakyRelu { .. } => 1.0 / a.mean_squared_slope(1.0),
            _ => 1.0 / a.derivative(0.0).powi(2),
        }
    }

    fn inputs(&self, seed: u64) -> Array2<f64> {
        let p = &self.params;
        if p.input == "grid" {
            return gradscope_probe::scalar_grid(p.batch, -2.0, 2.0);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(derive_seed(seed, "inputs"));
        Array2::from_shape_fn((p.batch, p.input_dim), |_| StandardNormal.sample(&mut rng))
    }

    fn layers_cell(
        &self,
        arch: Arch,
        act: Activation,
        init: WeightInit,
        seed: usize,
    ) -> Result<CellOutput> {
        let p = &self.params;
        let s = self.net_seed("layers", seed);
        let net = Net::Mlp(Mlp::with_draws(
            &p.net(arch, act, init).check()?.with_seed(s),
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

    fn chain_cell(&self) -> Result<CellOutput> {
        use candle_core::{Device, Var};
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

    fn phase_cell(
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
            ..p.net(arch, act, WeightInit::Normal { sigma_w2 })
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

    fn jacobian_cell(
        &self,
        residual: bool,
        act: Activation,
        init: JacobianInit,
        seed: usize,
    ) -> Result<CellOutput> {
        let p = &self.params;
        let n = p.jacobian_width;
        let s2 = Self::critical_sigma_w2(act);
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

impl Study for NormsConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = CellOutput;
    type Results = NormsResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        let on = |part: &str| p.parts.iter().any(|x| x == part);
        let mut c = vec![];
        if on("chain") {
            c.push(Cell::Chain);
        }
        for arch in (0..p.archs.len()).filter(|_| on("layers")) {
            for activation in 0..p.activations.len() {
                for init in 0..p.inits.len() {
                    for seed in 0..p.seeds {
                        c.push(Cell::Layers {
                            arch,
                            activation,
                            init,
                            seed,
                        });
                    }
                }
            }
        }
        for residual in [false, true] {
            for activation in (0..p.phase_activations.len()).filter(|_| on("phase")) {
                for sigma in 0..p.phase_sigma_w2.len() {
                    for seed in 0..p.seeds.min(4) {
                        c.push(Cell::Phase {
                            residual,
                            activation,
                            sigma,
                            seed,
                        });
                    }
                }
            }
            for activation in (0..p.jacobian_activations.len()).filter(|_| on("jacobian")) {
                for init in [JacobianInit::Gaussian, JacobianInit::Orthogonal] {
                    for seed in 0..p.seeds.min(4) {
                        c.push(Cell::Jacobian {
                            residual,
                            activation,
                            init,
                            seed,
                        });
                    }
                }
            }
        }
        c
    }

    fn cell_key(&self, c: &Cell) -> String {
        let p = &self.params;
        match *c {
            Cell::Layers {
                arch,
                activation,
                init,
                seed,
            } => format!(
                "layers,arch={},act={},init={},seed={seed}",
                p.archs[arch], p.activations[activation], p.inits[init]
            ),
            Cell::Chain => "chain".into(),
            Cell::Phase {
                residual,
                activation,
                sigma,
                seed,
            } => format!(
                "phase,residual={residual},act={},sigma_w2={},seed={seed}",
                p.phase_activations[activation], p.phase_sigma_w2[sigma]
            ),
            Cell::Jacobian {
                residual,
                activation,
                init,
                seed,
            } => format!(
                "jacobian,residual={residual},act={},init={init:?},seed={seed}",
                p.jacobian_activations[activation]
            ),
        }
    }

    fn run_cell(&self, c: &Cell) -> Result<CellOutput> {
        let p = &self.params;
        match *c {
            Cell::Layers {
                arch,
                activation,
                init,
                seed,
            } => self.layers_cell(
                p.archs[arch],
                p.activations[activation],
                p.inits[init],
                seed,
            ),
            Cell::Chain => self.chain_cell(),
            Cell::Phase {
                residual,
                activation,
                sigma,
                seed,
            } => self.phase_cell(
                residual,
                p.phase_activations[activation],
                p.phase_sigma_w2[sigma],
                seed,
            ),
            Cell::Jacobian {
                residual,
                activation,
                init,
                seed,
            } => self.jacobian_cell(residual, p.jacobian_activations[activation], init, seed),
        }
    }

    fn cell_faults(&self, c: &Cell, out: &CellOutput) -> Vec<String> {
        match out {
            CellOutput::Layers {
                fault: Some((pass, layer, name, nan)),
                ..
            } => vec![format!(
                "{}: {} in the {pass} pass, first at layer {layer} ({name})",
                self.cell_key(c),
                if *nan { "NaN" } else { "inf" }
            )],
            _ => vec![],
        }
    }

    fn summarise(&self, outputs: Vec<CellOutput>, provenance: Provenance) -> Result<NormsResults> {
        let p = &self.params;
        let cells = self.cells();
        let mut layers = vec![];
        let mut chains = vec![];
        let mut phase = vec![];
        let mut jac = vec![];
        // Group outputs by configuration (seeds last in the cell order).
        let mut groups: std::collections::BTreeMap<String, (Cell, Vec<CellOutput>)> =
            Default::default();
        for (c, o) in cells.into_iter().zip(outputs) {
            let key = match c {
                Cell::Layers {
                    arch,
                    activation,
                    init,
                    ..
                } => format!("a{arch:03}-{activation:03}-{init:03}"),
                Cell::Chain => "chain".into(),
                Cell::Phase {
                    residual,
                    activation,
                    sigma,
                    ..
                } => format!("p{}-{activation:03}-{sigma:03}", u8::from(residual)),
                Cell::Jacobian {
                    residual,
                    activation,
                    init,
                    ..
                } => format!("j{}-{activation:03}-{init:?}", u8::from(residual)),
            };
            groups
                .entry(key)
                .or_insert_with(|| (c.clone(), vec![]))
                .1
                .push(o);
        }
        for (_, (cell, outs)) in groups {
            match cell {
                Cell::Layers {
                    arch,
                    activation,
                    init,
                    ..
                } => {
                    layers.push(self.layers_summary(
                        p.archs[arch],
                        p.activations[activation],
                        p.inits[init],
                        &outs,
                    ));
                }
                Cell::Chain => {
                    if let Some(CellOutput::Chain { autograd }) = outs.into_iter().next() {
                        for (w, row) in p.chain_weights.iter().zip(autograd) {
                            chains.push(ChainSummary {
                                w: *w,
                                closed_form: (1..=p.chain_depth)
                                    .map(|l| w.abs().powi(l as i32 - 1))
                                    .collect(),
                                autograd: row,
                            });
                        }
                    }
                }
                Cell::Phase {
                    residual,
                    activation,
                    sigma,
                    ..
                } => {
                    let grads: Vec<&Vec<f64>> = outs
                        .iter()
                        .filter_map(|o| {
                            if let CellOutput::Phase { grad } = o {
                                Some(grad)
                            } else {
                                None
                            }
                        })
                        .collect();
                    let log_ratio = (1..=p.depth)
                        .map(|l| MeanStd::of(grads.iter().map(|g| (g[0] / g[l]).log10())).mean)
                        .collect();
                    phase.push(PhaseRow {
                        residual,
                        activation: p.phase_activations[activation],
                        sigma_w2: p.phase_sigma_w2[sigma],
                        log10_ratio: log_ratio,
                    });
                }
                Cell::Jacobian {
                    residual,
                    activation,
                    init,
                    ..
                } => {
                    let act = p.jacobian_activations[activation];
                    for (k, &depth) in p.jacobian_depths.iter().enumerate() {
                        let sv: Vec<f64> = outs
                            .iter()
                            .filter_map(|o| {
                                if let CellOutput::Jacobian { singular_values } = o {
                                    singular_values.get(k)
                                } else {
                                    None
                                }
                            })
                            .flatten()
                            .copied()
                            .collect();
                        let sq = MeanStd::of(sv.iter().map(|s| s * s));
                        jac.push(JacobianRow {
                            residual,
                            activation: act,
                            init,
                            sigma_w2: Self::critical_sigma_w2(act),
                            depth,
                            mean_sq: sq.mean,
                            var_sq: sq.std * sq.std,
                            max: sv.iter().copied().fold(f64::NAN, f64::max),
                            min: sv.iter().copied().fold(f64::NAN, f64::min),
                            singular_values: sv,
                        });
                    }
                }
            }
        }
        Ok(NormsResults {
            summary: NormsSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                layers,
                chains,
                phase,
                jacobian: jac,
            },
        })
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }
}

impl NormsConfig {
    fn layers_summary(
        &self,
        arch: Arch,
        act: Activation,
        init: WeightInit,
        outs: &[CellOutput],
    ) -> LayerSummary {
        let p = &self.params;
        let mut grads: Vec<&Vec<f64>> = vec![];
        let mut moments: Vec<&Vec<f64>> = vec![];
        let mut wg: Vec<&Vec<(String, f64)>> = vec![];
        let mut bg: Vec<&Vec<(String, f64)>> = vec![];
        let mut faults = vec![];
        for (s, o) in outs.iter().enumerate() {
            if let CellOutput::Layers {
                grad,
                second_moment,
                weight_grads,
                bias_grads,
                fault,
            } = o
            {
                grads.push(grad);
                moments.push(second_moment);
                wg.push(weight_grads);
                bg.push(bias_grads);
                if let Some((pass, layer, name, nan)) = fault {
                    faults.push(FaultRow {
                        seed: s,
                        pass: pass.clone(),
                        layer: *layer,
                        name: name.clone(),
                        nan: *nan,
                    });
                }
            }
        }
        let per = |vs: &[&Vec<f64>], l: usize| -> Vec<f64> {
            vs.iter().filter_map(|v| v.get(l).copied()).collect()
        };
        let stat = |v: &[f64]| LayerStat::of(v);
        let n_h = grads.first().map_or(0, |g| g.len());
        let grad_norm: Vec<LayerStat> = (0..n_h).map(|l| stat(&per(&grads, l))).collect();
        let ratios: Vec<f64> = grads
            .iter()
            .flat_map(|g| (1..g.len()).map(move |l| g[l - 1] / g[l]))
            .filter(|r| r.is_finite())
            .collect();
        let named = |v: &[&Vec<(String, f64)>]| -> (Vec<String>, Vec<LayerStat>) {
            let names: Vec<String> = v
                .first()
                .map(|x| x.iter().map(|(n, _)| n.clone()).collect())
                .unwrap_or_default();
            let stats = (0..names.len())
                .map(|k| {
                    stat(
                        &v.iter()
                            .filter_map(|x| x.get(k).map(|y| y.1))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            (names, stats)
        };
        let (weight_names, weight_grad_norm) = named(&wg);
        let (bias_names, bias_grad_norm) = named(&bg);
        // Mean-field prediction for plain nets without BN: q_l = σ_w²·mean(h_{l−1}²) + σ_b².
        let sigma_w2 = init.variance(p.width, p.width) * p.width as f64;
        let sigma_b2 = match p.bias_init {
            BiasInit::Zero => 0.0,
            BiasInit::Normal { std } => std * std,
            BiasInit::Uniform { bound } => bound * bound / 3.0,
            BiasInit::Torch => 1.0 / (3.0 * p.width as f64),
        };
        let predicted_ratio = match arch {
            Arch::Plain {
                norm: gradscope_nets::Norm::None,
                looks_linear: false,
            } => {
                let chis: Vec<f64> = (1..n_h)
                    .map(|l| {
                        let q = sigma_w2 * MeanStd::of(per(&moments, l - 1)).mean + sigma_b2;
                        sigma_w2 * act.mean_squared_slope(q)
                    })
                    .collect();
                MeanStd::of(chis.iter().map(|c| c.sqrt())).mean
            }
            _ => f64::NAN,
        };
        let activation_rms = (0..n_h)
            .map(|l| MeanStd::of(per(&moments, l).into_iter().map(f64::sqrt)).mean)
            .collect();
        LayerSummary {
            activation_rms,
            arch: arch.to_string(),
            activation: act,
            init,
            sigma_w2,
            grad_norm,
            backward_ratio: MeanStd::of(ratios.iter().copied()),
            predicted_ratio,
            weight_names,
            weight_grad_norm,
            bias_names,
            bias_grad_norm,
            faults,
        }
    }
}

/// Mean, sd and quantiles of one layer's norm over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStat {
    /// Mean, sd, min, max, counts.
    #[serde(flatten)]
    pub summary: MeanStd,
    /// 10 % quantile.
    #[serde(with = "gradscope_stats::nan")]
    pub q10: f64,
    /// Median.
    #[serde(with = "gradscope_stats::nan")]
    pub q50: f64,
    /// 90 % quantile.
    #[serde(with = "gradscope_stats::nan")]
    pub q90: f64,
}

impl LayerStat {
    fn of(v: &[f64]) -> Self {
        let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        let q = |t| {
            if finite.is_empty() {
                f64::NAN
            } else {
                quantile(&finite, t)
            }
        };
        LayerStat {
            summary: MeanStd::of(v.iter().copied()),
            q10: q(0.1),
            q50: q(0.5),
            q90: q(0.9),
        }
    }
}

/// A NaN/inf found in one seed's net.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    /// Seed index.
    pub seed: usize,
    /// `forward` or `backward`.
    pub pass: String,
    /// Index l of h_l where it first appears.
    pub layer: usize,
    /// Name of that hidden state.
    pub name: String,
    /// NaN (true) or ±inf.
    pub nan: bool,
}

/// The layers part for one (arch, activation, init).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Architecture spec.
    pub arch: String,
    /// Activation.
    pub activation: Activation,
    /// Weight initialisation.
    pub init: WeightInit,
    /// σ_w² = fan_in·Var(W) of the hidden layers.
    pub sigma_w2: f64,
    /// ‖∂L/∂h_l‖, l = 0 … L, over seeds.
    pub grad_norm: Vec<LayerStat>,
    /// √mean(h_l²), l = 0 … L, mean over seeds (finite values).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub activation_rms: Vec<f64>,
    /// ‖∂L/∂h_{l−1}‖/‖∂L/∂h_l‖ over layers and seeds.
    pub backward_ratio: MeanStd,
    /// Mean-field √χ₁ (plain nets without BN; NaN otherwise).
    #[serde(with = "gradscope_stats::nan")]
    pub predicted_ratio: f64,
    /// Weight matrices, input to output.
    pub weight_names: Vec<String>,
    /// ‖∂L/∂W‖ per weight matrix.
    pub weight_grad_norm: Vec<LayerStat>,
    /// Bias vectors, input to output.
    pub bias_names: Vec<String>,
    /// ‖∂L/∂b‖ per bias vector.
    pub bias_grad_norm: Vec<LayerStat>,
    /// NaN/inf by seed.
    pub faults: Vec<FaultRow>,
}

/// The scalar chain for one weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainSummary {
    /// The weight w of every link.
    pub w: f64,
    /// |dF/dw₁| by autograd, L = 1 … chain_depth.
    pub autograd: Vec<f64>,
    /// |w|^{L−1}.
    pub closed_form: Vec<f64>,
}

/// One row of the phase diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRow {
    /// Residual (no BN) or plain.
    pub residual: bool,
    /// Activation.
    pub activation: Activation,
    /// σ_w².
    pub sigma_w2: f64,
    /// log₁₀(‖∂L/∂h₀‖/‖∂L/∂h_L‖), L = 1 … depth, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub log10_ratio: Vec<f64>,
}

/// Jacobian spectrum of one configuration at one depth (all seeds pooled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JacobianRow {
    /// Residual or plain.
    pub residual: bool,
    /// Activation.
    pub activation: Activation,
    /// Gaussian or orthogonal.
    pub init: JacobianInit,
    /// σ_w² used (critical for the activation).
    pub sigma_w2: f64,
    /// Depth.
    pub depth: usize,
    /// Mean of σ².
    #[serde(with = "gradscope_stats::nan")]
    pub mean_sq: f64,
    /// Variance of σ².
    #[serde(with = "gradscope_stats::nan")]
    pub var_sq: f64,
    /// Largest σ.
    #[serde(with = "gradscope_stats::nan")]
    pub max: f64,
    /// Smallest σ.
    #[serde(with = "gradscope_stats::nan")]
    pub min: f64,
    /// Every singular value, descending per seed.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub singular_values: Vec<f64>,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormsSummary {
    /// Layout version, `gradscope.norms/1`.
    pub schema: String,
    /// Study name, `norms`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: NormsParams,
    /// The layers part.
    pub layers: Vec<LayerSummary>,
    /// The chain part.
    pub chains: Vec<ChainSummary>,
    /// The phase diagram.
    pub phase: Vec<PhaseRow>,
    /// The Jacobian spectra.
    pub jacobian: Vec<JacobianRow>,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct NormsResults {
    /// What goes into summary.json.
    pub summary: NormsSummary,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Per-layer gradient norms.
    pub const LAYERS_CSV: &str = "layers.csv";
    /// Per-layer weight and bias gradient norms.
    pub const PARAMS_CSV: &str = "params.csv";
    /// Measured and predicted backward ratios.
    pub const RATIOS_CSV: &str = "ratios.csv";
    /// The scalar chains.
    pub const CHAIN_CSV: &str = "chain.csv";
    /// The phase diagram.
    pub const PHASE_CSV: &str = "phase.csv";
    /// Jacobian spectrum moments.
    pub const JACOBIAN_CSV: &str = "jacobian.csv";
    /// ‖∂L/∂h_l‖ means, (configurations in summary order, L + 1).
    pub const GRAD_NORMS: &str = "grad_norms.npy";
    /// The phase diagram, (rows in summary order, depth).
    pub const PHASE: &str = "phase.npy";
}

impl StudyResults for NormsResults {
    fn write(&self, dir: &std::path::Path) -> Result<()> {
        create_dir(dir)?;
        let s = &self.summary;
        let mut c = Csv::new(&[
            "arch",
            "activation",
            "init",
            "layer",
            "grad_norm_mean",
            "grad_norm_std",
            "q10",
            "q50",
            "q90",
        ]);
        for r in &s.layers {
            for (l, g) in r.grad_norm.iter().enumerate() {
                c.row(&[
                    r.arch.clone(),
                    r.activation.to_string(),
                    r.init.to_string(),
                    l.to_string(),
                    num(g.summary.mean),
                    num(g.summary.std),
                    num(g.q10),
                    num(g.q50),
                    num(g.q90),
                ]);
            }
        }
        c.write(&dir.join(files::LAYERS_CSV))?;
        let mut c = Csv::new(&[
            "arch",
            "activation",
            "init",
            "kind",
            "name",
            "grad_norm_mean",
            "grad_norm_std",
        ]);
        for r in &s.layers {
            for (kind, names, stats) in [
                ("weight", &r.weight_names, &r.weight_grad_norm),
                ("bias", &r.bias_names, &r.bias_grad_norm),
            ] {
                for (n, g) in names.iter().zip(stats) {
                    c.row(&[
                        r.arch.clone(),
                        r.activation.to_string(),
                        r.init.to_string(),
                        kind.into(),
                        n.clone(),
                        num(g.summary.mean),
                        num(g.summary.std),
                    ]);
                }
            }
        }
        c.write(&dir.join(files::PARAMS_CSV))?;
        let mut c = Csv::new(&[
            "arch",
            "activation",
            "init",
            "sigma_w2",
            "measured_ratio_mean",
            "measured_ratio_std",
            "predicted_ratio",
            "faults",
        ]);
        for r in &s.layers {
            c.row(&[
                r.arch.clone(),
                r.activation.to_string(),
                r.init.to_string(),
                num(r.sigma_w2),
                num(r.backward_ratio.mean),
                num(r.backward_ratio.std),
                num(r.predicted_ratio),
                r.faults.len().to_string(),
            ]);
        }
        c.write(&dir.join(files::RATIOS_CSV))?;
        let mut c = Csv::new(&["w", "length", "autograd", "closed_form"]);
        for ch in &s.chains {
            for (l, (a, f)) in ch.autograd.iter().zip(&ch.closed_form).enumerate() {
                c.row(&[num(ch.w), (l + 1).to_string(), num(*a), num(*f)]);
            }
        }
        c.write(&dir.join(files::CHAIN_CSV))?;
        let mut c = Csv::new(&["residual", "activation", "sigma_w2", "depth", "log10_ratio"]);
        for r in &s.phase {
            for (l, v) in r.log10_ratio.iter().enumerate() {
                c.row(&[
                    r.residual.to_string(),
                    r.activation.to_string(),
                    num(r.sigma_w2),
                    (l + 1).to_string(),
                    num(*v),
                ]);
            }
        }
        c.write(&dir.join(files::PHASE_CSV))?;
        let mut c = Csv::new(&[
            "residual",
            "activation",
            "init",
            "sigma_w2",
            "depth",
            "mean_sq",
            "var_sq",
            "max",
            "min",
        ]);
        for r in &s.jacobian {
            c.row(&[
                r.residual.to_string(),
                r.activation.to_string(),
                format!("{:?}", r.init).to_lowercase(),
                num(r.sigma_w2),
                r.depth.to_string(),
                num(r.mean_sq),
                num(r.var_sq),
                num(r.max),
                num(r.min),
            ]);
        }
        c.write(&dir.join(files::JACOBIAN_CSV))?;
        let len = s
            .layers
            .iter()
            .map(|r| r.grad_norm.len())
            .max()
            .unwrap_or(0);
        let g = Array2::from_shape_fn((s.layers.len(), len), |(i, l)| {
            s.layers[i]
                .grad_norm
                .get(l)
                .map_or(f64::NAN, |x| x.summary.mean)
        });
        crate::output::write_npy(&dir.join(files::GRAD_NORMS), &g)?;
        let len = s
            .phase
            .iter()
            .map(|r| r.log10_ratio.len())
            .max()
            .unwrap_or(0);
        let ph = Array2::from_shape_fn((s.phase.len(), len), |(i, l)| {
            s.phase[i].log10_ratio.get(l).copied().unwrap_or(f64::NAN)
        });
        crate::output::write_npy(&dir.join(files::PHASE), &ph)?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

/// Read the summary of a study folder.
pub fn read_summary(dir: &std::path::Path) -> Result<NormsSummary> {
    crate::output::read_summary(&dir.join(files::SUMMARY), SCHEMA, |s: &NormsSummary| {
        &s.schema
    })
}
