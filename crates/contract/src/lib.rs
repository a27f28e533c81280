#![warn(missing_docs)]
//! The data contract between the studies and everything that reads their
//! results: what `notebooks-data/<study>/` holds and how it is written and
//! read back, without candle or any compute.
//!
//! Per study, a module with the study's parameters (unchecked, with their
//! defaults and `quick()` sizes; validating them into a runnable
//! configuration is the studies crate's), the `summary.json` schema and the
//! rows of its CSV tables, the results type and its `write(dir)` (the file
//! names, every file written atomically, `summary.json` last), and a reader
//! that checks what it reads: arrays of the shapes the summary implies, a
//! row for every configured cell. A bad or inconsistent folder is a
//! [`ContractError`], never a panic. Shared: [`Provenance`], the training
//! [`History`], and the file helpers in [`io`].
//!
//! Each parameters struct also derives `clap::Args` (see [`args`]): its
//! doc comments are the command line's help, its `Default` the shown defaults.
//!
//! A folder changes as one [`transaction`] under its [`lock`]: its results
//! are staged aside and committed in one rename, listed with checksums in a
//! manifest that readers check ([`transaction::verify`]).
//!
//! ```no_run
//! use gradscope_contract::shattered::ShatteredData;
//!
//! let d = ShatteredData::read("notebooks-data/shattered".as_ref())?;
//! let r1 = &d.summary.results[0].adjacent_correlation;
//! println!("{}: r₁ = {:.3} ± {:.3}", d.summary.results[0].arch, r1.mean, r1.std);
//! # Ok::<(), gradscope_contract::ContractError>(())
//! ```

pub mod args;
pub mod correlation;
pub mod curvature;
pub mod ensemble;
mod error;
pub mod fault;
mod history;
mod image_cells;
pub mod io;
pub mod landscape;
pub mod lock;
pub mod norms;
mod provenance;
pub mod shattered;
pub mod skips;
pub mod temp;
pub mod tensorboard;
pub mod train_stats;
pub mod trainability;
pub mod training;
pub mod transaction;
pub mod transformers;

pub use error::{ContractError, Result};
pub use history::{EpochRecord, GradLog, History};
pub use provenance::Provenance;
pub use train_stats::{StepStats, TrainStats};
