//! Plain (feedforward) block: h_{l+1} = φ(N(W h_l + b)), N an optional normaliser.

use candle_core::{Tensor, Var};

use crate::{BnMode, Result, Sequential};

#[derive(Clone, Debug)]
/// A plain block: a layer stack without a shortcut.
pub struct Dense {
    body: Sequential,
}

impl Dense {
    /// A block of `body`.
    pub fn new(body: Sequential) -> Self {
        Dense { body }
    }

    /// The layer stack.
    pub fn body(&self) -> &Sequential {
        &self.body
    }

    /// The block's output for input `x`.
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.body.forward(x, mode)
    }

    /// Forward pass that sets BN running statistics from this batch (calibration).
    pub fn calibrate(&self, x: &Tensor) -> Result<Tensor> {
        self.body.calibrate(x)
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        self.body.visit_parameters(prefix, f)
    }

    pub(crate) fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        self.body.visit_buffers(prefix, f)
    }
}
