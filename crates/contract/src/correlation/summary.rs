//! The correlation study's `summary.json` and its CSV rows.

use gradscope_stats::MeanStd;
use serde::{Deserialize, Serialize};

use super::CorrelationParams;
use crate::Provenance;

/// White and brown-like random fields through the same statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaneReference {
    /// `white` or `brown`.
    pub name: String,
    /// Exponent β of the field's power spectrum ∝ |k|^−β.
    pub beta: f64,
    /// Lag-1 correlation along both axes.
    pub adjacent_correlation: MeanStd,
    /// Slope of the radial spectrum over the band.
    pub radial_slope: MeanStd,
}

/// Statistics of one (arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthSummary {
    /// Architecture spec.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Lag-1 correlation of the ∂f/∂x₁ picture along both axes.
    pub adjacent_correlation: MeanStd,
    /// Log-log slope of its radially averaged power spectrum over the band.
    pub radial_slope: MeanStd,
    /// Radially averaged autocorrelation, by distance in grid steps (mean over seeds).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub radial_acf_mean: Vec<f64>,
    /// Mean off-diagonal cosine between per-example gradients (all parameters).
    pub mean_cosine: MeanStd,
    /// Layers with parameters, input to output.
    pub layer_names: Vec<String>,
    /// Mean off-diagonal cosine per layer (mean over seeds).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub layer_cosine_mean: Vec<f64>,
    /// ‖ḡ‖² / mean‖gᵢ‖² of the B per-example gradients.
    pub coherence: MeanStd,
    /// ‖ḡ‖² / (tr Σ / B): signal-to-noise of the mean gradient.
    pub snr: MeanStd,
    /// Mean cosine of example pairs in each distance bin (mean over seeds).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub cosine_by_distance_mean: Vec<f64>,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorrelationSummary {
    /// Layout version, `gradscope.correlation/1`.
    pub schema: String,
    /// Study name, `correlation`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: CorrelationParams,
    /// Radii of the slope fits (inclusive).
    pub radial_band: [usize; 2],
    /// Edges of the input-distance bins (Euclidean, pixels in [0, 1]).
    pub distance_edges: Vec<f64>,
    /// Calibration fields.
    pub references: Vec<PlaneReference>,
    /// One entry per (arch, depth), archs in config order, depths ascending.
    pub results: Vec<DepthSummary>,
    /// The nets on images, when the run had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<super::ImageSummary>,
}

/// One row of `per_seed.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRow {
    /// Architecture spec.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
    /// Lag-1 correlation of the picture.
    pub r1: f64,
    /// Radial spectral slope.
    pub radial_slope: f64,
    /// Mean off-diagonal cosine.
    pub mean_cosine: f64,
    /// Gradient coherence.
    pub coherence: f64,
    /// Signal-to-noise of the mean gradient.
    pub snr: f64,
}
