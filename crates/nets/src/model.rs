//! What every model offers the probes, the trainer and the weights files.

use candle_core::{DType, Tensor, Var};

use crate::{BnMode, Result};

/// A differentiable model with named parameters (PyTorch `state_dict` names).
pub trait Model: Send + Sync {
    /// The output (logits for classifiers) for a batch.
    fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor>;
    /// Trainable parameters, in state-dict order.
    fn parameters(&self) -> Vec<(String, Var)>;
    /// Non-trainable state (BN running statistics).
    fn buffers(&self) -> Vec<(String, Var)>;
    /// The dtype of every tensor.
    fn dtype(&self) -> DType;
    /// Parameters and buffers: everything a weights file holds.
    fn state_dict(&self) -> Vec<(String, Var)> {
        let mut all = self.parameters();
        all.extend(self.buffers());
        all
    }
}

/// A model that is a stem, a chain of blocks and a head: what lesion studies
/// and the path view of residual nets (Veit et al. 2016) need.
pub trait BlockNet: Model {
    /// Number of blocks n (2^n paths in a residual net).
    fn num_blocks(&self) -> usize;
    /// h₀ = stem(x).
    fn stem_forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor>;
    /// h_{b+1} = block_b(h_b).
    fn block_forward(&self, b: usize, h: &Tensor, mode: BnMode) -> Result<Tensor>;
    /// For a residual block, its branch and shortcut outputs (F(h), s(h)); the
    /// block computes post(F(h) + s(h)). `None` (the default) for a block
    /// without one such split.
    fn block_parts(
        &self,
        _b: usize,
        _h: &Tensor,
        _mode: BnMode,
    ) -> Result<Option<(Tensor, Tensor)>> {
        Ok(None)
    }
    /// The activation applied after a residual block's addition (identity, the
    /// default, for pre-activation blocks; ReLU for the post-activation blocks
    /// of He 2016a).
    fn block_post(&self, _b: usize, pre: &Tensor) -> Result<Tensor> {
        Ok(pre.clone())
    }
    /// Whether block b maps its input shape to itself (so a plain block can be
    /// dropped, and two such blocks swapped).
    fn keeps_shape(&self, b: usize) -> bool;
    /// Blocks in the same group see inputs of the same shape (the stage of a
    /// conv net; every block of an MLP): shape-keeping blocks of one group can
    /// trade places. One group by default.
    fn block_group(&self, _b: usize) -> usize {
        0
    }
    /// The output from the last hidden state.
    fn head_forward(&self, h: &Tensor, mode: BnMode) -> Result<Tensor>;
}
