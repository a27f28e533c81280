//! Running the cells of a study in parallel.
//!
//! Each cell's result depends only on the cell (its seed is derived from the
//! study seed and the cell's key), so results are identical whatever the number
//! of threads or the order in which cells finish. Cells run on the engine's
//! thread pool, `threads` at a time, each cell single-threaded inside.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::{Result, StudyError};

/// A cell finished: how many of how many, and its key.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// Cells finished so far.
    pub done: usize,
    /// Cells to run.
    pub total: usize,
    /// Key of the cell that just finished.
    pub key: &'a str,
}

/// Called from the worker threads as each cell finishes.
pub type ProgressFn = Arc<dyn Fn(Progress<'_>) + Send + Sync>;

/// How to run the cells.
#[derive(Clone)]
pub struct RunOptions {
    /// Worker threads (≥ 1).
    pub threads: usize,
    /// Called from the worker threads as each cell finishes.
    pub progress: Option<ProgressFn>,
    /// Set to stop taking new cells (e.g. on Ctrl-C); cells in flight finish.
    pub cancel: Option<Arc<AtomicBool>>,
    /// The command line, recorded in the provenance.
    pub command: Option<String>,
    /// Store each cell's output as it finishes, and reuse stored ones.
    pub cache: Option<CellCache>,
    /// Run only this slice of the cells (for several machines; see [`run_shard`](crate::run_shard)).
    pub shard: Option<Shard>,
    /// One-line messages for the user (cells resumed, skipped, recomputed).
    pub log: Option<LogFn>,
    /// Stop at the first cell with a numerical fault (NaN/inf in activations,
    /// gradients or the loss) instead of recording it as data.
    pub fatal_faults: bool,
}

/// Receives one-line messages.
pub type LogFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Where cells are stored, and whether stored ones are reused.
#[derive(Clone, Debug)]
pub struct CellCache {
    /// `<out>/<study>/cells`.
    pub dir: std::path::PathBuf,
    /// Reuse stored cells (`--resume`, the default); false recomputes them (`--force`).
    pub resume: bool,
}

/// Slice `index` (1-based) of `count`: the cells whose position p has p mod count = index − 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which slice, 1-based.
    pub index: usize,
    /// Number of slices.
    pub count: usize,
}

impl Shard {
    /// Slice `index` of `count`, with 1 ≤ index ≤ count.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 || index == 0 || index > count {
            return Err(StudyError::config(
                "shard",
                format!("expected i/n with 1 ≤ i ≤ n, got {index}/{count}"),
            ));
        }
        Ok(Shard { index, count })
    }

    /// Whether the cell at `position` belongs to this slice.
    pub fn contains(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

impl std::str::FromStr for Shard {
    type Err = StudyError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || StudyError::config("shard", format!("expected i/n such as 2/8, got `{s}`"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        Shard::new(
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        )
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: default_threads(),
            progress: None,
            cancel: None,
            command: None,
            cache: None,
            shard: None,
            log: None,
            fatal_faults: false,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// The machine's available parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl RunOptions {
    /// Options with `threads` worker threads and nothing else set.
    pub fn with_threads(threads: usize) -> Self {
        RunOptions {
            threads,
            ..Default::default()
        }
    }

    pub(crate) fn log(&self, msg: &str) {
        if let Some(f) = &self.log {
            f(msg);
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Run `f` on every cell; results come back in cell order. `f` also gets
/// the cell's position, so it can store its result as it finishes.
pub fn run_cells<C, R, F>(cells: &[C], keys: &[String], opts: &RunOptions, f: F) -> Result<Vec<R>>
where
    C: Sync,
    R: Send,
    F: Fn(&C) -> Result<R> + Sync,
{
    let indexed: Vec<(usize, &C)> = cells.iter().enumerate().collect();
    run_indexed(&indexed, keys, opts, |(_, c)| f(c))
}

pub(crate) fn run_indexed<C, R, F>(
    cells: &[C],
    keys: &[String],
    opts: &RunOptions,
    f: F,
) -> Result<Vec<R>>
where
    C: Sync,
    R: Send,
    F: Fn(&C) -> Result<R> + Sync,
{
    let done = AtomicUsize::new(0);
    let total = cells.len();
    let results =
        gradscope_engine::pool::run_cells(opts.threads.max(1), total, &|| opts.cancelled(), &|i| {
            let r = f(&cells[i])?;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if let Some(p) = &opts.progress {
                p(Progress {
                    done: n,
                    total,
                    key: &keys[i],
                });
            }
            Ok(r)
        });
    // The first error in cell order; cells not run mean the run was stopped.
    let mut out = Vec::with_capacity(total);
    for r in results {
        match r {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if out.len() < total {
        return Err(StudyError::Interrupted);
    }
    Ok(out)
}
