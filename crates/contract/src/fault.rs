//! Fault injection at every file write, for the crash-consistency tests.
//!
//! Each atomic write, and each step of a transaction's commit, is a *write
//! point*. Two hooks make the n-th write point fail:
//! - `GRADSCOPE_CRASH_AT_WRITE=n` in the environment: the process kills
//!   itself with SIGKILL there (as `kill -9` would: no cleanup runs);
//! - [`fail_at_write`] on the current thread: the write point returns an
//!   I/O error (ENOSPC, as on a full disk), and cleanup runs as it would.
//!
//! Without either, a write point costs one atomic increment.

use std::cell::Cell;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that kills the process at its n-th write point.
pub const CRASH_AT_WRITE: &str = "GRADSCOPE_CRASH_AT_WRITE";

static WRITES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static FAIL_AT: Cell<Option<u64>> = const { Cell::new(None) };
    static THREAD_WRITES: Cell<u64> = const { Cell::new(0) };
}

fn crash_at() -> Option<u64> {
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var(CRASH_AT_WRITE).ok()?.trim().parse().ok())
}

/// A write point: counts it, and fails or kills the process where a hook says so.
pub fn point(path: &Path) -> std::io::Result<()> {
    let n = WRITES.fetch_add(1, Ordering::Relaxed) + 1;
    if crash_at() == Some(n) {
        eprintln!("{CRASH_AT_WRITE}: killed at write {n} ({})", path.display());
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    let k = THREAD_WRITES.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    if FAIL_AT.with(Cell::get) == Some(k) {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}

/// From now on, on this thread, the `n`-th write point fails with ENOSPC
/// (`None` turns the hook off); resets this thread's count.
pub fn fail_at_write(n: Option<u64>) {
    FAIL_AT.with(|c| c.set(n));
    THREAD_WRITES.with(|c| c.set(0));
}

/// Write points passed on this thread since the last [`fail_at_write`].
pub fn writes_on_this_thread() -> u64 {
    THREAD_WRITES.with(Cell::get)
}
