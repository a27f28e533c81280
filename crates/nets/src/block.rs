//! The blocks a net stacks between its stem and head.

use candle_core::{Tensor, Var};

use crate::{BnMode, Dense, Residual, Result};

#[derive(Clone, Debug)]
/// One block of an MLP: a plain layer stack or a residual block.
pub enum Block {
    /// h ↦ F(h) (plain).
    Dense(Dense),
    /// h ↦ h + α·F(h) (residual).
    Residual(Residual),
}

impl Block {
    /// The block's output for input `x`.
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        match self {
            Block::Dense(b) => b.forward(x, mode),
            Block::Residual(b) => b.forward(x, mode),
        }
    }

    /// Forward pass that sets BN running statistics to the batch's.
    pub fn calibrate(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Block::Dense(b) => b.calibrate(x),
            Block::Residual(b) => b.calibrate(x),
        }
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        match self {
            Block::Dense(b) => b.visit_parameters(prefix, f),
            Block::Residual(b) => b.visit_parameters(prefix, f),
        }
    }

    pub(crate) fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        match self {
            Block::Dense(b) => b.visit_buffers(prefix, f),
            Block::Residual(b) => b.visit_buffers(prefix, f),
        }
    }
}
