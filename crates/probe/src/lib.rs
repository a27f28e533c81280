#![warn(missing_docs)]
//! Gradient capture for gradscope nets: input gradients df/dx, per-layer
//! ∂L/∂h (through zero "probe" `Var`s added to each hidden state, since candle
//! keeps gradients only for `Var`s), per-parameter gradients, and the layers
//! where NaN or inf first appear.

mod capture;
pub mod dense;
mod error;
mod grid;
mod team;

pub use capture::{
    Capture, CaptureOpts, Fault, LayerStat, ParamStat, Pass, capture, capture_depths, capture_fast,
    frobenius, hidden_name, to_array2,
};
pub use error::{ProbeError, Result};
pub use grid::scalar_grid;
