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
