//! Optimisers with their state kept as named tensors, so a checkpoint can
//! save it and a resumed run continues exactly.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var, backprop::GradStore};
use serde::{Deserialize, Serialize};

use crate::{Result, TrainError};

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
                Err(TrainError::config(
                    f,
                    format!("must be a positive number, got {v}"),
                ))
            }
        };
        let unit = |f: &'static str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(TrainError::config(f, format!("must be in [0, 1), got {v}")))
            }
        };
        let nonneg = |f: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(TrainError::config(
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
                    return Err(TrainError::config("nesterov", "needs a momentum > 0"));
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

/// An optimiser and its state: per-parameter tensors named `{param}.{slot}`.
#[derive(Debug)]
pub struct Optimizer {
    params: OptimizerParams,
    state: BTreeMap<String, Tensor>,
    steps: u64,
}

impl Optimizer {
    /// An optimiser with fresh state.
    pub fn new(params: OptimizerParams) -> Result<Self> {
        params.check()?;
        Ok(Optimizer {
            params,
            state: BTreeMap::new(),
            steps: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The state tensors, named `{param}.{slot}` (for checkpoints).
    pub fn state(&self) -> &BTreeMap<String, Tensor> {
        &self.state
    }

    /// Restore state saved by [`state`](Self::state) after `steps` steps.
    pub fn restore(&mut self, state: BTreeMap<String, Tensor>, steps: u64) {
        self.state = state;
        self.steps = steps;
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`.
    pub fn step(&mut self, params: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        for (name, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let w = var.as_tensor().detach();
            let g = g.detach();
            let new = match self.params {
                OptimizerParams::Sgd {
                    momentum,
                    weight_decay,
                    nesterov,
                    ..
                } => {
                    let g = if weight_decay > 0.0 {
                        (g + (&w * weight_decay)?)?
                    } else {
                        g
                    };
                    let dir = if momentum > 0.0 {
                        let key = format!("{name}.momentum");
                        let v = match self.state.get(&key) {
                            Some(v) => ((v * momentum)? + &g)?,
                            None => g.clone(),
                        };
                        self.state.insert(key, v.clone());
                        if nesterov { (g + (v * momentum)?)? } else { v }
                    } else {
                        g
                    };
                    (w - (dir * lr)?)?
                }
                OptimizerParams::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    ..
                } => {
                    let (km, kv) = (format!("{name}.exp_avg"), format!("{name}.exp_avg_sq"));
                    let m = match self.state.get(&km) {
                        Some(m) => ((m * beta1)? + (&g * (1.0 - beta1))?)?,
                        None => (&g * (1.0 - beta1))?,
                    };
                    let v = match self.state.get(&kv) {
                        Some(v) => ((v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                        None => (g.sqr()? * (1.0 - beta2))?,
                    };
                    self.state.insert(km, m.clone());
                    self.state.insert(kv, v.clone());
                    let m_hat = (m / (1.0 - beta1.powi(t)))?;
                    let v_hat = (v / (1.0 - beta2.powi(t)))?;
                    let update = m_hat.div(&(v_hat.sqrt()? + eps)?)?;
                    let w = if weight_decay > 0.0 {
                        (&w * (1.0 - lr * weight_decay))?
                    } else {
                        w
                    };
                    (w - (update * lr)?)?
                }
            };
            var.set(&new)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn var(v: Vec<f64>) -> Var {
        Var::from_tensor(&Tensor::from_vec(v.clone(), v.len(), &Device::Cpu).unwrap()).unwrap()
    }

    /// L = Σ c·w² has gradient 2cw.
    fn grads_of(w: &Var, c: f64) -> GradStore {
        (w.as_tensor().sqr().unwrap() * c)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
    }

    #[test]
    fn sgd_with_momentum_and_weight_decay_matches_the_hand_computation() {
        let w = var(vec![1.0, -2.0]);
        let params = vec![("w".to_string(), w.clone())];
        let mut opt = Optimizer::new(OptimizerParams::Sgd {
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 0.01,
            nesterov: false,
        })
        .unwrap();
        // Step 1: g = 2w + 0.01w = 2.01w; v = g; w ← w − 0.1·v.
        opt.step(&params, &grads_of(&w, 1.0), 0.1).unwrap();
        let w1 = [1.0 - 0.1 * 2.01, -2.0 + 0.1 * 4.02];
        let got = w.as_tensor().to_vec1::<f64>().unwrap();
        assert!((got[0] - w1[0]).abs() < 1e-15 && (got[1] - w1[1]).abs() < 1e-15);
        // Step 2: v = 0.9·v₁ + 2.01·w₁.
        opt.step(&params, &grads_of(&w, 1.0), 0.1).unwrap();
        let v2 = 0.9 * 2.01 * 1.0 + 2.01 * w1[0];
        assert!((w.as_tensor().to_vec1::<f64>().unwrap()[0] - (w1[0] - 0.1 * v2)).abs() < 1e-15);
        assert_eq!(opt.steps(), 2);
        assert!(opt.state().contains_key("w.momentum"));
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_the_learning_rate() {
        // With bias correction the first step is lr·g/(|g| + ε) ≈ lr·sign(g).
        let w = var(vec![3.0, -0.5]);
        let mut opt = Optimizer::new(OptimizerParams::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        })
        .unwrap();
        opt.step(&[("w".into(), w.clone())], &grads_of(&w, 1.0), 0.01)
            .unwrap();
        let got = w.as_tensor().to_vec1::<f64>().unwrap();
        assert!(
            (got[0] - (3.0 - 0.01)).abs() < 1e-9 && (got[1] - (-0.5 + 0.01)).abs() < 1e-9,
            "{got:?}"
        );
    }

    #[test]
    fn bad_parameters_are_errors() {
        for p in [
            OptimizerParams::Sgd {
                lr: 0.0,
                momentum: 0.9,
                weight_decay: 0.0,
                nesterov: false,
            },
            OptimizerParams::Sgd {
                lr: 0.1,
                momentum: 1.0,
                weight_decay: 0.0,
                nesterov: false,
            },
            OptimizerParams::Sgd {
                lr: 0.1,
                momentum: 0.0,
                weight_decay: 0.0,
                nesterov: true,
            },
            OptimizerParams::Sgd {
                lr: f64::NAN,
                momentum: 0.0,
                weight_decay: 0.0,
                nesterov: false,
            },
            OptimizerParams::Adam {
                lr: 0.1,
                beta1: 0.9,
                beta2: 1.5,
                eps: 1e-8,
                weight_decay: 0.0,
            },
        ] {
            assert!(Optimizer::new(p).is_err());
        }
    }
}
