//! A folder's results change as one transaction: a failure at any write
//! point leaves the old complete results or the new ones, never a mixture.

use std::collections::BTreeMap;
use std::path::Path;

use gradscope_contract::fault::{fail_at_write, writes_on_this_thread};
use gradscope_contract::io::write_atomic;
use gradscope_contract::lock::{FolderLock, LockKind};
use gradscope_contract::transaction::{MANIFEST, Transaction, recover, verify};

/// Every file under `dir` but the lock, manifest and cells: name → bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == MANIFEST || name == "cells" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            for (k, v) in snapshot(&e.path()) {
                out.insert(format!("{name}/{k}"), v);
            }
        } else {
            out.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
    out
}

fn write_results(dir: &Path, files: &[(&str, &str)]) -> gradscope_contract::Result<()> {
    for (name, text) in files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        write_atomic(&p, text.as_bytes())?;
    }
    Ok(())
}

fn publish(dir: &Path, files: &[(&str, &str)]) -> gradscope_contract::Result<()> {
    let lock = FolderLock::acquire(dir, LockKind::Exclusive, "test").unwrap();
    let tx = Transaction::begin(&lock, &["npy", "json", "csv"])?;
    write_results(tx.path(), files)?;
    tx.commit()
}

const OLD: &[(&str, &str)] = &[
    ("grid.npy", "old grid of 256"),
    ("correlation.npy", "old only"),
    ("sub/a.csv", "old a"),
    ("summary.json", "old summary: 256 points"),
];
const NEW: &[(&str, &str)] = &[
    ("grid.npy", "new grid of 128"),
    ("sub/a.csv", "new a"),
    ("summary.json", "new summary: 128 points"),
];

fn expected(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    files
        .iter()
        .map(|(n, t)| (n.to_string(), t.as_bytes().to_vec()))
        .collect()
}

#[test]
fn a_failure_at_every_write_leaves_the_old_or_the_new_results() {
    // How many write points a clean commit has.
    let probe = tempfile::tempdir().unwrap();
    publish(probe.path(), OLD).unwrap();
    fail_at_write(None);
    publish(probe.path(), NEW).unwrap();
    let points = writes_on_this_thread();
    assert!(points >= 8, "{points} write points");
    for legacy in [false, true] {
        for k in 1..=points {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path();
            if legacy {
                // A folder from before manifests: plain files, no manifest.
                write_results(d, OLD).unwrap();
            } else {
                publish(d, OLD).unwrap();
            }
            std::fs::create_dir_all(d.join("cells")).unwrap();
            std::fs::write(d.join("cells/kept"), b"cell").unwrap();
            fail_at_write(Some(k));
            let r = publish(d, NEW);
            fail_at_write(None);
            assert!(r.is_err(), "write point {k} did not fail");
            let now = snapshot(d);
            match verify(d) {
                // Before the commit: the old results, whole.
                Ok(_) => assert_eq!(now, expected(OLD), "legacy {legacy}, fault at {k}"),
                // After it: incomplete until the next writer rolls forward.
                Err(e) => assert!(e.to_string().contains("incomplete"), "{e}"),
            }
            let lock = FolderLock::acquire(d, LockKind::Exclusive, "rerun").unwrap();
            recover(&lock).unwrap();
            drop(lock);
            let after = snapshot(d);
            assert!(
                after == expected(OLD) || after == expected(NEW),
                "legacy {legacy}, fault at {k}: {:?}",
                after.keys().collect::<Vec<_>>()
            );
            verify(d).unwrap();
            assert_eq!(std::fs::read(d.join("cells/kept")).unwrap(), b"cell");
            // A rerun finishes with the new results and nothing left over.
            publish(d, NEW).unwrap();
            assert_eq!(snapshot(d), expected(NEW));
            let hidden: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n != ".lock")
                .collect();
            assert!(hidden.is_empty(), "{hidden:?}");
        }
    }
}

#[test]
fn a_file_of_another_run_is_refused_as_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), NEW).unwrap();
    assert_eq!(verify(dir.path()).unwrap().unwrap().files.len(), 3);
    std::fs::write(dir.path().join("grid.npy"), b"old grid of 256").unwrap();
    let e = verify(dir.path()).unwrap_err().to_string();
    assert!(
        e.ends_with("grid.npy: incomplete: differs from manifest.json (a file of another run)"),
        "{e}"
    );
    std::fs::remove_file(dir.path().join("grid.npy")).unwrap();
    let e = verify(dir.path()).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn a_transaction_dropped_without_commit_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), OLD).unwrap();
    {
        let lock = FolderLock::acquire(dir.path(), LockKind::Exclusive, "t").unwrap();
        let tx = Transaction::begin(&lock, &[]).unwrap();
        write_results(tx.path(), NEW).unwrap();
    }
    assert_eq!(snapshot(dir.path()), expected(OLD));
    // grid, correlation, sub/, summary, the manifest and the lock: no staging left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
}

#[test]
fn a_shared_lock_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let lock = FolderLock::acquire(dir.path(), LockKind::Shared, "shard").unwrap();
    let e = Transaction::begin(&lock, &[]).unwrap_err().to_string();
    assert!(e.contains("exclusive lock"), "{e}");
}
