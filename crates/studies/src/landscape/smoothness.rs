//! Smoothness of the loss along the gradient during training (Santurkar et
//! al. 2018, "How Does Batch Normalization Help Optimization?", §3.1 and
//! Figure 4): at a training step, with g = ∇L(θ) of the step's batch, the
//! loss and its gradient are evaluated at θ − η'·g for each step size η'
//! of a grid, and summarised as
//!
//! - the loss variation max L − min L over η' ∈ {0} ∪ grid (loss
//!   Lipschitzness: a small range means the loss changes little along the
//!   step, so a large step is safe);
//! - the gradient predictiveness max_η' ‖∇L(θ − η'g) − ∇L(θ)‖ (how far the
//!   gradient moves along the step);
//! - the effective β-smoothness max_η' ‖∇L(θ − η'g) − ∇L(θ)‖ / ‖η'g‖.
//!
//! The training itself is the training code's step ([`gradscope_train`]'s
//! optimiser, schedule, batch order and loss), taken in the same order as
//! `Trainer` takes it, so the weights a measured run ends with are those of
//! an unmeasured one, bit for bit (tested).

use gradscope_engine::{Engine, Real, Want};
use gradscope_nets::{BnMode, derive_seed};
use gradscope_train::{
    DIVERGENCE_LOSS, Examples, Optimizer, TrainConfig, cross_entropy_gradient, epoch_batches,
};
use serde::{Deserialize, Serialize};

use super::objective::{EngineLoss, Objective, displaced, norm};
use crate::Result;

/// The loss and its gradient along −g at one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlongGradient {
    /// L(θ).
    pub loss: f64,
    /// ‖g‖ = ‖∇L(θ)‖.
    pub grad_norm: f64,
    /// L(θ − η'g) per step size of the grid.
    pub losses: Vec<f64>,
    /// ‖∇L(θ − η'g) − ∇L(θ)‖ per step size of the grid.
    pub gradient_changes: Vec<f64>,
}

impl AlongGradient {
    /// max L − min L over η' ∈ {0} ∪ grid.
    pub fn loss_variation(&self) -> f64 {
        let all = || std::iter::once(self.loss).chain(self.losses.iter().copied());
        all().fold(f64::NEG_INFINITY, f64::max) - all().fold(f64::INFINITY, f64::min)
    }

    /// max over the grid of ‖∇L(θ − η'g) − ∇L(θ)‖.
    pub fn gradient_predictiveness(&self) -> f64 {
        self.gradient_changes
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// max over the grid of ‖∇L(θ − η'g) − ∇L(θ)‖ / (η'‖g‖).
    pub fn beta_smoothness(&self, step_sizes: &[f64]) -> f64 {
        self.gradient_changes
            .iter()
            .zip(step_sizes)
            .map(|(c, s)| c / (s * self.grad_norm))
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

/// The loss and gradient at θ − η'·∇L(θ) for each η' of `step_sizes`.
pub fn along_gradient(
    obj: &mut dyn Objective,
    theta: &[f64],
    step_sizes: &[f64],
) -> Result<AlongGradient> {
    let (loss, g) = obj.loss_gradient(theta)?;
    let mut losses = Vec::with_capacity(step_sizes.len());
    let mut gradient_changes = Vec::with_capacity(step_sizes.len());
    for &eta in step_sizes {
        let (l, ge) = obj.loss_gradient(&displaced(theta, &[(-eta, &g)]))?;
        losses.push(l);
        let diff: Vec<f64> = ge.iter().zip(&g).map(|(a, b)| a - b).collect();
        gradient_changes.push(norm(&diff));
    }
    Ok(AlongGradient {
        loss,
        grad_norm: norm(&g),
        losses,
        gradient_changes,
    })
}

/// A training run measured along its way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeasuredRun {
    /// Steps taken before each measurement (0: at initialisation).
    pub measured_at: Vec<usize>,
    /// The measurement at each of those steps, on that step's batch.
    pub measures: Vec<AlongGradient>,
    /// The mean batch loss of every step taken, before the step.
    pub step_losses: Vec<f64>,
    /// The step at which the run diverged, if it did (no later step taken).
    pub diverged_at: Option<usize>,
}

/// Train on `train` as the training code does (SGD/Adam of the recipe,
/// its schedule and batch order, BN in training mode), measuring
/// [`along_gradient`] on the step's own batch before every `every`-th step,
/// BN then with the batch's statistics and the running ones untouched
/// ([`BnMode::Full`]); the parameters are put back bit for bit before the
/// step is taken.
pub fn train_measured<T: Real>(
    engine: &mut dyn Engine<T>,
    train: &Examples,
    config: &TrainConfig,
    every: usize,
    step_sizes: &[f64],
) -> Result<MeasuredRun> {
    let p = config.params();
    let mut opt = Optimizer::new(p.optimizer.clone())?;
    let mut run = MeasuredRun::default();
    let mut step = 0;
    for epoch in 0..p.epochs {
        let seed = derive_seed(p.seed, &format!("epoch{epoch}"));
        for batch in epoch_batches(train.len(), p.batch_size, seed) {
            let (x, y) = train.matrix::<T>(&batch);
            if every > 0 && step % every == 0 {
                let mut obj = EngineLoss::new(engine, x.clone(), y.clone(), BnMode::Full)?;
                let theta = obj.origin().to_vec();
                run.measures
                    .push(along_gradient(&mut obj, &theta, step_sizes)?);
                obj.restore()?;
                run.measured_at.push(step);
            }
            match train_step(engine, x, &y, &mut opt, config.lr(step))? {
                Some(loss) => run.step_losses.push(loss),
                None => {
                    run.diverged_at = Some(step);
                    return Ok(run);
                }
            }
            step += 1;
        }
    }
    Ok(run)
}

/// One optimiser step as the training code takes it (`steps::step`): the
/// batch's mean loss before the step, or None where the run diverges (a
/// loss not finite or past [`DIVERGENCE_LOSS`], a non-finite gradient, a
/// parameter the step left non-finite).
fn train_step<T: Real>(
    engine: &mut dyn Engine<T>,
    x: ndarray::Array2<T>,
    y: &[u32],
    opt: &mut Optimizer,
    lr: f64,
) -> Result<Option<f64>> {
    engine.set_mode(BnMode::Train);
    let fwd = engine.forward(x.view(), true)?;
    engine.update_running_stats(&fwd);
    let depth = engine.depth();
    let mut g = engine.output(&fwd, depth)?;
    let losses = cross_entropy_gradient(&mut g, y);
    let loss = losses.iter().sum::<f64>() / losses.len() as f64;
    if !loss.is_finite() || loss > DIVERGENCE_LOSS {
        return Ok(None);
    }
    let inv_n = T::one() / T::of(y.len() as f64);
    g.mapv_inplace(|v| v * inv_n);
    let want = Want {
        params: true,
        ..Want::default()
    };
    let grads = engine.backward(&fwd, depth, Some(g.view()), want)?;
    if grads
        .params
        .iter()
        .any(|(_, g)| g.iter().any(|v| !v.is_finite()))
    {
        return Ok(None);
    }
    opt.begin_step();
    let mut finite = true;
    engine.update_params(&grads, &mut |name, dims, w, g| {
        opt.update(name, dims, w, g, lr);
        finite &= w.iter().all(|v| v.is_finite());
    })?;
    Ok(finite.then_some(loss))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::landscape::surface::tests_support::Quadratic;

    #[test]
    fn on_a_quadratic_the_measures_take_their_closed_forms() {
        // L = ½θᵀAθ + cᵀθ, g = Aθ + c: ∇L(θ − ηg) − ∇L(θ) = −ηAg, so the
        // effective β-smoothness is ‖Ag‖/‖g‖ and
        // L(θ − ηg) = L(θ) − η‖g‖² + ½η² gᵀAg.
        let a = vec![4.0, 1.0, 0.5];
        let mut q = Quadratic {
            a: a.clone(),
            c: vec![0.1, -0.2, 0.3],
        };
        let theta = [0.5, -1.0, 2.0];
        let etas = [0.05, 0.1, 0.2, 0.4];
        let m = along_gradient(&mut q, &theta, &etas).unwrap();
        let g: Vec<f64> = (0..3).map(|i| a[i] * theta[i] + q.c[i]).collect();
        let ag: Vec<f64> = (0..3).map(|i| a[i] * g[i]).collect();
        let (gg, gag) = (
            g.iter().map(|v| v * v).sum::<f64>(),
            g.iter().zip(&ag).map(|(x, y)| x * y).sum::<f64>(),
        );
        let l0 = q.loss(&theta).unwrap();
        let along: Vec<f64> = etas
            .iter()
            .map(|e| l0 - e * gg + 0.5 * e * e * gag)
            .collect();
        let mut all = along.clone();
        all.push(l0);
        let want_var = all.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            - all.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!((m.loss_variation() - want_var).abs() < 1e-12, "{m:?}");
        let beta = norm(&ag) / gg.sqrt();
        assert!((m.beta_smoothness(&etas) - beta).abs() < 1e-12);
        assert!((m.gradient_predictiveness() - 0.4 * norm(&ag)).abs() < 1e-12);
        // β lies between the extreme eigenvalues, and equals λ_max when g
        // is the top eigenvector.
        assert!(beta > 0.5 && beta < 4.0);
        let mut q = Quadratic {
            a: a.clone(),
            c: vec![0.0; 3],
        };
        let m = along_gradient(&mut q, &[1.5, 0.0, 0.0], &etas).unwrap();
        assert!((m.beta_smoothness(&etas) - 4.0).abs() < 1e-12);
    }
}
