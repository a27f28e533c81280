//! Learning-rate schedules, evaluated per step.

use serde::{Deserialize, Serialize};

use crate::{Result, SpecError};

/// The decay after warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Decay {
    /// The base rate throughout.
    Constant,
    /// Multiply by `gamma` at each milestone epoch (He 2016a: ÷10 at 32k and 48k iterations).
    Step {
        /// Epochs at which the rate is multiplied by `gamma`.
        milestones: Vec<usize>,
        /// Factor at each milestone (0.1 in He 2016a).
        gamma: f64,
    },
    /// Cosine from the base rate down to `min_lr` at the last step (Loshchilov & Hutter 2017).
    Cosine {
        #[serde(default)]
        /// Rate at the last step.
        min_lr: f64,
    },
}

/// Learning rate over training: linear warm-up from 0 over `warmup_epochs`, then `decay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Decay after warm-up.
    pub decay: Decay,
    /// Epochs of linear warm-up from 0.
    pub warmup_epochs: usize,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            decay: Decay::Constant,
            warmup_epochs: 0,
        }
    }
}

impl Schedule {
    /// Refuse bad factors, no or unordered milestones and warm-ups longer than
    /// the run; a milestone past the last epoch is allowed and never reached.
    pub fn check(&self, epochs: usize) -> Result<()> {
        if self.warmup_epochs > epochs {
            return Err(SpecError::invalid(
                "warmup_epochs",
                format!("{} is longer than the {epochs} epochs", self.warmup_epochs),
            ));
        }
        match &self.decay {
            Decay::Step { milestones, gamma } => {
                if !(gamma.is_finite() && *gamma > 0.0) {
                    return Err(SpecError::invalid(
                        "gamma",
                        format!("must be a positive number, got {gamma}"),
                    ));
                }
                if milestones.is_empty() {
                    return Err(SpecError::invalid(
                        "milestones",
                        "a step schedule needs at least one epoch (or use constant)",
                    ));
                }
                if milestones.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(SpecError::invalid("milestones", "must be increasing"));
                }
            }
            Decay::Cosine { min_lr } if !(min_lr.is_finite() && *min_lr >= 0.0) => {
                return Err(SpecError::invalid(
                    "min_lr",
                    format!("must be a finite number ≥ 0, got {min_lr}"),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The rate for step `step` (0-based) of `steps_per_epoch × epochs`.
    pub fn lr(&self, base: f64, step: usize, steps_per_epoch: usize, epochs: usize) -> f64 {
        let total = (steps_per_epoch * epochs).max(1);
        let warm = self.warmup_epochs * steps_per_epoch;
        if step < warm {
            return base * (step + 1) as f64 / warm as f64;
        }
        match &self.decay {
            Decay::Constant => base,
            Decay::Step { milestones, gamma } => {
                let epoch = step / steps_per_epoch.max(1);
                base * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32)
            }
            Decay::Cosine { min_lr } => {
                let span = (total - warm).max(1) as f64;
                let t = (step - warm) as f64 / span;
                min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_follow_their_formulas() {
        let step = Schedule {
            decay: Decay::Step {
                milestones: vec![2, 4],
                gamma: 0.1,
            },
            warmup_epochs: 0,
        };
        assert_eq!(step.lr(1.0, 0, 10, 6), 1.0);
        assert!((step.lr(1.0, 25, 10, 6) - 0.1).abs() < 1e-15);
        assert!((step.lr(1.0, 59, 10, 6) - 0.01).abs() < 1e-15);
        let cos = Schedule {
            decay: Decay::Cosine { min_lr: 0.0 },
            warmup_epochs: 1,
        };
        assert!(
            (cos.lr(1.0, 0, 10, 3) - 0.1).abs() < 1e-15,
            "warm-up starts at base/steps"
        );
        assert!((cos.lr(1.0, 9, 10, 3) - 1.0).abs() < 1e-15);
        assert!((cos.lr(1.0, 10, 10, 3) - 1.0).abs() < 1e-15);
        assert!(
            (cos.lr(1.0, 20, 10, 3) - 0.5).abs() < 1e-15,
            "half way down the cosine"
        );
        assert!(
            Schedule {
                warmup_epochs: 5,
                ..Default::default()
            }
            .check(3)
            .is_err()
        );
    }
}
