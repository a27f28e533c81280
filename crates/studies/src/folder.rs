//! A study's output folder, held for the length of a run: locked, cleaned
//! of what interrupted runs left, and changed as one transaction.
//!
//! A run that writes results holds `<out>/<study>` exclusively; a shard,
//! which writes only its configuration's cells, holds it shared, so shards
//! run side by side while a run of another configuration is refused with one
//! line naming the holder.

use std::path::{Path, PathBuf};

use gradscope_contract::io::remove_dead_temporaries;
use gradscope_contract::lock::{FolderLock, LockKind};
use gradscope_contract::transaction::{Transaction, recover};

use crate::Result;
use crate::study::StudyResults;

/// The suffixes of a study folder's results (for folders written before manifests).
const RESULT_SUFFIXES: &[&str] = &["json", "csv", "npy"];

/// A locked study folder.
#[derive(Debug)]
pub struct StudyFolder {
    lock: FolderLock,
}

impl StudyFolder {
    /// Lock `dir` (created if missing): exclusively to write its results,
    /// shared to store cells only. With the exclusive lock, an interrupted
    /// commit is finished and staging folders are removed; either way,
    /// temporary files of dead processes go. `log` hears what was cleaned.
    pub fn open(dir: &Path, kind: LockKind, command: &str, log: &dyn Fn(&str)) -> Result<Self> {
        let lock = FolderLock::acquire(dir, kind, command)?;
        if recover(&lock)? {
            log(&format!(
                "{}: finished or removed what an interrupted run left",
                dir.display()
            ));
        }
        let mut removed = 0;
        for sub in subfolders(&dir.join("cells")) {
            removed += remove_dead_temporaries(&sub).unwrap_or(0);
        }
        if removed > 0 {
            log(&format!(
                "{}: removed {removed} temporary file(s) of interrupted runs",
                dir.display()
            ));
        }
        Ok(StudyFolder { lock })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        self.lock.dir()
    }

    /// Replace the folder's results with `results`, in one atomic step: the
    /// folder holds the old results until the new ones are complete.
    pub fn publish<R: StudyResults + ?Sized>(&self, results: &R) -> Result<()> {
        let tx = Transaction::begin(&self.lock, RESULT_SUFFIXES)?;
        results.write(tx.path())?;
        Ok(tx.commit()?)
    }
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}
