//! `gradscope bench`: every workload timed in a child process of its own (at
//! each thread count), then the PyTorch peer on the same workload, side by side.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use gradscope_bench::{REPRODUCE, Timing, gemm_peak, time_workload, workloads};

use crate::args::BenchArgs;

pub fn bench_command(quiet: &bool, a: BenchArgs) -> Result<()> {
    if a.list {
        for w in workloads() {
            println!("{:<16} {}", w.name, w.about);
        }
        return Ok(());
    }
    let threads_here = || {
        std::env::var("MATMUL_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    };
    if let Some(w) = &a.worker {
        println!(
            "{}",
            serde_json::to_string(&time_workload(w, threads_here(), a.runs)?)?
        );
        return Ok(());
    }
    if a.gemm_worker {
        println!("{}", gemm_peak(a.runs)?);
        return Ok(());
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if a.at_threads.contains(&0) {
        bail!("--at-threads: thread counts must be at least 1");
    }
    let names: Vec<String> = match a.workloads {
        Some(w) => w,
        None => workloads().iter().map(|w| w.name.to_string()).collect(),
    };
    let known: Vec<&str> = workloads().iter().map(|w| w.name).collect::<Vec<_>>();
    if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
        bail!("unknown workload `{bad}` (known: {})", known.join(", "));
    }
    let python = match a.peer.as_deref() {
        Some("off") => None,
        Some(p) => Some(p.to_string()),
        None => Some("python3".to_string()).filter(|p| {
            Command::new(p)
                .args(["-c", "import torch"])
                .output()
                .is_ok_and(|o| o.status.success())
        }),
    };
    if python.is_some() && !a.peer_script.exists() {
        bail!(
            "peer script {} not found (run from the repository root, or pass --peer-script)",
            a.peer_script.display()
        );
    }
    let exe = std::env::current_exe().context("finding the gradscope binary")?;
    let clock = gradscope_studies::provenance::RunClock::start();
    let mut results = serde_json::Map::new();
    for &t in &a.at_threads {
        let peak: f64 = child(&exe, t, &["bench", "--gemm-worker", "--runs", "10"])?
            .trim()
            .parse()
            .context("GEMM rate")?;
        if !quiet {
            eprintln!("{t} thread(s): dense f32 GEMM peak {peak:.1} GFLOP/s");
        }
        println!("\n{t} thread(s); GEMM peak {peak:.1} GFLOP/s (2048³, f32)");
        println!(
            "{:<16} {:>22} {:>22} {:>10} {:>16} {:>13}",
            "workload",
            "gradscope median (min–max)",
            "PyTorch median (min–max)",
            "ratio",
            "GFLOP/s (% peak)",
            "peak RSS (MiB)"
        );
        let mut rows = Vec::new();
        let all = workloads();
        for name in &names {
            let w = all.iter().find(|w| w.name == name).expect("checked above");
            let ours: Timing = if name == REPRODUCE {
                time_reproduce(&exe, name, t, a.runs.min(3))?
            } else {
                let runs = a.runs.to_string();
                serde_json::from_str(&child(
                    &exe,
                    t,
                    &["bench", "--worker", name, "--runs", &runs],
                )?)
                .with_context(|| format!("reading the timing of {name}"))?
            };
            let rate = ours.flops.map(|f| f / ours.median_s / 1e9);
            let peers: Vec<Option<Timing>> = match &python {
                // Slow peers (minutes per run) get at most three runs.
                Some(py) if !w.peers.is_empty() => w
                    .peers
                    .iter()
                    .map(|p| {
                        let runs = if p.ends_with("per-depth") || *p == REPRODUCE {
                            a.runs.min(3)
                        } else {
                            a.runs
                        };
                        peer_run(py, &a.peer_script, p, t, runs).map(Some)
                    })
                    .collect::<Result<_>>()?,
                _ => vec![None],
            };
            for (i, peer) in peers.iter().enumerate() {
                let first = i == 0;
                println!(
                    "{:<16} {:>22} {:>22} {:>10} {:>16} {:>13}",
                    if first {
                        name.clone()
                    } else {
                        format!("  vs {}", w.peers[i])
                    },
                    if first { span(&ours) } else { String::new() },
                    peer.as_ref().map_or("—".into(), span),
                    peer.as_ref().map_or("—".into(), |p| format!(
                        "{:.2}×",
                        ours.median_s / p.median_s
                    )),
                    match (first, rate) {
                        (true, Some(r)) => format!("{r:.1} ({:.0} %)", 100.0 * r / peak),
                        (true, None) => "—".into(),
                        _ => String::new(),
                    },
                    format!(
                        "{} / {}",
                        if first {
                            mib(ours.peak_rss_mib)
                        } else {
                            String::new()
                        },
                        peer.as_ref().map_or("—".into(), |p| mib(p.peak_rss_mib))
                    ),
                );
            }
            rows.push(serde_json::json!({ "gradscope": ours, "pytorch": peers, "peer_workloads": w.peers, "gflops": rate }));
        }
        results.insert(
            format!("threads={t}"),
            serde_json::json!({ "gemm_peak_gflops": peak, "workloads": rows }),
        );
    }
    println!("\nratio = gradscope time / PyTorch time (below 1: gradscope is faster).");
    if let Some(path) = a.json {
        // Which code was timed, and when: the commit and the start time.
        let command = std::env::args().collect::<Vec<_>>().join(" ");
        results.insert(
            "provenance".into(),
            serde_json::to_value(clock.provenance(
                a.at_threads.iter().copied().max().unwrap_or(1),
                Some(command),
            ))?,
        );
        gradscope_nets::fs::write_atomic(&path, serde_json::to_string_pretty(&results)?.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `gradscope reproduce` into a temporary folder, timed as a whole process.
fn time_reproduce(exe: &Path, workload: &str, threads: usize, runs: usize) -> Result<Timing> {
    let tmp =
        std::env::temp_dir().join(format!("gradscope-bench-reproduce-{}", std::process::id()));
    let (data, reports) = (tmp.join("data"), tmp.join("reports"));
    let args = [
        "--threads",
        &threads.to_string(),
        "reproduce",
        "-q",
        "--out",
        data.to_str().unwrap_or("data"),
        "--reports",
        reports.to_str().unwrap_or("reports"),
    ]
    .map(String::from);
    let log = tmp.with_extension("stderr");
    let (mut times, mut peak) = (Vec::new(), f64::NAN);
    for _ in 0..runs.max(1) {
        let _ = std::fs::remove_dir_all(&tmp);
        let t = std::time::Instant::now();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let rss = child_peak_rss(exe, 1, &refs, &log)?;
        times.push(t.elapsed().as_secs_f64());
        peak = peak.max(rss);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_file(&log);
    Ok(Timing::of_runs(workload, threads, times, peak, None))
}

/// A peak RSS in whole MiB, or a dash when it was not measured.
fn mib(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "—".into()
    }
}

fn span(t: &Timing) -> String {
    let f = |s: f64| {
        if s < 1.0 {
            format!("{:.1} ms", s * 1e3)
        } else {
            format!("{s:.2} s")
        }
    };
    format!("{} ({}–{})", f(t.median_s), f(t.min_s), f(t.max_s))
}

/// `exe args` with every thread pool of a gradscope process at `threads`.
fn threaded(exe: &Path, threads: usize, args: &[&str]) -> Command {
    let t = threads.to_string();
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("RAYON_NUM_THREADS", &t)
        .env("CANDLE_NUM_THREADS", &t)
        .env("MATMUL_NUM_THREADS", &t);
    cmd
}

/// Run `gradscope <args>` with every thread pool at `threads`; its stdout.
fn child(exe: &Path, threads: usize, args: &[&str]) -> Result<String> {
    let out = threaded(exe, threads, args)
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `exe args` to completion (stderr into `log`, read back on failure)
/// and returns its peak resident set size in MiB: the child's own
/// `ru_maxrss` from `wait4`, so the figure is of that process alone.
#[cfg(target_os = "linux")]
fn child_peak_rss(exe: &Path, threads: usize, args: &[&str], log: &Path) -> Result<f64> {
    let err = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = threaded(exe, threads, args)
        .stdout(std::process::Stdio::null())
        .stderr(err)
        .spawn()
        .with_context(|| format!("running {}", exe.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not waited for by anyone else; status
        // and usage point to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            bail!("waiting for {}: {e}", exe.display());
        }
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!(
            "{}: {}",
            args.join(" "),
            std::fs::read_to_string(log).unwrap_or_default().trim()
        );
    }
    // ru_maxrss is in KiB on Linux.
    Ok(usage.ru_maxrss as f64 / 1024.0)
}

/// Elsewhere: runs the child and reports no peak RSS.
#[cfg(not(target_os = "linux"))]
fn child_peak_rss(exe: &Path, threads: usize, args: &[&str], _log: &Path) -> Result<f64> {
    child(exe, threads, args).map(|_| f64::NAN)
}

fn peer_run(
    python: &str,
    script: &Path,
    workload: &str,
    threads: usize,
    runs: usize,
) -> Result<Timing> {
    let t = threads.to_string();
    let out = Command::new(python)
        .arg(script)
        .args([
            "--workload",
            workload,
            "--threads",
            &t,
            "--runs",
            &runs.to_string(),
        ])
        .env("OMP_NUM_THREADS", &t)
        .env("MKL_NUM_THREADS", &t)
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "peer {workload}: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("reading the peer's timing of {workload}"))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::child_peak_rss;

    const CHILD: &str = "bench::tests::holds_64_mib_when_run_alone";

    /// Run by itself (its name given as the filter), touches 64 MiB: the
    /// child of the test below.
    #[test]
    fn holds_64_mib_when_run_alone() {
        if std::env::args().any(|a| a == CHILD) {
            let v = vec![1u8; 64 << 20];
            assert_eq!(std::hint::black_box(&v)[v.len() - 1], 1);
        }
    }

    #[test]
    fn peak_rss_is_the_childs_own_and_a_failure_says_why() {
        let exe = std::env::current_exe().unwrap();
        let log = std::env::temp_dir().join(format!("gradscope-rss-{}.log", std::process::id()));
        let held = child_peak_rss(&exe, 1, &[CHILD, "--exact"], &log).unwrap();
        // 64 MiB touched, plus the test binary itself (a few MiB).
        assert!((64.0..160.0).contains(&held), "child peak {held} MiB");
        let idle = child_peak_rss(&exe, 1, &["no_test_has_this_name"], &log).unwrap();
        assert!(idle < held - 48.0, "idle child {idle} MiB vs {held}");
        let err = child_peak_rss(&exe, 1, &["--no-such-flag"], &log).unwrap_err();
        assert!(err.to_string().contains("no-such-flag"), "{err}");
        std::fs::remove_file(&log).unwrap();
    }
}
