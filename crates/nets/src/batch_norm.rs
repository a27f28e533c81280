//! Batch normalisation (Ioffe & Szegedy 2015) over the batch axis of (batch, features),
//! or over (batch, height, width) of images (batch, channels, height, width):
//! y = γ·(x − μ_B)/√(σ²_B + ε) + β, with μ_B, σ²_B the batch mean and (biased) variance.
//!
//! Written from basic tensor ops so every parameter gets a gradient.

use candle_core::{Tensor, Var};

use crate::{BN_EPS, BN_MOMENTUM, BnMode, Result};

#[derive(Clone, Debug)]
/// Batch normalisation (Ioffe & Szegedy 2015), y = γ·(x − μ)/√(σ² + ε) + β, over the batch axis, built from basic tensor ops so the backward pass reaches every parameter.
pub struct BatchNorm {
    weight: Var,
    bias: Var,
    running_mean: Var,
    running_var: Var,
    eps: f64,
}

impl BatchNorm {
    /// A BN layer from its scale γ, shift β and running statistics.
    pub fn new(weight: Var, bias: Var, running_mean: Var, running_var: Var) -> Self {
        BatchNorm {
            weight,
            bias,
            running_mean,
            running_var,
            eps: BN_EPS,
        }
    }

    /// Normalise `x` (batch, features) as `mode` says (see [`BnMode`]).
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        let (mean, var) = match mode {
            BnMode::Eval => (
                self.running_mean.as_tensor().clone(),
                self.running_var.as_tensor().clone(),
            ),
            BnMode::PerSample => batch_stats(&x.detach())?,
            BnMode::Full => batch_stats(x)?,
            BnMode::Train => {
                let (mean, var) = batch_stats(x)?;
                self.update_running_stats(x, &mean.detach(), &var.detach())?;
                (mean, var)
            }
        };
        let shape = |v: &Tensor| per_channel(v, x);
        let xhat = x
            .broadcast_sub(&shape(&mean)?)?
            .broadcast_div(&shape(&(var + self.eps)?.sqrt()?)?)?;
        Ok(xhat
            .broadcast_mul(&shape(self.weight.as_tensor())?)?
            .broadcast_add(&shape(self.bias.as_tensor())?)?)
    }

    /// running ← (1 − m)·running + m·batch, with the unbiased batch variance.
    fn update_running_stats(&self, x: &Tensor, mean: &Tensor, var: &Tensor) -> Result<()> {
        let n = (x.elem_count() / mean.elem_count()) as f64;
        let unbiased = if n > 1.0 {
            (var * (n / (n - 1.0)))?
        } else {
            var.clone()
        };
        let m = BN_MOMENTUM;
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }

    /// Set the running statistics to this batch's mean and biased variance,
    /// then normalise with them: afterwards [`BnMode::Eval`] on this batch
    /// computes exactly what [`BnMode::PerSample`] does.
    pub fn calibrate(&self, x: &Tensor) -> Result<Tensor> {
        let (mean, var) = batch_stats(&x.detach())?;
        self.running_mean.set(&mean)?;
        self.running_var.set(&var)?;
        self.forward(x, BnMode::Eval)
    }

    /// Scale γ.
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// Shift β.
    pub fn bias(&self) -> &Var {
        &self.bias
    }

    /// Running mean (eval mode).
    pub fn running_mean(&self) -> &Var {
        &self.running_mean
    }

    /// Running variance (eval mode).
    pub fn running_var(&self) -> &Var {
        &self.running_var
    }

    /// ε added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        f(format!("{prefix}.weight"), &self.weight);
        f(format!("{prefix}.bias"), &self.bias);
    }

    pub(crate) fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        f(format!("{prefix}.running_mean"), &self.running_mean);
        f(format!("{prefix}.running_var"), &self.running_var);
    }
}

/// Batch mean and biased variance per feature (axis 1), over every other axis:
/// (batch) for (batch, features), (batch, height, width) for images.
fn batch_stats(x: &Tensor) -> Result<(Tensor, Tensor)> {
    let c = x.dim(1)?;
    let dims: &[usize] = if x.rank() == 4 { &[0, 2, 3] } else { &[0] };
    let mean = x.mean_keepdim(dims)?;
    let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(dims)?;
    Ok((mean.reshape(c)?, var.reshape(c)?))
}

/// A per-feature vector (C) shaped to broadcast against `x`: (C) for
/// (batch, C), (C, 1, 1) for (batch, C, height, width).
fn per_channel(v: &Tensor, x: &Tensor) -> Result<Tensor> {
    match x.rank() {
        4 => Ok(v.reshape((v.elem_count(), 1, 1))?),
        _ => Ok(v.clone()),
    }
}
