#![warn(missing_docs)]
//! Gradient capture for gradscope nets, on the engine: input gradients
//! df/dx, per-layer ∂L/∂h, per-parameter gradients, and the layers where NaN
//! or inf first appear; depth sweeps share one forward pass.

mod capture;
mod error;
mod grid;

pub use capture::{
    Capture, CaptureOpts, Fault, LayerStat, ParamStat, Pass, capture, capture_depths, hidden_name,
};
pub use error::{ProbeError, Result};
pub use grid::scalar_grid;
