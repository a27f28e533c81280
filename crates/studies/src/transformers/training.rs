//! The training loop of the transformers study (Xiong et al. 2020's
//! warm-up experiment, and the rank variants trained before their second
//! measurement): Adam on a fresh batch of the reversal task per step, with
//! or without a linear warm-up, through the `Engine` interface; the loss
//! curve, its final value and the step of divergence.

use gradscope_engine::{Engine, Options, Want, for_net};
use gradscope_nets::{BnMode, derive_seed};
use gradscope_train::{Decay, Optimizer, OptimizerParams, Schedule};

use super::{
    DIVERGENCE_MARGIN, TrainOutput, TransformersConfig, reversal_batch, token_cross_entropy,
};
use crate::Result;

impl TransformersConfig {
    /// Train on a fresh batch of the task per step with Adam (β = 0.9,
    /// 0.98, ε = 10⁻⁹) at peak rate `lr`, warmed up linearly from 0 over
    /// `warmup` steps; stop at a non-finite loss.
    pub(super) fn train(
        &self,
        engine: &mut dyn Engine<f64>,
        lr: f64,
        warmup: usize,
    ) -> Result<TrainOutput> {
        let p = &self.params;
        let depth = engine.depth();
        let mut opt = Optimizer::new(OptimizerParams::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-9,
            weight_decay: 0.0,
        })?;
        let schedule = Schedule {
            decay: Decay::Constant,
            warmup_epochs: warmup,
        };
        let want = Want {
            hidden: false,
            params: true,
            gram: false,
        };
        let mut losses = Vec::with_capacity(p.steps);
        let mut diverged_at = None;
        for k in 0..p.steps {
            let data = derive_seed(p.seed, &format!("transformers/train{k}"));
            let (x, y) = reversal_batch(p.batch, p.seq_len, p.vocab, data);
            let fwd = engine.forward(x.view(), true)?;
            let out = engine.output(&fwd, depth)?;
            let (loss, g) = token_cross_entropy(out.view(), &y, p.vocab);
            losses.push(loss);
            if !loss.is_finite() || loss > losses[0] + DIVERGENCE_MARGIN {
                diverged_at.get_or_insert(k);
            }
            if !loss.is_finite() {
                break;
            }
            let grads = engine.backward(&fwd, depth, Some(g.view()), want)?;
            let rate = schedule.lr(lr, k, 1, p.steps);
            opt.begin_step();
            engine.update_params(&grads, &mut |name, dims, w, g| {
                opt.update(name, dims, w, g, rate)
            })?;
        }
        losses.resize(p.steps, f64::NAN);
        let tail = &losses[p.steps - (p.steps / 10).max(1)..];
        Ok(TrainOutput {
            final_loss: tail.iter().sum::<f64>() / tail.len() as f64,
            losses,
            diverged_at,
        })
    }

    /// Training run `seed` of placement `arch` at rate `lr`, with or
    /// without warm-up.
    pub(super) fn train_run(
        &self,
        arch: usize,
        lr: usize,
        warm: bool,
        seed: usize,
    ) -> Result<TrainOutput> {
        let p = &self.params;
        let net = self.net(p.train_placements[arch], p.train_depth, seed)?;
        let mut engine = for_net::<f64>(&net, Options::repeated(BnMode::Eval))?;
        let warmup = if warm { p.warmup } else { 0 };
        self.train(engine.as_mut(), p.lrs[lr], warmup)
    }
}
