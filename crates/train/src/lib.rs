#![warn(missing_docs)]
//! Training on candle: SGD with momentum and weight decay, Adam(W),
//! learning-rate schedules, cross-entropy, fixed-seed mini-batches, train and
//! test error per epoch, gradient logging (per-layer norms, the shattering
//! metrics along an input line, per-example gradient cosines), and
//! checkpoints from which a run resumes exactly. MLPs the dense fast path
//! covers (`gradscope_probe::dense`) train on it, tested equal to candle's
//! autograd to rounding; every other model trains on candle.
//!
//! The hyper-parameters ([`TrainParams`], [`OptimizerParams`], [`Schedule`])
//! are the `gradscope_spec` crate's, re-exported here.

mod error;
mod examples;
mod loss;
mod optim;
mod stats;
mod steps;
mod trainer;

pub use error::{Result, TrainError};
pub use examples::{Examples, epoch_batches};
pub use loss::{
    cross_entropy, cross_entropy_gradient, cross_entropy_per_example, error_rate, log_softmax,
    misclassified,
};
pub use optim::Optimizer;
pub use steps::DIVERGENCE_LOSS;
pub use trainer::{KEPT_EPOCHS, TrainEvent, Trainer};

// What a run records is part of the data contract (`runs.json`, checkpoints).
pub use gradscope_contract::{EpochRecord, GradLog, History};

// The hyper-parameters are descriptions: the spec crate's, re-exported.
pub use gradscope_spec::{Decay, OptimizerParams, Schedule, TrainConfig, TrainParams};
