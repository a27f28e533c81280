//! The correlation study's data: its parameters, `summary.json`, and the
//! CSV and NPY files beside it (2-D gradient pictures, their radial spectra,
//! and per-example gradient cosines on the digits).

mod read;
mod summary;
mod write;

use gradscope_spec::{Arch, BiasInit, Precision, WeightInit};
use serde::{Deserialize, Serialize};

pub use read::CorrelationData;
pub use summary::{CorrelationSummary, DepthSummary, PlaneReference, SeedRow};
pub use write::CorrelationResults;

/// Folder name under the data and report roots.
pub const NAME: &str = "correlation";
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.correlation/1";

/// Unchecked parameters; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationParams {
    /// Architectures (MLP specs, see `gradscope archs`).
    #[arg(long, value_parser = crate::args::arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<Arch>,
    /// Depths (blocks between stem and head).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// Hidden width.
    #[arg(long)]
    pub width: usize,
    /// Grid side H: the picture has H × H points.
    #[arg(long)]
    pub side: usize,
    /// The grid spans [−extent, extent]² of the input plane.
    #[arg(long)]
    pub extent: f64,
    /// Examples B of the digits whose per-example gradients are compared.
    #[arg(long)]
    pub examples: usize,
    /// Distance bins of the cosine-against-distance curve (equal counts).
    #[arg(long)]
    pub distance_bins: usize,
    /// Independent nets per (arch, depth).
    #[arg(long)]
    pub seeds: usize,
    /// Base seed.
    #[arg(long)]
    pub seed: u64,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Precision,
    /// Weight initialisation.
    #[arg(long)]
    pub weight_init: WeightInit,
    /// Bias initialisation.
    #[arg(long)]
    pub bias_init: BiasInit,
}

impl Default for CorrelationParams {
    fn default() -> Self {
        CorrelationParams {
            archs: vec![Arch::PLAIN_BN, Arch::RESNET_BN],
            depths: vec![1, 4, 16, 50],
            width: 128,
            side: 64,
            extent: 2.0,
            examples: 128,
            distance_bins: 8,
            seeds: 4,
            seed: 0,
            dtype: Precision::F64,
            weight_init: WeightInit::He,
            bias_init: BiasInit::Torch,
        }
    }
}

impl CorrelationParams {
    /// Small sizes, for tests and a first look.
    pub fn quick() -> Self {
        CorrelationParams {
            depths: vec![1, 4, 16],
            width: 32,
            side: 24,
            examples: 32,
            distance_bins: 4,
            seeds: 2,
            ..Default::default()
        }
    }
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// One row per (arch, depth).
    pub const SUMMARY_CSV: &str = "summary.csv";
    /// One row per (arch, depth, seed).
    pub const PER_SEED_CSV: &str = "per_seed.csv";
    /// Mean cosine per layer.
    pub const LAYER_COSINE_CSV: &str = "layer_cosine.csv";
    /// Mean cosine per input-distance bin.
    pub const COSINE_DISTANCE_CSV: &str = "cosine_by_distance.csv";
    /// Grid coordinates, (H,).
    pub const AXIS: &str = "axis.npy";
    /// ∂f/∂x₁ pictures.
    pub const PICTURES: &str = "pictures.npy";
    /// ‖∇ₓf‖ pictures.
    pub const NORM_PICTURES: &str = "norm_pictures.npy";
    /// Radial power spectra.
    pub const RADIAL_SPECTRA: &str = "radial_spectra.npy";
    /// Cosine matrices of seed 0.
    pub const COSINES: &str = "cosine_matrices.npy";
}
