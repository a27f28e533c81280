#![warn(missing_docs)]
//! Studies: a configuration comes in, is validated once, runs as independent
//! cells in parallel, and its results are written as JSON, CSV and NPY under
//! `notebooks-data/<study>/`.
//!
//! The compute lives here (configurations, cells, runs, summarising); what a
//! study's folder holds — its parameters, summary schema, writer and reader —
//! is the data contract's (`gradscope_contract`), re-exported from each study
//! module so `studies::shattered::ShatteredParams` and the like keep working.
//! A study's parameters check into a runnable configuration through
//! [`Params::check`] (or the study module's `check`).

pub mod cells;
pub mod correlation;
pub mod curvature;
pub mod data;
pub mod ensemble;
mod error;
pub mod folder;
mod image_nets;
pub mod landscape;
pub mod live;
pub mod norms;
pub mod output;
pub mod provenance;
pub mod registry;
pub mod runner;
pub mod shattered;
pub mod skips;
pub mod study;
pub mod trainability;
pub mod training;
pub mod transformers;
mod validate;

pub use error::{Result, StudyError};
pub use folder::StudyFolder;
pub use gradscope_contract::lock::LockKind;
pub use registry::Params;
pub use runner::{
    CellCache, LogFn, Progress, ProgressFn, RunOptions, Shard, default_threads, run_cells,
};
pub use study::{ShardReport, Study, StudyResults, merge_study, run_shard, run_study};
