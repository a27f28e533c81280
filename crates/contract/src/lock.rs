//! One writer per output folder: an advisory lock (`flock`) on `<dir>/.lock`.
//!
//! A run that writes a study folder holds it exclusively from its first cell
//! to its last file; shards of one configuration, which write only their own
//! cells, and readers share it. A second process that cannot have the lock
//! stops at once with one line naming the holder (its pid and command, which
//! the holder writes into the lock file). The kernel releases the lock when
//! the holder exits, however it exits, so a lock is never stale.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{ContractError, Result};

/// The lock file inside a locked folder.
pub const LOCK_FILE: &str = ".lock";

/// Who may hold the lock beside us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Nobody else: a run that writes the folder's results.
    Exclusive,
    /// Other shared holders: shards writing their own cells, readers.
    Shared,
}

/// A held lock on a folder; dropping it releases the lock.
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    dir: PathBuf,
    kind: LockKind,
}

impl FolderLock {
    /// Lock `dir` (created if missing) without waiting; `command` is recorded
    /// as the holder. A folder locked by another process is a
    /// [`ContractError::Busy`] naming that process.
    pub fn acquire(dir: &Path, kind: LockKind, command: &str) -> Result<FolderLock> {
        crate::io::create_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&path)
            .map_err(|e| ContractError::io(&path, e))?;
        let op = match kind {
            LockKind::Exclusive => libc::LOCK_EX,
            LockKind::Shared => libc::LOCK_SH,
        };
        if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(ContractError::io(&path, e));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(ContractError::Busy {
                path: dir.to_path_buf(),
                holder: describe_holder(&holder),
            });
        }
        // Name ourselves for whoever finds the folder locked (best effort).
        let me = format!("pid {} ({})\n", std::process::id(), command.trim());
        let _ = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(me.as_bytes()));
        Ok(FolderLock {
            file,
            dir: dir.to_path_buf(),
            kind,
        })
    }

    /// Lock `dir` to read it: exclusively when no one else holds it (so an
    /// interrupted commit can be finished), else shared beside other readers.
    /// None for a folder this process may not write (read-only data made
    /// elsewhere): it is read unlocked, checked against its manifest.
    pub fn for_reading(dir: &Path, command: &str) -> Result<Option<FolderLock>> {
        let r = match FolderLock::acquire(dir, LockKind::Exclusive, command) {
            Err(ContractError::Busy { .. }) => FolderLock::acquire(dir, LockKind::Shared, command),
            other => other,
        };
        match r {
            Err(ContractError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied
                    || source.kind() == std::io::ErrorKind::ReadOnlyFilesystem =>
            {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How the lock is held.
    pub fn kind(&self) -> LockKind {
        self.kind
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

fn describe_holder(text: &str) -> String {
    match text.lines().next().map(str::trim) {
        Some(line) if !line.is_empty() => line.to_string(),
        _ => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("shattered");
        let held =
            FolderLock::acquire(&d, LockKind::Exclusive, "gradscope shattered --quick").unwrap();
        // flock locks belong to the open file, so a second open conflicts even here.
        let e = FolderLock::acquire(&d, LockKind::Exclusive, "other").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is in use by pid {} (gradscope shattered --quick); wait for it to finish or stop it",
                d.display(),
                std::process::id()
            )
        );
        assert!(FolderLock::acquire(&d, LockKind::Shared, "reader").is_err());
        drop(held);
        let a = FolderLock::acquire(&d, LockKind::Shared, "shard 1/2").unwrap();
        let b = FolderLock::acquire(&d, LockKind::Shared, "shard 2/2").unwrap();
        assert!(FolderLock::acquire(&d, LockKind::Exclusive, "run").is_err());
        let r = FolderLock::for_reading(&d, "report").unwrap().unwrap();
        assert_eq!(r.kind(), LockKind::Shared);
        drop((a, b, r));
        let r = FolderLock::for_reading(&d, "report").unwrap().unwrap();
        assert_eq!(r.kind(), LockKind::Exclusive);
    }
}
