//! Optimisers with their state kept as named tensors, so a checkpoint can
//! save it and a resumed run continues exactly.

use std::collections::BTreeMap;

use candle_core::{Tensor, Var, backprop::GradStore};

use gradscope_engine::Real;

use crate::{OptimizerParams, Result};

/// Optimiser state per dtype, named `{param}.{slot}`.
#[derive(Debug, Default)]
struct Slots {
    f32: BTreeMap<String, Vec<f32>>,
    f64: BTreeMap<String, Vec<f64>>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl Slots {
    /// The slots of parameters in T (f32 or f64).
    fn of<T: Real>(&mut self) -> &mut BTreeMap<String, Vec<T>> {
        let any: &mut dyn std::any::Any = if T::STORED == candle_core::DType::F32 {
            &mut self.f32
        } else {
            &mut self.f64
        };
        any.downcast_mut().expect("parameters are f32 or f64")
    }
}

/// An optimiser and its state: per-parameter slots named `{param}.{slot}`
/// (`momentum`; `exp_avg`, `exp_avg_sq`), kept in the parameter's dtype.
#[derive(Debug)]
pub struct Optimizer {
    params: OptimizerParams,
    state: Slots,
    steps: u64,
}

impl Optimizer {
    /// An optimiser with fresh state.
    pub fn new(params: OptimizerParams) -> Result<Self> {
        params.check()?;
        Ok(Optimizer {
            params,
            state: Slots::default(),
            steps: 0,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The state as tensors named `{param}.{slot}` (for checkpoints).
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        let dev = candle_core::Device::Cpu;
        let mut out = BTreeMap::new();
        for (k, v) in &self.state.f32 {
            out.insert(
                k.clone(),
                Tensor::from_slice(v, self.state.shapes[k].as_slice(), &dev)?,
            );
        }
        for (k, v) in &self.state.f64 {
            out.insert(
                k.clone(),
                Tensor::from_slice(v, self.state.shapes[k].as_slice(), &dev)?,
            );
        }
        Ok(out)
    }

    /// Restore state saved by [`state`](Self::state) after `steps` steps.
    pub fn restore(&mut self, state: BTreeMap<String, Tensor>, steps: u64) -> Result<()> {
        let mut slots = Slots::default();
        for (k, t) in state {
            slots.shapes.insert(k.clone(), t.dims().to_vec());
            let flat = t.flatten_all()?;
            match t.dtype() {
                candle_core::DType::F64 => {
                    slots.f64.insert(k, flat.to_vec1::<f64>()?);
                }
                _ => {
                    slots
                        .f32
                        .insert(k, flat.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?);
                }
            }
        }
        self.state = slots;
        self.steps = steps;
        Ok(())
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`.
    pub fn step(&mut self, params: &[(String, Var)], grads: &GradStore, lr: f64) -> Result<()> {
        self.begin_step();
        for (name, var) in params {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let dims = var.dims().to_vec();
            let new = match var.dtype() {
                candle_core::DType::F64 => self.update_tensor::<f64>(name, var, g, lr)?,
                _ => self.update_tensor::<f32>(name, var, g, lr)?,
            };
            var.set(&new.reshape(dims)?)?;
        }
        Ok(())
    }

    fn update_tensor<T: Real + candle_core::WithDType>(
        &mut self,
        name: &str,
        var: &Var,
        g: &Tensor,
        lr: f64,
    ) -> Result<Tensor> {
        let mut w = var
            .as_tensor()
            .flatten_all()?
            .to_dtype(T::DTYPE)?
            .to_vec1::<T>()?;
        let g = g.flatten_all()?.to_dtype(T::DTYPE)?.to_vec1::<T>()?;
        self.update(name, var.dims(), &mut w, &g, lr);
        Ok(Tensor::from_vec(w, var.elem_count(), var.device())?.to_dtype(var.dtype())?)
    }

    /// Start a step: call once before the [`update`](Self::update)s of its
    /// parameters (Adam's bias correction counts steps).
    pub fn begin_step(&mut self) {
        self.steps += 1;
    }

    /// Update one parameter `w` (of shape `dims`, flattened) with its
    /// gradient `g` at learning rate `lr`, in place. The rules are those of
    /// [`OptimizerParams`], computed in the parameter's dtype.
    pub fn update<T: Real>(&mut self, name: &str, dims: &[usize], w: &mut [T], g: &[T], lr: f64) {
        let c = |v: f64| T::of(v);
        let t = self.steps.max(1) as i32;
        match self.params {
            OptimizerParams::Sgd {
                momentum,
                weight_decay,
                nesterov,
                ..
            } => {
                let (mu, wd, lr) = (c(momentum), c(weight_decay), c(lr));
                let key = format!("{name}.momentum");
                if momentum > 0.0 && !self.state.of::<T>().contains_key(&key) {
                    self.state.shapes.insert(key.clone(), dims.to_vec());
                    // v starts at the first gradient (PyTorch): v = 0·μ + g.
                    self.state
                        .of::<T>()
                        .insert(key.clone(), vec![T::zero(); w.len()]);
                }
                let decayed = |w: T, g: T| if weight_decay > 0.0 { g + w * wd } else { g };
                match self.state.of::<T>().get_mut(&key) {
                    Some(v) => {
                        for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
                            let g = decayed(*w, g);
                            *v = *v * mu + g;
                            *w -= if nesterov { g + *v * mu } else { *v } * lr;
                        }
                    }
                    None => {
                        for (w, &g) in w.iter_mut().zip(g) {
                            *w -= decayed(*w, g) * lr;
                        }
                    }
                }
            }
            OptimizerParams::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                let (km, kv) = (format!("{name}.exp_avg"), format!("{name}.exp_avg_sq"));
                for k in [&km, &kv] {
                    if !self.state.of::<T>().contains_key(k) {
                        self.state.shapes.insert(k.clone(), dims.to_vec());
                        self.state
                            .of::<T>()
                            .insert(k.clone(), vec![T::zero(); w.len()]);
                    }
                }
                let slots = self.state.of::<T>();
                let mut m = slots.remove(&km).expect("inserted");
                let v = slots.get_mut(&kv).expect("inserted");
                let (b1, b2) = (c(beta1), c(beta2));
                let (c1, c2) = (c(1.0 - beta1.powi(t)), c(1.0 - beta2.powi(t)));
                let decay = c(1.0 - lr * weight_decay);
                let (eps, lr) = (c(eps), c(lr));
                for (((w, &g), m), v) in w.iter_mut().zip(g).zip(&mut m).zip(v.iter_mut()) {
                    *m = *m * b1 + g * (T::one() - b1);
                    *v = *v * b2 + g * g * (T::one() - b2);
                    let update = (*m / c1) / ((*v / c2).sqrt() + eps);
                    if weight_decay > 0.0 {
                        *w *= decay;
                    }
                    *w -= update * lr;
                }
                slots.insert(km, m);
            }
        }
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
        assert!(opt.state().unwrap().contains_key("w.momentum"));
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
