//! The training study's data (the degradation problem, He et al. 2016a):
//! its parameters, `summary.json`, every run's history in `runs.json`, and
//! the CSV tables beside them.

mod read;
mod summary;
mod write;

use std::path::PathBuf;

use gradscope_spec::{
    Arch, DataSource, Decay, ModelArch, OptimizerParams, Precision, Schedule, TrainParams,
};
use serde::{Deserialize, Serialize};

pub use read::TrainingData;
pub use summary::{
    ArchDepthResult, CellRecord, DataInfo, DepthComparison, RunOutput, TrainingSummary,
};
pub use write::TrainingResults;

/// Folder name under the data and report roots.
pub const NAME: &str = "degradation";
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.training/1";

/// Unchecked parameters of the degradation study; defaults show the effect
/// on the embedded digits in well under a minute on 2 cores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingParams {
    /// Architectures to train.
    #[arg(long, value_parser = crate::args::model_arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<ModelArch>,
    /// MLP: blocks; conv: weighted layers (6n + 2, or 9n + 2 for bottlenecks).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// MLP width (conv nets use the paper's 16/32/64).
    #[arg(long)]
    pub width: usize,
    /// Runs per (arch, depth).
    #[arg(long)]
    pub seeds: usize,
    /// Base seed.
    #[arg(long)]
    pub seed: u64,
    /// Data set.
    #[arg(long, value_name = "SOURCE")]
    pub data: DataSource,
    /// Train on at most this many examples (all when unset).
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Training recipe.
    #[arg(skip)]
    pub train: TrainParams,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Precision,
    /// Keep a checkpoint per cell here, so an interrupted run resumes mid-training.
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
    /// Refuse runs whose estimated peak memory exceeds this many GiB.
    #[arg(long, value_name = "GIB")]
    pub memory_limit_gib: f64,
}

impl Default for TrainingParams {
    fn default() -> Self {
        TrainingParams {
            archs: vec![
                ModelArch::Mlp(Arch::PLAIN_BN),
                ModelArch::Mlp(Arch::RESNET_BN),
            ],
            depths: vec![4, 16, 32],
            width: 64,
            seeds: 4,
            seed: 0,
            data: DataSource::Digits,
            max_train: None,
            train: TrainParams {
                epochs: 12,
                batch_size: 64,
                optimizer: OptimizerParams::Sgd {
                    lr: 0.01,
                    momentum: 0.9,
                    weight_decay: 0.0,
                    nesterov: false,
                },
                // ÷10 at half and three quarters of the run, as He et al.
                // 2016a do, so that the curves flatten by the last epochs.
                schedule: Schedule {
                    decay: Decay::Step {
                        milestones: vec![6, 9],
                        gamma: 0.1,
                    },
                    warmup_epochs: 0,
                },
                seed: 0,
                log_every: 0,
                probe_points: 128,
                similarity_examples: 16,
                stats_every: None,
            },
            dtype: Precision::F32,
            checkpoints: None,
            memory_limit_gib: 8.0,
        }
    }
}

impl TrainingParams {
    /// A small run for tests and a first look.
    pub fn quick() -> Self {
        let d = Self::default();
        TrainingParams {
            depths: vec![2, 16],
            width: 32,
            seeds: 1,
            train: TrainParams {
                epochs: 6,
                probe_points: 64,
                similarity_examples: 8,
                schedule: Schedule::default(),
                ..d.train.clone()
            },
            ..d
        }
    }
}

/// A deeper net "degrades" when its final training error exceeds the
/// shallower one's by more than this (absolute error rate).
pub const DEGRADATION_MARGIN: f64 = 0.02;

/// A training-error curve counts as flat when it fell by at most this
/// (absolute error rate) over its last quarter of epochs ([`late_drop`]).
pub const FLAT_DROP: f64 = 0.01;

/// How far a curve fell over its last quarter of epochs (at least one):
/// `(k, curve[n−1−k] − curve[n−1])`, positive while it still falls; `None`
/// for a curve of fewer than two epochs. A comparison of final errors is
/// a comparison of what the nets can fit only where both are flat.
pub fn late_drop(curve: &[f64]) -> Option<(usize, f64)> {
    let n = curve.len();
    (n >= 2).then(|| {
        let k = (n / 4).max(1);
        (k, curve[n - 1 - k] - curve[n - 1])
    })
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Every run's history.
    pub const RUNS: &str = "runs.json";
    /// Per-epoch loss and error of every run.
    pub const CURVES_CSV: &str = "curves.csv";
    /// Final errors per (arch, depth).
    pub const FINAL_CSV: &str = "final.csv";
    /// Per-layer gradient norms over training.
    pub const GRAD_NORMS_CSV: &str = "grad_norms.csv";
    /// Shattering and similarity probes over training.
    pub const PROBES_CSV: &str = "probes.csv";
}

#[cfg(test)]
mod tests {
    use super::late_drop;

    #[test]
    fn the_late_drop_is_the_fall_over_the_last_quarter_of_the_epochs() {
        // Falling by 0.01 per epoch over 20 epochs: the last 5 fall by 0.05.
        let linear: Vec<f64> = (0..20).map(|e| 0.5 - 0.01 * e as f64).collect();
        let (k, drop) = late_drop(&linear).unwrap();
        assert_eq!(k, 5);
        assert!((drop - 0.05).abs() < 1e-12);
        // Fewer than 8 epochs look back one epoch; a rise is a negative drop.
        assert_eq!(late_drop(&[0.2, 0.3]), Some((1, 0.2 - 0.3)));
        assert_eq!(late_drop(&[0.2]), None);
    }
}
