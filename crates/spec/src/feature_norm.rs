//! The per-sample normalisers over the feature axis: layer norm (Ba et al.
//! 2016), group norm (Wu & He 2018) and RMS norm (Zhang & Sennrich 2019).

use std::fmt;

/// PyTorch's default ε for LayerNorm, GroupNorm and RMSNorm.
pub const NORM_EPS: f64 = 1e-5;

/// Which statistics a feature norm takes over the features of one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureNormKind {
    /// y = γ·(x − μ)/√(σ² + ε) + β, μ and σ² over all features (Ba et al. 2016).
    Layer,
    /// Layer norm within each of `g` equal groups of features (Wu & He 2018);
    /// `Group(1)` is layer norm.
    Group(usize),
    /// y = γ·x/√(mean(x²) + ε), no centring and no shift (Zhang & Sennrich 2019).
    Rms,
}

impl FeatureNormKind {
    /// The groups the features are normalised in (1 for layer and RMS norm).
    pub fn groups(self) -> usize {
        match self {
            FeatureNormKind::Group(g) => g,
            _ => 1,
        }
    }

    /// Whether the norm has a shift β.
    pub fn has_shift(self) -> bool {
        !matches!(self, FeatureNormKind::Rms)
    }
}

impl fmt::Display for FeatureNormKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureNormKind::Layer => f.write_str("ln"),
            FeatureNormKind::Group(g) => write!(f, "gn({g})"),
            FeatureNormKind::Rms => f.write_str("rms"),
        }
    }
}
