//! The engine's ops, one file each: forward pass, vector–Jacobian product,
//! Jacobian–vector product (forward mode), parameter gradients and the
//! per-example Gram contribution. [`Op`] dispatches to them; the chains of
//! [`crate::chain`] run them in order.

pub(crate) mod activation;
pub mod attention;
pub(crate) mod batch_norm;
pub(crate) mod conv;
pub(crate) mod crelu;
pub(crate) mod feature_norm;
pub(crate) mod gate;
pub(crate) mod linear;
pub(crate) mod pool;
pub(crate) mod scale;
pub(crate) mod weight_norm;

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use gradscope_nets::{Activation, BnMode, Layer};
use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::kernels::{matmul, to_f64};
use crate::{EngineError, Real, Result};

/// One op of a chain, with its parameters as arrays of T.
#[derive(Clone, Debug)]
pub(crate) enum Op<T> {
    Linear(linear::Linear<T>),
    WeightNorm(weight_norm::WeightNorm<T>),
    BatchNorm(batch_norm::BatchNorm<T>),
    FeatureNorm(feature_norm::FeatureNorm<T>),
    Act(Activation),
    CRelu,
    Conv(conv::Conv<T>),
    /// Global average pooling to `channels` values.
    Pool {
        channels: usize,
    },
}

/// What the backward pass of one op needs from its forward pass.
#[derive(Clone, Debug)]
pub(crate) enum Saved<T> {
    /// The input, when parameter gradients or Grams were asked for.
    Linear {
        input: Option<Array2<T>>,
    },
    WeightNorm {
        input: Option<Array2<T>>,
    },
    BatchNorm(batch_norm::Saved<T>),
    FeatureNorm(feature_norm::Saved<T>),
    /// y = φ(z), or z where [`activation::keeps_input`].
    Act {
        kept: Array2<T>,
    },
    /// For ReLU, once the next op has read y: 1 where y > 0, 0 elsewhere.
    Relu {
        positive: Array2<u8>,
    },
    /// sign(x) of a CReLU's input: which half of y carries the gradient.
    CRelu {
        sign: Array2<i8>,
    },
    /// The input, when parameter gradients or Grams were asked for, and
    /// its width (the image size a strided convolution does not give back).
    Conv {
        input: Option<Array2<T>>,
        cols: usize,
    },
    /// Pixels per channel of the pooled input.
    Pool {
        pixels: usize,
    },
}

impl<T: Real> Op<T> {
    /// The engine's op for a nets layer named `name` in the state dict.
    pub(crate) fn from_layer(name: String, layer: &Layer, keep_wt: bool) -> Result<Self> {
        Ok(match layer {
            Layer::Linear(l) => Op::Linear(linear::Linear::from_layer(name, l, keep_wt)?),
            Layer::WeightNorm(l) => Op::WeightNorm(weight_norm::WeightNorm::from_layer(name, l)?),
            Layer::BatchNorm(bn) => Op::BatchNorm(batch_norm::BatchNorm::from_layer(name, bn)?),
            Layer::Norm(n) => Op::FeatureNorm(feature_norm::FeatureNorm::from_layer(name, n)?),
            Layer::Act(a) => Op::Act(*a),
            Layer::CRelu => Op::CRelu,
        })
    }

    /// Every trainable parameter as (state-dict name, values in the
    /// tensor's layout), in state-dict order.
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        match self {
            Op::Linear(l) => l.params_mut(out),
            Op::WeightNorm(l) => l.params_mut(out),
            Op::BatchNorm(n) => n.params_mut(out),
            Op::FeatureNorm(n) => n.params_mut(out),
            Op::Conv(c) => c.params_mut(out),
            Op::Act(_) | Op::CRelu | Op::Pool { .. } => {}
        }
    }

    /// Every trainable parameter, read-only, in state-dict order.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        match self {
            Op::Linear(l) => l.params(out),
            Op::WeightNorm(l) => l.params(out),
            Op::BatchNorm(n) => n.params(out),
            Op::FeatureNorm(n) => n.params(out),
            Op::Conv(c) => c.params(out),
            Op::Act(_) | Op::CRelu | Op::Pool { .. } => {}
        }
    }

    /// Write the op's parameters (and BN statistics) into the net's variables.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        match self {
            Op::Linear(l) => l.write(w),
            Op::WeightNorm(l) => l.write(w),
            Op::BatchNorm(n) => n.write(w),
            Op::FeatureNorm(n) => n.write(w),
            Op::Conv(c) => c.write(w),
            Op::Act(_) | Op::CRelu | Op::Pool { .. } => Ok(()),
        }
    }
}

/// Which gradients a backward pass collects besides the input gradient and
/// the hidden-state gradient norms.
#[derive(Clone, Copy, Debug, Default)]
pub struct Want {
    /// The hidden-state gradients themselves.
    pub hidden: bool,
    /// Per-tensor parameter gradients.
    pub params: bool,
    /// Per-example gradient Gram matrices, per layer.
    pub gram: bool,
}

/// Where a backward pass puts parameter gradients and Gram matrices.
pub(crate) struct Sink<T> {
    pub(crate) want: Want,
    pub(crate) mode: BnMode,
    /// (name, ∂L/∂θ), output to input.
    pub(crate) params: Vec<(String, Vec<T>)>,
    /// (layer name, Gram matrix), output to input.
    pub(crate) gram: Vec<(String, Array2<f64>)>,
}

impl<T> Sink<T> {
    pub(crate) fn new(want: Want, mode: BnMode) -> Self {
        Sink {
            want,
            mode,
            params: Vec::new(),
            gram: Vec::new(),
        }
    }
}

/// Whether the gradient runs through the batch statistics.
pub(crate) fn coupled(mode: BnMode) -> bool {
    matches!(mode, BnMode::Full | BnMode::Train)
}

/// The parameter gradients of y = γ·x̂ (+ β) from g = ∂L/∂y, as asked for:
/// ∂L/∂γ = Σᵢ gᵢ ⊙ x̂ᵢ and ∂L/∂β = Σᵢ gᵢ, or their per-example Gram matrix
/// ⟨gᵢ ⊙ x̂ᵢ, gⱼ ⊙ x̂ⱼ⟩ (+ ⟨gᵢ, gⱼ⟩). Shared by the norms. With images
/// (`spatial` pixels per channel) γ and β are per channel: each example's
/// gradient sums its pixels first.
pub(crate) fn scale_shift_grads<T: Real>(
    sink: &mut Sink<T>,
    name: &str,
    g: ArrayView2<T>,
    xhat: &Array2<T>,
    shift: bool,
    spatial: usize,
) {
    if !(sink.want.params || sink.want.gram) {
        return;
    }
    if spatial > 1 {
        // Each example's gradient of γ_c and β_c: its sums over channel c's
        // pixels, of g ⊙ x̂ and of g, in one pass.
        let (g, xh) = (g.as_standard_layout(), xhat.as_standard_layout());
        let channels = g.ncols() / spatial;
        let (mut gb, mut gg) = (
            Array2::<T>::zeros((g.nrows(), channels)),
            Array2::<T>::zeros((g.nrows(), channels)),
        );
        let pairs = g
            .as_slice()
            .expect("row-major")
            .chunks_exact(spatial)
            .zip(xh.as_slice().expect("row-major").chunks_exact(spatial));
        let sums = gb.iter_mut().zip(gg.iter_mut());
        for ((b, w), (gc, xc)) in sums.zip(pairs) {
            (*b, *w) = crate::kernels::sum_and_dot(gc, xc);
        }
        if sink.want.params {
            if shift {
                sink.params
                    .push((format!("{name}.bias"), gb.sum_axis(Axis(0)).to_vec()));
            }
            sink.params
                .push((format!("{name}.weight"), gg.sum_axis(Axis(0)).to_vec()));
        }
        if sink.want.gram {
            let mut gram = to_f64(&matmul(gg.view(), gg.t()));
            if shift {
                gram = gram + to_f64(&matmul(gb.view(), gb.t()));
            }
            sink.gram.push((name.to_string(), gram));
        }
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

/// A rank-2 tensor as an array of T.
pub(crate) fn array2<T: Real>(t: &Tensor) -> Result<Array2<T>> {
    let (r, c) = t.dims2()?;
    Ok(Array2::from_shape_vec((r, c), T::from_tensor(t)?).expect("shape matches"))
}

/// A tensor's elements as a vector of T.
pub(crate) fn array1<T: Real>(t: &Tensor) -> Result<Array1<T>> {
    Ok(Array1::from_vec(T::from_tensor(t)?))
}

/// Writes arrays into a net's variables by state-dict name.
pub(crate) struct Writer<'a> {
    pub(crate) vars: &'a HashMap<String, Var>,
}

impl Writer<'_> {
    fn var(&self, name: &str) -> Result<&Var> {
        self.vars
            .get(name)
            .ok_or_else(|| EngineError::Input(format!("`{name}` is not in the net")))
    }

    /// Set variable `name` to a matrix.
    pub(crate) fn set<T: Real>(&self, name: &str, a: &Array2<T>) -> Result<()> {
        let var = self.var(name)?;
        let data = a.as_slice().expect("row-major");
        var.set(&T::to_tensor(data, a.shape(), var.device())?)?;
        Ok(())
    }

    /// Set variable `name` to a vector, in the variable's own shape.
    pub(crate) fn set1<T: Real>(&self, name: &str, a: &Array1<T>) -> Result<()> {
        self.set_as(name, a.as_slice().expect("contiguous"))
    }

    /// Set variable `name` to `data` (row-major), in the variable's own shape.
    pub(crate) fn set_as<T: Real>(&self, name: &str, data: &[T]) -> Result<()> {
        let var = self.var(name)?;
        var.set(&T::to_tensor(data, var.dims(), var.device())?)?;
        Ok(())
    }
}
