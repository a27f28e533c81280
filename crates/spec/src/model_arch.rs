//! The model a training run trains: an MLP of the [`Arch`] families or a
//! convolutional net ([`ConvArch`]), written `conv-<conv arch>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Arch, ConvArch, SpecError};

/// A model to train: an MLP architecture, or a convolutional one (`conv-plain`,
/// `conv-resnet:shortcut=b`, `conv-resnet:block=bottleneck`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ModelArch {
    /// An MLP of the shattered-gradients families.
    Mlp(Arch),
    /// A convolutional net of He et al. 2016a.
    Conv(ConvArch),
}

impl ModelArch {
    /// What a conv arch string starts with (`conv-resnet:shortcut=b`).
    pub const CONV_PREFIX: &'static str = "conv-";

    /// Whether the net has shortcuts.
    pub fn is_residual(&self) -> bool {
        match self {
            ModelArch::Mlp(a) => a.is_residual(),
            ModelArch::Conv(c) => c.residual,
        }
    }
}

impl fmt::Display for ModelArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelArch::Mlp(a) => write!(f, "{a}"),
            ModelArch::Conv(c) => write!(f, "{}{c}", Self::CONV_PREFIX),
        }
    }
}

impl FromStr for ModelArch {
    type Err = SpecError;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().strip_prefix(Self::CONV_PREFIX) {
            Some(rest) => Ok(ModelArch::Conv(rest.parse()?)),
            None => Ok(ModelArch::Mlp(s.parse()?)),
        }
    }
}

impl Serialize for ModelArch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelArch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_archs_round_trip_with_the_conv_prefix() {
        for s in [
            "resnet-bn:alpha=0.5",
            "plain",
            "conv-plain",
            "conv-resnet:shortcut=b",
        ] {
            assert_eq!(s.parse::<ModelArch>().unwrap().to_string(), s);
        }
        assert_eq!(
            "conv-resnet".parse::<ModelArch>().unwrap(),
            ModelArch::Conv(ConvArch::RESNET)
        );
        assert!("conv-resnet".parse::<ModelArch>().unwrap().is_residual());
        assert!(!"plain-bn".parse::<ModelArch>().unwrap().is_residual());
        assert!("conv-resnet-bn".parse::<ModelArch>().is_err());
    }
}
