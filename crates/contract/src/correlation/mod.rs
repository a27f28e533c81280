//! The correlation study's data: its parameters, `summary.json`, and the
//! CSV and NPY files beside it (2-D gradient pictures, their radial spectra,
//! and per-example gradient cosines on the digits). Nets on images
//! (`image_archs`: conv nets of He et al. 2016a by default) are compared the
//! same way on a batch of real images ([`images`]); their files start with
//! `images_`.

pub mod images;
mod read;
mod summary;
mod write;

use gradscope_spec::{Arch, BiasInit, ConvArch, DataSource, ModelArch, Precision, WeightInit};
use serde::{Deserialize, Serialize};

pub use images::{ImageDepthSummary, ImageSeed, ImageSummary};
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
    /// Nets on images at initialisation, the cosine similarity of the
    /// per-example loss gradients of a batch of real images: conv nets
    /// (conv-plain, conv-resnet, depth 6n + 2) or MLPs of the grammar (on
    /// the flattened image); empty or `none` for none.
    #[arg(long, value_parser = crate::args::model_arch_list_or_none, value_name = "LIST")]
    pub image_archs: ::std::vec::Vec<ModelArch>,
    /// Depths of the nets on images (weighted layers of a conv net, 6n + 2);
    /// the default fits `reproduce`, He et al.'s setting is 20,56,110.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub image_depths: Vec<usize>,
    /// Images B whose pairwise gradient similarity is measured (a fixed,
    /// seeded draw from the training set, the same for every net).
    #[arg(long)]
    pub image_batch: usize,
    /// Where the images come from: the embedded 8 × 8 digits, or MNIST / CIFAR-10 files.
    #[arg(long, value_name = "SOURCE")]
    pub image_data: DataSource,
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
            image_archs: vec![
                ModelArch::Conv(ConvArch::PLAIN),
                ModelArch::Conv(ConvArch::RESNET),
            ],
            image_depths: vec![8, 20],
            image_batch: 48,
            image_data: DataSource::Digits,
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
            image_depths: vec![8, 14],
            image_batch: 32,
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
