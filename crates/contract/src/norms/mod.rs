//! The norms study's data: its parameters, `summary.json` and the CSV and
//! NPY files beside it. Four parts, each optional: per-layer gradient norms
//! against the mean-field prediction, the scalar chain, the σ_w² × depth
//! phase diagram, and the singular values of input–output Jacobians. Nets on
//! images (`image_archs`: conv nets of He et al. 2016a by default) are
//! measured on a batch of real images with the cross-entropy loss
//! ([`images`]); their files start with `images_`.

pub mod images;
mod read;
mod summary;
mod write;

use gradscope_spec::{
    Activation, Arch, BiasInit, ConvArch, DataSource, ModelArch, Precision, WeightInit,
};
use serde::{Deserialize, Serialize};

pub use images::{GrowthFit, ImageDepthSummary, ImageSummary};
pub use read::read_summary;
pub use summary::{
    ChainSummary, FaultRow, JacobianRow, LayerStat, LayerSummary, NormsSummary, PhaseRow,
};
pub use write::NormsResults;

/// Folder name under the data and report roots.
pub const NAME: &str = "norms";
/// The parts of the study, in run order.
pub const PARTS: [&str; 4] = ["layers", "chain", "phase", "jacobian"];
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.norms/1";

/// Unchecked parameters; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct NormsParams {
    /// Parts to run: any of `layers`, `chain`, `phase`, `jacobian`.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub parts: Vec<String>,
    /// Architectures of the layers part.
    #[arg(long, value_parser = crate::args::arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<Arch>,
    /// Activations of the layers part.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub activations: Vec<Activation>,
    /// Initialisations of the layers part.
    #[arg(long, value_delimiter = ';', value_name = "LIST")]
    pub inits: Vec<WeightInit>,
    /// Blocks L of the layers and phase parts.
    #[arg(long)]
    pub depth: usize,
    /// Hidden width.
    #[arg(long)]
    pub width: usize,
    /// Dimension of the Gaussian inputs.
    #[arg(long)]
    pub input_dim: usize,
    /// The inputs of the layers and phase parts: `gaussian` (a batch of
    /// N(0, I) vectors of `input_dim`) or `grid` (`batch` evenly spaced
    /// scalars on [−2, 2], as in the shattered study; needs input_dim = 1).
    #[arg(long)]
    pub input: String,
    /// Inputs in the batch.
    #[arg(long)]
    pub batch: usize,
    /// Nets per configuration.
    #[arg(long)]
    pub seeds: usize,
    /// Base seed.
    #[arg(long)]
    pub seed: u64,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Precision,
    /// Bias initialisation.
    #[arg(long)]
    pub bias_init: BiasInit,
    /// Weights w of the scalar chain.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub chain_weights: Vec<f64>,
    /// Longest chain.
    #[arg(long)]
    pub chain_depth: usize,
    /// σ_w² values of the phase diagram.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub phase_sigma_w2: Vec<f64>,
    /// Activations of the phase diagram.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub phase_activations: Vec<Activation>,
    /// Width of the Jacobian chains.
    #[arg(long)]
    pub jacobian_width: usize,
    /// Depths at which Jacobian spectra are taken.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub jacobian_depths: Vec<usize>,
    /// Activations of the Jacobian part.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub jacobian_activations: Vec<Activation>,
    /// Refuse a run whose estimated peak memory is above this many GiB.
    /// Written to `summary.json` only when not the default, so summaries
    /// of runs made before it existed read the same.
    #[serde(skip_serializing_if = "is_default_memory_limit")]
    // Left out of the serialised defaults the flags' defaults are read from.
    #[arg(long, value_name = "GIB", default_value_t = DEFAULT_MEMORY_LIMIT_GIB)]
    pub memory_limit_gib: f64,
    /// Nets on images at initialisation, ‖∂L/∂h_l‖ per block and ‖∂L/∂W‖
    /// per weighted layer of the cross-entropy on a batch of real images:
    /// conv nets (conv-plain, conv-resnet, depth 6n + 2) or MLPs of the
    /// grammar (on the flattened image); empty or `none` for none.
    #[arg(long, value_parser = crate::args::model_arch_list_or_none, value_name = "LIST")]
    pub image_archs: ::std::vec::Vec<ModelArch>,
    /// Depths of the nets on images (weighted layers of a conv net, 6n + 2);
    /// the default fits `reproduce`, He et al.'s setting is 20,56,110.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub image_depths: Vec<usize>,
    /// Images in the batch of the image part (drawn from the training set per seed).
    #[arg(long)]
    pub image_batch: usize,
    /// Where the images come from: the embedded 8 × 8 digits, or MNIST / CIFAR-10 files.
    #[arg(long, value_name = "SOURCE")]
    pub image_data: DataSource,
}

/// The default of [`NormsParams::memory_limit_gib`].
pub const DEFAULT_MEMORY_LIMIT_GIB: f64 = 8.0;

fn is_default_memory_limit(v: &f64) -> bool {
    *v == DEFAULT_MEMORY_LIMIT_GIB
}

impl Default for NormsParams {
    fn default() -> Self {
        NormsParams {
            parts: PARTS.iter().map(|s| s.to_string()).collect(),
            archs: vec![Arch::PLAIN, Arch::RESNET, Arch::PLAIN_BN, Arch::RESNET_BN],
            activations: vec![Activation::Relu, Activation::Tanh, Activation::Sigmoid],
            inits: vec![WeightInit::He, WeightInit::Xavier],
            depth: 50,
            width: 128,
            input_dim: 64,
            input: "gaussian".into(),
            batch: 64,
            seeds: 6,
            seed: 0,
            dtype: Precision::F64,
            bias_init: BiasInit::Zero,
            chain_weights: vec![0.5, 0.8, 0.9, 1.0, 1.1, 1.2, 1.5],
            chain_depth: 50,
            phase_sigma_w2: (0..12).map(|k| 0.25 * 2f64.powf(k as f64 / 2.75)).collect(),
            phase_activations: vec![Activation::Relu, Activation::Tanh],
            jacobian_width: 96,
            jacobian_depths: vec![1, 4, 16, 64],
            jacobian_activations: vec![Activation::Identity, Activation::Relu, Activation::Tanh],
            memory_limit_gib: DEFAULT_MEMORY_LIMIT_GIB,
            image_archs: vec![
                ModelArch::Conv(ConvArch::PLAIN),
                ModelArch::Conv(ConvArch::RESNET),
            ],
            image_depths: vec![8, 20],
            image_batch: 64,
            image_data: DataSource::Digits,
        }
    }
}

impl NormsParams {
    /// Small sizes, for tests and a first look.
    pub fn quick() -> Self {
        NormsParams {
            archs: vec![Arch::PLAIN, Arch::RESNET],
            activations: vec![Activation::Relu, Activation::Tanh],
            inits: vec![WeightInit::He],
            depth: 12,
            width: 48,
            batch: 32,
            seeds: 2,
            phase_sigma_w2: vec![0.5, 1.0, 2.0, 4.0],
            jacobian_width: 32,
            jacobian_depths: vec![1, 4, 16],
            image_depths: vec![8, 14],
            image_batch: 16,
            ..Default::default()
        }
    }
}

/// The critical σ_w² of a plain net without biases (χ₁ = 1): for
/// (leaky) ReLU, whose χ₁ does not depend on q, 1/E[φ'(z)²] (2 for ReLU);
/// for smooth activations the fixed point q* → 0, where χ₁ → σ_w²·φ'(0)²,
/// so 1/φ'(0)² (1 for tanh and linear nets).
pub fn critical_sigma_w2(a: Activation) -> f64 {
    match a {
        Activation::Relu | Activation::LeakyRelu { .. } => 1.0 / a.mean_squared_slope(1.0),
        _ => 1.0 / a.derivative(0.0).powi(2),
    }
}

/// Gaussian weights at the critical σ_w², or orthogonal ones with the same scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JacobianInit {
    /// W ~ N(0, σ_w²/W).
    Gaussian,
    /// W = √σ_w²·Q, Q Haar-orthogonal.
    Orthogonal,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Per-layer gradient norms.
    pub const LAYERS_CSV: &str = "layers.csv";
    /// Per-layer weight and bias gradient norms.
    pub const PARAMS_CSV: &str = "params.csv";
    /// Measured and predicted backward ratios.
    pub const RATIOS_CSV: &str = "ratios.csv";
    /// The scalar chains.
    pub const CHAIN_CSV: &str = "chain.csv";
    /// The phase diagram.
    pub const PHASE_CSV: &str = "phase.csv";
    /// Jacobian spectrum moments.
    pub const JACOBIAN_CSV: &str = "jacobian.csv";
    /// ‖∂L/∂h_l‖ means, (configurations in summary order, L + 1).
    pub const GRAD_NORMS: &str = "grad_norms.npy";
    /// The phase diagram, (rows in summary order, depth).
    pub const PHASE: &str = "phase.npy";
}
