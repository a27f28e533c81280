#![warn(missing_docs)]
//! The engine: the numbers gradscope computes on a net, and the one place
//! that decides how.
//!
//! Every op (linear, weight-normalised linear, batch norm, layer/group/RMS
//! norm, activations, CReLU, branch gains, gates) is one file of `ops`
//! with its forward pass, vector–Jacobian product, Jacobian–vector product,
//! parameter gradients and per-example Gram contribution, written on the
//! kernels of `kernels` (GEMM calls, row loops, lane reductions) and the one
//! thread pool of [`pool`]. Chains of ops, residual blocks and whole MLPs are
//! assembled from them.
//!
//! Every op also runs on dual numbers ([`Dual`]): [`Curvature`] loads a net
//! into them for exact Hessian-vector products of the training loss.
//!
//! [`Engine`] is the interface the studies are written against;
//! [`for_net`] (or [`run`], which also picks the float type) is the only
//! place that picks the engine's kernels or candle's autograd for a net.
//! candle stays as the oracle every op is tested against, and as the path
//! for layers the engine does not cover (it says why: [`fallbacks`]).
//!
//! ```
//! use gradscope_engine::{Engine, Options, Want, for_net};
//! use gradscope_nets::{Arch, BnMode, Mlp, Net, NetParams};
//!
//! let spec = NetParams { arch: Arch::RESNET_BN, depth: 4, width: 16, ..Default::default() }.check()?;
//! let net = Net::Mlp(Mlp::new(&spec)?);
//! let engine = for_net::<f32>(&net, Options::once(BnMode::PerSample))?;
//! let x = ndarray::Array2::from_shape_fn((8, 1), |(i, _)| i as f32 / 4.0 - 1.0);
//! let fwd = engine.forward(x.view(), false)?;
//! let grads = engine.backward(&fwd, 4, None, Want::default())?;
//! assert_eq!(grads.input.dim(), (8, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod block;
mod candle;
mod chain;
mod dense;
mod dual;
mod engine;
mod error;
mod hvp;
mod kernels;
mod memo;
mod ops;
pub mod pool;
mod real;
mod transformer;

pub use dual::Dual;
pub use engine::{
    Engine, Forward, Grads, Kernels, Options, ParamUpdate, Request, Task, fallbacks, for_net, run,
};
pub use error::{EngineError, Result};
pub use hvp::Curvature;
pub use kernels::{frobenius, slice_norm, slice_squares, to_f64};
pub use ops::Want;
pub use ops::attention::{AttentionGrads, AttentionOp, AttentionSaved};
pub use pool::{TeamStats, product_threads, set_product_threads, team_stats};
pub use real::Real;
