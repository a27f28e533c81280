//! A training run's hyper-parameters: unchecked [`TrainParams`], checked
//! against the size of the training set into a [`TrainConfig`].

use serde::{Deserialize, Serialize};

use crate::{OptimizerParams, Result, Schedule, SpecError};

/// Unchecked training parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Optimiser and its hyper-parameters.
    pub optimizer: OptimizerParams,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Seed of the batch order (epoch e uses `derive_seed(seed, "epoch{e}")`).
    pub seed: u64,
    /// Log gradients every this many steps (and at step 0); 0: once per epoch.
    pub log_every: usize,
    /// Points on the input line whose df/dt gives the shattering metrics; 0 turns it off.
    pub probe_points: usize,
    /// Examples whose per-example gradient cosines are logged; 0 turns it off.
    pub similarity_examples: usize,
    /// Record the gradient statistics of training (GSNR, update size,
    /// distance from init, effective learning rate, histograms) every this
    /// many steps; 0 turns them off; unset: on the steps the gradients are
    /// logged (every `log_every` steps, or each epoch's last).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_every: Option<usize>,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: 20,
            batch_size: 64,
            optimizer: OptimizerParams::default(),
            schedule: Schedule::default(),
            seed: 0,
            log_every: 0,
            probe_points: 128,
            similarity_examples: 16,
            stats_every: None,
        }
    }
}

impl TrainParams {
    /// Validate against a training set of `n` examples.
    pub fn check(&self, n: usize) -> Result<TrainConfig> {
        if !(1..=100_000).contains(&self.epochs) {
            return Err(SpecError::invalid(
                "epochs",
                format!("must be 1..=100000, got {}", self.epochs),
            ));
        }
        if self.batch_size == 0 || self.batch_size > 1 << 16 {
            return Err(SpecError::invalid(
                "batch_size",
                format!("must be 1..=65536, got {}", self.batch_size),
            ));
        }
        if n < 2 {
            return Err(SpecError::invalid(
                "training set",
                format!("needs at least 2 examples, got {n}"),
            ));
        }
        if self.probe_points != 0 && !(16..=4096).contains(&self.probe_points) {
            return Err(SpecError::invalid(
                "probe_points",
                format!("must be 0 or 16..=4096, got {}", self.probe_points),
            ));
        }
        if self.similarity_examples == 1 || self.similarity_examples > 1024 {
            return Err(SpecError::invalid(
                "similarity_examples",
                format!("must be 0 or 2..=1024, got {}", self.similarity_examples),
            ));
        }
        self.optimizer.check()?;
        self.schedule.check(self.epochs)?;
        Ok(TrainConfig {
            params: self.clone(),
            steps_per_epoch: n.div_ceil(self.batch_size),
        })
    }
}

/// Validated training parameters for a training set of a given size.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    params: TrainParams,
    steps_per_epoch: usize,
}

impl TrainConfig {
    /// The validated parameters.
    pub fn params(&self) -> &TrainParams {
        &self.params
    }

    /// Steps per epoch (the last batch may be smaller).
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }

    /// Steps of the whole run.
    pub fn total_steps(&self) -> usize {
        self.steps_per_epoch * self.params.epochs
    }

    /// Whether step `step` (from 1), the `batch`-th (from 0) of an epoch,
    /// records the gradient statistics (see [`TrainParams::stats_every`]).
    pub fn records_stats(&self, step: usize, batch: usize) -> bool {
        match self.params.stats_every {
            Some(0) => false,
            Some(n) => step % n == 0,
            None if self.params.log_every > 0 => step % self.params.log_every == 0,
            None => batch + 1 == self.steps_per_epoch,
        }
    }

    /// The learning rate at a step.
    pub fn lr(&self, step: usize) -> f64 {
        self.params.schedule.lr(
            self.params.optimizer.lr(),
            step,
            self.steps_per_epoch,
            self.params.epochs,
        )
    }
}
