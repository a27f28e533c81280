//! The shape every study has: a validated configuration that lists its cells,
//! runs one cell at a time, and summarises the cells' outputs.
//!
//! A cell is the unit of parallelism (and, for long sweeps, of resumption and
//! sharding): its output depends only on the configuration and the cell, and
//! is serialisable, so it can be stored as it finishes and summarised later.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cells::{Stored, config_dir, load, prepare_config_dir, store};
use crate::provenance::{Provenance, RunClock};
use crate::runner::{RunOptions, run_indexed};
use crate::{Result, StudyError};

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
    /// Run one cell that may end early once `stop` is set (a training cell
    /// stops after the epoch in flight, its checkpoint written, with
    /// [`StudyError::Interrupted`]); the default runs it whole.
    fn run_cell_stoppable(
        &self,
        cell: &Self::Cell,
        stop: Option<&std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<Self::CellOutput> {
        let _ = stop;
        self.run_cell(cell)
    }
    /// Summarise the outputs of all cells, in the order of [`cells`](Self::cells).
    fn summarise(
        &self,
        outputs: Vec<Self::CellOutput>,
        provenance: Provenance,
    ) -> Result<Self::Results>;
    /// The configuration as JSON (provenance).
    fn config_json(&self) -> serde_json::Value;
    /// What a cell's output depends on besides its key: the identity of
    /// stored cells. By default the whole configuration; a study leaves out
    /// what does not change any cell (output paths, memory limits).
    fn cell_identity(&self) -> serde_json::Value {
        self.config_json()
    }
    /// The numerical faults of a cell's output, one line each (where NaN or
    /// inf first appeared); empty when every value is finite.
    fn cell_faults(&self, _cell: &Self::Cell, _output: &Self::CellOutput) -> Vec<String> {
        Vec::new()
    }
    /// Rough peak memory, in GiB, of a run on `threads` threads (shown before
    /// the run); None when the study does not estimate it.
    fn memory_estimate_gib(&self, _threads: usize) -> Option<f64> {
        None
    }
    /// Follow training cells as they run (live files, an observer);
    /// studies without training cells ignore it.
    fn follow(&mut self, _follow: crate::live::Follow) {}
    /// Optimiser steps of one cell, for a bar that moves with steps; None
    /// when the study's cells do not train.
    fn cell_steps(&self) -> Option<usize> {
        None
    }
    /// Work before the first cell (e.g. creating a folder the cells write into).
    fn prepare(&self) -> Result<()> {
        Ok(())
    }
    /// Files a cell writes besides its output (e.g. saved weights), written
    /// again when the cell's output is reused from storage, so a rerun
    /// leaves the same files as a fresh run.
    fn rewrite_cell_files(&self, _cell: &Self::Cell) -> Result<()> {
        Ok(())
    }
}

/// Bytes in a GiB, the unit of the memory estimates.
pub(crate) const GIB: f64 = (1u64 << 30) as f64;

/// Results that can write themselves into a study folder.
pub trait StudyResults {
    /// Write every file of the study folder `dir` (created if missing), each
    /// atomically, `summary.json` last.
    fn write(&self, dir: &Path) -> Result<()>;
}

/// Run every cell of `study` in parallel and summarise. With a cell cache
/// in `opts`, stored cells are reused (unless `resume` is off) and every
/// finished cell is stored at once, so an interrupted run loses at most the
/// cells in flight.
pub fn run_study<S: Study>(study: &S, opts: &RunOptions) -> Result<S::Results> {
    if let Some(shard) = opts.shard {
        return Err(StudyError::config(
            "shard",
            format!(
                "shard {}/{} writes cells only; use run_shard, then merge",
                shard.index, shard.count
            ),
        ));
    }
    let clock = RunClock::start();
    let outputs = collect(study, opts, |_| true)?;
    let outputs = outputs
        .into_iter()
        .map(|o| o.expect("every cell collected"))
        .collect();
    for what in clock.fallbacks() {
        opts.log(&format!("{}: ran on candle's autograd: {what}", S::NAME));
    }
    study.summarise(
        outputs,
        clock.provenance(opts.threads, opts.command.clone()),
    )
}

/// What a shard run did.
#[derive(Clone, Debug)]
pub struct ShardReport {
    /// Cells of this shard.
    pub cells: usize,
    /// Of those, found already stored.
    pub reused: usize,
    /// Cells of the whole study.
    pub total: usize,
}

/// Run the cells of `opts.shard` and store them (needs `opts.cache`); the
/// summary comes from [`merge_study`] once every shard is done.
pub fn run_shard<S: Study>(study: &S, opts: &RunOptions) -> Result<ShardReport> {
    let shard = opts
        .shard
        .ok_or_else(|| StudyError::config("shard", "no shard given"))?;
    if opts.cache.is_none() {
        return Err(StudyError::config(
            "shard",
            "a shard stores its cells: give a cell cache",
        ));
    }
    let total = study.cells().len();
    let mut reused = 0;
    let found = collect_counting(study, opts, |p| shard.contains(p), &mut reused)?;
    Ok(ShardReport {
        cells: found.iter().filter(|o| o.is_some()).count(),
        reused,
        total,
    })
}

/// Summarise a study whose cells are all stored (by shards, or an
/// interrupted run): nothing is computed. Missing cells are an error naming
/// how many are missing.
pub fn merge_study<S: Study>(study: &S, opts: &RunOptions) -> Result<S::Results> {
    let clock = RunClock::start();
    let cache = opts
        .cache
        .as_ref()
        .ok_or_else(|| StudyError::config("merge", "no cell folder given"))?;
    let cells = study.cells();
    let config = config_dir(&cache.dir, &study.cell_identity());
    let mut outputs = Vec::with_capacity(cells.len());
    let mut missing = Vec::new();
    for c in &cells {
        let key = study.cell_key(c);
        match load::<S>(&config, &key) {
            Stored::Found(o) => outputs.push(o),
            Stored::Missing => missing.push(key),
            Stored::Bad(why) => {
                opts.log(&format!("{}: stored cell not used: {why}", S::NAME));
                missing.push(key);
            }
        }
    }
    if !missing.is_empty() {
        return Err(StudyError::Data {
            path: config.clone(),
            reason: format!(
                "{} of {} cells of configuration {} are not stored yet (first: {}); run the missing shards first",
                missing.len(),
                cells.len(),
                crate::cells::config_key(&study.cell_identity()),
                missing[0]
            ),
        });
    }
    study.summarise(
        outputs,
        clock.provenance(opts.threads, opts.command.clone()),
    )
}

fn collect<S: Study>(
    study: &S,
    opts: &RunOptions,
    select: impl Fn(usize) -> bool + Sync,
) -> Result<Vec<Option<S::CellOutput>>> {
    let mut reused = 0;
    collect_counting(study, opts, select, &mut reused)
}

/// Outputs of the selected cells (None for the others), stored ones reused.
fn collect_counting<S: Study>(
    study: &S,
    opts: &RunOptions,
    select: impl Fn(usize) -> bool + Sync,
    reused: &mut usize,
) -> Result<Vec<Option<S::CellOutput>>> {
    study.prepare()?;
    let cells = study.cells();
    let keys: Vec<String> = cells.iter().map(|c| study.cell_key(c)).collect();
    let config = opts
        .cache
        .as_ref()
        .map(|cache| config_dir(&cache.dir, &study.cell_identity()));
    // The cell folder appears with the first stored cell, so a run that
    // fails before any cell finishes leaves nothing behind.
    let cache_ready = std::sync::Mutex::new(false);
    let mut outputs: Vec<Option<S::CellOutput>> = (0..cells.len()).map(|_| None).collect();
    let mut todo = Vec::new();
    for (p, key) in keys.iter().enumerate() {
        if !select(p) {
            continue;
        }
        let stored = match (&opts.cache, &config) {
            (Some(cache), Some(config)) if cache.resume => match load::<S>(config, key) {
                Stored::Found(o) => Some(o),
                Stored::Missing => None,
                Stored::Bad(why) => {
                    opts.log(&format!("{}: recomputing cell {key}: {why}", S::NAME));
                    None
                }
            },
            _ => None,
        };
        let stored = match stored {
            Some(o) if opts.fatal_faults => {
                check_faults(study, &cells[p], &o)?;
                Some(o)
            }
            other => other,
        };
        match stored {
            Some(o) => {
                study.rewrite_cell_files(&cells[p])?;
                outputs[p] = Some(o);
                *reused += 1;
            }
            None => todo.push(p),
        }
    }
    if *reused > 0 {
        opts.log(&format!(
            "{}: resumed {} stored cell(s), computing {}",
            S::NAME,
            *reused,
            todo.len()
        ));
    }
    let todo_cells: Vec<(usize, &S::Cell)> = todo.iter().map(|&p| (p, &cells[p])).collect();
    let todo_keys: Vec<String> = todo.iter().map(|&p| keys[p].clone()).collect();
    let computed = run_indexed(&todo_cells, &todo_keys, opts, |&(p, c)| {
        let out = study.run_cell_stoppable(c, opts.cancel.as_ref())?;
        if opts.fatal_faults {
            check_faults(study, c, &out)?;
        }
        if let Some(config) = &config {
            {
                let mut ready = cache_ready.lock().unwrap_or_else(|e| e.into_inner());
                if !*ready {
                    prepare_config_dir(config, &study.config_json())?;
                    let _ = gradscope_contract::io::remove_dead_temporaries(config);
                    *ready = true;
                }
            }
            store::<S>(config, &keys[p], &out)?;
        }
        Ok(out)
    })?;
    for (p, o) in todo.into_iter().zip(computed) {
        outputs[p] = Some(o);
    }
    Ok(outputs)
}

/// With fatal faults on: an error naming the first fault of a cell, if any.
fn check_faults<S: Study>(study: &S, cell: &S::Cell, out: &S::CellOutput) -> Result<()> {
    let faults = study.cell_faults(cell, out);
    match faults.first() {
        None => Ok(()),
        Some(first) if faults.len() == 1 => Err(StudyError::Fault(first.clone())),
        Some(first) => Err(StudyError::Fault(format!(
            "{first} (and {} more in this cell)",
            faults.len() - 1
        ))),
    }
}

pub use crate::cells::{PARAMS_FILE, cell_path};
