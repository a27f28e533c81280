//! The tensor forward pass of the activations: φ(x) built from
//! differentiable candle ops, so autograd reaches through it.
//!
//! Every ReLU here is [`relu`], which keeps NaN (candle's own maps NaN to
//! 0 forward and backward): a NaN shows at the layer where it appears.

use candle_core::Tensor;
use gradscope_spec::{GELU_C, SELU_ALPHA, SELU_LAMBDA};

use crate::{Activation, Result};

/// max(x, 0) with NaN kept: relu(NaN) = NaN, and its gradient there is NaN.
///
/// Without a NaN in x it is candle's `relu` (the same graph, the same bits);
/// with one, the NaN entries are x² of x where it is NaN (0 elsewhere,
/// so the square's gradient 2x·g is NaN there and 0 elsewhere, ∞ included).
pub(crate) fn relu(x: &Tensor) -> Result<Tensor> {
    let is_nan = x.ne(x)?;
    if is_nan.max_all()?.to_scalar::<u8>()? == 0 {
        return Ok(x.relu()?);
    }
    let at_nan = is_nan.where_cond(x, &x.zeros_like()?)?;
    Ok(is_nan.where_cond(&at_nan.sqr()?, &x.relu()?)?)
}

/// φ on tensors, for [`Activation`] (a description type of the spec crate).
pub trait ActivationExt {
    /// φ(x), elementwise, built from differentiable tensor ops (relu, exp,
    /// log, tanh, affine: each has a backward op in candle).
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

impl ActivationExt for Activation {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // max(x, 0) and min(x, 0) = −relu(−x).
        let neg_part = |x: &Tensor| -> Result<Tensor> { Ok(relu(&x.neg()?)?.neg()?) };
        // e^{min(x,0)} − 1: the negative branch of ELU, finite for any x.
        let elu_neg = |x: &Tensor| -> Result<Tensor> { Ok(neg_part(x)?.exp()?.affine(1.0, -1.0)?) };
        Ok(match *self {
            Self::Relu => relu(x)?,
            Self::LeakyRelu { slope } => (relu(x)? + neg_part(x)?.affine(slope, 0.0)?)?,
            Self::Elu => (relu(x)? + elu_neg(x)?)?,
            Self::Selu => {
                (relu(x)? + elu_neg(x)?.affine(SELU_ALPHA, 0.0)?)?.affine(SELU_LAMBDA, 0.0)?
            }
            Self::Gelu => {
                let inner = (x + x.powf(3.0)?.affine(0.044_715, 0.0)?)?.affine(GELU_C, 0.0)?;
                (x * inner.tanh()?.affine(0.5, 0.5)?)?
            }
            // ln(1 + eˣ) = max(x, 0) + ln(1 + e^{−|x|}), which never overflows.
            Self::Softplus => {
                let abs = (relu(x)? + relu(&x.neg()?)?)?;
                (relu(x)? + abs.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?
            }
            Self::Tanh => x.tanh()?,
            // From exp and recip: both have a backward op in candle.
            Self::Sigmoid => x.neg()?.exp()?.affine(1.0, 1.0)?.recip()?,
            Self::Identity => x.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn grid() -> Vec<f64> {
        (0..81).map(|i| -8.0 + 0.2 * i as f64 + 0.013).collect()
    }

    #[test]
    fn tensor_forward_and_backward_equal_the_scalar_formulas() {
        let xs = grid();
        for a in Activation::ALL {
            let x = Var::from_vec(xs.clone(), xs.len(), &Device::Cpu).unwrap();
            let y = a.forward(x.as_tensor()).unwrap();
            let got: Vec<f64> = y.to_vec1().unwrap();
            let grads = y.sum_all().unwrap().backward().unwrap();
            let dy: Vec<f64> = grads.get(x.as_tensor()).unwrap().to_vec1().unwrap();
            for (i, &h) in xs.iter().enumerate() {
                assert!(
                    (got[i] - a.apply(h)).abs() < 1e-12 * (1.0 + h.abs()),
                    "{a} φ({h})"
                );
                // φ' analytic against the autograd slope and a central difference.
                let fd = (a.apply(h + 1e-6) - a.apply(h - 1e-6)) / 2e-6;
                assert!(
                    (dy[i] - a.derivative(h)).abs() < 1e-9,
                    "{a} φ'({h}) autograd {}",
                    dy[i]
                );
                assert!((fd - a.derivative(h)).abs() < 1e-6, "{a} φ'({h}) fd {fd}");
            }
        }
    }
}
