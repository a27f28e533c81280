//! A dense fast path for MLPs: the same net as plain matrices (ndarray +
//! matrixmultiply), with a forward pass that keeps what the backward needs,
//! reverse-mode input and hidden-state gradients from *any* depth, and a
//! forward-mode (tangent) pass that gives df_L/dx for every depth L at once.
//!
//! It computes exactly what the candle path computes (tested to rounding),
//! skipping what a gradient study does not need (weight gradients, autograd
//! bookkeeping), and sharing the forward pass between depths: the depth-L net
//! is the first L blocks of the deepest one plus the same head.
//!
//! Applies when samples do not interact: no BN, or BN with batch statistics
//! held constant ([`BnMode::PerSample`]) or running statistics
//! ([`BnMode::Eval`]). With [`BnMode::Full`] the gradient runs through the
//! batch statistics and couples the samples; use [`capture`](crate::capture).

use candle_core::Tensor;
use gradscope_nets::{Activation, Block, BnMode, Layer, Mlp, Sequential};
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};
use num_traits::{Float, FromPrimitive};

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
{
}
impl Real for f32 {}
impl Real for f64 {}

#[derive(Clone, Debug)]
enum Op<T> {
    /// y = x Wᵀ + b, W stored transposed (in × out) for the product.
    Linear {
        wt: Array2<T>,
        b: Option<Array1<T>>,
    },
    /// y = (x − μ)/σ·γ + β with μ, σ from the batch (per-sample mode) or the running statistics.
    Norm {
        gamma: Array1<T>,
        beta: Array1<T>,
        running: Option<(Array1<T>, Array1<T>)>,
        eps: T,
    },
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
    stem: (Array2<T>, Option<Array1<T>>),
    blocks: Vec<Unit<T>>,
    head: (Array2<T>, Option<Array1<T>>),
}

/// What the backward pass of one op needs from the forward pass.
#[derive(Clone, Debug)]
enum Saved<T> {
    Linear,
    /// 1/σ per feature, times γ.
    Norm {
        scale: Array1<T>,
    },
    /// The op's input (pre-activation) and output.
    Act {
        pre: Array2<T>,
        post: Array2<T>,
    },
}

/// The forward pass of the deepest net, kept for backward passes from any depth.
#[derive(Clone, Debug)]
pub struct DenseForward<T> {
    /// h_0 … h_L.
    pub hidden: Vec<Array2<T>>,
    saved: Vec<Vec<Saved<T>>>,
}

fn to_array<T: Real>(t: &Tensor) -> Result<Array2<T>> {
    let t = t.to_dtype(T::DTYPE)?;
    let (r, c) = match t.rank() {
        1 => (1, t.dim(0)?),
        _ => t.dims2()?,
    };
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

fn convert<T: Real>(seq: &Sequential, mode: BnMode) -> Result<Vec<Op<T>>> {
    seq.layers()
        .iter()
        .map(|(_, layer)| {
            Ok(match layer {
                Layer::Linear(l) => Op::Linear {
                    wt: to_array::<T>(l.weight().as_tensor())?.t().to_owned(),
                    b: l.bias().map(|b| to_vec(b.as_tensor())).transpose()?,
                },
                Layer::BatchNorm(bn) => Op::Norm {
                    gamma: to_vec(bn.weight().as_tensor())?,
                    beta: to_vec(bn.bias().as_tensor())?,
                    running: match mode {
                        BnMode::Eval => Some((
                            to_vec(bn.running_mean().as_tensor())?,
                            to_vec(bn.running_var().as_tensor())?,
                        )),
                        BnMode::PerSample => None,
                        other => return Err(unsupported(&format!("BN in `{other}` mode"))),
                    },
                    eps: <T as FromPrimitive>::from_f64(bn.eps()).expect("eps is representable"),
                },
                Layer::Act(a) => match a {
                    Activation::Relu
                    | Activation::Tanh
                    | Activation::Sigmoid
                    | Activation::Identity => Op::Act(*a),
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
            return Err(ProbeError::Input(format!(
                "net is {:?}, the fast path was asked for {:?}",
                net.dtype(),
                T::DTYPE
            )));
        }
        let lin = |l: &gradscope_nets::Linear| -> Result<(Array2<T>, Option<Array1<T>>)> {
            Ok((
                to_array::<T>(l.weight().as_tensor())?.t().to_owned(),
                l.bias().map(|b| to_vec(b.as_tensor())).transpose()?,
            ))
        };
        let blocks = net
            .blocks()
            .iter()
            .map(|b| {
                Ok(match b {
                    Block::Dense(d) => Unit::Plain(convert(d.body(), mode)?),
                    Block::Residual(r) => Unit::Residual {
                        branch: convert(r.branch(), mode)?,
                        alpha: <T as FromPrimitive>::from_f64(r.alpha()).expect("alpha"),
                    },
                    #[allow(unreachable_patterns)]
                    _ => return Err(unsupported("this block kind")),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseMlp {
            stem: lin(net.stem())?,
            blocks,
            head: lin(net.head())?,
        })
    }

    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Forward pass of the deepest net on x (batch, input_dim).
    pub fn forward(&self, x: ArrayView2<T>) -> DenseForward<T> {
        let mut h = affine(x, &self.stem.0, self.stem.1.as_ref());
        let mut hidden = Vec::with_capacity(self.blocks.len() + 1);
        let mut saved = Vec::with_capacity(self.blocks.len());
        hidden.push(h.clone());
        for unit in &self.blocks {
            let mut s = Vec::new();
            h = match unit {
                Unit::Plain(ops) => run_ops(ops, h, &mut s),
                Unit::Residual { branch, alpha } => {
                    let f = run_ops(branch, h.clone(), &mut s);
                    h.scaled_add(*alpha, &f);
                    h
                }
            };
            hidden.push(h.clone());
            saved.push(s);
        }
        DenseForward { hidden, saved }
    }

    /// The net's outputs at `depth` (head applied to h_depth).
    pub fn output(&self, fwd: &DenseForward<T>, depth: usize) -> Array2<T> {
        affine(fwd.hidden[depth].view(), &self.head.0, self.head.1.as_ref())
    }

    /// Reverse mode for the depth-`depth` net and L = Σᵢ Σₖ fₖ(xᵢ): returns
    /// ∂L/∂h_l for l = 0 … depth and ∂L/∂x.
    pub fn backward(&self, fwd: &DenseForward<T>, depth: usize) -> (Vec<Array2<T>>, Array2<T>) {
        let n = fwd.hidden[0].nrows();
        // ∂L/∂h_depth: every row is the column sums of the head's Wᵀ.
        let w_sum = self.head.0.sum_axis(Axis(1));
        let mut g = Array2::from_shape_fn((n, w_sum.len()), |(_, j)| w_sum[j]);
        let mut grads = vec![Array2::zeros((0, 0)); depth + 1];
        for (l, unit) in self.blocks[..depth].iter().enumerate().rev() {
            grads[l + 1] = g.clone();
            g = match unit {
                Unit::Plain(ops) => back_ops(ops, &fwd.saved[l], g),
                Unit::Residual { branch, alpha } => {
                    let mut through = back_ops(branch, &fwd.saved[l], g.mapv(|v| v * *alpha));
                    through += &g;
                    through
                }
            };
        }
        let dx = g.dot(&self.stem.0.t());
        grads[0] = g;
        (grads, dx)
    }

    /// Forward mode along input direction `v` (input_dim): the directional
    /// derivative of the net's output sum at every depth,
    /// D_v f_L(xᵢ) for L = 0 … depth (rows) and samples i (columns).
    /// With a scalar input and v = 1 this is df_L/dx for every L in one pass.
    pub fn tangent_sweep(&self, x: ArrayView2<T>, v: &[T]) -> Array2<T> {
        let (n, w) = (x.nrows(), self.stem.0.ncols());
        let dir = Array1::from_iter(
            (0..w).map(|j| (0..v.len()).map(|i| v[i] * self.stem.0[[i, j]]).sum::<T>()),
        );
        let mut h = affine(x, &self.stem.0, self.stem.1.as_ref());
        let mut t = Array2::from_shape_fn((n, w), |(_, j)| dir[j]);
        let w_sum = self.head.0.sum_axis(Axis(1));
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

fn affine<T: Real>(x: ArrayView2<T>, wt: &Array2<T>, b: Option<&Array1<T>>) -> Array2<T> {
    let mut y = x.dot(wt);
    if let Some(b) = b {
        y += b;
    }
    y
}

/// Per-feature 1/σ·γ and the shift, for batch or running statistics.
fn norm_scale<T: Real>(
    x: &Array2<T>,
    gamma: &Array1<T>,
    beta: &Array1<T>,
    running: &Option<(Array1<T>, Array1<T>)>,
    eps: T,
) -> (Array1<T>, Array1<T>) {
    let (mean, var) = match running {
        Some((m, v)) => (m.clone(), v.clone()),
        None => {
            let n = T::from_usize(x.nrows()).expect("batch size");
            let mean = x.sum_axis(Axis(0)).mapv(|s| s / n);
            let var = Zip::from(x.columns())
                .and(&mean)
                .map_collect(|c, &m| c.iter().map(|&v| (v - m) * (v - m)).sum::<T>() / n);
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
    (scale, shift)
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

fn run_ops<T: Real>(ops: &[Op<T>], mut h: Array2<T>, saved: &mut Vec<Saved<T>>) -> Array2<T> {
    for op in ops {
        h = match op {
            Op::Linear { wt, b } => {
                saved.push(Saved::Linear);
                affine(h.view(), wt, b.as_ref())
            }
            Op::Norm {
                gamma,
                beta,
                running,
                eps,
            } => {
                let (scale, shift) = norm_scale(&h, gamma, beta, running, *eps);
                let y = &h * &scale + &shift;
                saved.push(Saved::Norm { scale });
                y
            }
            Op::Act(a) => {
                let y = h.mapv(|z| act(*a, z));
                saved.push(Saved::Act {
                    pre: h,
                    post: y.clone(),
                });
                y
            }
        };
    }
    h
}

fn back_ops<T: Real>(ops: &[Op<T>], saved: &[Saved<T>], mut g: Array2<T>) -> Array2<T> {
    for (op, s) in ops.iter().zip(saved).rev() {
        g = match (op, s) {
            (Op::Linear { wt, .. }, Saved::Linear) => g.dot(&wt.t()),
            (Op::Norm { .. }, Saved::Norm { scale }) => g * scale,
            (Op::Act(a), Saved::Act { pre, post }) => {
                Zip::from(&mut g)
                    .and(pre)
                    .and(post)
                    .for_each(|g, &z, &y| *g *= act_slope(*a, z, y));
                g
            }
            _ => unreachable!("saved entries follow the ops"),
        };
    }
    g
}

fn tangent_ops<T: Real>(
    ops: &[Op<T>],
    mut h: Array2<T>,
    mut t: Array2<T>,
) -> (Array2<T>, Array2<T>) {
    for op in ops {
        match op {
            Op::Linear { wt, b } => {
                h = affine(h.view(), wt, b.as_ref());
                t = t.dot(wt);
            }
            Op::Norm {
                gamma,
                beta,
                running,
                eps,
            } => {
                let (scale, shift) = norm_scale(&h, gamma, beta, running, *eps);
                h = &h * &scale + &shift;
                t *= &scale;
            }
            Op::Act(a) => {
                let y = h.mapv(|z| act(*a, z));
                Zip::from(&mut t)
                    .and(&h)
                    .and(&y)
                    .for_each(|t, &z, &y| *t *= act_slope(*a, z, y));
                h = y;
            }
        }
    }
    (h, t)
}

/// ‖a‖_F in f64.
pub fn frobenius_dense<T: Real>(a: &Array2<T>) -> f64 {
    a.iter()
        .map(|v| {
            num_traits::ToPrimitive::to_f64(v)
                .unwrap_or(f64::NAN)
                .powi(2)
        })
        .sum::<f64>()
        .sqrt()
}
