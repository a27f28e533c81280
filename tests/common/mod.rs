//! Helpers shared by the tests that drive the `gradscope` binary.
// Each test crate uses its own subset.
#![allow(dead_code)]

use std::path::Path;
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
