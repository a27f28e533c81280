//! Batch normalisation (Ioffe & Szegedy 2015) over the batch axis of (batch, features),
//! or over (batch, height, width) of images (batch, channels, height, width):
//! y = γ·(x − μ_B)/√(σ²_B + ε) + β, with μ_B, σ²_B the batch mean and (biased) variance.
//!
//! Written from basic tensor ops so every parameter gets a gradient.

use candle_core::{Tensor, Var};

use crate::Result;

/// Which statistics BN normalises with, and how its gradient treats them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BnMode {
    /// Batch statistics, held constant in the backward pass: each sample's
    /// output is a function of that sample alone, so the gradient of Σᵢ f(xᵢ)
    /// with respect to xᵢ is the per-sample gradient df(xᵢ)/dxᵢ.
    #[default]
    PerSample,
    /// Batch statistics with the gradient taken straight through them (what
    /// autograd gives in training mode): samples are coupled, and dxᵢ of Σⱼ f(xⱼ)
    /// includes the effect of xᵢ on μ_B and σ²_B.
    Full,
    /// Running statistics (inference mode): a fixed affine map per feature.
    Eval,
    /// Training: batch statistics with the gradient through them (as
    /// [`BnMode::Full`]), and the running statistics updated with momentum
    /// [`BN_MOMENTUM`] (unbiased variance, as PyTorch).
    Train,
}

impl BnMode {
    /// The modes that leave the net unchanged (every mode but `Train`).
    pub const ALL: [BnMode; 3] = [BnMode::PerSample, BnMode::Full, BnMode::Eval];

    /// The mode's name as the CLI and the outputs spell it.
    pub fn name(self) -> &'static str {
        match self {
            BnMode::PerSample => "per-sample",
            BnMode::Full => "full",
            BnMode::Eval => "eval",
            BnMode::Train => "train",
        }
    }
}

impl std::fmt::Display for BnMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BnMode {
    type Err = crate::NetError;
    fn from_str(s: &str) -> Result<Self> {
        BnMode::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| {
                crate::NetError::parse("BN gradient mode", s, "known: per-sample, full, eval")
            })
    }
}

crate::parse::serde_via_str!(BnMode);

/// PyTorch's default ε.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's default momentum of the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;

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
