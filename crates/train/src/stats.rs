//! The gradient statistics of training, per layer and step
//! ([`TrainStats`]): recorded on the steps a run asks for
//! (`TrainParams::stats_every`), from the step's own gradient and update
//! and one extra backward pass for the per-example Gram matrices of its
//! batch, so a step without statistics costs nothing more.

use std::collections::{BTreeMap, BTreeSet};

use gradscope_contract::{StepStats, TrainStats};
use gradscope_engine::{Engine, Real, Want};
use gradscope_nets::{BnMode, Layer, Net, Sequential};
use gradscope_stats::{BinEdges, per_example_gsnr};
use ndarray::Array2;

use crate::Result;
use crate::examples::Examples;
use crate::loss::cross_entropy_gradient;

/// Weight histograms: bins over ± this many times the layer's largest
/// initial weight (or ±1 for a layer initialised at zero).
const WEIGHT_RANGE: f64 = 2.0;
/// Weight histogram bins.
const WEIGHT_BINS: usize = 20;
/// Gradient histograms: log₁₀|g| from 10⁻¹² to 10², a bin a decade.
const GRAD_DECADES: (i32, i32, usize) = (-12, 2, 1);

/// What the statistics of a run need besides the engine: its layers, the
/// initial parameters θ₀ and which parameters are scale-invariant.
pub(crate) struct Recorder {
    layers: Vec<String>,
    init: BTreeMap<String, Vec<f64>>,
    /// Parameters whose layer's output is scale-invariant in them (jointly per layer).
    invariant: BTreeSet<String>,
    grad_edges: BinEdges,
    weight_edges: Vec<BinEdges>,
}

/// A statistics step under way: sums per layer, filled parameter by parameter.
pub(crate) struct StepRecord<'r> {
    recorder: &'r Recorder,
    lr: f64,
    step: usize,
    sums: Vec<Sums>,
}

#[derive(Clone, Default)]
struct Sums {
    grad: f64,
    weight: f64,
    before: f64,
    update: f64,
    from_init: f64,
    init: f64,
    invariant: f64,
    grad_hist: Vec<u64>,
    weight_hist: Vec<u64>,
}

/// `layers.3.fc1.weight` → `layers.3.fc1`.
pub(crate) fn layer_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(l, _)| l)
}

impl Recorder {
    /// A recorder for `model`'s run over `layers`, θ₀ given per parameter.
    pub(crate) fn new(
        model: &Net,
        layers: &[String],
        init: BTreeMap<String, Vec<f64>>,
    ) -> Result<Self> {
        let weight_edges = layers
            .iter()
            .map(|l| {
                let top = init
                    .iter()
                    .filter(|(n, _)| layer_of(n) == l)
                    .flat_map(|(_, v)| v.iter())
                    .fold(0.0f64, |m, v| m.max(v.abs()));
                let half = if top > 0.0 && top.is_finite() {
                    WEIGHT_RANGE * top
                } else {
                    1.0
                };
                BinEdges::symmetric(half, WEIGHT_BINS)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (lo, hi, per) = GRAD_DECADES;
        Ok(Recorder {
            layers: layers.to_vec(),
            init,
            invariant: scale_invariant_parameters(model),
            grad_edges: BinEdges::log_magnitude(lo, hi, per)?,
            weight_edges,
        })
    }

    /// The run's statistics before any step: edges and scale invariance.
    pub(crate) fn empty(&self) -> TrainStats {
        TrainStats {
            weight_edges: self
                .weight_edges
                .iter()
                .map(|e| e.edges().to_vec())
                .collect(),
            grad_log10_edges: self.grad_edges.edges().to_vec(),
            scale_invariant: self
                .layers
                .iter()
                .map(|l| self.invariant.iter().any(|p| layer_of(p) == l))
                .collect(),
            steps: Vec::new(),
        }
    }

    /// Start recording step `step` (from 1) at learning rate `lr`.
    pub(crate) fn begin(&self, step: usize, lr: f64) -> StepRecord<'_> {
        let sums = self
            .weight_edges
            .iter()
            .map(|e| Sums {
                grad_hist: vec![0; self.grad_edges.bins()],
                weight_hist: vec![0; e.bins()],
                ..Sums::default()
            })
            .collect();
        StepRecord {
            recorder: self,
            lr,
            step,
            sums,
        }
    }
}

impl StepRecord<'_> {
    /// Add parameter `name`: its values `before` and `after` the update,
    /// and the gradient `g` the update used.
    pub(crate) fn parameter<T: Real>(&mut self, name: &str, before: &[T], after: &[T], g: &[T]) {
        let r = self.recorder;
        let Some(l) = r.layers.iter().position(|x| x == layer_of(name)) else {
            return;
        };
        let s = &mut self.sums[l];
        let init = r.init.get(name);
        for (k, ((&b, &a), &gk)) in before.iter().zip(after).zip(g).enumerate() {
            let (b, a, gk) = (b.f64(), a.f64(), gk.f64());
            s.grad += gk * gk;
            s.weight += a * a;
            s.before += b * b;
            s.update += (a - b) * (a - b);
            if let Some(t0) = init.and_then(|v| v.get(k)) {
                s.from_init += (a - t0) * (a - t0);
                s.init += t0 * t0;
            }
        }
        if r.invariant.contains(name) {
            s.invariant += after.iter().map(|v| v.f64().powi(2)).sum::<f64>();
        }
        let add = |hist: &mut [u64], counts: Vec<u64>| {
            hist.iter_mut().zip(counts).for_each(|(h, c)| *h += c);
        };
        let as_f64 = |v: &[T]| v.iter().map(|x| x.f64()).collect::<Vec<f64>>();
        add(&mut s.grad_hist, r.grad_edges.count(&as_f64(g)).0);
        add(
            &mut s.weight_hist,
            r.weight_edges[l].count(&as_f64(after)).0,
        );
    }

    /// The step's statistics, with the GSNR of each layer measured before it.
    pub(crate) fn finish(self, gsnr: Vec<f64>) -> StepStats {
        let nan_if_zero = |num: f64, den: f64| {
            if den > 0.0 {
                (num / den).sqrt()
            } else {
                f64::NAN
            }
        };
        let invariant = self.recorder.empty().scale_invariant;
        StepStats {
            step: self.step,
            lr: self.lr,
            gsnr,
            grad_norm: self.sums.iter().map(|s| s.grad.sqrt()).collect(),
            weight_norm: self.sums.iter().map(|s| s.weight.sqrt()).collect(),
            update_size: self
                .sums
                .iter()
                .map(|s| nan_if_zero(s.update, s.before))
                .collect(),
            distance_from_init: self
                .sums
                .iter()
                .map(|s| nan_if_zero(s.from_init, s.init))
                .collect(),
            effective_lr: self
                .sums
                .iter()
                .zip(invariant)
                .map(|(s, inv)| {
                    if inv && s.invariant > 0.0 {
                        self.lr / s.invariant
                    } else {
                        f64::NAN
                    }
                })
                .collect(),
            grad_hist: self.sums.iter().map(|s| s.grad_hist.clone()).collect(),
            weight_hist: self.sums.into_iter().map(|s| s.weight_hist).collect(),
        }
    }
}

/// Layer-level GSNR ([`per_example_gsnr`]) of each of `layers` over the
/// examples `idx` of `set`, from the per-example Gram matrices of the loss
/// gradients, BN in eval mode (the engine's mode is left there; a training
/// step sets its own). Rows of ∂ℓ/∂z are scaled by one common factor, which
/// leaves the ratio alone and keeps f32 Gram entries out of the subnormals.
/// NaN for a layer without a Gram matrix (a lone gain or scale).
pub(crate) fn layer_gsnr<T: Real>(
    engine: &mut dyn Engine<T>,
    set: &Examples,
    idx: &[usize],
    layers: &[String],
) -> Result<Vec<f64>> {
    if idx.len() < 2 {
        return Ok(vec![f64::NAN; layers.len()]);
    }
    let (x, y) = set.matrix::<T>(idx);
    engine.set_mode(BnMode::Eval);
    let fwd = engine.forward(x.view(), true)?;
    let depth = engine.depth();
    let mut g = engine.output(&fwd, depth)?;
    cross_entropy_gradient(&mut g, &y);
    let top = g.fold(T::zero(), |m, &v| num_traits::Float::max(m, v.abs()));
    if top > T::zero() {
        g.mapv_inplace(|v| v / top);
    }
    let want = Want {
        gram: true,
        ..Want::default()
    };
    let grads = engine.backward(&fwd, depth, Some(g.view()), want)?;
    let mut by_layer: BTreeMap<&str, Array2<f64>> = BTreeMap::new();
    for (name, m) in &grads.gram {
        by_layer
            .entry(name.as_str())
            .and_modify(|acc| *acc += m)
            .or_insert_with(|| m.clone());
    }
    Ok(layers
        .iter()
        .map(|l| {
            by_layer
                .get(l.as_str())
                .and_then(|m| per_example_gsnr(m.view()).ok())
                .unwrap_or(f64::NAN)
        })
        .collect())
}

/// The parameters of an MLP whose layer's output is scale-invariant in
/// them: a linear layer's weight and bias when a BN, LN, GN or RMS norm
/// comes right after it in the same stack (N(c·(Wx + b)) = N(Wx + b) for
/// c > 0), and a weight-normed layer's direction v. Conv nets and custom
/// models: none found (their effective learning rate is not recorded).
pub(crate) fn scale_invariant_parameters(model: &Net) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Net::Mlp(mlp) = model else {
        return out;
    };
    let mut stack = |prefix: &str, seq: &Sequential| {
        let layers = seq.layers();
        for (k, (name, layer)) in layers.iter().enumerate() {
            let p = format!("{prefix}.{name}");
            match layer {
                Layer::WeightNorm(_) => {
                    out.insert(format!("{p}.weight_v"));
                }
                Layer::Linear(lin) => {
                    let normed = matches!(
                        layers.get(k + 1),
                        Some((_, Layer::BatchNorm(_) | Layer::Norm(_)))
                    );
                    if normed {
                        out.insert(format!("{p}.weight"));
                        if lin.bias().is_some() {
                            out.insert(format!("{p}.bias"));
                        }
                    }
                }
                _ => {}
            }
        }
    };
    for (b, block) in mlp.blocks().iter().enumerate() {
        let prefix = format!("layers.{b}");
        match block {
            gradscope_nets::Block::Dense(d) => stack(&prefix, d.body()),
            gradscope_nets::Block::Residual(r) => {
                stack(&prefix, r.branch());
                stack(&prefix, r.after());
                for s in r.recursions() {
                    stack(&prefix, s);
                }
            }
        }
    }
    out
}
