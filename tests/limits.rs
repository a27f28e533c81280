//! Runs that must end, and end within their memory: a report of gradients
//! near the f64 range (plotters' log-axis ticks never ended on it), a run
//! too large for its memory limit (refused in one line before it
//! allocates), and a study inside an address-space limit set from its own
//! estimate.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::path;

/// Address space beyond the estimate: the binary, its libraries, thread
/// stacks and the allocator's arenas (two, by MALLOC_ARENA_MAX).
const BASE_BYTES: u64 = 768 << 20;

/// `gradscope args` with at most `address_space` bytes of address space,
/// killed and failed after `timeout`.
fn gradscope_within(args: &[&str], address_space: Option<u64>, timeout: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradscope"));
    cmd.args(args)
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(bytes) = address_space {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: setrlimit is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let start = Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "gradscope {} did not finish in {timeout:?}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_report_of_gradients_near_the_f64_range_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rep) = (dir.path().join("data"), dir.path().join("reports"));
    let o = gradscope_within(
        &[
            "shattered",
            "-q",
            "--archs",
            "plain,resnet",
            "--seeds",
            "2",
            "--points",
            "64",
            "--width",
            "16",
            "--weight-init",
            "normal(1e60)",
            "--depths",
            "1,2,3,4,5,6",
            "--out",
            path(&out),
            "--reports",
            path(&rep),
        ],
        None,
        Duration::from_secs(600),
    );
    ok(&o, "shattered at σ_w² = 1e60");
    let o = gradscope_within(
        &["report", "-q", "--out", path(&out), "--reports", path(&rep)],
        None,
        Duration::from_secs(600),
    );
    ok(&o, "report");
    assert!(rep.join("shattered").join("index.html").exists() || rep.join("index.html").exists());
}

/// The shattered study of the plain net, depth 1, width 16, two seeds.
fn shattered_args<'a>(points: &'a str, out: &'a Path) -> Vec<&'a str> {
    vec![
        "shattered",
        "-q",
        "--archs",
        "plain",
        "--depths",
        "1",
        "--seeds",
        "2",
        "--width",
        "16",
        "--threads",
        "1",
        "--no-report",
        "--points",
        points,
        "--out",
        path(out),
    ]
}

#[test]
fn a_run_too_large_is_refused_in_one_line_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    // 65 536 points: 16 GiB of f32 correlations and a 32 GiB f64 matrix;
    // with 2 GiB of address space any attempt would abort.
    let start = Instant::now();
    let o = gradscope_within(
        &shattered_args("65536", &out),
        Some(2 << 30),
        Duration::from_secs(120),
    );
    assert!(!o.status.success());
    assert_eq!(
        o.status.code(),
        Some(1),
        "an error, not an abort: {:?}",
        o.status
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("GiB") && err.contains("memory_limit_gib"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(!out.join("shattered").join("correlation.npy").exists());
}

#[test]
fn a_study_runs_within_its_estimate_and_just_above_its_limit_is_refused() {
    let params = gradscope_studies::shattered::ShatteredParams {
        archs: vec!["plain".parse().unwrap()],
        depths: vec![1],
        seeds: 2,
        width: 16,
        points: 8192,
        ..Default::default()
    };
    let estimate = gradscope_studies::shattered::check(&params)
        .unwrap()
        .memory_estimate_gib(1);
    assert!(estimate > 0.5, "large enough to matter: {estimate} GiB");
    let bytes = (estimate * (1u64 << 30) as f64) as u64;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let o = gradscope_within(
        &shattered_args("8192", &out),
        Some(bytes + BASE_BYTES),
        Duration::from_secs(600),
    );
    ok(&o, "shattered within its estimate");
    assert!(out.join("shattered").join("summary.json").exists());
    // A memory limit just under the estimate: refused before any cell runs.
    let file = dir.path().join("study.toml");
    std::fs::write(
        &file,
        format!(
            "study = \"shattered\"\narchs = [\"plain\"]\ndepths = [1]\nseeds = 2\nwidth = 16\n\
             points = 8192\nmemory_limit_gib = {}\n",
            estimate * 0.98
        ),
    )
    .unwrap();
    let refused_out = dir.path().join("refused");
    let o = gradscope_within(
        &[
            "run",
            "-q",
            path(&file),
            "--out",
            path(&refused_out),
            "--no-report",
        ],
        Some(bytes / 3 + BASE_BYTES),
        Duration::from_secs(60),
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("memory_limit_gib"), "{err}");
    assert!(!refused_out.join("shattered").join("cells").exists());
}
