//! Running the cells of a study in parallel.
//!
//! Each cell's result depends only on the cell (its seed is derived from the
//! study seed and the cell's key), so results are identical whatever the number
//! of threads or the order in which cells finish. Cells run on a pool of
//! `threads` workers, each cell single-threaded inside.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::{Result, StudyError};

/// A cell finished: how many of how many, and its key.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            threads: default_threads(),
            progress: None,
            cancel: None,
            command: None,
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
    pub fn with_threads(threads: usize) -> Self {
        RunOptions {
            threads,
            ..Default::default()
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

/// Run `f` on every cell; results come back in cell order.
pub fn run_cells<C, R, F>(cells: &[C], keys: &[String], opts: &RunOptions, f: F) -> Result<Vec<R>>
where
    C: Sync,
    R: Send,
    F: Fn(&C) -> Result<R> + Sync,
{
    let threads = opts.threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| StudyError::config("threads", e.to_string()))?;
    let done = AtomicUsize::new(0);
    let total = cells.len();
    pool.install(|| {
        cells
            .par_iter()
            .zip(keys.par_iter())
            .map(|(cell, key)| {
                if opts.cancelled() {
                    return Err(StudyError::Interrupted);
                }
                let r = f(cell)?;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(p) = &opts.progress {
                    p(Progress {
                        done: n,
                        total,
                        key,
                    });
                }
                Ok(r)
            })
            .collect()
    })
}
