//! Temporary files: unpredictable names, created exclusively and never
//! through a symlink, and removed by a later run when their process died.
//!
//! A name is `.<target>.tmp-<pid>-<16 hex digits>`: the process id says who
//! made it (so a later run can tell a dead process's leftovers from a live
//! one's), the random part makes it impossible to plant a file or symlink at
//! the name in advance.

use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// 64 unpredictable bits: std's per-process random hash keys over a counter
/// and the clock (no extra dependency, not for cryptography).
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish()
}

/// A temporary name for `target` (a file name): `.<target>.tmp-<pid>-<random>`.
pub fn temp_name(target: &str) -> String {
    format!(".{target}.tmp-{}-{:016x}", std::process::id(), random_u64())
}

/// Create `path` for writing, failing if anything (a file, a symlink) is
/// already there: `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0644.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(path)
}

/// The process id in a temporary name made by [`temp_name`] (or a staging
/// folder `.tx-<pid>-<random>`), if it is one.
pub fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let tail = match rest.rfind(".tmp-") {
        Some(i) => &rest[i + 5..],
        None => rest.strip_prefix("tx-")?,
    };
    let (pid, random) = tail.split_once('-')?;
    let hex = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Whether process `pid` is alive (on this machine).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // Signal 0 checks existence only; EPERM means it exists as another user's.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove the temporary files in `dir` (not its subfolders) whose process
/// is gone: what a kill, a full disk or a power cut left behind. Files of
/// live processes (this one included) stay. Returns how many were removed.
pub fn remove_dead_temporaries(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = temp_owner(&name.to_string_lossy()) else {
            continue;
        };
        // Staging folders belong to transactions, which recover them.
        if entry.file_type()?.is_dir() || process_alive(pid) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unpredictable_and_parse_back() {
        let a = temp_name("summary.json");
        let b = temp_name("summary.json");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!(".summary.json.tmp-{}-", std::process::id())));
        assert_eq!(temp_owner(&a), Some(std::process::id()));
        assert_eq!(temp_owner(".tx-42-0123456789abcdef"), Some(42));
        assert_eq!(temp_owner("summary.json"), None);
        assert_eq!(temp_owner(".a.tmp-12-0"), None);
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, b"keep me").unwrap();
        let link = dir.path().join(".x.tmp-1-0000000000000000");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = create_new(&link).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    }

    #[test]
    fn only_dead_processes_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let mine = dir.path().join(temp_name("a.npy"));
        let theirs = dir
            .path()
            .join(format!(".a.npy.tmp-{dead}-0123456789abcdef"));
        let result = dir.path().join("a.npy");
        for p in [&mine, &theirs, &result] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_dead_temporaries(dir.path()).unwrap(), 1);
        assert!(mine.exists() && result.exists() && !theirs.exists());
    }
}
