//! Helpers shared by the tests that drive the `gradscope` binary.
// Each test crate uses its own subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn gradscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every file under `dir` (none when it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flat_map(|e| {
        let p = e.unwrap().path();
        if p.is_dir() { walk(&p) } else { vec![p] }
    })
    .collect()
}

/// Run the binary; it must fail with one line naming `needle` and leave `out` empty.
pub fn refused(args: &[&str], out: &Path, needle: &str) {
    let r = gradscope(args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{args:?} succeeded");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(
        err.starts_with("error") && err.to_lowercase().contains(&needle.to_lowercase()),
        "{args:?}: expected `{needle}` in {err}"
    );
    // Folder locks (`.lock`, empty but for their last holder) are not output.
    let left: Vec<_> = walk(out)
        .into_iter()
        .filter(|p| p.file_name().is_none_or(|n| n != ".lock"))
        .collect();
    assert!(left.is_empty(), "{args:?} left {left:?}");
}
