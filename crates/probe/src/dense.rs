//! A dense fast path for MLPs: the same net as plain matrices (ndarray +
//! matrixmultiply), with a forward pass that keeps what the backward needs,
//! reverse-mode gradients from *any* depth (hidden states, input, and on
//! request parameters and per-example Gram matrices), and a forward-mode
//! (tangent) pass that gives df_L/dx for every depth L at once.
//!
//! It computes exactly what the candle path computes (tested to rounding),
//! skipping what a study does not need (autograd bookkeeping, gradients
//! nobody reads), and sharing the forward pass between depths: the depth-L
//! net is the first L blocks of the deepest one plus the same head.
//!
//! Applies when samples do not interact: no BN, or BN with batch statistics
//! held constant ([`BnMode::PerSample`]) or running statistics
//! ([`BnMode::Eval`]). With [`BnMode::Full`] the gradient runs through the
//! batch statistics and couples the samples; use [`capture`](crate::capture).

use candle_core::Tensor;
use gradscope_nets::{Activation, Block, BnMode, Layer, Mlp, Sequential};
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};
use num_traits::{Float, FromPrimitive, ToPrimitive};

use crate::{ProbeError, Result};

/// The float types the fast path runs in.
pub trait Real:
    ndarray::LinalgScalar + Float + FromPrimitive + candle_core::WithDType + Send + Sync + std::iter::Sum + std::ops::MulAssign
{
}
impl Real for f32 {}
impl Real for f64 {}

#[derive(Clone, Debug)]
enum Op<T> {
    /// y = x Wᵀ + b, W stored transposed (in × out) for the product.
    Linear { name: String, wt: Array2<T>, b: Option<Array1<T>> },
    /// y = (x − μ)/σ·γ + β with μ, σ from the batch (per-sample mode) or the running statistics.
    Norm { name: String, gamma: Array1<T>, beta: Array1<T>, running: Option<(Array1<T>, Array1<T>)>, eps: T },
    Act(Activation),
}

#[derive(Clone, Debug)]
enum Unit<T> {
    Plain(Vec<Op<T>>),
    Residual { branch: Vec<Op<T>>, alpha: T },
}

/// An MLP as plain matrices.
#[derive(Clone, Debug)]
pub struct DenseMlp<T> {
    stem: Vec<Op<T>>,
    blocks: Vec<Unit<T>>,
    head: Vec<Op<T>>,
}

/// What the backward pass of one op needs from the forward pass.
#[derive(Clone, Debug)]
enum Saved<T> {
    /// The input, when parameter gradients were asked for.
    Linear { input: Option<Array2<T>> },
    /// γ/σ per feature, and the normalised input x̂ when parameter gradients were asked for.
    Norm { scale: Array1<T>, xhat: Option<Array2<T>> },
    /// The op's input (pre-activation) and output.
    Act { pre: Array2<T>, post: Array2<T> },
}

/// The forward pass of the deepest net, kept for backward passes from any depth.
#[derive(Clone, Debug)]
pub struct DenseForward<T> {
    /// h_0 … h_L.
    pub hidden: Vec<Array2<T>>,
    stem: Vec<Saved<T>>,
    blocks: Vec<Vec<Saved<T>>>,
}

/// What a backward pass returns.
#[derive(Clone, Debug)]
pub struct DenseGrads<T> {
    /// ∂L/∂h_l for l = 0 … depth.
    pub hidden: Vec<Array2<T>>,
    /// ∂L/∂x.
    pub input: Array2<T>,
    /// (name, ∂L/∂θ flattened in the tensor's own layout) per parameter, in
    /// state-dict order, when asked for.
    pub params: Vec<(String, Vec<T>)>,
    /// (layer name, B × B Gram matrix of per-example gradients) per layer
    /// with parameters, when asked for.
    pub gram: Vec<(String, Array2<f64>)>,
}

/// Which gradients a backward pass collects besides the hidden states and input.
#[derive(Clone, Copy, Debug, Default)]
pub struct Want {
    pub params: bool,
    pub gram: bool,
}

fn to_array<T: Real>(t: &Tensor) -> Result<Array2<T>> {
    let t = t.to_dtype(T::DTYPE)?;
    let (r, c) = t.dims2()?;
    Ok(Array2::from_shape_vec((r, c), t.flatten_all()?.to_vec1::<T>()?).expect("shape matches"))
}

fn to_vec<T: Real>(t: &Tensor) -> Result<Array1<T>> {
    Ok(Array1::from_vec(t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?))
}

fn unsupported(what: &str) -> ProbeError {
    ProbeError::Input(format!("the dense fast path does not cover {what}; use the candle path"))
}

fn linear<T: Real>(name: String, l: &gradscope_nets::Linear) -> Result<Op<T>> {
    Ok(Op::Linear { name, wt: to_array::<T>(l.weight().as_tensor())?.t().to_owned(), b: l.bias().map(|b| to_vec(b.as_tensor())).transpose()? })
}

fn convert<T: Real>(prefix: &str, seq: &Sequential, mode: BnMode) -> Result<Vec<Op<T>>> {
    seq.layers()
        .iter()
        .map(|(name, layer)| {
            Ok(match layer {
                Layer::Linear(l) => linear(format!("{prefix}.{name}"), l)?,
                Layer::BatchNorm(bn) => Op::Norm {
                    name: format!("{prefix}.{name}"),
                    gamma: to_vec(bn.weight().as_tensor())?,
                    beta: to_vec(bn.bias().as_tensor())?,
                    running: match mode {
                        BnMode::Eval => Some((to_vec(bn.running_mean().as_tensor())?, to_vec(bn.running_var().as_tensor())?)),
                        BnMode::PerSample => None,
                        other => return Err(unsupported(&format!("BN in `{other}` mode"))),
                    },
                    eps: <T as FromPrimitive>::from_f64(bn.eps()).expect("eps is representable"),
                },
                Layer::Act(a) => match a {
                    Activation::Relu | Activation::Tanh | Activation::Sigmoid | Activation::Identity => Op::Act(*a),
                    #[allow(unreachable_patterns)]
                    other => return Err(unsupported(&format!("the activation {other}"))),
                },
                #[allow(unreachable_patterns)]
                _ => return Err(unsupported("this layer kind")),
            })
        })
        .collect()
}

impl<T: Real> DenseMlp<T> {
    /// The net's weights as matrices, for BN mode `mode` (per-sample or eval).
    pub fn from_mlp(net: &Mlp, mode: BnMode) -> Result<Self> {
        if net.dtype() != T::DTYPE {
            return Err(ProbeError::Input(format!("net is {:?}, the fast path was asked for {:?}", net.dtype(), T::DTYPE)));
        }
        let blocks = net
            .blocks()
            .iter()
            .enumerate()
            .map(|(l, b)| {
                let prefix = format!("layers.{l}");
                Ok(match b {
                    Block::Dense(d) => Unit::Plain(convert(&prefix, d.body(), mode)?),
                    Block::Residual(r) => Unit::Residual {
                        branch: convert(&prefix, r.branch(), mode)?,
                        alpha: <T as FromPrimitive>::from_f64(r.alpha()).expect("alpha"),
                    },
                    #[allow(unreachable_patterns)]
                    _ => return Err(unsupported("this block kind")),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseMlp { stem: vec![linear("stem".into(), net.stem())?], blocks, head: vec![linear("head".into(), net.head())?] })
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Forward pass of the deepest net on x (batch, input_dim), keeping what
    /// hidden-state and input gradients need.
    pub fn forward(&self, x: ArrayView2<T>) -> DenseForward<T> {
        self.forward_keeping(x, false)
    }

    /// Forward pass that also keeps each layer's input, for parameter
    /// gradients and per-example Gram matrices.
    pub fn forward_keeping(&self, x: ArrayView2<T>, inputs: bool) -> DenseForward<T> {
        let mut stem = Vec::new();
        let mut h = run_ops(&self.stem, x.to_owned(), &mut stem, inputs);
        let mut hidden = Vec::with_capacity(self.blocks.len() + 1);
        let mut blocks = Vec::with_capacity(self.blocks.len());
        hidden.push(h.clone());
        for unit in &self.blocks {
            let mut s = Vec::new();
            h = match unit {
                Unit::Plain(ops) => run_ops(ops, h, &mut s, inputs),
                Unit::Residual { branch, alpha } => {
                    let f = run_ops(branch, h.clone(), &mut s, inputs);
                    h.scaled_add(*alpha, &f);
                    h
                }
            };
            hidden.push(h.clone());
            blocks.push(s);
        }
        DenseForward { hidden, stem, blocks }
    }

    /// The net's outputs at `depth` (head applied to h_depth).
    pub fn output(&self, fwd: &DenseForward<T>, depth: usize) -> Array2<T> {
        run_ops(&self.head, fwd.hidden[depth].clone(), &mut Vec::new(), false)
    }

    /// Reverse mode for the depth-`depth` net and L = Σᵢ Σₖ fₖ(xᵢ): returns
    /// ∂L/∂h_l for l = 0 … depth and ∂L/∂x.
    pub fn backward(&self, fwd: &DenseForward<T>, depth: usize) -> (Vec<Array2<T>>, Array2<T>) {
        let g = self.backward_with(fwd, depth, None, Want::default());
        (g.hidden, g.input)
    }

    /// Reverse mode for the depth-`depth` net with ∂L/∂output = `out_grad`
    /// (batch × outputs; all ones when `None`, i.e. L = Σ outputs). Row i of
    /// `out_grad` is example i's own loss gradient, so per-example gradients
    /// and their Gram matrices are well defined (samples do not interact).
    pub fn backward_with(&self, fwd: &DenseForward<T>, depth: usize, out_grad: Option<ArrayView2<T>>, want: Want) -> DenseGrads<T> {
        let n = fwd.hidden[0].nrows();
        let outs = match &self.head[0] {
            Op::Linear { wt, .. } => wt.ncols(),
            _ => unreachable!("the head is linear"),
        };
        let g_out = match out_grad {
            Some(g) => g.to_owned(),
            None => Array2::from_elem((n, outs), T::one()),
        };
        let mut sink = Sink { want, params: Vec::new(), gram: Vec::new() };
        // The head's saved input is h_depth.
        let head_saved = vec![Saved::Linear { input: (want.params || want.gram).then(|| fwd.hidden[depth].clone()) }];
        let mut g = back_ops(&self.head, &head_saved, g_out, &mut sink);
        let mut hidden = vec![Array2::zeros((0, 0)); depth + 1];
        for (l, unit) in self.blocks[..depth].iter().enumerate().rev() {
            hidden[l + 1] = g.clone();
            g = match unit {
                Unit::Plain(ops) => back_ops(ops, &fwd.blocks[l], g, &mut sink),
                Unit::Residual { branch, alpha } => {
                    let mut through = back_ops(branch, &fwd.blocks[l], g.mapv(|v| v * *alpha), &mut sink);
                    through += &g;
                    through
                }
            };
        }
        hidden[0] = g.clone();
        let input = back_ops(&self.stem, &fwd.stem, g, &mut sink);
        // Collected output-to-input; report in state-dict (input-to-output) order.
        let mut params: Vec<(String, Vec<T>)> = sink.params;
        params.reverse();
        let mut gram = sink.gram;
        gram.reverse();
        DenseGrads { hidden, input, params, gram }
    }

    /// Forward mode along input direction `v` (input_dim): the directional
    /// derivative of the net's output sum at every depth,
    /// D_v f_L(xᵢ) for L = 0 … depth (rows) and samples i (columns).
    /// With a scalar input and v = 1 this is df_L/dx for every L in one pass.
    pub fn tangent_sweep(&self, x: ArrayView2<T>, v: &[T]) -> Array2<T> {
        let n = x.nrows();
        let t0 = Array2::from_shape_fn((n, v.len()), |(_, j)| v[j]);
        let (mut h, mut t) = tangent_ops(&self.stem, x.to_owned(), t0);
        let w_sum = match &self.head[0] {
            Op::Linear { wt, .. } => wt.sum_axis(Axis(1)),
            _ => unreachable!("the head is linear"),
        };
        let mut out = Array2::zeros((self.blocks.len() + 1, n));
        out.row_mut(0).assign(&t.dot(&w_sum));
        for (l, unit) in self.blocks.iter().enumerate() {
            (h, t) = match unit {
                Unit::Plain(ops) => tangent_ops(ops, h, t),
                Unit::Residual { branch, alpha } => {
                    let (fh, ft) = tangent_ops(branch, h.clone(), t.clone());
                    h.scaled_add(*alpha, &fh);
                    t.scaled_add(*alpha, &ft);
                    (h, t)
                }
            };
            out.row_mut(l + 1).assign(&t.dot(&w_sum));
        }
        out
    }
}

/// Where a backward pass puts parameter gradients and Gram matrices.
struct Sink<T> {
    want: Want,
    params: Vec<(String, Vec<T>)>,
    gram: Vec<(String, Array2<f64>)>,
}

fn to_f64<T: Real>(a: &Array2<T>) -> Array2<f64> {
    a.mapv(|v| ToPrimitive::to_f64(&v).unwrap_or(f64::NAN))
}

fn affine<T: Real>(x: ArrayView2<T>, wt: &Array2<T>, b: Option<&Array1<T>>) -> Array2<T> {
    let mut y = x.dot(wt);
    if let Some(b) = b {
        y += b;
    }
    y
}

/// Per-feature γ/σ and the shift, for batch or running statistics.
fn norm_scale<T: Real>(x: &Array2<T>, gamma: &Array1<T>, beta: &Array1<T>, running: &Option<(Array1<T>, Array1<T>)>, eps: T) -> (Array1<T>, Array1<T>, Array1<T>) {
    let (mean, var) = match running {
        Some((m, v)) => (m.clone(), v.clone()),
        None => {
            let n = T::from_usize(x.nrows()).expect("batch size");
            let mean = x.sum_axis(Axis(0)).mapv(|s| s / n);
            let var = Zip::from(x.columns()).and(&mean).map_collect(|c, &m| c.iter().map(|&v| (v - m) * (v - m)).sum::<T>() / n);
            (mean, var)
        }
    };
    let inv = var.mapv(|v| T::one() / (v + eps).sqrt());
    let scale = &inv * gamma;
    let shift = Zip::from(beta).and(&mean).and(&scale).map_collect(|&b, &m, &s| b - m * s);
    (scale, shift, mean)
}

fn act<T: Real>(a: Activation, z: T) -> T {
    let one = T::one();
    match a {
        Activation::Relu => Float::max(z, T::zero()),
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => one / (one + (-z).exp()),
        _ => z,
    }
}

/// φ'(z) from the input z and output y = φ(z).
fn act_slope<T: Real>(a: Activation, z: T, y: T) -> T {
    let one = T::one();
    match a {
        Activation::Relu => {
            if z > T::zero() {
                one
            } else {
                T::zero()
            }
        }
        Activation::Tanh => one - y * y,
        Activation::Sigmoid => y * (one - y),
        _ => one,
    }
}

fn run_ops<T: Real>(ops: &[Op<T>], mut h: Array2<T>, saved: &mut Vec<Saved<T>>, inputs: bool) -> Array2<T> {
    for op in ops {
        h = match op {
            Op::Linear { wt, b, .. } => {
                let y = affine(h.view(), wt, b.as_ref());
                saved.push(Saved::Linear { input: inputs.then_some(h) });
                y
            }
            Op::Norm { gamma, beta, running, eps, .. } => {
                let (scale, shift, mean) = norm_scale(&h, gamma, beta, running, *eps);
                let y = &h * &scale + &shift;
                // x̂ = (x − μ)/σ = (y − β)/γ, kept for γ's gradient.
                let xhat = inputs.then(|| {
                    let inv = Zip::from(&scale).and(gamma).map_collect(|&s, &g| s / g);
                    (&h - &mean) * &inv
                });
                saved.push(Saved::Norm { scale, xhat });
                y
            }
            Op::Act(a) => {
                let y = h.mapv(|z| act(*a, z));
                saved.push(Saved::Act { pre: h, post: y.clone() });
                y
            }
        };
    }
    h
}

fn back_ops<T: Real>(ops: &[Op<T>], saved: &[Saved<T>], mut g: Array2<T>, sink: &mut Sink<T>) -> Array2<T> {
    for (op, s) in ops.iter().zip(saved).rev() {
        g = match (op, s) {
            (Op::Linear { name, wt, b }, Saved::Linear { input }) => {
                if let Some(a) = input {
                    if sink.want.params {
                        if b.is_some() {
                            sink.params.push((format!("{name}.bias"), g.sum_axis(Axis(0)).to_vec()));
                        }
                        // ∂L/∂W = gᵀ a, stored (out × in) as the weight is.
                        sink.params.push((format!("{name}.weight"), g.t().dot(a).iter().copied().collect()));
                    }
                    if sink.want.gram {
                        // Per-example gradient of W is δᵢ aᵢᵀ: ⟨gᵢ, gⱼ⟩ = (aᵢ·aⱼ)(δᵢ·δⱼ), plus δᵢ·δⱼ for b.
                        let (aa, dd) = (to_f64(&a.dot(&a.t())), to_f64(&g.dot(&g.t())));
                        let bias = if b.is_some() { 1.0 } else { 0.0 };
                        sink.gram.push((name.clone(), (aa + bias) * dd));
                    }
                }
                g.dot(&wt.t())
            }
            (Op::Norm { name, .. }, Saved::Norm { scale, xhat }) => {
                if let Some(xh) = xhat {
                    let gx = &g * xh;
                    if sink.want.params {
                        sink.params.push((format!("{name}.bias"), g.sum_axis(Axis(0)).to_vec()));
                        sink.params.push((format!("{name}.weight"), gx.sum_axis(Axis(0)).to_vec()));
                    }
                    if sink.want.gram {
                        // Per example: ∂/∂γ = δᵢ ⊙ x̂ᵢ, ∂/∂β = δᵢ.
                        sink.gram.push((name.clone(), to_f64(&gx.dot(&gx.t())) + to_f64(&g.dot(&g.t()))));
                    }
                }
                g * scale
            }
            (Op::Act(a), Saved::Act { pre, post }) => {
                Zip::from(&mut g).and(pre).and(post).for_each(|g, &z, &y| *g *= act_slope(*a, z, y));
                g
            }
            _ => unreachable!("saved entries follow the ops"),
        };
    }
    g
}

fn tangent_ops<T: Real>(ops: &[Op<T>], mut h: Array2<T>, mut t: Array2<T>) -> (Array2<T>, Array2<T>) {
    for op in ops {
        match op {
            Op::Linear { wt, b, .. } => {
                h = affine(h.view(), wt, b.as_ref());
                t = t.dot(wt);
            }
            Op::Norm { gamma, beta, running, eps, .. } => {
                let (scale, shift, _) = norm_scale(&h, gamma, beta, running, *eps);
                h = &h * &scale + &shift;
                t *= &scale;
            }
            Op::Act(a) => {
                let y = h.mapv(|z| act(*a, z));
                Zip::from(&mut t).and(&h).and(&y).for_each(|t, &z, &y| *t *= act_slope(*a, z, y));
                h = y;
            }
        }
    }
    (h, t)
}

/// ‖a‖_F in f64.
pub fn frobenius_dense<T: Real>(a: &Array2<T>) -> f64 {
    a.iter().map(|v| ToPrimitive::to_f64(v).unwrap_or(f64::NAN).powi(2)).sum::<f64>().sqrt()
}
