//! A dense fast path for MLPs: the same net as plain matrices (ndarray, the
//! gemm kernels candle uses and matrixmultiply's, whichever is faster for the
//! type and layout; see [`Real::gemm_into`]), with a forward pass that keeps what the backward needs,
//! reverse-mode gradients from *any* depth (hidden states, input, and on
//! request parameters and per-example Gram matrices), and a forward-mode
//! (tangent) pass that gives df_L/dx for every depth L at once.
//!
//! It computes exactly what the candle path computes (tested to rounding),
//! skipping what a study does not need (autograd bookkeeping, gradients
//! nobody reads), and sharing the forward pass between depths: the depth-L
//! net is the first L blocks of the deepest one plus the same head.
//!
//! Blocks: plain chains of linear layers, BN, per-sample norms (LN, GN,
//! RMS), ReLU/tanh/sigmoid and CReLU (looks-linear nets); residual blocks
//! y = post(λx + α·c·F(x)) with an optional trainable branch gain c (SkipInit,
//! ReZero, Fixup), post-norm recursions yᵢ = N(x + yᵢ₋₁), and gated shortcuts
//! (highway layers, Srivastava et al. 2015). Projection and dropout
//! shortcuts, a gain beside a gate, and conv nets are left to candle.
//!
//! Every BN mode: batch statistics held constant ([`BnMode::PerSample`]),
//! running statistics ([`BnMode::Eval`]), or the gradient through the batch
//! statistics ([`BnMode::Full`], and [`BnMode::Train`], whose forward pass
//! also yields the running-statistics update). Per-example gradients (Gram
//! matrices) and the forward-mode sweep need samples that do not interact:
//! per-sample or eval mode. With parameter access, an optimiser step and
//! [`DenseMlp::write_to`], the path also trains nets (`gradscope_train`).

use std::sync::OnceLock;

use candle_core::Tensor;
use gradscope_nets::{
    Activation, BN_MOMENTUM, Block, BnMode, FeatureNormKind, Layer, Mlp, ResidualShortcut,
    Sequential,
};
use ndarray::{Array1, Array2, ArrayView2, Axis, CowArray, Ix2, Zip};
use num_traits::{Float, FromPrimitive, ToPrimitive};

pub use crate::team::{TeamStats, product_threads, set_product_threads, team_stats};
use crate::{ProbeError, Result};

/// The float types the fast path runs in.
pub trait Real:
    ndarray::LinalgScalar
    + Float
    + FromPrimitive
    + candle_core::WithDType
    + Send
    + Sync
    + std::iter::Sum
    + num_traits::NumAssign
    + 'static
{
    /// C = A·B for C (m×n, row-major) and A (m×k), B (k×n) given by row and
    /// column strides, on the calling thread. C is written, never read.
    ///
    /// # Safety
    /// The pointers and strides describe valid matrices of those shapes, and
    /// C aliases neither A nor B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_into(
        m: usize,
        n: usize,
        k: usize,
        c: *mut Self,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
    );
}

// Which GEMM per layout is measured (a side-by-side microbenchmark of the
// layouts at 64–512 rows and columns, gemm with its AVX-512 kernels):
// matrixmultiply's kernels are as fast or up to 5 % faster when A is a
// transpose (the weight gradient δᵀh), gemm's 1–15 % faster otherwise, in
// f32 and f64 alike.
macro_rules! impl_real {
    ($t:ty, $matrixmultiply:path) => {
        impl Real for $t {
            unsafe fn gemm_into(
                m: usize,
                n: usize,
                k: usize,
                c: *mut $t,
                (a, a_rs, a_cs): (*const $t, isize, isize),
                (b, b_rs, b_cs): (*const $t, isize, isize),
            ) {
                // SAFETY: the caller's contract; with β = 0 C is not read.
                unsafe {
                    if a_rs == 1 && a_cs != 1 {
                        $matrixmultiply(
                            m, k, n, 1.0, a, a_rs, a_cs, b, b_rs, b_cs, 0.0, c, n as isize, 1,
                        );
                    } else {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            c,
                            1,
                            n as isize,
                            false,
                            a,
                            a_cs,
                            a_rs,
                            b,
                            b_cs,
                            b_rs,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            }
        }
    };
}

impl_real!(f32, matrixmultiply::sgemm);
impl_real!(f64, matrixmultiply::dgemm);

#[derive(Clone, Debug)]
enum Op<T> {
    /// y = x Wᵀ + b, W (out × in) in the tensor's own layout.
    Linear {
        name: String,
        w: Array2<T>,
        b: Option<Array1<T>>,
        /// Wᵀ row-major, made with the net and again on the first forward
        /// pass after W changes: gemm packs a row-major right factor 15–35 %
        /// faster than a transposed one at widths 256–512. `None` in a net
        /// built for one pass ([`DenseMlp::for_one_pass`]), which packs W's
        /// transposed view instead of paying for a copy it would use once.
        wt: Option<OnceLock<Array2<T>>>,
    },
    /// y = (x − μ)/σ·γ + β with μ, σ² from the batch or the running
    /// statistics (mean, variance), as the net's BN mode says.
    Norm {
        name: String,
        gamma: Array1<T>,
        beta: Array1<T>,
        running: (Array1<T>, Array1<T>),
        eps: T,
    },
    FeatureNorm(FeatureNormOp<T>),
    Act(Activation),
    /// y = c·x with c a trainable scalar (SkipInit, ReZero, Fixup's
    /// multiplier at the end of a residual branch); `name` is its state-dict name.
    Scale {
        name: String,
        c: Array1<T>,
    },
    /// y = [relu(x), relu(−x)] along the features (Shang et al. 2016; the
    /// looks-linear nets of Balduzzi et al. 2017).
    CRelu,
}

/// A per-sample normaliser over the features of each row, in `groups`
/// equal groups (LN: one group; Ba et al. 2016, Wu & He 2018):
/// y = γ·x̂ + β, x̂ = (x − μ)/√(σ² + ε) with μ, σ² over the group, or for
/// RMS norm (`centre` false, no β; Zhang & Sennrich 2019) x̂ = x/√(mean x² + ε).
#[derive(Clone, Debug)]
struct FeatureNormOp<T> {
    name: String,
    gamma: Array1<T>,
    beta: Option<Array1<T>>,
    groups: usize,
    centre: bool,
    eps: T,
}

#[derive(Clone, Debug)]
enum Unit<T> {
    Plain(Vec<Op<T>>),
    Residual(ResidualUnit<T>),
}

/// y = post(λx + α·F(x)), then yᵢ = Nᵢ(x + yᵢ₋₁) for each recursion
/// (Liu et al. 2020's xSkip and rSkip; λ = 1 and nothing after the sum is
/// the plain x + α·F(x)).
#[derive(Clone, Debug)]
struct ResidualUnit<T> {
    branch: Vec<Op<T>>,
    alpha: T,
    lambda: T,
    /// A gated shortcut instead of λx: sum = G⊙αF + (1 − G)⊙x (exclusive,
    /// highway layers) or αF + (1 − G)⊙x, G = σ(W_g x + b_g).
    gate: Option<Gate<T>>,
    after: Vec<Op<T>>,
    recursions: Vec<Vec<Op<T>>>,
}

/// The gate of a gated shortcut: its ops (linear, sigmoid) and whether it
/// also scales the branch.
#[derive(Clone, Debug)]
struct Gate<T> {
    ops: Vec<Op<T>>,
    exclusive: bool,
}

/// An MLP as plain matrices.
#[derive(Clone, Debug)]
pub struct DenseMlp<T> {
    stem: Vec<Op<T>>,
    blocks: Vec<Unit<T>>,
    head: Vec<Op<T>>,
    mode: BnMode,
}

/// What the backward pass of one op needs from the forward pass.
#[derive(Clone, Debug)]
enum Saved<T> {
    /// The input, when parameter gradients were asked for.
    Linear { input: Option<Array2<T>> },
    /// γ/σ per feature; the normalised input x̂ when parameter gradients
    /// were asked for or the statistics are in the gradient; the batch
    /// (mean, biased variance) in training mode.
    Norm {
        scale: Array1<T>,
        xhat: Option<Array2<T>>,
        batch: Option<(Array1<T>, Array1<T>)>,
    },
    /// The op's output y = φ(z): φ'(z) follows from y for every activation here.
    Act { post: Array2<T> },
    /// x̂ and 1/√(σ² + ε) per row and group (rows × groups).
    FeatureNorm { xhat: Array2<T>, inv_std: Array2<T> },
    /// For ReLU, once the next op has read y: φ' as a byte, 1 where y > 0
    /// and 0 elsewhere. A quarter of the bytes of y in f32 (an eighth in
    /// f64), so the backward pass reads less and y is freed or kept as the
    /// next op's input instead of copied.
    Relu { positive: Array2<u8> },
    /// A gated sum: the block input x and, when the gate is exclusive, the
    /// scaled branch αF (∂sum/∂G = αF − x). G itself is the gate's saved
    /// sigmoid output.
    Gate {
        input: Array2<T>,
        branch: Option<Array2<T>>,
    },
    /// The input of y = c·x, when parameter gradients were asked for.
    Scale { input: Option<Array2<T>> },
    /// sign(x) of a CReLU's input: which half of y carries the gradient.
    CRelu { sign: Array2<i8> },
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
    /// ‖∂L/∂h_l‖_F for l = 0 … depth.
    pub hidden_norms: Vec<f64>,
    /// ∂L/∂h_l for l = 0 … depth, when asked for (empty otherwise).
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

/// Which gradients a backward pass collects besides the input gradient and
/// the hidden-state gradient norms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Want {
    /// The hidden-state gradients themselves.
    pub hidden: bool,
    /// Per-tensor parameter gradients.
    pub params: bool,
    /// Per-example gradient Gram matrices, per layer and total.
    pub gram: bool,
}

fn to_array<T: Real>(t: &Tensor) -> Result<Array2<T>> {
    let t = t.to_dtype(T::DTYPE)?;
    let (r, c) = t.dims2()?;
    Ok(Array2::from_shape_vec((r, c), t.flatten_all()?.to_vec1::<T>()?).expect("shape matches"))
}

fn to_vec<T: Real>(t: &Tensor) -> Result<Array1<T>> {
    Ok(Array1::from_vec(
        t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?,
    ))
}

fn unsupported(what: &str) -> ProbeError {
    ProbeError::Input(format!(
        "the dense fast path does not cover {what}; use the candle path"
    ))
}

/// A linear layer; `keep_wt`: with its row-major Wᵀ, made now.
fn linear<T: Real>(name: String, l: &gradscope_nets::Linear, keep_wt: bool) -> Result<Op<T>> {
    let w = to_array::<T>(l.weight().as_tensor())?;
    Ok(Op::Linear {
        name,
        wt: keep_wt.then(|| OnceLock::from(transposed(&w))),
        w,
        b: l.bias().map(|b| to_vec(b.as_tensor())).transpose()?,
    })
}

fn convert<T: Real>(prefix: &str, seq: &Sequential, keep_wt: bool) -> Result<Vec<Op<T>>> {
    seq.layers()
        .iter()
        .map(|(name, layer)| {
            Ok(match layer {
                Layer::Linear(l) => linear(format!("{prefix}.{name}"), l, keep_wt)?,
                Layer::BatchNorm(bn) => Op::Norm {
                    name: format!("{prefix}.{name}"),
                    gamma: to_vec(bn.weight().as_tensor())?,
                    beta: to_vec(bn.bias().as_tensor())?,
                    running: (
                        to_vec(bn.running_mean().as_tensor())?,
                        to_vec(bn.running_var().as_tensor())?,
                    ),
                    eps: <T as FromPrimitive>::from_f64(bn.eps()).expect("eps is representable"),
                },
                Layer::Norm(n) => {
                    let (groups, centre) = match n.kind() {
                        FeatureNormKind::Layer => (1, true),
                        FeatureNormKind::Group(g) => (g, true),
                        FeatureNormKind::Rms => (1, false),
                    };
                    Op::FeatureNorm(FeatureNormOp {
                        name: format!("{prefix}.{name}"),
                        gamma: to_vec(n.weight().as_tensor())?,
                        beta: n.bias().map(|b| to_vec(b.as_tensor())).transpose()?,
                        groups,
                        centre,
                        eps: <T as FromPrimitive>::from_f64(n.eps()).expect("eps is representable"),
                    })
                }
                Layer::Act(a) => match a {
                    Activation::Relu
                    | Activation::Tanh
                    | Activation::Sigmoid
                    | Activation::Identity => Op::Act(*a),
                    #[allow(unreachable_patterns)]
                    other => return Err(unsupported(&format!("the activation {other}"))),
                },
                Layer::CRelu => Op::CRelu,
                #[allow(unreachable_patterns)]
                _ => return Err(unsupported("this layer kind")),
            })
        })
        .collect()
}

impl<T: Real> DenseMlp<T> {
    /// The net's weights and BN statistics as matrices; BN runs in `mode`.
    /// Each linear layer keeps a row-major copy of Wᵀ for the forward
    /// products: for a net run more than once (training, benchmarks).
    pub fn from_mlp(net: &Mlp, mode: BnMode) -> Result<Self> {
        Self::build(net, mode, true)
    }

    /// [`from_mlp`](Self::from_mlp) for a net run forward once (a capture,
    /// a study cell): the forward products pack W's transposed view instead
    /// of a row-major copy of Wᵀ, which pays for itself only from the second
    /// pass on. Results equal `from_mlp`'s to rounding (gemm may sum a
    /// product in another order for the other layout; bitwise the same in
    /// every f64 study here).
    pub fn for_one_pass(net: &Mlp, mode: BnMode) -> Result<Self> {
        Self::build(net, mode, false)
    }

    fn build(net: &Mlp, mode: BnMode, keep_wt: bool) -> Result<Self> {
        if net.dtype() != T::DTYPE {
            return Err(ProbeError::Input(format!(
                "net is {:?}, the fast path was asked for {:?}",
                net.dtype(),
                T::DTYPE
            )));
        }
        let blocks = net
            .blocks()
            .iter()
            .enumerate()
            .map(|(l, b)| {
                let prefix = format!("layers.{l}");
                Ok(match b {
                    Block::Dense(d) => Unit::Plain(convert(&prefix, d.body(), keep_wt)?),
                    Block::Residual(r) => {
                        let (lambda, gate) = match r.shortcut() {
                            ResidualShortcut::Identity => (1.0, None),
                            ResidualShortcut::Scale(l) => (*l, None),
                            ResidualShortcut::Gate { gate, exclusive } => (
                                1.0,
                                Some(Gate {
                                    ops: vec![
                                        linear(format!("{prefix}.gate"), gate, keep_wt)?,
                                        Op::Act(Activation::Sigmoid),
                                    ],
                                    exclusive: *exclusive,
                                }),
                            ),
                            _ => return Err(unsupported("projection or dropout shortcuts")),
                        };
                        let real = |v: f64| <T as FromPrimitive>::from_f64(v).expect("a float");
                        let mut branch = convert(&prefix, r.branch(), keep_wt)?;
                        if let Some(c) = r.gain() {
                            // In state-dict order the gate comes before the gain.
                            if gate.is_some() {
                                return Err(unsupported("a gated shortcut with a branch gain"));
                            }
                            branch.push(Op::Scale {
                                name: format!("{prefix}.gain"),
                                c: to_vec(c.as_tensor())?,
                            });
                        }
                        Unit::Residual(ResidualUnit {
                            branch,
                            alpha: real(r.alpha()),
                            lambda: real(lambda),
                            gate,
                            after: convert(&prefix, r.after(), keep_wt)?,
                            recursions: r
                                .recursions()
                                .iter()
                                .map(|n| convert(&prefix, n, keep_wt))
                                .collect::<Result<_>>()?,
                        })
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseMlp {
            stem: vec![linear("stem".into(), net.stem(), keep_wt)?],
            blocks,
            head: vec![linear("head".into(), net.head(), keep_wt)?],
            mode,
        })
    }

    /// The BN mode of every pass.
    pub fn mode(&self) -> BnMode {
        self.mode
    }

    /// Run BN in `mode` from now on.
    pub fn set_mode(&mut self, mode: BnMode) {
        self.mode = mode;
    }

    fn ops(&self) -> impl Iterator<Item = &Op<T>> {
        let blocks = self.blocks.iter().flat_map(|u| match u {
            Unit::Plain(ops) => Box::new(ops.iter()) as Box<dyn Iterator<Item = &Op<T>>>,
            Unit::Residual(r) => Box::new(r.ops()),
        });
        self.stem.iter().chain(blocks).chain(&self.head)
    }

    fn ops_mut(&mut self) -> impl Iterator<Item = &mut Op<T>> {
        let blocks = self.blocks.iter_mut().flat_map(|u| match u {
            Unit::Plain(ops) => Box::new(ops.iter_mut()) as Box<dyn Iterator<Item = &mut Op<T>>>,
            Unit::Residual(r) => Box::new(r.ops_mut()),
        });
        self.stem.iter_mut().chain(blocks).chain(&mut self.head)
    }

    /// Every trainable parameter as (state-dict name, values in the tensor's
    /// layout), in state-dict order: the order and layout of
    /// [`DenseGrads::params`].
    pub fn params_mut(&mut self) -> Vec<(String, &mut [T])> {
        let mut out = Vec::new();
        for op in self.ops_mut() {
            let (name, w, b) = match op {
                Op::Linear { name, w, b, wt } => {
                    // The caller may change W through the slice.
                    if let Some(wt) = wt {
                        wt.take();
                    }
                    (name, w.as_slice_mut().expect("row-major"), b.as_mut())
                }
                Op::Norm {
                    name, gamma, beta, ..
                } => (name, gamma.as_slice_mut().expect("contiguous"), Some(beta)),
                Op::FeatureNorm(FeatureNormOp {
                    name, gamma, beta, ..
                }) => (
                    name,
                    gamma.as_slice_mut().expect("contiguous"),
                    beta.as_mut(),
                ),
                Op::Scale { name, c } => {
                    out.push((name.clone(), c.as_slice_mut().expect("contiguous")));
                    continue;
                }
                Op::Act(_) | Op::CRelu => continue,
            };
            out.push((format!("{name}.weight"), w));
            if let Some(b) = b {
                out.push((
                    format!("{name}.bias"),
                    b.as_slice_mut().expect("contiguous"),
                ));
            }
        }
        out
    }

    /// After a forward pass in [`BnMode::Train`]: running ← (1 − m)·running +
    /// m·batch with m = [`BN_MOMENTUM`] and the unbiased batch variance, as
    /// the candle BN layer (and PyTorch) does.
    pub fn update_running_stats(&mut self, fwd: &DenseForward<T>) {
        let n = fwd.hidden[0].nrows();
        let unbias = if n > 1 {
            T::from_usize(n).expect("n") / T::from_usize(n - 1).expect("n")
        } else {
            T::one()
        };
        let m = <T as FromPrimitive>::from_f64(BN_MOMENTUM).expect("momentum");
        let saved = fwd.stem.iter().chain(fwd.blocks.iter().flatten());
        let norms = self
            .ops_mut()
            .filter_map(|op| match op {
                Op::Norm { running, .. } => Some(running),
                _ => None,
            })
            .zip(saved.filter_map(|s| match s {
                Saved::Norm { batch, .. } => Some(batch),
                _ => None,
            }));
        for ((rm, rv), batch) in norms {
            if let Some((mean, var)) = batch {
                Zip::from(rm)
                    .and(mean)
                    .for_each(|r, &b| *r = (T::one() - m) * *r + m * b);
                Zip::from(rv)
                    .and(var)
                    .for_each(|r, &b| *r = (T::one() - m) * *r + m * b * unbias);
            }
        }
    }

    /// Write every parameter and BN running statistic back into `net` (the
    /// net this one was made from, or one of the same shape).
    pub fn write_to(&self, net: &Mlp) -> Result<()> {
        let vars: std::collections::HashMap<String, candle_core::Var> =
            net.state_dict().into_iter().collect();
        let set = |name: String, data: &[T], dims: &[usize]| -> Result<()> {
            let var = vars
                .get(&name)
                .ok_or_else(|| ProbeError::Input(format!("`{name}` is not in the net")))?;
            let t = Tensor::from_slice(data, dims, var.device())?;
            var.set(&t)?;
            Ok(())
        };
        for op in self.ops() {
            match op {
                Op::Linear { name, w, b, .. } => {
                    set(
                        format!("{name}.weight"),
                        w.as_slice().expect("row-major"),
                        w.shape(),
                    )?;
                    if let Some(b) = b {
                        set(
                            format!("{name}.bias"),
                            b.as_slice().expect("contiguous"),
                            b.shape(),
                        )?;
                    }
                }
                Op::Norm {
                    name,
                    gamma,
                    beta,
                    running: (rm, rv),
                    ..
                } => {
                    for (part, v) in [
                        ("weight", gamma),
                        ("bias", beta),
                        ("running_mean", rm),
                        ("running_var", rv),
                    ] {
                        set(
                            format!("{name}.{part}"),
                            v.as_slice().expect("contiguous"),
                            v.shape(),
                        )?;
                    }
                }
                Op::FeatureNorm(FeatureNormOp {
                    name, gamma, beta, ..
                }) => {
                    for (part, v) in [("weight", Some(gamma)), ("bias", beta.as_ref())] {
                        if let Some(v) = v {
                            set(
                                format!("{name}.{part}"),
                                v.as_slice().expect("contiguous"),
                                v.shape(),
                            )?;
                        }
                    }
                }
                Op::Scale { name, c } => {
                    set(name.clone(), c.as_slice().expect("contiguous"), c.shape())?
                }
                Op::Act(_) | Op::CRelu => {}
            }
        }
        Ok(())
    }

    /// Number of blocks.
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
        let mode = self.mode;
        let mut h = run_ops(&self.stem, Cur::In(x), &mut stem, inputs, mode);
        let mut hidden = Vec::with_capacity(self.blocks.len() + 1);
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for unit in &self.blocks {
            let mut s = Vec::new();
            let next = unit.forward(&h, &mut s, inputs, mode);
            // h_l is kept as it is (moved, not copied): the block only read it.
            hidden.push(std::mem::replace(&mut h, next));
            blocks.push(s);
        }
        hidden.push(h);
        DenseForward {
            hidden,
            stem,
            blocks,
        }
    }

    /// The net's outputs with its blocks run in `order`, skipping those
    /// marked in `deleted` (a lesion study, Veit et al. 2016: a deleted
    /// residual block passes its input on through the identity shortcut; a
    /// deleted plain block is left out).
    pub fn lesioned_output(
        &self,
        x: ArrayView2<T>,
        order: &[usize],
        deleted: &[bool],
    ) -> Array2<T> {
        let mode = self.mode;
        let mut h = run_ops(&self.stem, Cur::In(x), &mut Vec::new(), false, mode);
        for &b in order.iter().filter(|&&b| !deleted[b]) {
            h = self.blocks[b].forward(&h, &mut Vec::new(), false, mode);
        }
        run_ops(&self.head, Cur::Own(h), &mut Vec::new(), false, mode)
    }

    /// ∂L/∂x along one path of the unravelled residual net (Veit et al.
    /// 2016): block b passes the gradient through its branch α·F when
    /// `through_branch[b]`, else through its identity shortcut; L has
    /// ∂L/∂output = `out_grad`, at the forward pass `fwd` of the whole net.
    /// Needs samples that do not interact and every block residual.
    pub fn path_input_gradient(
        &self,
        fwd: &DenseForward<T>,
        out_grad: ArrayView2<T>,
        through_branch: &[bool],
    ) -> Result<Array2<T>> {
        if coupled(self.mode) {
            return Err(unsupported(&format!(
                "path gradients in BN `{}` mode",
                self.mode
            )));
        }
        let mut sink = Sink {
            want: Want::default(),
            mode: self.mode,
            params: Vec::new(),
            gram: Vec::new(),
        };
        let head_saved = vec![Saved::Linear { input: None }];
        let mut g = back_ops(&self.head, &head_saved, out_grad, &mut sink);
        for (l, unit) in self.blocks.iter().enumerate().rev() {
            let Unit::Residual(r) = unit else {
                return Err(unsupported("path gradients of a net with plain blocks"));
            };
            if !r.is_plain_sum() {
                return Err(unsupported(
                    "path gradients through scaled shortcuts or layers after the sum",
                ));
            }
            if through_branch.get(l).copied().unwrap_or(false) {
                g.mapv_inplace(|v| v * r.alpha);
                g = back_ops(&r.branch, &fwd.blocks[l], g, &mut sink);
            }
        }
        Ok(back_ops(&self.stem, &fwd.stem, g, &mut sink))
    }

    /// The net's outputs at `depth` (head applied to h_depth).
    pub fn output(&self, fwd: &DenseForward<T>, depth: usize) -> Array2<T> {
        run_ops(
            &self.head,
            Cur::In(fwd.hidden[depth].view()),
            &mut Vec::new(),
            false,
            self.mode,
        )
    }

    /// Reverse mode for the depth-`depth` net and L = Σᵢ Σₖ fₖ(xᵢ): returns
    /// ∂L/∂h_l for l = 0 … depth and ∂L/∂x.
    pub fn backward(&self, fwd: &DenseForward<T>, depth: usize) -> (Vec<Array2<T>>, Array2<T>) {
        let g = self.backward_with(
            fwd,
            depth,
            None,
            Want {
                hidden: true,
                ..Want::default()
            },
        );
        (g.hidden, g.input)
    }

    /// Reverse mode for the depth-`depth` net with ∂L/∂output = `out_grad`
    /// (batch × outputs; all ones when `None`, i.e. L = Σ outputs). Row i of
    /// `out_grad` is example i's own loss gradient, so per-example gradients
    /// and their Gram matrices are well defined when samples do not interact
    /// (per-sample or eval mode; in full and train mode the Gram matrices
    /// are not per-example gradients and should not be asked for).
    pub fn backward_with(
        &self,
        fwd: &DenseForward<T>,
        depth: usize,
        out_grad: Option<ArrayView2<T>>,
        want: Want,
    ) -> DenseGrads<T> {
        let n = fwd.hidden[0].nrows();
        let outs = match &self.head[0] {
            Op::Linear { w, .. } => w.nrows(),
            _ => unreachable!("the head is linear"),
        };
        let g_out = match out_grad {
            Some(g) => g.to_owned(),
            None => Array2::from_elem((n, outs), T::one()),
        };
        let mut sink = Sink {
            want,
            mode: self.mode,
            params: Vec::new(),
            gram: Vec::new(),
        };
        // The head's saved input is h_depth.
        let head_saved = vec![Saved::Linear {
            input: (want.params || want.gram).then(|| fwd.hidden[depth].clone()),
        }];
        let mut g = back_ops(&self.head, &head_saved, g_out, &mut sink);
        let mut hidden = Vec::new();
        let mut hidden_norms = vec![0.0; depth + 1];
        for (l, unit) in self.blocks[..depth].iter().enumerate().rev() {
            hidden_norms[l + 1] = frobenius_dense(&g);
            if want.hidden {
                hidden.push(g.clone());
            }
            g = match unit {
                Unit::Plain(ops) => back_ops(ops, &fwd.blocks[l], g, &mut sink),
                Unit::Residual(r) => r.backward(&fwd.blocks[l], g.view(), &mut sink),
            };
        }
        hidden_norms[0] = frobenius_dense(&g);
        if want.hidden {
            hidden.push(g.clone());
            hidden.reverse();
        }
        let input = back_ops(&self.stem, &fwd.stem, g, &mut sink);
        // Collected output-to-input; report in state-dict (input-to-output) order.
        let mut params: Vec<(String, Vec<T>)> = sink.params;
        params.reverse();
        let mut gram = sink.gram;
        gram.reverse();
        DenseGrads {
            hidden_norms,
            hidden,
            input,
            params,
            gram,
        }
    }

    /// Forward mode along input direction `v` (input_dim): the directional
    /// derivative of the net's output sum at every depth,
    /// D_v f_L(xᵢ) for L = 0 … depth (rows) and samples i (columns).
    /// With a scalar input and v = 1 this is df_L/dx for every L in one pass.
    /// Needs samples that do not interact (per-sample or eval mode).
    pub fn tangent_sweep(&self, x: ArrayView2<T>, v: &[T]) -> Result<Array2<T>> {
        if coupled(self.mode) {
            return Err(unsupported(&format!(
                "the forward-mode sweep in BN `{}` mode",
                self.mode
            )));
        }
        let n = x.nrows();
        let t0 = Array2::from_shape_fn((n, v.len()), |(_, j)| v[j]);
        let mode = self.mode;
        let (mut h, mut t) = tangent_ops(&self.stem, x.to_owned(), t0, mode);
        let w_sum = match &self.head[0] {
            Op::Linear { w, .. } => w.sum_axis(Axis(0)),
            _ => unreachable!("the head is linear"),
        };
        let mut out = Array2::zeros((self.blocks.len() + 1, n));
        out.row_mut(0).assign(&t.dot(&w_sum));
        for (l, unit) in self.blocks.iter().enumerate() {
            (h, t) = match unit {
                Unit::Plain(ops) => tangent_ops(ops, h, t, mode),
                Unit::Residual(r) => r.tangent(h, t, mode),
            };
            out.row_mut(l + 1).assign(&t.dot(&w_sum));
        }
        Ok(out)
    }
}

/// Where a backward pass puts parameter gradients and Gram matrices.
struct Sink<T> {
    want: Want,
    mode: BnMode,
    params: Vec<(String, Vec<T>)>,
    gram: Vec<(String, Array2<f64>)>,
}

pub(crate) fn to_f64<T: Real>(a: &Array2<T>) -> Array2<f64> {
    a.mapv(|v| ToPrimitive::to_f64(&v).unwrap_or(f64::NAN))
}

/// a·b into a new row-major array (the elementwise loops rely on that
/// layout), with [`Real::gemm_into`]'s kernels; any strides. With more than
/// one product thread the rows of a (and c) are split between them.
fn matmul<T: Real>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    matmul_on(a, b, None, product_threads())
}

/// [`matmul`] on at most `threads` threads, plus a bias row added to each
/// row block while it is still in cache.
fn matmul_on<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    bias: Option<&[T]>,
    threads: usize,
) -> Array2<T> {
    let ((m, k), n) = (a.dim(), b.ncols());
    assert_eq!(k, b.nrows(), "inner dimensions agree");
    let mut c = Array2::<T>::uninit((m, n));
    let chunk = if threads > 1 && m >= 64 * threads {
        m.div_ceil(threads)
    } else {
        m.max(1)
    };
    let c_ptr = c.as_mut_ptr() as usize;
    let rows = |lo: usize| {
        let hi = (lo + chunk).min(m);
        // SAFETY: rows lo..hi of a and c; the pointers and strides describe
        // a (m×k), b (k×n) and c (m×n, row-major), the row ranges are
        // disjoint, and gemm_into writes every element of its rows of c
        // without reading them.
        unsafe {
            T::gemm_into(
                hi - lo,
                n,
                k,
                (c_ptr as *mut T).add(lo * n),
                (
                    a.as_ptr().offset(lo as isize * a.strides()[0]),
                    a.strides()[0],
                    a.strides()[1],
                ),
                (b.as_ptr(), b.strides()[0], b.strides()[1]),
            );
        }
        if let Some(bias) = bias {
            // SAFETY: rows lo..hi of c, written above and touched by no other block.
            let block = unsafe {
                std::slice::from_raw_parts_mut((c_ptr as *mut T).add(lo * n), (hi - lo) * n)
            };
            for row in block.chunks_exact_mut(n.max(1)) {
                row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
            }
        }
    };
    if chunk < m {
        crate::team::run(m.div_ceil(chunk), &|i| rows(i * chunk));
    } else if m > 0 {
        rows(0);
    }
    // SAFETY: every row range was written above.
    unsafe { c.assume_init() }
}

/// Whether the gradient runs through the batch statistics.
fn coupled(mode: BnMode) -> bool {
    matches!(mode, BnMode::Full | BnMode::Train)
}

/// Wᵀ in row-major order.
fn transposed<T: Real>(w: &Array2<T>) -> Array2<T> {
    w.t().as_standard_layout().into_owned()
}

/// The right factor Wᵀ of a linear layer: its row-major copy (made again
/// here after W changed), or W's transposed view in a net built for one pass.
fn right_factor<'a, T: Real>(
    w: &'a Array2<T>,
    wt: &'a Option<OnceLock<Array2<T>>>,
) -> ArrayView2<'a, T> {
    match wt {
        Some(wt) => wt.get_or_init(|| transposed(w)).view(),
        None => w.t(),
    }
}

/// x Wᵀ + b, Wᵀ from [`right_factor`].
fn affine<T: Real>(x: ArrayView2<T>, wt: ArrayView2<T>, b: Option<&Array1<T>>) -> Array2<T> {
    let b = b.map(|b| b.as_slice().expect("contiguous"));
    matmul_on(x, wt, b, product_threads())
}

/// Per-feature γ/σ, the shift β − μγ/σ, μ and σ², for the batch
/// statistics or, when given, the running ones.
fn norm_scale<T: Real>(
    x: &Array2<T>,
    gamma: &Array1<T>,
    beta: &Array1<T>,
    running: Option<&(Array1<T>, Array1<T>)>,
    eps: T,
) -> (Array1<T>, Array1<T>, Array1<T>, Array1<T>) {
    let (mean, var) = match running {
        Some((m, v)) => (m.clone(), v.clone()),
        None => {
            // Two passes for an accurate variance.
            let mean = column_means(x, None);
            let var = column_means(x, mean.as_slice());
            (mean, var)
        }
    };
    let scale = Zip::from(&var)
        .and(gamma)
        .map_collect(|&v, &g| g / (v + eps).sqrt());
    let shift = Zip::from(beta)
        .and(&mean)
        .and(&scale)
        .map_collect(|&b, &m, &s| b - m * s);
    (scale, shift, mean, var)
}

/// Per-column mean of x (or of (x − c)² when centred on c), row by row
/// over contiguous memory in blocks of rows split between the product threads.
fn column_means<T: Real>(x: &Array2<T>, center: Option<&[T]>) -> Array1<T> {
    let (n, w) = x.dim();
    let parts = row_blocks(x, |xs, w| {
        let mut sum = vec![T::zero(); w];
        for row in xs.chunks_exact(w) {
            match center {
                None => sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v),
                Some(c) => {
                    for ((s, &v), &c) in sum.iter_mut().zip(row).zip(c) {
                        *s += (v - c) * (v - c);
                    }
                }
            }
        }
        sum
    });
    let mut total = vec![T::zero(); w];
    for p in parts {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    let nt = T::from_usize(n).expect("batch size");
    total.iter_mut().for_each(|t| *t /= nt);
    Array1::from_vec(total)
}

/// The rows of a row-major array as slices.
fn rows<T: Real>(x: &Array2<T>) -> std::slice::ChunksExact<'_, T> {
    let w = x.ncols().max(1);
    x.as_slice().expect("row-major").chunks_exact(w)
}

/// A row-major array's elements.
fn row_major<U>(x: &Array2<U>) -> &[U] {
    x.as_slice().expect("row-major")
}

/// Rows per block when an n × w array's row loop is split between the
/// product threads, or `None` when it runs whole (one thread, or too
/// small to be worth a split).
fn split_rows(n: usize, w: usize) -> Option<usize> {
    let threads = product_threads();
    (threads > 1 && n * w >= 16_384).then(|| n.div_ceil(threads))
}

/// `f` on row blocks of the row-major `x` (width from its shape), one
/// result per block in row order: the partial sums of a reduction.
fn row_blocks<T: Real, R: Send>(x: &Array2<T>, f: impl Fn(&[T], usize) -> R + Sync) -> Vec<R> {
    let w = x.ncols().max(1);
    let xs = row_major(x);
    match split_rows(x.nrows(), w) {
        Some(rows_per) => {
            let blocks: Vec<_> = xs.chunks(rows_per * w).collect();
            crate::team::map(blocks.len(), |i| f(blocks[i], w))
        }
        None => vec![f(xs, w)],
    }
}

/// Run `f` on row blocks of `x` (and the matching rows of `y`), split
/// between the product threads when there are several.
fn par_rows<X: Send, U: Sync>(
    x: &mut Array2<X>,
    y: Option<&[U]>,
    f: impl Fn(&mut [X], Option<&[U]>, usize) + Sync,
) {
    let w = x.ncols().max(1);
    let n = x.nrows();
    let xs = x.as_slice_mut().expect("row-major");
    if let Some(rows_per) = split_rows(n, w) {
        let chunks: Vec<_> = xs
            .chunks_mut(rows_per * w)
            .map(std::sync::Mutex::new)
            .collect();
        crate::team::run(chunks.len(), &|i| {
            let mut xc = chunks[i].lock().unwrap_or_else(|e| e.into_inner());
            let lo = i * rows_per * w;
            let yc = y.map(|y| &y[lo..lo + xc.len()]);
            f(&mut xc, yc, w);
        });
    } else {
        f(xs, y, w);
    }
}

/// y = x·scale + shift per feature, in place.
fn apply_affine<T: Real>(h: &mut Array2<T>, scale: &Array1<T>, shift: &Array1<T>) {
    map_affine(h, scale, shift, |v| v);
}

/// y = φ(x·scale + shift) per feature (φ = identity when `None`), in place.
fn apply_affine_act<T: Real>(
    a: Option<Activation>,
    h: &mut Array2<T>,
    scale: &Array1<T>,
    shift: &Array1<T>,
) {
    // `move`: a captured reference could alias the row and stop vectorisation.
    let (zero, one) = (T::zero(), T::one());
    match a {
        Some(Activation::Relu) => map_affine(h, scale, shift, move |v| Float::max(v, zero)),
        Some(Activation::Tanh) => map_affine(h, scale, shift, |v| v.tanh()),
        Some(Activation::Sigmoid) => map_affine(h, scale, shift, move |v| one / (one + (-v).exp())),
        _ => map_affine(h, scale, shift, |v| v),
    }
}

/// y = f(x·scale + shift) per feature, in place; generic in f so that each
/// activation gets its own vectorised loop.
fn map_affine<T: Real>(
    h: &mut Array2<T>,
    scale: &Array1<T>,
    shift: &Array1<T>,
    f: impl Fn(T) -> T + Sync,
) {
    let (s, b) = (
        scale.as_slice().expect("contiguous"),
        shift.as_slice().expect("contiguous"),
    );
    par_rows(h, None::<&[T]>, |xs, _, w| {
        for row in xs.chunks_exact_mut(w) {
            for ((v, &s), &b) in row.iter_mut().zip(s).zip(b) {
                *v = f(*v * s + b);
            }
        }
    });
}

/// x ← x·scale per feature, in place.
fn scale_rows<T: Real>(h: &mut Array2<T>, scale: &Array1<T>) {
    let s = scale.as_slice().expect("contiguous");
    par_rows(h, None::<&[T]>, |xs, _, w| {
        for row in xs.chunks_exact_mut(w) {
            for (v, &s) in row.iter_mut().zip(s) {
                *v *= s;
            }
        }
    });
}

/// φ applied in place; one loop per activation so each vectorises.
fn apply_act<T: Real>(a: Activation, h: &mut Array2<T>) {
    let one = T::one();
    par_rows(h, None::<&[T]>, |v, _, _| match a {
        Activation::Relu => v.iter_mut().for_each(|z| *z = Float::max(*z, T::zero())),
        Activation::Tanh => v.iter_mut().for_each(|z| *z = z.tanh()),
        Activation::Sigmoid => v.iter_mut().for_each(|z| *z = one / (one + (-*z).exp())),
        _ => {}
    });
}

/// g ← g ⊙ φ'(z) (⊙ s per feature when a BN's γ/σ is given, the BN
/// before φ), with φ'(z) read from the output y = φ(z) (for ReLU, z > 0
/// exactly when y > 0).
fn mul_act_slope<T: Real>(a: Activation, g: &mut Array2<T>, y: &Array2<T>, s: Option<&Array1<T>>) {
    // `move`: a captured reference could alias the row and stop vectorisation.
    let (zero, one) = (T::zero(), T::one());
    match a {
        Activation::Relu => map_slope(g, y, s, move |g, y| if y > zero { g } else { zero }),
        Activation::Tanh => map_slope(g, y, s, move |g, y| g * (one - y * y)),
        Activation::Sigmoid => map_slope(g, y, s, move |g, y| g * (y * (one - y))),
        _ => map_slope(g, y, s, |g, _| g),
    }
}

/// g ← g ⊙ 1[y > 0] (⊙ s per feature when a BN's γ/σ is given), from
/// where the ReLU output y was positive.
fn mul_relu_slope<T: Real>(g: &mut Array2<T>, positive: &Array2<u8>, s: Option<&Array1<T>>) {
    // A product with the 0/1 mask, not a branch: it vectorises (a branch on
    // the random signs does not), and NaN/∞ propagate as in candle's backward.
    map_slope(g, positive, s, |g, p| {
        g * <T as candle_core::WithDType>::from_f64(f64::from(p))
    });
}

/// g ← f(g, y) (· s per feature), row by row; generic in f so that each
/// activation gets its own vectorised loop.
fn map_slope<T: Real, U: Copy + Sync>(
    g: &mut Array2<T>,
    y: &Array2<U>,
    s: Option<&Array1<T>>,
    f: impl Fn(T, U) -> T + Sync,
) {
    let s = s.map(|s| s.as_slice().expect("contiguous"));
    par_rows(g, Some(row_major(y)), |gs, ys, w| {
        let ys = ys.expect("paired rows");
        for (gr, yr) in gs.chunks_exact_mut(w).zip(ys.chunks_exact(w)) {
            match s {
                Some(s) => {
                    for ((g, &y), &s) in gr.iter_mut().zip(yr).zip(s) {
                        *g = f(*g, y) * s;
                    }
                }
                None => {
                    for (g, &y) in gr.iter_mut().zip(yr) {
                        *g = f(*g, y);
                    }
                }
            }
        }
    });
}

impl<T: Real> Unit<T> {
    /// The block's output for input h, its saved entries pushed onto `saved`.
    fn forward(
        &self,
        h: &Array2<T>,
        saved: &mut Vec<Saved<T>>,
        inputs: bool,
        mode: BnMode,
    ) -> Array2<T> {
        match self {
            Unit::Plain(ops) => run_ops(ops, Cur::In(h.view()), saved, inputs, mode),
            Unit::Residual(r) => {
                let f = run_ops(&r.branch, Cur::In(h.view()), saved, inputs, mode);
                let sum = match &r.gate {
                    None => add_skip(f, h, r.alpha, r.lambda),
                    Some(gate) => {
                        let g = run_ops(&gate.ops, Cur::In(h.view()), saved, inputs, mode);
                        let branch = gate.exclusive.then(|| f.mapv(|v| v * r.alpha));
                        let sum = r.gated_sum(gate, f, &g, h);
                        saved.push(Saved::Gate {
                            input: h.clone(),
                            branch,
                        });
                        sum
                    }
                };
                let mut y = run_ops(&r.after, Cur::Own(sum), saved, inputs, mode);
                for n in &r.recursions {
                    y = run_ops(
                        n,
                        Cur::Own(add_skip(y, h, T::one(), T::one())),
                        saved,
                        inputs,
                        mode,
                    );
                }
                y
            }
        }
    }
}

/// A residual block's saved entries: branch, gate (its ops', then the sum's), after the sum, each recursion.
type SavedParts<'s, T> = (
    &'s [Saved<T>],
    &'s [Saved<T>],
    &'s [Saved<T>],
    Vec<&'s [Saved<T>]>,
);

impl<T: Real> ResidualUnit<T> {
    /// The ops in state-dict order: branch, after the sum, recursions.
    fn ops(&self) -> impl Iterator<Item = &Op<T>> {
        self.branch
            .iter()
            .chain(self.gate.iter().flat_map(|g| &g.ops))
            .chain(&self.after)
            .chain(self.recursions.iter().flatten())
    }

    fn ops_mut(&mut self) -> impl Iterator<Item = &mut Op<T>> {
        self.branch
            .iter_mut()
            .chain(self.gate.iter_mut().flat_map(|g| &mut g.ops))
            .chain(&mut self.after)
            .chain(self.recursions.iter_mut().flatten())
    }

    /// Exactly x + α·F(x).
    fn is_plain_sum(&self) -> bool {
        self.lambda == T::one()
            && self.gate.is_none()
            && self.after.is_empty()
            && self.recursions.is_empty()
    }

    /// The block's saved entries split as its ops are: branch, after, each recursion.
    fn split<'s>(&self, saved: &'s [Saved<T>]) -> SavedParts<'s, T> {
        let (branch, rest) = saved.split_at(self.branch.len());
        let (gate, rest) = rest.split_at(self.gate.as_ref().map_or(0, |g| g.ops.len() + 1));
        let (after, mut rest) = rest.split_at(self.after.len());
        let recursions = self
            .recursions
            .iter()
            .map(|n| {
                let (this, next) = rest.split_at(n.len());
                rest = next;
                this
            })
            .collect();
        (branch, gate, after, recursions)
    }

    /// ∂L/∂x from ∂L/∂y = g: through each recursion Nᵢ(x + yᵢ₋₁) (to x and
    /// to yᵢ₋₁), the layers after the sum, then λ to x and α·F.
    fn backward(&self, saved: &[Saved<T>], g: ArrayView2<T>, sink: &mut Sink<T>) -> Array2<T> {
        let (s_branch, s_gate, s_after, s_recursions) = self.split(saved);
        let mut to_x: Option<Array2<T>> = None;
        let mut g_sum = CowArray::from(g);
        for (n, s_n) in self.recursions.iter().zip(s_recursions).rev() {
            let g_in = back_ops(n, s_n, g_sum, sink);
            match &mut to_x {
                Some(acc) => *acc += &g_in,
                None => to_x = Some(g_in.clone()),
            }
            g_sum = CowArray::from(g_in);
        }
        if !self.after.is_empty() {
            g_sum = CowArray::from(back_ops(&self.after, s_after, g_sum, sink));
        }
        if let Some(gate) = &self.gate {
            let mut through = self.gate_backward(gate, s_branch, s_gate, g_sum.view(), sink);
            if let Some(acc) = to_x {
                through += &acc;
            }
            return through;
        }
        let scaled = if self.alpha == T::one() {
            CowArray::from(g_sum.view())
        } else {
            CowArray::from(g_sum.mapv(|v| v * self.alpha))
        };
        let mut through = back_ops(&self.branch, s_branch, scaled, sink);
        if self.lambda == T::one() {
            through += &g_sum;
        } else {
            through.scaled_add(self.lambda, &g_sum);
        }
        if let Some(acc) = to_x {
            through += &acc;
        }
        through
    }

    /// ∂L/∂x of a gated sum s = G⊙αF + (1 − G)⊙x (G⊙ dropped when not
    /// exclusive) from g = ∂L/∂s: through the gate, ∂s/∂G = αF − x (or −x),
    /// then the branch, ∂s/∂F = αG (or α), and the carry 1 − G. The gate's
    /// parameters come first in state-dict order, so last here.
    fn gate_backward(
        &self,
        gate: &Gate<T>,
        s_branch: &[Saved<T>],
        s_gate: &[Saved<T>],
        g: ArrayView2<T>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        let (s_ops, s_sum) = s_gate.split_at(gate.ops.len());
        let Some(Saved::Gate { input, branch }) = s_sum.first() else {
            unreachable!("a gated sum saved its input")
        };
        let gv = saved_post(s_ops);
        let mut dg = Array2::zeros(g.raw_dim());
        match branch {
            Some(f) => Zip::from(&mut dg)
                .and(g)
                .and(f)
                .and(input)
                .for_each(|d, &g, &f, &x| *d = g * (f - x)),
            None => Zip::from(&mut dg)
                .and(g)
                .and(input)
                .for_each(|d, &g, &x| *d = T::zero() - g * x),
        }
        let mut through = back_ops(&gate.ops, s_ops, dg, sink);
        let alpha = self.alpha;
        let df = if gate.exclusive {
            Zip::from(g)
                .and(gv)
                .map_collect(|&g, &gate_v| g * gate_v * alpha)
        } else {
            g.mapv(|g| g * alpha)
        };
        through += &back_ops(&self.branch, s_branch, df, sink);
        Zip::from(&mut through)
            .and(g)
            .and(gv)
            .for_each(|t, &g, &gate_v| *t += g * (T::one() - gate_v));
        through
    }

    /// The gated sum G⊙αF + (1 − G)⊙x (or αF + (1 − G)⊙x), written over F.
    fn gated_sum(
        &self,
        gate: &Gate<T>,
        mut f: Array2<T>,
        g: &Array2<T>,
        x: &Array2<T>,
    ) -> Array2<T> {
        let alpha = self.alpha;
        let excl = gate.exclusive;
        Zip::from(&mut f).and(g).and(x).for_each(|f, &gate_v, &x| {
            let fa = alpha * *f;
            *f = if excl { gate_v * fa } else { fa } + (T::one() - gate_v) * x;
        });
        f
    }

    /// Forward mode through the block: (h, t) ↦ (y, ∂y·t).
    fn tangent(&self, h: Array2<T>, t: Array2<T>, mode: BnMode) -> (Array2<T>, Array2<T>) {
        let (fh, ft) = tangent_ops(&self.branch, h.clone(), t.clone(), mode);
        let (sh, st) = match &self.gate {
            None => (
                add_skip(fh, &h, self.alpha, self.lambda),
                add_skip(ft, &t, self.alpha, self.lambda),
            ),
            Some(gate) => {
                let (g, tg) = tangent_ops(&gate.ops, h.clone(), t.clone(), mode);
                // ∂s = G⊙α∂F + ∂G⊙(αF − x) + (1 − G)⊙∂x (exclusive), else α∂F − ∂G⊙x + (1 − G)⊙∂x.
                let (alpha, excl) = (self.alpha, gate.exclusive);
                let mut st = ft;
                Zip::from(&mut st)
                    .and(&fh)
                    .and(&g)
                    .and(&tg)
                    .and(&h)
                    .and(&t)
                    .for_each(|st, &f, &gate_v, &tgate, &x, &tx| {
                        let (fa, tfa) = (alpha * f, alpha * *st);
                        let branch = if excl { gate_v * tfa + tgate * fa } else { tfa };
                        *st = branch - tgate * x + (T::one() - gate_v) * tx;
                    });
                (self.gated_sum(gate, fh, &g, &h), st)
            }
        };
        let (mut yh, mut yt) = tangent_ops(&self.after, sh, st, mode);
        for n in &self.recursions {
            let one = T::one();
            (yh, yt) = tangent_ops(
                n,
                add_skip(yh, &h, one, one),
                add_skip(yt, &t, one, one),
                mode,
            );
        }
        (yh, yt)
    }
}

/// The array flowing through a chain of ops in the forward pass: the
/// caller's (read, copied only when an op works in place), one of our own,
/// or the output of the activation saved last (read where it is kept).
enum Cur<'a, T> {
    In(ArrayView2<'a, T>),
    Own(Array2<T>),
    Saved,
}

impl<T: Real> Cur<'_, T> {
    fn view<'s>(&'s self, saved: &'s [Saved<T>]) -> ArrayView2<'s, T> {
        match self {
            Cur::In(v) => v.view(),
            Cur::Own(a) => a.view(),
            Cur::Saved => saved_post(saved).view(),
        }
    }

    /// A row-major array of our own (the elementwise loops rely on that layout).
    fn into_owned(self, saved: &[Saved<T>]) -> Array2<T> {
        match self {
            Cur::In(v) => v.as_standard_layout().into_owned(),
            Cur::Own(a) => a,
            Cur::Saved => saved_post(saved).clone(),
        }
    }
}

fn saved_post<T>(saved: &[Saved<T>]) -> &Array2<T> {
    match saved.last() {
        Some(Saved::Act { post }) => post,
        _ => unreachable!("an activation was saved last"),
    }
}

/// Replaces the ReLU output saved last by where it is positive, and
/// returns the output itself when `keep` (the next op's saved input).
fn keep_relu_mask<T: Real>(saved: &mut Vec<Saved<T>>, keep: bool) -> Option<Array2<T>> {
    let Some(Saved::Act { post }) = saved.pop() else {
        unreachable!("an activation was saved last")
    };
    let zero = T::zero();
    let mut positive = Array2::<u8>::zeros(post.dim());
    par_rows(&mut positive, Some(row_major(&post)), |ps, ys, _| {
        let ys = ys.expect("paired rows");
        ps.iter_mut()
            .zip(ys)
            .for_each(|(p, &y)| *p = u8::from(y > zero));
    });
    saved.push(Saved::Relu { positive });
    keep.then_some(post)
}

/// λ·h + α·f, written over f (h + α·f exactly when λ = 1: h·1 = h in
/// floating point, NaN and ∞ included).
fn add_skip<T: Real>(mut f: Array2<T>, h: &Array2<T>, alpha: T, lambda: T) -> Array2<T> {
    let Some(hs) = h.as_slice().filter(|_| f.is_standard_layout()) else {
        Zip::from(&mut f)
            .and(h)
            .for_each(|f, &h| *f = h * lambda + alpha * *f);
        return f;
    };
    par_rows(&mut f, Some(hs), |fs, hs, _| {
        let hs = hs.expect("paired rows");
        fs.iter_mut()
            .zip(hs)
            .for_each(|(f, &h)| *f = h * lambda + alpha * *f);
    });
    f
}

fn run_ops<T: Real>(
    ops: &[Op<T>],
    x: Cur<'_, T>,
    saved: &mut Vec<Saved<T>>,
    inputs: bool,
    mode: BnMode,
) -> Array2<T> {
    let mut cur = x;
    let mut i = 0;
    while i < ops.len() {
        match &ops[i] {
            Op::Linear { w, b, wt, .. } => {
                let y = affine(cur.view(saved), right_factor(w, wt), b.as_ref());
                let relu_before = i > 0 && matches!(ops[i - 1], Op::Act(Activation::Relu));
                let input = match cur {
                    Cur::Saved if relu_before => keep_relu_mask(saved, inputs),
                    cur => inputs.then(|| cur.into_owned(saved)),
                };
                saved.push(Saved::Linear { input });
                cur = Cur::Own(y);
            }
            Op::Norm {
                gamma,
                beta,
                running,
                eps,
                ..
            } => {
                let mut h = cur.into_owned(saved);
                let stats = (mode == BnMode::Eval).then_some(running);
                let (scale, shift, mean, var) = norm_scale(&h, gamma, beta, stats, *eps);
                // x̂ = (x − μ)/σ, kept for γ's gradient and the coupled backward.
                let xhat = (inputs || coupled(mode)).then(|| {
                    let inv = Zip::from(&scale).and(gamma).map_collect(|&s, &g| s / g);
                    let neg = Zip::from(&mean)
                        .and(&inv)
                        .map_collect(|&m, &i| T::zero() - m * i);
                    let mut xh = h.clone();
                    apply_affine(&mut xh, &inv, &neg);
                    xh
                });
                let batch = (mode == BnMode::Train).then_some((mean, var));
                // BN followed by φ: one pass over h for both.
                let act = match ops.get(i + 1) {
                    Some(Op::Act(a)) => Some(*a),
                    _ => None,
                };
                apply_affine_act(act, &mut h, &scale, &shift);
                saved.push(Saved::Norm { scale, xhat, batch });
                if act.is_some() {
                    saved.push(Saved::Act { post: h });
                    cur = Cur::Saved;
                    i += 1;
                } else {
                    cur = Cur::Own(h);
                }
            }
            Op::FeatureNorm(n) => {
                let mut xhat = cur.into_owned(saved);
                let inv_std = n.normalise(&mut xhat);
                let mut h = xhat.clone();
                n.scale_shift(&mut h);
                saved.push(Saved::FeatureNorm { xhat, inv_std });
                cur = Cur::Own(h);
            }
            Op::Act(a) => {
                let mut h = cur.into_owned(saved);
                apply_act(*a, &mut h);
                saved.push(Saved::Act { post: h });
                cur = Cur::Saved;
            }
            Op::Scale { c, .. } => {
                let y = cur.view(saved).mapv(|v| v * c[0]);
                // Our own input is kept as it is, not copied.
                let input = inputs.then(|| cur.into_owned(saved));
                saved.push(Saved::Scale { input });
                cur = Cur::Own(y);
            }
            Op::CRelu => {
                let (y, sign) = crelu(cur.view(saved));
                saved.push(Saved::CRelu { sign });
                cur = Cur::Own(y);
            }
        }
        i += 1;
    }
    match cur {
        // A chain ending in ReLU hands its output on and keeps the mask.
        Cur::Saved if matches!(ops.last(), Some(Op::Act(Activation::Relu))) => {
            keep_relu_mask(saved, true).expect("kept when asked")
        }
        cur => cur.into_owned(saved),
    }
}

/// The backward pass through a chain of ops from ∂L/∂output = `g` (read in
/// place when borrowed, copied only when an op works in place).
fn back_ops<'a, T: Real>(
    ops: &[Op<T>],
    saved: &[Saved<T>],
    g: impl Into<CowArray<'a, T, Ix2>>,
    sink: &mut Sink<T>,
) -> Array2<T> {
    let coupled = coupled(sink.mode);
    let mut g: CowArray<'a, T, Ix2> = g.into();
    let mut i = ops.len();
    while i > 0 {
        i -= 1;
        match (&ops[i], &saved[i]) {
            (Op::Linear { name, w, b, .. }, Saved::Linear { input }) => {
                let mut next = None;
                if let Some(a) = input {
                    if sink.want.params {
                        if b.is_some() {
                            sink.params
                                .push((format!("{name}.bias"), g.sum_axis(Axis(0)).to_vec()));
                        }
                        // ∂L/∂W = gᵀ a, stored (out × in) as the weight is;
                        // with product threads it runs beside ∂L/∂x = g W,
                        // two whole products instead of four halves.
                        let (dw, dx) = if product_threads() > 1 {
                            let (dw, dx) = crate::team::join(
                                || matmul_on(g.t(), a.view(), None, 1),
                                || matmul_on(g.view(), w.view(), None, 1),
                            );
                            (dw, Some(dx))
                        } else {
                            (matmul(g.t(), a.view()), None)
                        };
                        next = dx;
                        sink.params
                            .push((format!("{name}.weight"), dw.into_raw_vec_and_offset().0));
                    }
                    if sink.want.gram {
                        // Per-example gradient of W is δᵢ aᵢᵀ: ⟨gᵢ, gⱼ⟩ = (aᵢ·aⱼ)(δᵢ·δⱼ), plus δᵢ·δⱼ for b.
                        let (aa, dd) = (
                            to_f64(&matmul(a.view(), a.t())),
                            to_f64(&matmul(g.view(), g.t())),
                        );
                        let bias = if b.is_some() { 1.0 } else { 0.0 };
                        sink.gram.push((name.clone(), (aa + bias) * dd));
                    }
                }
                g = CowArray::from(match next {
                    Some(dx) => dx,
                    None => matmul(g.view(), w.view()),
                });
            }
            (Op::Norm { name, .. }, Saved::Norm { scale, xhat, .. }) => {
                if let Some(xh) = xhat {
                    scale_shift_grads(sink, name, g.view(), xh, true);
                }
                let mut g_own = g.into_owned();
                match xhat {
                    Some(xh) if coupled => batch_norm_backward(&mut g_own, xh, scale),
                    _ => scale_rows(&mut g_own, scale),
                }
                g = CowArray::from(g_own);
            }
            (Op::FeatureNorm(n), Saved::FeatureNorm { xhat, inv_std }) => {
                scale_shift_grads(sink, &n.name, g.view(), xhat, n.beta.is_some());
                // ∂L/∂x̂ = g ⊙ γ, then through x ↦ x̂ (its Jacobian is symmetric).
                let mut g_own = g.into_owned();
                scale_rows(&mut g_own, &n.gamma);
                n.jacobian(&mut g_own, xhat, inv_std);
                g = CowArray::from(g_own);
            }
            (Op::Act(a), slope @ (Saved::Act { .. } | Saved::Relu { .. })) => {
                // φ after a BN that only rescales (x̂ unused): one pass for both.
                let bn_scale = match i.checked_sub(1).map(|j| (&ops[j], &saved[j])) {
                    Some((Op::Norm { .. }, Saved::Norm { scale, xhat, .. }))
                        if xhat.is_none() || !(coupled || sink.want.params || sink.want.gram) =>
                    {
                        Some(scale)
                    }
                    _ => None,
                };
                let mut g_own = g.into_owned();
                match slope {
                    Saved::Relu { positive } => mul_relu_slope(&mut g_own, positive, bn_scale),
                    Saved::Act { post } => mul_act_slope(*a, &mut g_own, post, bn_scale),
                    _ => unreachable!("matched above"),
                }
                if bn_scale.is_some() {
                    i -= 1;
                }
                g = CowArray::from(g_own);
            }
            (Op::Scale { name, c }, Saved::Scale { input }) => {
                if let Some(x) = input {
                    // Example i's ∂L/∂c is Σⱼ g_ij x_ij.
                    let per_example = Zip::from(g.rows())
                        .and(x.rows())
                        .map_collect(|g, x| g.dot(&x));
                    if sink.want.params {
                        sink.params.push((name.clone(), vec![per_example.sum()]));
                    }
                    if sink.want.gram {
                        // Keyed by the layer, as the other entries are: `layers.l`.
                        let layer = name.rsplit_once('.').map_or(name.as_str(), |(l, _)| l);
                        let e = to_f64(&per_example.insert_axis(Axis(1)));
                        sink.gram.push((layer.to_string(), e.dot(&e.t())));
                    }
                }
                let c = c[0];
                g = CowArray::from(g.mapv(|v| v * c));
            }
            (Op::CRelu, Saved::CRelu { sign }) => {
                // ∂/∂x of [relu(x), relu(−x)]: the first half where x > 0,
                // minus the second where x < 0.
                let w = sign.ncols();
                let (pos, neg) = g.view().split_at(Axis(1), w);
                let mut gx = Array2::zeros(sign.raw_dim());
                Zip::from(&mut gx)
                    .and(sign)
                    .and(pos)
                    .and(neg)
                    .for_each(|d, &s, &p, &n| {
                        *d = match s {
                            1 => p,
                            -1 => T::zero() - n,
                            _ => T::zero(),
                        }
                    });
                g = CowArray::from(gx);
            }
            _ => unreachable!("saved entries follow the ops"),
        }
    }
    g.into_owned()
}

/// [relu(x), relu(−x)] and sign(x).
fn crelu<T: Real>(x: ArrayView2<T>) -> (Array2<T>, Array2<i8>) {
    let (n, w) = x.dim();
    let zero = T::zero();
    let mut y = Array2::zeros((n, 2 * w));
    let mut sign = Array2::zeros((n, w));
    let (mut pos, mut neg) = y.view_mut().split_at(Axis(1), w);
    Zip::from(&mut pos)
        .and(&mut neg)
        .and(&mut sign)
        .and(x)
        .for_each(|p, q, s, &v| {
            if v > zero {
                (*p, *s) = (v, 1);
            } else if v < zero {
                (*q, *s) = (zero - v, -1);
            }
        });
    (y, sign)
}

fn tangent_ops<T: Real>(
    ops: &[Op<T>],
    mut h: Array2<T>,
    mut t: Array2<T>,
    mode: BnMode,
) -> (Array2<T>, Array2<T>) {
    for op in ops {
        match op {
            Op::Linear { w, b, wt, .. } => {
                let right = right_factor(w, wt);
                h = affine(h.view(), right, b.as_ref());
                t = matmul(t.view(), right);
            }
            Op::Norm {
                gamma,
                beta,
                running,
                eps,
                ..
            } => {
                let stats = (mode == BnMode::Eval).then_some(running);
                let (scale, shift, ..) = norm_scale(&h, gamma, beta, stats, *eps);
                apply_affine(&mut h, &scale, &shift);
                scale_rows(&mut t, &scale);
            }
            Op::FeatureNorm(n) => {
                let inv_std = n.normalise(&mut h);
                n.jacobian(&mut t, &h, &inv_std);
                scale_rows(&mut t, &n.gamma);
                n.scale_shift(&mut h);
            }
            Op::Act(a) => {
                apply_act(*a, &mut h);
                mul_act_slope(*a, &mut t, &h, None);
            }
            Op::Scale { c, .. } => {
                h.mapv_inplace(|v| v * c[0]);
                t.mapv_inplace(|v| v * c[0]);
            }
            Op::CRelu => {
                let (y, sign) = crelu(h.view());
                let w = sign.ncols();
                let mut ty = Array2::zeros(y.raw_dim());
                let (mut pos, mut neg) = ty.view_mut().split_at(Axis(1), w);
                Zip::from(&mut pos)
                    .and(&mut neg)
                    .and(&sign)
                    .and(&t)
                    .for_each(|p, q, &s, &v| match s {
                        1 => *p = v,
                        -1 => *q = T::zero() - v,
                        _ => {}
                    });
                (h, t) = (y, ty);
            }
        }
    }
    (h, t)
}

/// The parameter gradients of y = γ·x̂ (+ β) from g = ∂L/∂y, as asked for:
/// ∂L/∂γ = Σᵢ gᵢ ⊙ x̂ᵢ and ∂L/∂β = Σᵢ gᵢ, or their per-example Gram matrix
/// ⟨gᵢ ⊙ x̂ᵢ, gⱼ ⊙ x̂ⱼ⟩ (+ ⟨gᵢ, gⱼ⟩).
fn scale_shift_grads<T: Real>(
    sink: &mut Sink<T>,
    name: &str,
    g: ArrayView2<T>,
    xhat: &Array2<T>,
    shift: bool,
) {
    if !(sink.want.params || sink.want.gram) {
        return;
    }
    let gx = &g * xhat;
    if sink.want.params {
        if shift {
            sink.params
                .push((format!("{name}.bias"), g.sum_axis(Axis(0)).to_vec()));
        }
        sink.params
            .push((format!("{name}.weight"), gx.sum_axis(Axis(0)).to_vec()));
    }
    if sink.want.gram {
        let mut gram = to_f64(&matmul(gx.view(), gx.t()));
        if shift {
            gram = gram + to_f64(&matmul(g, g.t()));
        }
        sink.gram.push((name.to_string(), gram));
    }
}

impl<T: Real> FeatureNormOp<T> {
    /// y = x·γ (+ β) per feature, in place.
    fn scale_shift(&self, h: &mut Array2<T>) {
        match &self.beta {
            Some(b) => apply_affine(h, &self.gamma, b),
            None => scale_rows(h, &self.gamma),
        }
    }

    /// x ← x̂ per row and group; returns 1/√(σ² + ε) (rows × groups).
    fn normalise(&self, x: &mut Array2<T>) -> Array2<T> {
        let n = x.nrows();
        let m = self.group_size(x.ncols());
        let mt = T::from_usize(m).expect("group size");
        let mut inv_std = Array2::zeros((n, self.groups));
        let xs = x.as_slice_mut().expect("row-major");
        for (grp, r) in xs.chunks_exact_mut(m).zip(inv_std.iter_mut()) {
            if self.centre {
                let mu = grp.iter().copied().sum::<T>() / mt;
                grp.iter_mut().for_each(|v| *v -= mu);
            }
            let var = grp.iter().map(|&c| c * c).sum::<T>() / mt;
            // Divided, not multiplied by 1/σ: the candle layer's rounding.
            let sd = (var + self.eps).sqrt();
            grp.iter_mut().for_each(|v| *v /= sd);
            *r = T::one() / sd;
        }
        inv_std
    }

    /// v ← r·(v − mean v − x̂·mean(x̂ ⊙ v)) per row and group (without the
    /// mean v term when not centred): the Jacobian of x ↦ x̂ applied to v.
    /// It is symmetric, so this is both the forward-mode and the
    /// reverse-mode step.
    fn jacobian(&self, v: &mut Array2<T>, xhat: &Array2<T>, inv_std: &Array2<T>) {
        let m = self.group_size(v.ncols());
        let mt = T::from_usize(m).expect("group size");
        let vs = v.as_slice_mut().expect("row-major");
        let xs = row_major(xhat);
        for ((vg, xg), &r) in vs.chunks_exact_mut(m).zip(xs.chunks_exact(m)).zip(inv_std) {
            let mv = if self.centre {
                vg.iter().copied().sum::<T>() / mt
            } else {
                T::zero()
            };
            let mxv = vg.iter().zip(xg).map(|(&a, &b)| a * b).sum::<T>() / mt;
            for (a, &b) in vg.iter_mut().zip(xg) {
                *a = r * (*a - mv - b * mxv);
            }
        }
    }

    fn group_size(&self, width: usize) -> usize {
        (width / self.groups.max(1)).max(1)
    }
}

/// The gradient through batch normalisation with the statistics in it:
/// with y = γx̂ + β, x̂ = (x − μ)/σ over a batch of n,
/// ∂L/∂x = (γ/σ)·(g − mean(g) − x̂·mean(g ⊙ x̂)) per feature
/// (Ioffe & Szegedy 2015), in place of g.
fn batch_norm_backward<T: Real>(g: &mut Array2<T>, xhat: &Array2<T>, scale: &Array1<T>) {
    let w = g.ncols();
    let nt = T::from_usize(g.nrows().max(1)).expect("batch size");
    let (mut mg, mut mgx) = (vec![T::zero(); w], vec![T::zero(); w]);
    for (gr, xr) in rows(g).zip(rows(xhat)) {
        for (((a, b), &gv), &xv) in mg.iter_mut().zip(&mut mgx).zip(gr).zip(xr) {
            *a += gv;
            *b += gv * xv;
        }
    }
    mg.iter_mut().chain(&mut mgx).for_each(|v| *v /= nt);
    let s = scale.as_slice().expect("contiguous");
    par_rows(g, Some(row_major(xhat)), |gs, xs, w| {
        let xs = xs.expect("paired rows");
        for (gr, xr) in gs.chunks_exact_mut(w).zip(xs.chunks_exact(w)) {
            for ((((gv, &xv), &s), &a), &b) in gr.iter_mut().zip(xr).zip(s).zip(&mg).zip(&mgx) {
                *gv = s * (*gv - a - xv * b);
            }
        }
    });
}

/// ‖a‖_F, accumulated in f64.
pub fn frobenius_dense<T: Real>(a: &Array2<T>) -> f64 {
    match a.as_slice() {
        Some(_) => row_blocks(a, |v, _| slice_squares(v))
            .into_iter()
            .sum::<f64>()
            .sqrt(),
        None => a.iter().map(square_f64).sum::<f64>().sqrt(),
    }
}

fn square_f64<T: Real>(x: &T) -> f64 {
    ToPrimitive::to_f64(x).unwrap_or(f64::NAN).powi(2)
}

/// ‖v‖₂ in f64, in eight running sums: one sum is a chain of dependent
/// additions, eight vectorise (this runs once per layer in every backward pass).
pub(crate) fn slice_norm<T: Real>(v: &[T]) -> f64 {
    slice_squares(v).sqrt()
}

/// Σ vᵢ² in f64, as [`slice_norm`] sums it.
fn slice_squares<T: Real>(v: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(square_f64).sum();
    for c in chunks {
        for (s, x) in acc.iter_mut().zip(c) {
            *s += square_f64(x);
        }
    }
    acc.iter().sum::<f64>() + tail
}
