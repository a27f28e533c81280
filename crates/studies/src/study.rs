//! The shape every study has: a validated configuration that lists its cells,
//! runs one cell at a time, and summarises the cells' outputs.
//!
//! A cell is the unit of parallelism (and, for long sweeps, of resumption and
//! sharding): its output depends only on the configuration and the cell, and
//! is serialisable, so it can be stored as it finishes and summarised later.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::provenance::{Provenance, RunClock};
use crate::runner::{RunOptions, run_cells};

/// A validated study configuration.
pub trait Study: Sync {
    /// Folder name under the data and report roots.
    const NAME: &'static str;
    /// What identifies a cell (e.g. an architecture and a seed index).
    type Cell: Clone + Send + Sync;
    /// What one cell produces.
    type CellOutput: Serialize + DeserializeOwned + Send;
    /// The study's results: summary and arrays, ready to write.
    type Results: StudyResults;

    /// Every cell, in the canonical order the summary uses.
    fn cells(&self) -> Vec<Self::Cell>;
    /// A stable, readable key naming a cell (`arch=resnet-bn,seed=3`).
    fn cell_key(&self, cell: &Self::Cell) -> String;
    /// Run one cell (single-threaded; cells run in parallel).
    fn run_cell(&self, cell: &Self::Cell) -> Result<Self::CellOutput>;
    /// Summarise the outputs of all cells, in the order of [`cells`](Self::cells).
    fn summarise(
        &self,
        outputs: Vec<Self::CellOutput>,
        provenance: Provenance,
    ) -> Result<Self::Results>;
    /// The configuration as JSON (provenance, and the identity of cached cells).
    fn config_json(&self) -> serde_json::Value;
    /// Work before the first cell (e.g. creating a folder the cells write into).
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
}

/// Results that can write themselves into a study folder.
pub trait StudyResults {
    /// Write every file of the study folder `dir` (created if missing), each
    /// atomically, `summary.json` last.
    fn write(&self, dir: &Path) -> Result<()>;
}

/// Run every cell of `study` in parallel and summarise.
pub fn run_study<S: Study>(study: &S, opts: &RunOptions) -> Result<S::Results> {
    let clock = RunClock::start();
    study.prepare()?;
    let cells = study.cells();
    let keys: Vec<String> = cells.iter().map(|c| study.cell_key(c)).collect();
    let outputs = run_cells(&cells, &keys, opts, |c| study.run_cell(c))?;
    study.summarise(
        outputs,
        clock.provenance(opts.threads, opts.command.clone()),
    )
}
