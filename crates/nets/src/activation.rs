//! Pointwise nonlinearities, written from differentiable tensor ops.

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::parse::{no_arg, serde_via_str, split_call};
use crate::{NetError, Result};

/// A pointwise activation φ.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// φ(h) = max(h, 0); φ' ∈ {0, 1}.
    #[default]
    Relu,
    /// φ(h) = tanh(h); φ' ≤ 1.
    Tanh,
    /// φ(h) = 1/(1 + e^-h); φ' = φ(1-φ) ≤ 1/4.
    Sigmoid,
    /// φ(h) = h.
    Identity,
}

impl Activation {
    /// Every activation, for listings and tests.
    pub const ALL: [Activation; 4] = [Self::Relu, Self::Tanh, Self::Sigmoid, Self::Identity];

    /// φ(x), elementwise, built from differentiable tensor ops.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Relu => x.relu()?,
            Self::Tanh => x.tanh()?,
            // From exp and recip: both have a backward op in candle.
            Self::Sigmoid => x.neg()?.exp()?.affine(1.0, 1.0)?.recip()?,
            Self::Identity => x.clone(),
        })
    }

    /// φ(h) for one number, the reference the tensor version is tested against.
    pub fn apply(&self, h: f64) -> f64 {
        match self {
            Self::Relu => h.max(0.0),
            Self::Tanh => h.tanh(),
            Self::Sigmoid => 1.0 / (1.0 + (-h).exp()),
            Self::Identity => h,
        }
    }

    /// φ'(h), used by mean-field predictions and forward-mode paths.
    pub fn derivative(&self, h: f64) -> f64 {
        match self {
            Self::Relu => f64::from(u8::from(h > 0.0)),
            Self::Tanh => 1.0 - h.tanh().powi(2),
            Self::Sigmoid => {
                let s = self.apply(h);
                s * (1.0 - s)
            }
            Self::Identity => 1.0,
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
            Self::Identity => "identity",
        })
    }
}

impl FromStr for Activation {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self> {
        let (name, arg) = split_call("activation", s)?;
        let act = match name {
            "relu" => Self::Relu,
            "tanh" => Self::Tanh,
            "sigmoid" => Self::Sigmoid,
            "identity" | "linear" => Self::Identity,
            _ => {
                return Err(NetError::parse(
                    "activation",
                    s,
                    "unknown name (known: relu, tanh, sigmoid, identity)",
                ));
            }
        };
        no_arg("activation", s, arg)?;
        Ok(act)
    }
}

serde_via_str!(Activation);
