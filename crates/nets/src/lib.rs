#![warn(missing_docs)]
//! Candle models for gradient studies, built from a validated spec.
//!
//! The descriptions (architectures, activations, inits, BN modes, conv specs)
//! are the `gradscope_spec` crate's, re-exported here; this crate builds
//! tensors from them.
//!
//! ```
//! use gradscope_nets::{Arch, BnMode, Mlp, NetParams};
//! use candle_core::{Device, Tensor};
//!
//! let spec = NetParams { arch: Arch::RESNET_BN, depth: 4, width: 16, ..Default::default() }.check()?;
//! let net = Mlp::new(&spec)?;
//! let x = Tensor::from_vec(vec![-1.0f32, 0.0, 1.0], (3, 1), &Device::Cpu)?;
//! let y = net.forward(&x, BnMode::PerSample)?;
//! assert_eq!(y.dims(), &[3, 1]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod activation;
mod batch_norm;
mod block;
mod conv;
mod convnet;
mod dense;
mod error;
mod feature_norm;
pub mod fs;
mod linear;
mod mlp;
mod model;
mod net;
mod precision;
mod residual;
mod sequential;
mod transformer;
mod weight_norm;
mod weights;

pub use activation::ActivationExt;
pub use batch_norm::BatchNorm;
pub use block::Block;
pub use conv::Conv2d;
pub use convnet::{ConvNet, ConvUnit, Downsample};
pub use dense::Dense;
pub use error::{NetError, Result};
pub use feature_norm::FeatureNorm;
pub use linear::Linear;
pub use mlp::{Mlp, Trace};
pub use model::{BlockNet, Model};
pub use net::Net;
pub use precision::PrecisionExt;
pub use residual::{Residual, ResidualShortcut, ShortcutDropout};
pub use sequential::{Layer, Sequential};
pub use transformer::{
    Attention, FeedForward, Join, LN_EPS, LayerNorm, Sublayer, Transformer, TransformerBlock,
    norm_name, softmax_last,
};
pub use weight_norm::WeightNormLinear;
pub use weights::{
    SPEC_METADATA_KEY, WeightsSpec, load_safetensors, read_spec, spec_json, spec_of_bytes,
    to_safetensors,
};

pub use gradscope_spec::{
    Activation, Arch, BN_EPS, BN_MOMENTUM, BiasInit, BnMode, BranchInit, ConvArch, ConvBlock,
    ConvNetParams, ConvNetSpec, DepthNets, DrawCache, FeatureNormKind, GATE_BIAS, GELU_C, LnPlace,
    MAX_DEPTH, MAX_PARAMETERS, MAX_WIDTH, NORM_EPS, NetParams, NetSpec, Norm, Order, Precision,
    SELU_ALPHA, SELU_LAMBDA, Shortcut, Skip, SpecError, Step, TransformerArch, TransformerParams,
    TransformerSpec, WeightInit, derive_seed, tensor_rng,
};

pub use candle_core;
