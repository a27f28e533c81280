//! Fully connected layer y = x Wᵀ + b, with W stored (fan_out × fan_in) as in PyTorch.

use candle_core::{Tensor, Var};

use crate::Result;

#[derive(Clone, Debug)]
/// y = x·Wᵀ + b, with W stored (out, in) as in `torch.nn.Linear`.
pub struct Linear {
    weight: Var,
    bias: Option<Var>,
}

impl Linear {
    /// A linear layer of weight (out, in) and optional bias (out).
    pub fn new(weight: Var, bias: Option<Var>) -> Self {
        Linear { weight, bias }
    }

    /// x: (batch, fan_in) → (batch, fan_out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// Weight W, (out, in).
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// Bias b, (out), when the layer has one.
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
