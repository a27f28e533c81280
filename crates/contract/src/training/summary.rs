//! The training study's `summary.json` and `runs.json`.

use gradscope_stats::MeanStd;
use serde::{Deserialize, Serialize};

use super::TrainingParams;
use crate::{History, Provenance};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// The data set a study used.
pub struct DataInfo {
    /// `digits`, `mnist:DIR` or `cifar10:DIR`.
    pub source: String,
    /// Training examples.
    pub train: usize,
    /// Test examples.
    pub test: usize,
    /// Shape of one example (channels, height, width).
    pub shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

/// Final numbers and mean curves of one (arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchDepthResult {
    /// Architecture spec.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Whether blocks have shortcuts.
    pub residual: bool,
    /// Trainable parameters.
    pub parameters: usize,
    /// Training error after the last epoch.
    pub final_train_error: MeanStd,
    /// Test error after the last epoch.
    pub final_test_error: MeanStd,
    /// Training loss after the last epoch.
    pub final_train_loss: MeanStd,
    /// Seeds whose loss stopped being finite (their errors are excluded).
    pub diverged: usize,
    /// Mean over seeds, per epoch.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub train_error_curve: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    /// Test error per epoch, mean over seeds.
    pub test_error_curve: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    /// Training loss per epoch, mean over seeds.
    pub train_loss_curve: Vec<f64>,
}

/// The deepest against the shallowest net of one arch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthComparison {
    /// Architecture spec.
    pub arch: String,
    /// The shallowest configured depth.
    pub shallow_depth: usize,
    /// The deepest configured depth.
    pub deep_depth: usize,
    #[serde(with = "gradscope_stats::nan")]
    /// Final training error of the shallow net, mean over seeds.
    pub shallow_train_error: f64,
    #[serde(with = "gradscope_stats::nan")]
    /// Final training error of the deep net, mean over seeds.
    pub deep_train_error: f64,
    /// Deep training error above shallow + [`DEGRADATION_MARGIN`](super::DEGRADATION_MARGIN) (or not finite).
    pub degrades: bool,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Layout version, `gradscope.training/1`.
    pub schema: String,
    /// Study name, `training`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: TrainingParams,
    /// The data set.
    pub data: DataInfo,
    /// One entry per (arch, depth).
    pub results: Vec<ArchDepthResult>,
    /// Deepest against shallowest, per arch.
    pub comparisons: Vec<DepthComparison>,
}

/// One run's full history, in `runs.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellRecord {
    /// Cell key (arch, depth, seed).
    pub key: String,
    /// Architecture spec.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
    /// History and size of the run.
    pub output: RunOutput,
}

/// What a cell records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOutput {
    /// Per-epoch errors and gradient logs.
    pub history: History,
    /// Trainable parameters of the net.
    pub parameters: usize,
}
