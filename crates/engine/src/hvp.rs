//! Curvature of the training loss: exact Hessian-vector products H·v and
//! Gauss–Newton products G·v of the mean cross-entropy of one batch with
//! respect to every parameter, on the engine's kernels.
//!
//! H·v is forward-over-reverse differentiation (Pearlmutter 1994): the net
//! runs on dual numbers ([`Dual`]) whose tangents are v, so the reverse
//! pass's gradient carries ∇L(θ) as its value and d/dε ∇L(θ + εv) = H·v as
//! its tangent, exactly (to rounding), through every op the engine covers.
//!
//! G·v = Jᵀ H_L J v (Schraudolph 2002; Martens 2010): the forward tangent
//! J·v of the logits, the softmax cross-entropy's Hessian
//! H_L = (diag(p) − ppᵀ)/B per example, then a reverse pass with that as
//! the output cotangent.
//!
//! The value parts of a pass depend on (θ, x) alone, so the value products
//! of the first H·v at a point are kept ([`crate::memo`]) and every later
//! H·v there forms only the tangent products: two thirds of the first's.

use gradscope_nets::{BnMode, Net};
use ndarray::{Array2, ArrayView2, Zip};
use num_traits::Float;

use crate::dense::DenseNet;
use crate::dual::Dual;
use crate::engine::Engine;
use crate::memo::{self, ValueProducts};
use crate::ops::Want;
use crate::{EngineError, Real, Result};

/// The loss L(θ) = −(1/B) Σᵢ log softmax(f(xᵢ; θ))\[yᵢ\] of one batch (the
/// training loss), on a net loaded into dual numbers over F (f32 or f64,
/// the net's own type); vectors over the parameters are f64, in the
/// state-dict order of [`Engine::update_params`].
pub struct Curvature<F: Real> {
    net: DenseNet<Dual<F>>,
    x: Array2<Dual<F>>,
    labels: Vec<u32>,
    sizes: Vec<(String, usize)>,
    /// The value products of the passes at the current θ.
    values: std::sync::Arc<ValueProducts>,
}

/// The loss and the parameters' gradients in duals (value ∇L, tangent
/// H·v) at one point.
struct Pass<F> {
    loss: f64,
    params: Vec<(String, Vec<Dual<F>>)>,
}

impl<F: Real> Curvature<F> {
    /// The loss of `net` (an MLP or a conv net, f32 or f64) on batch `x`
    /// (examples × inputs) with labels `labels`, BN in `mode` (train or
    /// full mode: batch statistics, differentiated through, as in a training
    /// step). In per-sample mode the backward pass holds the batch
    /// statistics constant, so it is not the gradient of L: the product is
    /// then the Jacobian of that field along v, which is not symmetric.
    pub fn new(net: &Net, mode: BnMode, x: ArrayView2<f64>, labels: &[u32]) -> Result<Self> {
        let net = match net {
            Net::Mlp(m) => DenseNet::build(m, mode, false)?,
            Net::Conv(c) => DenseNet::build_conv(c, mode, false)?,
            Net::Transformer(_) | Net::Custom { .. } => {
                return Err(EngineError::Input(
                    "Hessian-vector products need a net of engine ops (an MLP or a conv net), not a custom model or a transformer".into(),
                ));
            }
        };
        if x.nrows() != labels.len() || labels.is_empty() {
            return Err(EngineError::Input(format!(
                "{} examples and {} labels: a batch needs one label per example",
                x.nrows(),
                labels.len()
            )));
        }
        let x = x.mapv(|v| Dual::constant(F::of(v)));
        let mut out = Curvature {
            net,
            x,
            labels: labels.to_vec(),
            sizes: Vec::new(),
            values: Default::default(),
        };
        out.sizes = out
            .net
            .params()
            .into_iter()
            .map(|(name, p)| (name, p.len()))
            .collect();
        let classes = out.net.head_outputs();
        if let Some(&y) = labels.iter().find(|&&y| y as usize >= classes) {
            return Err(EngineError::Input(format!(
                "label {y} of a net with {classes} outputs"
            )));
        }
        Ok(out)
    }

    /// Number of parameters (the dimension of H).
    pub fn dim(&self) -> usize {
        self.sizes.iter().map(|(_, n)| n).sum()
    }

    /// (state-dict name, number of elements) of each parameter, in the
    /// order of the vectors.
    pub fn parameter_sizes(&self) -> &[(String, usize)] {
        &self.sizes
    }

    /// θ, the parameters, as one vector.
    pub fn parameters(&self) -> Vec<f64> {
        self.net
            .params()
            .into_iter()
            .flat_map(|(_, p)| p.iter().map(|d| d.value.f64()).collect::<Vec<_>>())
            .collect()
    }

    /// Moves the net to θ (rounded to F).
    pub fn set_parameters(&mut self, theta: &[f64]) -> Result<()> {
        self.check_len(theta.len())?;
        self.each_param(theta, |d, v| d.value = F::of(v));
        self.values.clear();
        Ok(())
    }

    /// Drops the value products kept from the passes at this θ (the memory
    /// they hold: about three values per product operand element); the next
    /// H·v forms them again.
    pub fn forget_value_products(&mut self) {
        self.values.clear();
    }

    /// (L(θ), ∇L(θ)).
    pub fn loss_gradient(&mut self) -> Result<(f64, Vec<f64>)> {
        let zero = vec![0.0; self.dim()];
        let pass = self.pass(&zero)?;
        Ok((pass.loss, flatten(&pass.params, |d| d.value)))
    }

    /// H·v, with H = ∇²L(θ): the tangent of the gradient along v.
    pub fn hvp(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        Ok(flatten(&self.pass(v)?.params, |d| d.tangent))
    }

    /// J·v: the logits' tangent along v (examples × classes).
    pub fn output_tangent(&mut self, v: &[f64]) -> Result<Array2<f64>> {
        self.check_len(v.len())?;
        self.set_tangents(v);
        let fwd = self.net.forward(self.x.view(), false)?;
        let z = self.net.output(&fwd, self.net.depth())?;
        Ok(z.mapv(|d| d.tangent.f64()))
    }

    /// G·v = Jᵀ H_L J v, with J the Jacobian of the batch's logits in θ and
    /// H_L the loss's Hessian in the logits: per example
    /// (diag(p) − ppᵀ)/B with p = softmax(zᵢ). G is positive semi-definite.
    pub fn gauss_newton(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        self.check_len(v.len())?;
        self.set_tangents(v);
        let fwd = self.net.forward(self.x.view(), true)?;
        let z = self.net.output(&fwd, self.net.depth())?;
        let inv_n = F::one() / F::of(self.labels.len() as f64);
        let mut u = Array2::<Dual<F>>::zeros(z.raw_dim());
        Zip::from(u.rows_mut()).and(z.rows()).for_each(|mut u, z| {
            let max = z.iter().fold(F::neg_infinity(), |a, d| a.max(d.value));
            let e: Vec<F> = z.iter().map(|d| (d.value - max).exp()).collect();
            let sum: F = e.iter().copied().sum();
            let p: Vec<F> = e.iter().map(|&e| e / sum).collect();
            let pjv: F = p.iter().zip(z).map(|(&p, d)| p * d.tangent).sum();
            for ((u, &p), d) in u.iter_mut().zip(&p).zip(z) {
                *u = Dual::constant(p * (d.tangent - pjv) * inv_n);
            }
        });
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = self
            .net
            .backward(&fwd, self.net.depth(), Some(u.view()), want)?;
        Ok(flatten(&grads.params, |d| d.value))
    }

    fn check_len(&self, n: usize) -> Result<()> {
        if n != self.dim() {
            return Err(EngineError::Input(format!(
                "a vector of {n} elements for a net of {} parameters",
                self.dim()
            )));
        }
        Ok(())
    }

    /// Calls `f(θⱼ, vⱼ)` on every parameter j in order.
    fn each_param(&mut self, v: &[f64], mut f: impl FnMut(&mut Dual<F>, f64)) {
        let mut at = 0;
        for (_, p) in self.net.params_mut() {
            let n = p.len();
            for (d, &vj) in p.iter_mut().zip(&v[at..at + n]) {
                f(d, vj);
            }
            at += n;
        }
    }

    fn set_tangents(&mut self, v: &[f64]) {
        self.each_param(v, |d, vj| d.tangent = F::of(vj));
    }

    /// Forward and reverse pass on duals with tangents v: the mean
    /// cross-entropy and its gradient in duals (each caller converts only
    /// the part it returns).
    fn pass(&mut self, v: &[f64]) -> Result<Pass<F>> {
        self.check_len(v.len())?;
        self.set_tangents(v);
        let values = self.values.clone();
        memo::within(Some(&values), || self.pass_at_tangents())
    }

    fn pass_at_tangents(&self) -> Result<Pass<F>> {
        let fwd = self.net.forward(self.x.view(), true)?;
        let depth = self.net.depth();
        let mut g = self.net.output(&fwd, depth)?;
        let loss = softmax_minus_label(&mut g, &self.labels);
        let inv_n = Dual::constant(F::one() / F::of(self.labels.len() as f64));
        g.mapv_inplace(|d| d * inv_n);
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = self.net.backward(&fwd, depth, Some(g.view()), want)?;
        Ok(Pass {
            loss,
            params: grads.params,
        })
    }
}

/// The parameters' gradients (or their tangents) as one f64 vector.
fn flatten<F: Real>(params: &[(String, Vec<Dual<F>>)], part: impl Fn(&Dual<F>) -> F) -> Vec<f64> {
    let mut out = Vec::with_capacity(params.iter().map(|(_, g)| g.len()).sum());
    for (_, g) in params {
        out.extend(g.iter().map(|d| part(d).f64()));
    }
    out
}

/// The mean cross-entropy of logits z (in f64, by log-sum-exp) and, in
/// place of z, its per-example gradient softmax(zᵢ) − e_{yᵢ}, in dual
/// arithmetic: the training loss's formula (`train::loss`), whose tangent
/// is the gradient's derivative along the logits' tangents.
fn softmax_minus_label<F: Real>(z: &mut Array2<Dual<F>>, labels: &[u32]) -> f64 {
    let mut total = 0.0;
    for (mut row, &y) in z.rows_mut().into_iter().zip(labels) {
        // A constant shift: softmax is invariant to it, tangents included.
        let max = Dual::constant(row.iter().fold(F::neg_infinity(), |a, d| a.max(d.value)));
        let gap = (row[y as usize].value - max.value).f64();
        row.mapv_inplace(|d| (d - max).exp());
        let sum: Dual<F> = row.iter().copied().sum();
        row.mapv_inplace(|d| d / sum);
        row[y as usize] -= Dual::constant(F::one());
        total += sum.value.f64().ln() - gap;
    }
    total / labels.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradscope_nets::{ConvNet, ConvNetParams, Mlp, NetParams, Precision};

    fn direction(n: usize, seed: usize) -> Vec<f64> {
        (0..n)
            .map(|i| ((i * 31 + seed * 17) % 29) as f64 / 14.0 - 1.0)
            .collect()
    }

    /// H·v at a point: the first pass keeps its value products, every later
    /// one recalls all of them (and forms none), and gives what a fresh
    /// `Curvature` gives; moving θ forgets them.
    fn later_products_at_a_point_recall_the_first_ones(net: &Net, x: Array2<f64>) {
        let labels: Vec<u32> = (0..x.nrows()).map(|i| (i % 3) as u32).collect();
        let mut c = Curvature::<f64>::new(net, BnMode::Full, x.view(), &labels).unwrap();
        let n = c.dim();
        let (v1, v2) = (direction(n, 1), direction(n, 2));
        c.hvp(&v1).unwrap();
        let (hits, products) = c.values.counts();
        assert_eq!(hits, 0);
        assert!(products > 0);
        let again = c.hvp(&v2).unwrap();
        assert_eq!(c.values.counts(), (products, products));
        let close = |a: &[f64], b: &[f64]| {
            let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b)
                .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
            assert!(worst <= 1e-12 * scale, "{worst} against {scale}");
        };
        let mut fresh = Curvature::<f64>::new(net, BnMode::Full, x.view(), &labels).unwrap();
        close(&again, &fresh.hvp(&v2).unwrap());
        // A new point: nothing kept is served there.
        let theta: Vec<f64> = c
            .parameters()
            .iter()
            .zip(&v1)
            .map(|(t, v)| t + 0.05 * v)
            .collect();
        c.set_parameters(&theta).unwrap();
        assert_eq!(c.values.counts(), (0, 0));
        fresh.set_parameters(&theta).unwrap();
        close(&c.hvp(&v2).unwrap(), &fresh.hvp(&v2).unwrap());
        assert_eq!(c.values.counts(), (0, products));
    }

    #[test]
    fn later_products_at_a_point_recall_the_first_ones_in_an_mlp() {
        let p = NetParams {
            arch: "resnet-bn".parse().unwrap(),
            depth: 3,
            width: 6,
            input_dim: 4,
            output_dim: 3,
            precision: Precision::F64,
            seed: 3,
            ..Default::default()
        };
        let net = Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap());
        let x = Array2::from_shape_fn((9, 4), |(i, j)| ((i * 5 + j * 3) % 11) as f64 / 5.0 - 1.0);
        later_products_at_a_point_recall_the_first_ones(&net, x);
    }

    #[test]
    fn later_products_at_a_point_recall_the_first_ones_in_a_conv_net() {
        let p = ConvNetParams {
            arch: "resnet".parse().unwrap(),
            depth: 8,
            widths: [2, 3, 4],
            in_channels: 2,
            image_size: 6,
            classes: 3,
            precision: Precision::F64,
            seed: 4,
            ..Default::default()
        };
        let net = Net::Conv(ConvNet::new(&p.check().unwrap()).unwrap());
        let x = Array2::from_shape_fn((5, 72), |(i, j)| ((i * 7 + j * 3) % 13) as f64 / 6.0 - 1.0);
        later_products_at_a_point_recall_the_first_ones(&net, x);
    }

    #[test]
    fn the_loss_gradient_in_the_logits_is_softmax_minus_the_label_with_its_derivative() {
        // One example, three classes: ∂²L/∂z² = diag(p) − ppᵀ.
        let zv = [0.3, -1.2, 0.8];
        let t = [1.0, 0.5, -2.0];
        let mut z = Array2::from_shape_fn((1, 3), |(_, j)| Dual::new(zv[j], t[j]));
        let loss = softmax_minus_label(&mut z, &[2]);
        let e: Vec<f64> = zv.iter().map(|v| v.exp()).collect();
        let s: f64 = e.iter().sum();
        let p: Vec<f64> = e.iter().map(|e| e / s).collect();
        assert!((loss - (s.ln() - zv[2])).abs() < 1e-14);
        let pt: f64 = p.iter().zip(&t).map(|(p, t)| p * t).sum();
        for j in 0..3 {
            let want = p[j] - f64::from(u8::from(j == 2));
            assert!((z[[0, j]].value - want).abs() < 1e-15);
            assert!((z[[0, j]].tangent - p[j] * (t[j] - pt)).abs() < 1e-15);
        }
        assert!(z.iter().map(|d| d.value).sum::<f64>().abs() < 1e-15);
        assert!(Float::is_finite(z[[0, 0]]));
    }
}
