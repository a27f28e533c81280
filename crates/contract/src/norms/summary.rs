//! The norms study's `summary.json`.

use gradscope_spec::{Activation, WeightInit};
use gradscope_stats::{MeanStd, quantile};
use serde::{Deserialize, Serialize};

use super::{JacobianInit, NormsParams};
use crate::Provenance;

/// Mean, sd and quantiles of one layer's norm over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerStat {
    /// Mean, sd, min, max, counts.
    #[serde(flatten)]
    pub summary: MeanStd,
    /// 10 % quantile.
    #[serde(with = "gradscope_stats::nan")]
    pub q10: f64,
    /// Median.
    #[serde(with = "gradscope_stats::nan")]
    pub q50: f64,
    /// 90 % quantile.
    #[serde(with = "gradscope_stats::nan")]
    pub q90: f64,
}

impl LayerStat {
    /// Mean, sd and the 10, 50 and 90 % quantiles of `v` (finite values).
    pub fn of(v: &[f64]) -> Self {
        let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        let q = |t| {
            if finite.is_empty() {
                f64::NAN
            } else {
                quantile(&finite, t)
            }
        };
        LayerStat {
            summary: MeanStd::of(v.iter().copied()),
            q10: q(0.1),
            q50: q(0.5),
            q90: q(0.9),
        }
    }
}

/// A NaN/inf found in one seed's net.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRow {
    /// Seed index.
    pub seed: usize,
    /// `forward` or `backward`.
    pub pass: String,
    /// Index l of h_l where it first appears.
    pub layer: usize,
    /// Name of that hidden state.
    pub name: String,
    /// NaN (true) or ±inf.
    pub nan: bool,
}

/// The layers part for one (arch, activation, init).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Architecture spec.
    pub arch: String,
    /// Activation.
    pub activation: Activation,
    /// Weight initialisation.
    pub init: WeightInit,
    /// σ_w² = fan_in·Var(W) of the hidden layers.
    pub sigma_w2: f64,
    /// ‖∂L/∂h_l‖, l = 0 … L, over seeds.
    pub grad_norm: Vec<LayerStat>,
    /// √mean(h_l²), l = 0 … L, mean over seeds (finite values).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub activation_rms: Vec<f64>,
    /// ‖∂L/∂h_{l−1}‖/‖∂L/∂h_l‖ over layers and seeds.
    pub backward_ratio: MeanStd,
    /// Mean-field √χ₁ (plain nets without BN; NaN otherwise).
    #[serde(with = "gradscope_stats::nan")]
    pub predicted_ratio: f64,
    /// Weight matrices, input to output.
    pub weight_names: Vec<String>,
    /// ‖∂L/∂W‖ per weight matrix.
    pub weight_grad_norm: Vec<LayerStat>,
    /// Bias vectors, input to output.
    pub bias_names: Vec<String>,
    /// ‖∂L/∂b‖ per bias vector.
    pub bias_grad_norm: Vec<LayerStat>,
    /// NaN/inf by seed.
    pub faults: Vec<FaultRow>,
}

/// The scalar chain for one weight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChainSummary {
    /// The weight w of every link.
    pub w: f64,
    /// |dF/dw₁| by autograd, L = 1 … chain_depth.
    pub autograd: Vec<f64>,
    /// |w|^{L−1}.
    pub closed_form: Vec<f64>,
}

/// One row of the phase diagram.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRow {
    /// Residual (no BN) or plain.
    pub residual: bool,
    /// Activation.
    pub activation: Activation,
    /// σ_w².
    pub sigma_w2: f64,
    /// log₁₀(‖∂L/∂h₀‖/‖∂L/∂h_L‖), L = 1 … depth, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub log10_ratio: Vec<f64>,
}

/// Jacobian spectrum of one configuration at one depth (all seeds pooled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JacobianRow {
    /// Residual or plain.
    pub residual: bool,
    /// Activation.
    pub activation: Activation,
    /// Gaussian or orthogonal.
    pub init: JacobianInit,
    /// σ_w² used (critical for the activation).
    pub sigma_w2: f64,
    /// Depth.
    pub depth: usize,
    /// Mean of σ².
    #[serde(with = "gradscope_stats::nan")]
    pub mean_sq: f64,
    /// Variance of σ².
    #[serde(with = "gradscope_stats::nan")]
    pub var_sq: f64,
    /// Largest σ.
    #[serde(with = "gradscope_stats::nan")]
    pub max: f64,
    /// Smallest σ.
    #[serde(with = "gradscope_stats::nan")]
    pub min: f64,
    /// Every singular value, descending per seed.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub singular_values: Vec<f64>,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormsSummary {
    /// Layout version, `gradscope.norms/1`.
    pub schema: String,
    /// Study name, `norms`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: NormsParams,
    /// The layers part.
    pub layers: Vec<LayerSummary>,
    /// The chain part.
    pub chains: Vec<ChainSummary>,
    /// The phase diagram.
    pub phase: Vec<PhaseRow>,
    /// The Jacobian spectra.
    pub jacobian: Vec<JacobianRow>,
    /// The nets on images, when the run had any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<super::ImageSummary>,
}
