//! Plain (feedforward) block: h_{l+1} = φ(N(W h_l + b)), N an optional normaliser.

use candle_core::{Tensor, Var};

use crate::{BnMode, Result, Sequential};

#[derive(Clone, Debug)]
pub struct Dense {
    body: Sequential,
}

impl Dense {
    pub fn new(body: Sequential) -> Self {
        Dense { body }
    }

    pub fn body(&self) -> &Sequential {
        &self.body
    }

    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.body.forward(x, mode)
    }

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
