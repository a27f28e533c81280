//! The shattered study's `summary.json` and its CSV rows.

use gradscope_stats::{Band, DecayComparison, MeanStd};
use serde::{Deserialize, Serialize};

use super::ShatteredParams;
use crate::Provenance;

/// `summary.json`: everything but the raw arrays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShatteredSummary {
    /// Layout version, `gradscope.shattered/1`.
    pub schema: String,
    /// Study name, `shattered`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: ShatteredParams,
    /// Band of the spectral slopes.
    pub band: Band,
    /// White and brown noise through the same statistics.
    pub references: Vec<NoiseReference>,
    /// One entry per (arch, depth), archs in config order, depths ascending.
    pub results: Vec<DepthSummary>,
    /// Decay laws against depth, per arch.
    pub fits: Vec<ArchFits>,
    /// The nets on images, when the run had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<super::ImageSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// Calibration noise through the study's statistics.
pub struct NoiseReference {
    /// `white` or `brown`.
    pub name: String,
    /// r₁ over the noise draws.
    pub adjacent_correlation: MeanStd,
    /// Spectral slope over the noise draws.
    pub spectral_slope: MeanStd,
}

/// Statistics of one (arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthSummary {
    /// Architecture spec.
    pub arch: String,
    /// Depth L.
    pub depth: usize,
    /// r₁ of g over the grid.
    pub adjacent_correlation: MeanStd,
    /// Log-log slope of g's power spectrum over the band.
    pub spectral_slope: MeanStd,
    /// Per-block growth of the backward gradient, (‖∂L/∂h₀‖/‖∂L/∂h_L‖)^{1/L}.
    pub gradient_growth: MeanStd,
    /// ‖∂L/∂h_l‖ for l = 0 (stem output) … L, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub layer_grad_norm_mean: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    /// Standard deviation over seeds of ‖∂L/∂h_l‖.
    pub layer_grad_norm_std: Vec<f64>,
    /// ‖h_l‖, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub activation_norm_mean: Vec<f64>,
    /// NaN/inf by seed and layer (empty when all values were finite).
    pub faults: Vec<FaultRecord>,
}

/// Decay of r₁, of the roughness 1 − r₁ and of ‖∂L/∂h₀‖ against depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchFits {
    /// Architecture spec.
    pub arch: String,
    /// Fits of r₁ against depth.
    pub adjacent_correlation: Option<DecayComparison>,
    /// Fits of 1 − r₁ against depth.
    pub roughness: Option<DecayComparison>,
    /// Fits of ‖∂L/∂h₀‖ against depth.
    pub input_grad_norm: Option<DecayComparison>,
}

/// One row of `per_seed.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRow {
    /// Architecture spec.
    pub arch: String,
    /// Depth L.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
    /// r₁ of g over the grid.
    pub adjacent_correlation: f64,
    /// Log-log spectral slope over the band.
    pub spectral_slope: f64,
    /// R² of the slope fit.
    pub spectral_slope_r2: f64,
    /// ‖∂L/∂h₀‖.
    pub input_grad_norm: f64,
    /// (‖∂L/∂h₀‖/‖∂L/∂h_L‖)^{1/L}.
    pub gradient_growth: f64,
}

/// NaN/inf found in a net: which pass, at which hidden state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Seed index.
    pub seed: usize,
    /// `forward` or `backward`.
    pub pass: String,
    /// Index l of the hidden state h_l.
    pub layer: usize,
    /// Name of the hidden state.
    pub name: String,
    /// True for NaN, false for ±inf.
    pub nan: bool,
}
