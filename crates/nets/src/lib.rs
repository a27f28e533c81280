#![warn(missing_docs)]
//! Candle models for gradient studies, built from a validated spec.
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
mod init;
mod linear;
mod mlp;
mod model;
mod net;
mod parse;
mod residual;
mod seed;
mod sequential;
mod spec;
mod weight_norm;
mod weights;

pub use activation::{Activation, SELU_ALPHA, SELU_LAMBDA};
pub use batch_norm::{BN_EPS, BN_MOMENTUM, BatchNorm, BnMode};
pub use block::Block;
pub use conv::Conv2d;
pub use convnet::{ConvArch, ConvBlock, ConvNet, ConvNetParams, ConvNetSpec, Shortcut};
pub use dense::Dense;
pub use error::{NetError, Result};
pub use feature_norm::{FeatureNorm, FeatureNormKind, NORM_EPS};
pub use init::{BiasInit, DrawCache, WeightInit, tensor_rng};
pub use linear::Linear;
pub use mlp::{Mlp, Trace};
pub use model::{BlockNet, Model};
pub use net::Net;
pub use residual::{Residual, ResidualShortcut, ShortcutDropout};
pub use seed::derive_seed;
pub use sequential::{Layer, Sequential};
pub use spec::{
    Arch, BranchInit, GATE_BIAS, MAX_DEPTH, MAX_PARAMETERS, MAX_WIDTH, NetParams, NetSpec, Norm,
    Order, Precision, Skip,
};
pub use weight_norm::WeightNormLinear;
pub use weights::{SPEC_METADATA_KEY, load_safetensors, to_safetensors};

pub use candle_core;
