//! How batch normalisation (Ioffe & Szegedy 2015) takes its statistics, and
//! PyTorch's defaults for ε and the running statistics' momentum.

use crate::{Result, SpecError};

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
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        BnMode::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| SpecError::parse("BN gradient mode", s, "known: per-sample, full, eval"))
    }
}

crate::parse::serde_via_str!(BnMode);

/// PyTorch's default ε.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's default momentum of the running statistics.
pub const BN_MOMENTUM: f64 = 0.1;
