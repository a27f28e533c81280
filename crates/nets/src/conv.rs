//! 2-D convolution y = W ⋆ x (+ b), weight (out, in, k, k) as in PyTorch.

use candle_core::{Tensor, Var};

use crate::Result;

#[derive(Clone, Debug)]
/// A 2-D convolution (NCHW, square kernel) with optional bias.
pub struct Conv2d {
    weight: Var,
    bias: Option<Var>,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// A convolution with weights (out, in, k, k).
    pub fn new(weight: Var, bias: Option<Var>, stride: usize, padding: usize) -> Self {
        Conv2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// x: (batch, in, h, w) → (batch, out, h', w'), h' = ⌊(h + 2p − k)/s⌋ + 1.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((b.elem_count(), 1, 1))?)?,
            None => y,
        })
    }

    /// The kernel, (out, in, k, k).
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// Stride in both directions.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Zero padding on every side.
    pub fn padding(&self) -> usize {
        self.padding
    }

    /// The bias, (out).
    pub fn bias(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        f(format!("{prefix}.weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(format!("{prefix}.bias"), b);
        }
    }
}
