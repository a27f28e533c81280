//! The shattered-gradients study's data (Balduzzi et al. 2017): its
//! parameters, `summary.json` and the CSV and NPY files beside it.
//!
//! For each architecture, depth and seed the study measures the input
//! gradient g(x) = df/dx of a scalar net over an evenly spaced grid, its
//! lag-1 correlation r₁, ACF and power spectrum, the per-layer gradient
//! norms, and, over seeds, the covariance of g across inputs. Nets on
//! images (`image_archs`: conv nets of He et al. 2016a) are measured the same
//! way along the straight path between two images ([`images`]) and over the
//! plane spanned by three ([`plane`]); their files start with `images_`.

pub mod images;
pub mod plane;
mod read;
mod summary;
mod write;

use std::path::PathBuf;

use gradscope_spec::{
    Arch, BiasInit, BnMode, ConvArch, DataSource, DepthNets, ModelArch, Precision, WeightInit,
};
use gradscope_stats::Band;
use serde::{Deserialize, Serialize};

pub use images::{ImageArrays, ImageDepthSummary, ImageSeedRow, ImageSummary};
pub use plane::{PictureSummary, PlaneArrays, PlaneDepthSummary, PlaneSeedRow, PlaneSummary};
pub(crate) use read::check_rows;
pub use read::{ShatteredData, seed_mean};
pub use summary::{ArchFits, DepthSummary, FaultRecord, NoiseReference, SeedRow, ShatteredSummary};
pub use write::ShatteredResults;

/// Folder name under the data and report roots.
pub const NAME: &str = "shattered";
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.shattered/1";

/// Unchecked parameters; every field has a default (the paper's setup).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct ShatteredParams {
    /// Architectures (see `gradscope archs`).
    #[arg(long, value_parser = crate::args::arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<Arch>,
    /// Depths (blocks between stem and head).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// Hidden width W.
    #[arg(long)]
    pub width: usize,
    /// Grid points N.
    #[arg(long)]
    pub points: usize,
    /// Left end of the input grid.
    #[arg(long)]
    pub x_min: f64,
    /// Right end of the input grid.
    #[arg(long)]
    pub x_max: f64,
    /// Nets per (arch, depth): seed s's nets of every depth are one net's
    /// prefixes (`depth_nets = nested`) or drawn apart (`independent`).
    #[arg(long)]
    pub seeds: usize,
    /// `nested`: a depth-L net is the first L blocks of the deepest net of
    /// its seed (one pass serves every depth); `independent`: each depth's
    /// net is drawn from a seed of its own, so depths are independent samples.
    #[arg(long, value_name = "nested|independent")]
    pub depth_nets: DepthNets,
    /// Base seed; each net's seed is derived from it.
    #[arg(long)]
    pub seed: u64,
    /// f64 by default: in deep BN feedforward nets the gradient's rounding
    /// error grows with depth (×1.3 per layer for plain-bn), and at depth 50
    /// f32 moves r₁ by ~0.03 between two correct implementations.
    #[arg(long)]
    pub dtype: Precision,
    /// How BN's batch statistics enter the gradient.
    #[arg(long)]
    pub bn_mode: BnMode,
    /// Weight initialisation.
    #[arg(long)]
    pub weight_init: WeightInit,
    /// Bias initialisation (zero makes ReLU nets homogeneous: see `BiasInit`).
    #[arg(long)]
    pub bias_init: BiasInit,
    /// Spectral-slope band (inclusive bins); default N/64 ..= N/4.
    #[arg(skip)]
    pub band: Option<Band>,
    /// Largest ACF lag stored; default min(32, N/4).
    #[arg(long)]
    pub max_lag: Option<usize>,
    /// Evaluate one net with these weights (safetensors) instead of drawing them.
    #[arg(long, value_name = "FILE")]
    pub load_weights: Option<PathBuf>,
    /// Save each (arch, seed)'s deepest net here as safetensors.
    #[arg(long, value_name = "DIR")]
    pub save_weights: Option<PathBuf>,
    /// Refuse runs whose estimated memory exceeds this many GiB.
    #[arg(long, value_name = "GIB")]
    pub memory_limit_gib: f64,
    /// Nets on images, ∂f/∂x along the straight path between two images:
    /// conv nets (conv-plain, conv-resnet, depth 6n + 2) or MLPs of the grammar
    /// (on the flattened image); empty or `none` for none.
    #[arg(long, value_parser = crate::args::model_arch_list_or_none, value_name = "LIST")]
    pub image_archs: ::std::vec::Vec<ModelArch>,
    /// Depths of the nets on images (weighted layers of a conv net, 6n + 2);
    /// the default fits `reproduce`, He et al.'s setting is 20,56,110.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub image_depths: Vec<usize>,
    /// Points N on the path between the two images.
    #[arg(long)]
    pub image_points: usize,
    /// Where the images come from: the embedded 8 × 8 digits, or MNIST / CIFAR-10 files.
    #[arg(long, value_name = "SOURCE")]
    pub image_data: DataSource,
    /// The two test-set images the path joins (indices).
    #[arg(long, value_delimiter = ',', value_name = "I,J")]
    pub image_pair: Vec<usize>,
    /// Grid points H along each side of the plane of images
    /// x₀ + a·(x₁ − x₀) + b·(x₂ − x₀), a, b ∈ [0, 1] (x₀, x₁ the pair,
    /// x₂ `image_plane_third`): 8..=128, or 0 for no plane.
    #[arg(long, value_name = "H")]
    pub image_plane_side: usize,
    /// The test-set image x₂ spanning the plane with the pair (index).
    #[arg(long, value_name = "K")]
    pub image_plane_third: usize,
    /// Nets measured over the plane per (image arch, depth): the first of
    /// the seeds, 1..=10000, at most `seeds` (more is taken as `seeds`; a
    /// plane of H² images costs H²/N paths).
    #[arg(long)]
    pub image_plane_seeds: usize,
}

impl Default for ShatteredParams {
    fn default() -> Self {
        ShatteredParams {
            archs: Arch::shattered_defaults(),
            depths: vec![1, 2, 4, 8, 16, 24, 32, 50],
            width: 200,
            points: 256,
            x_min: -2.0,
            x_max: 2.0,
            seeds: 8,
            depth_nets: DepthNets::Nested,
            seed: 0,
            dtype: Precision::F64,
            bn_mode: BnMode::PerSample,
            weight_init: WeightInit::He,
            bias_init: BiasInit::Torch,
            band: None,
            max_lag: None,
            load_weights: None,
            save_weights: None,
            memory_limit_gib: 8.0,
            image_archs: vec![
                ModelArch::Conv(ConvArch::PLAIN),
                ModelArch::Conv(ConvArch::RESNET),
            ],
            image_depths: vec![8, 20],
            image_points: 64,
            image_data: DataSource::Digits,
            image_pair: vec![0, 1],
            image_plane_side: 16,
            image_plane_third: 2,
            image_plane_seeds: 4,
        }
    }
}

impl ShatteredParams {
    /// A small run for tests and a first look (seconds in debug builds).
    pub fn quick() -> Self {
        ShatteredParams {
            depths: vec![1, 2, 4, 8, 16],
            width: 48,
            points: 128,
            seeds: 4,
            image_depths: vec![8, 14],
            image_points: 64,
            image_plane_side: 8,
            image_plane_seeds: 2,
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
    /// Per-layer gradient and activation norms.
    pub const LAYER_NORMS_CSV: &str = "layer_norms.csv";
    /// Decay-law fits.
    pub const FITS_CSV: &str = "fits.csv";
    /// The input grid, (N,).
    pub const GRID: &str = "grid.npy";
    /// df/dx, (archs, depths, seeds, N).
    pub const INPUT_GRADIENTS: &str = "input_gradients.npy";
    /// Power spectra, (archs, depths, seeds, N/2 + 1).
    pub const POWER_SPECTRA: &str = "power_spectra.npy";
    /// Autocorrelation functions, (archs, depths, seeds, max_lag + 1).
    pub const AUTOCORRELATION: &str = "autocorrelation.npy";
    /// Correlation across seeds, (archs, depths, N, N), f32.
    pub const CORRELATION: &str = "correlation_matrices.npy";
    /// Calibration noise, (2, seeds, N).
    pub const NOISE: &str = "noise.npy";
}
