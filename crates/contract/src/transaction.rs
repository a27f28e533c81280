//! A folder's results change as one transaction: the new files are built
//! aside and made visible in one step, so the folder always holds either the
//! old complete results or the new ones.
//!
//! 1. **Stage**: the writer writes every file into `<dir>/.tx-<pid>-<random>/`
//!    (a fresh folder with an unpredictable name), then [`MANIFEST`]: each
//!    file's name, size and FNV-1a checksum.
//! 2. **Commit** (the atomic step): the staging folder is renamed to
//!    `<dir>/.tx-commit`. Before it, the old results are untouched; after it,
//!    the new ones are the folder's results.
//! 3. **Roll forward**: each file is renamed into `<dir>`, files of the old
//!    results that the new ones lack are removed, the manifest moves last and
//!    the empty staging folder goes.
//!
//! A crash before step 2 leaves a staging folder that the next writer removes
//! (roll back); a crash in step 3 leaves `.tx-commit`, which the next writer
//! (or reader holding the lock exclusively) finishes. Readers check the
//! folder with [`verify`]: a pending commit, or a file that differs from the
//! manifest, is an error saying the folder is incomplete. Folders written
//! before manifests existed have none and are read as they are.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::io::{read_json, sync_dir, write_json};
use crate::lock::{FolderLock, LockKind};
use crate::temp::{process_alive, random_u64, remove_dead_temporaries, temp_owner};
use crate::{ContractError, Result, fault};

/// The manifest of a folder's results, written last and moved in last.
pub const MANIFEST: &str = "manifest.json";
/// A committed staging folder whose files are still being moved into place.
const COMMITTED: &str = ".tx-commit";
const SCHEMA: &str = "gradscope.manifest/1";

/// Every file of a folder's results, with its size and checksum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `gradscope.manifest/1`.
    pub schema: String,
    /// The files, by name.
    pub files: Vec<ManifestEntry>,
    /// In a folder without a manifest (written before manifests), the
    /// suffixes of files that belong to its results: a commit removes those
    /// it does not replace.
    pub replaces_suffixes: Vec<String>,
}

/// One file of a [`Manifest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// File name inside the folder.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// FNV-1a 64-bit hash of the contents, hex.
    pub fnv1a: String,
}

/// FNV-1a, 64 bits (Fowler, Noll, Vo): `h ← (h ⊕ byte) · 1099511628211`
/// from `h = 14695981039346656037`. A check against accidents (a file of
/// another run, a torn copy), not against forgery.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn entry(path: &Path, name: String) -> Result<ManifestEntry> {
    let bytes = std::fs::read(path).map_err(|e| ContractError::io(path, e))?;
    Ok(ManifestEntry {
        name,
        bytes: bytes.len() as u64,
        fnv1a: format!("{:016x}", fnv1a64(&bytes)),
    })
}

/// New results for a locked folder, staged until [`commit`](Self::commit).
/// Dropped without a commit, the staged files are removed and the folder is
/// as it was.
#[derive(Debug)]
pub struct Transaction<'l> {
    dir: PathBuf,
    staging: PathBuf,
    replaces_suffixes: Vec<String>,
    committed: bool,
    _lock: &'l FolderLock,
}

impl<'l> Transaction<'l> {
    /// Start new results for the folder `lock` holds exclusively; first
    /// finishes or removes what an interrupted writer left. In a folder
    /// without a manifest, files with these suffixes (`"npy"`) are the old
    /// results that a commit replaces.
    pub fn begin(lock: &'l FolderLock, replaces_suffixes: &[&str]) -> Result<Self> {
        let dir = lock.dir().to_path_buf();
        if lock.kind() != LockKind::Exclusive {
            return Err(ContractError::data(
                &dir,
                "writing results needs the folder's exclusive lock",
            ));
        }
        recover(lock)?;
        let staging = dir.join(format!(".tx-{}-{:016x}", std::process::id(), random_u64()));
        std::fs::create_dir(&staging).map_err(|e| ContractError::io(&staging, e))?;
        Ok(Transaction {
            dir,
            staging,
            replaces_suffixes: replaces_suffixes.iter().map(|s| s.to_string()).collect(),
            committed: false,
            _lock: lock,
        })
    }

    /// The staging folder: write the new results here.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Make the staged files the folder's results, in one atomic step.
    pub fn commit(mut self) -> Result<()> {
        let mut files = Vec::new();
        for (name, path) in staged_files(&self.staging, "")? {
            files.push(entry(&path, name)?);
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            schema: SCHEMA.into(),
            files,
            replaces_suffixes: self.replaces_suffixes.clone(),
        };
        write_json(&self.staging.join(MANIFEST), &manifest)?;
        sync_dir(&self.staging);
        let committed = self.dir.join(COMMITTED);
        fault::point(&committed).map_err(|e| ContractError::io(&committed, e))?;
        std::fs::rename(&self.staging, &committed).map_err(|e| ContractError::io(&committed, e))?;
        self.committed = true;
        sync_dir(&self.dir);
        roll_forward(&self.dir)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

/// Finish or undo what an interrupted writer left in the folder `lock`
/// holds exclusively: a committed transaction is rolled forward, staging
/// folders and temporary files of dead processes are removed. (A shared
/// lock changes nothing.) Returns whether anything was left.
pub fn recover(lock: &FolderLock) -> Result<bool> {
    if lock.kind() != LockKind::Exclusive {
        return Ok(false);
    }
    let dir = lock.dir();
    let mut found = false;
    let committed = dir.join(COMMITTED);
    if std::fs::symlink_metadata(&committed).is_ok_and(|m| !m.is_dir()) {
        // Only a transaction makes this name, as a folder: anything else was planted.
        return Err(ContractError::data(
            &committed,
            "not a folder this program made; remove it",
        ));
    }
    if committed.exists() {
        roll_forward(dir)?;
        found = true;
    }
    let entries = std::fs::read_dir(dir).map_err(|e| ContractError::io(dir, e))?;
    for e in entries {
        let e = e.map_err(|e| ContractError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name) else {
            continue;
        };
        if name.starts_with(".tx-") && (pid != std::process::id() || !process_alive(pid)) {
            std::fs::remove_dir_all(e.path()).map_err(|err| ContractError::io(e.path(), err))?;
            found = true;
        }
    }
    found |= remove_dead_temporaries(dir).map_err(|e| ContractError::io(dir, e))? > 0;
    Ok(found)
}

/// Step 3: move the committed files into place, remove the old results'
/// other files, then the manifest, then the staging folder.
/// The files under `dir` (one level of subfolders allowed, as a study
/// folder holding another study's folder), as `sub/name` and path.
fn staged_files(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| ContractError::io(dir, e))? {
        let e = e.map_err(|e| ContractError::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let kind = e
            .file_type()
            .map_err(|err| ContractError::io(e.path(), err))?;
        let rel = format!("{prefix}{name}");
        if name.starts_with('.') || rel == MANIFEST || kind.is_symlink() {
            return Err(ContractError::data(
                e.path(),
                "results are plain files and folders, not links or hidden files",
            ));
        }
        if kind.is_dir() && prefix.is_empty() {
            out.extend(staged_files(&e.path(), &format!("{rel}/"))?);
        } else if kind.is_file() {
            out.push((rel, e.path()));
        } else {
            return Err(ContractError::data(
                e.path(),
                "results nest one folder deep at most",
            ));
        }
    }
    Ok(out)
}

fn roll_forward(dir: &Path) -> Result<()> {
    let committed = dir.join(COMMITTED);
    let new_path = committed.join(MANIFEST);
    if new_path.exists() {
        let new: Manifest = read_json(&new_path)?;
        let old: Option<Manifest> = read_json(&dir.join(MANIFEST)).ok();
        for f in &new.files {
            let from = committed.join(&f.name);
            if from.exists() {
                let to = dir.join(&f.name);
                if let Some(parent) = to.parent().filter(|p| *p != dir) {
                    crate::io::create_dir(parent)?;
                }
                fault::point(&from).map_err(|e| ContractError::io(&from, e))?;
                std::fs::rename(&from, &to).map_err(|e| ContractError::io(&from, e))?;
            }
        }
        let keep = |n: &str| new.files.iter().any(|f| f.name == n);
        let old_names: Vec<String> = match old {
            Some(m) => m.files.into_iter().map(|f| f.name).collect(),
            None => {
                // The top level and the subfolders the new results use.
                let mut subs: Vec<&str> = vec![""];
                for f in &new.files {
                    if let Some((sub, _)) = f.name.split_once('/')
                        && !subs.contains(&sub)
                    {
                        subs.push(sub);
                    }
                }
                let mut names = Vec::new();
                for sub in subs {
                    names.extend(unlisted_results(dir, sub, &new.replaces_suffixes)?);
                }
                names
            }
        };
        for name in old_names.iter().filter(|n| !keep(n)) {
            let p = dir.join(name);
            fault::point(&p).map_err(|e| ContractError::io(&p, e))?;
            crate::io::remove_stale(&p)?;
        }
        fault::point(&new_path).map_err(|e| ContractError::io(&new_path, e))?;
        std::fs::rename(&new_path, dir.join(MANIFEST))
            .map_err(|e| ContractError::io(&new_path, e))?;
    }
    std::fs::remove_dir_all(&committed).map_err(|e| ContractError::io(&committed, e))?;
    sync_dir(dir);
    Ok(())
}

/// Plain, visible files of `dir` with one of `suffixes`: the results of a
/// folder written before manifests.
fn unlisted_results(dir: &Path, sub: &str, suffixes: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let dir = dir.join(sub);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ContractError::io(&dir, e)),
    };
    for e in entries {
        let e = e.map_err(|e| ContractError::io(&dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = Path::new(&name)
            .extension()
            .is_some_and(|x| suffixes.iter().any(|s| x == s.as_str()));
        if ours && !name.starts_with('.') && e.file_type().is_ok_and(|t| t.is_file()) {
            out.push(if sub.is_empty() {
                name
            } else {
                format!("{sub}/{name}")
            });
        }
    }
    Ok(out)
}

/// Check a results folder against its manifest before reading it: an
/// interrupted commit, or a listed file that is missing or differs, is a
/// [`ContractError::Data`] saying the folder is incomplete. A folder without
/// a manifest (written before them) passes; returns its manifest if any.
pub fn verify(dir: &Path) -> Result<Option<Manifest>> {
    if dir.join(COMMITTED).exists() {
        return Err(ContractError::data(
            dir,
            "incomplete: a write was interrupted before it finished; run the study again to complete it",
        ));
    }
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    let manifest: Manifest = read_json(&path)?;
    for f in &manifest.files {
        let p = dir.join(&f.name);
        let found = match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => entry(&p, f.name.clone())?,
            _ => {
                return Err(ContractError::data(
                    &p,
                    format!("incomplete: missing, though {MANIFEST} lists it"),
                ));
            }
        };
        if found != *f {
            return Err(ContractError::data(
                &p,
                format!("incomplete: differs from {MANIFEST} (a file of another run)"),
            ));
        }
    }
    Ok(Some(manifest))
}
