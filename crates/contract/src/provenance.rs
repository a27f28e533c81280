//! Where a result came from, recorded in every summary.

use serde::{Deserialize, Serialize};

/// Version, commit, start time, run time, threads and command of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// gradscope's version.
    pub version: String,
    /// `git describe`-style commit of the working tree, when run inside a git checkout.
    pub git_commit: Option<String>,
    /// Start time, UTC, RFC 3339.
    pub started: String,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Threads the cells ran on.
    pub threads: usize,
    /// The command line, when run from the binary.
    pub command: Option<String>,
    /// Nets the run computed on candle's autograd instead of the engine's
    /// kernels, with why (empty, and left out, when there were none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub engine_fallbacks: Vec<String>,
}
