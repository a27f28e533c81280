//! The optimiser's hyper-parameters (its state and update are the training
//! crate's).

use serde::{Deserialize, Serialize};

use crate::{Result, SpecError};

/// Unchecked optimiser parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerParams {
    /// SGD with momentum (PyTorch's form): v ← μv + g + λθ; θ ← θ − η·v
    /// (Nesterov: θ ← θ − η·(g + λθ + μv)).
    Sgd {
        /// Learning rate η.
        lr: f64,
        #[serde(default)]
        /// Momentum μ.
        momentum: f64,
        #[serde(default)]
        /// L2 weight decay λ.
        weight_decay: f64,
        #[serde(default)]
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam (Kingma & Ba 2015): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
    /// θ ← θ − η·m̂/(√v̂ + ε) with bias-corrected m̂, v̂; weight decay λθ is
    /// decoupled (AdamW, Loshchilov & Hutter 2019): θ ← θ − ηλθ.
    Adam {
        /// Learning rate η.
        lr: f64,
        #[serde(default = "beta1")]
        /// β₁, decay of the first moment.
        beta1: f64,
        #[serde(default = "beta2")]
        /// β₂, decay of the second moment.
        beta2: f64,
        #[serde(default = "adam_eps")]
        /// ε in the denominator.
        eps: f64,
        #[serde(default)]
        /// Decoupled weight decay λ.
        weight_decay: f64,
    },
}

fn beta1() -> f64 {
    0.9
}
fn beta2() -> f64 {
    0.999
}
fn adam_eps() -> f64 {
    1e-8
}

impl Default for OptimizerParams {
    fn default() -> Self {
        OptimizerParams::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            nesterov: false,
        }
    }
}

impl OptimizerParams {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerParams::Sgd { lr, .. } | OptimizerParams::Adam { lr, .. } => lr,
        }
    }

    /// Refuse non-positive or non-finite rates and moments outside [0, 1).
    pub fn check(&self) -> Result<()> {
        let pos = |f: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(SpecError::invalid(
                    f,
                    format!("must be a positive number, got {v}"),
                ))
            }
        };
        let unit = |f: &'static str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(SpecError::invalid(f, format!("must be in [0, 1), got {v}")))
            }
        };
        let nonneg = |f: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(SpecError::invalid(
                    f,
                    format!("must be a finite number ≥ 0, got {v}"),
                ))
            }
        };
        match *self {
            OptimizerParams::Sgd {
                lr,
                momentum,
                weight_decay,
                nesterov,
            } => {
                pos("lr", lr)?;
                unit("momentum", momentum)?;
                nonneg("weight_decay", weight_decay)?;
                if nesterov && momentum == 0.0 {
                    return Err(SpecError::invalid("nesterov", "needs a momentum > 0"));
                }
            }
            OptimizerParams::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
            } => {
                pos("lr", lr)?;
                unit("beta1", beta1)?;
                unit("beta2", beta2)?;
                pos("eps", eps)?;
                nonneg("weight_decay", weight_decay)?;
            }
        }
        Ok(())
    }
}
