#![warn(missing_docs)]
//! Descriptions of what gradscope builds and runs, with no tensor library:
//! the architecture grammar ([`Arch`], [`NetParams`] → [`NetSpec`]),
//! activations, inits, BN modes, convolutional nets ([`ConvNetParams`]),
//! training hyper-parameters ([`TrainParams`] → [`TrainConfig`]) and data
//! sources. Each parses from a short string or TOML, prints back the same
//! way, and is validated once by a `check()` into a spec the nets and
//! training crates build from; a refusal is a [`SpecError`].
//!
//! ```
//! use gradscope_spec::{Arch, NetParams};
//!
//! let arch: Arch = "resnet-bn:alpha=0.5".parse()?;
//! let spec = NetParams { arch, depth: 4, width: 16, ..Default::default() }.check()?;
//! assert_eq!(spec.arch.to_string(), "resnet-bn:alpha=0.5");
//! assert!("resnet:branch=0".parse::<Arch>().is_err());
//! # Ok::<(), gradscope_spec::SpecError>(())
//! ```

mod activation;
mod arch;
mod bn_mode;
mod conv;
mod data_source;
mod depth_nets;
mod error;
mod feature_norm;
mod grammar;
mod init;
mod layout;
mod model_arch;
mod net_params;
mod optimizer;
mod options;
mod parse;
mod presets;
mod schedule;
mod seed;
mod train;
mod transformer;

pub use activation::{Activation, GELU_C, SELU_ALPHA, SELU_LAMBDA};
pub use arch::Arch;
pub use bn_mode::{BN_EPS, BN_MOMENTUM, BnMode};
pub use conv::{ConvArch, ConvBlock, ConvNetParams, ConvNetSpec, Shortcut};
pub use data_source::DataSource;
pub use depth_nets::DepthNets;
pub use error::{Result, SpecError};
pub use feature_norm::{FeatureNormKind, NORM_EPS};
pub use grammar::grammar_help;
pub use init::{BiasInit, DrawCache, WeightInit, tensor_rng};
pub use layout::Step;
pub use model_arch::ModelArch;
pub use net_params::{MAX_DEPTH, MAX_PARAMETERS, MAX_WIDTH, NetParams, NetSpec};
pub use optimizer::OptimizerParams;
pub use options::{BranchInit, GATE_BIAS, Norm, Order, Precision, Skip};
pub use schedule::{Decay, Schedule};
pub use seed::derive_seed;
pub use train::{TrainConfig, TrainParams};
pub use transformer::{LnPlace, TransformerArch, TransformerParams, TransformerSpec};
