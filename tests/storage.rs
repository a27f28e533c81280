//! Crash consistency of whole output folders, through the binary: `kill -9`
//! at every write of a study's write phase, a full disk, two runs at once,
//! a bad summary.

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_ok, gradscope, path};

/// Result files of a folder (recursively; not cells, locks, manifests,
/// hidden files), `summary.json` without provenance and HTML/Markdown pages
/// without their provenance block: name → bytes.
fn results(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "cells" || name == "manifest.json" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            for (k, v) in results(&e.path()) {
                out.insert(format!("{name}/{k}"), v);
            }
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        let bytes = if name == "summary.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            v.as_object_mut().unwrap().remove("provenance");
            v.to_string().into_bytes()
        } else if name.ends_with(".html") || name.ends_with(".md") {
            // Pages carry the run's time and command: compare their names only.
            Vec::new()
        } else {
            bytes
        };
        out.insert(name, bytes);
    }
    out
}

/// Hidden leftovers (temporaries, staging folders) anywhere under `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name != ".lock" {
            out.push(e.path().display().to_string());
        } else if e.file_type().unwrap().is_dir() {
            out.extend(leftovers(&e.path()));
        }
    }
    out
}

fn run(args: &[&str], envs: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

// The grid nets only: the image nets' files go through the same writer, and
// each kill point below is two runs of the study.
const OLD: &[&str] = &[
    "shattered",
    "--quick",
    "-q",
    "--depths",
    "1,2,4",
    "--image-archs",
    "none",
];
const NEW: &[&str] = &[
    "shattered",
    "--quick",
    "-q",
    "--depths",
    "1,3",
    "--image-archs",
    "none",
];

fn with_folders<'a>(args: &[&'a str], data: &'a Path, reports: &'a Path) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend(["--out", path(data), "--reports", path(reports)]);
    v
}

#[test]
fn a_kill_at_every_write_leaves_old_or_new_results_and_a_rerun_finishes_them() {
    let tmp = tempfile::tempdir().unwrap();
    // The new configuration, uninterrupted: the reference.
    let (new_data, new_rep) = (tmp.path().join("new"), tmp.path().join("new-rep"));
    assert_ok(&gradscope(&with_folders(NEW, &new_data, &new_rep)));
    // A finished old configuration, whose cells folder also holds the new
    // one's cells, so the runs below are only the write phase.
    let (base, base_rep) = (tmp.path().join("base"), tmp.path().join("base-rep"));
    assert_ok(&gradscope(&with_folders(NEW, &base, &base_rep)));
    assert_ok(&gradscope(&with_folders(OLD, &base, &base_rep)));
    let (old_d, old_r) = (
        results(&base.join("shattered")),
        results(&base_rep.join("shattered")),
    );
    let (new_d, new_r) = (
        results(&new_data.join("shattered")),
        results(&new_rep.join("shattered")),
    );
    assert_ne!(old_d, new_d);
    let mut k = 1;
    let mut crashed = 0;
    loop {
        let case = tmp.path().join(format!("k{k}"));
        let (data, rep) = (case.join("data"), case.join("rep"));
        copy_dir(&base, &data);
        copy_dir(&base_rep, &rep);
        let r = run(
            &with_folders(NEW, &data, &rep),
            &[("GRADSCOPE_CRASH_AT_WRITE", k.to_string())],
        );
        if r.status.success() {
            // Past the last write point: the run finished.
            assert!(k > 20, "only {k} write points");
            break;
        }
        assert_eq!(
            r.status.signal(),
            Some(9),
            "write {k}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        crashed += 1;
        // Each folder holds the old results or the new, or says it is incomplete.
        for (dir, old, new) in [
            (data.join("shattered"), &old_d, &new_d),
            (rep.join("shattered"), &old_r, &new_r),
        ] {
            let now = results(&dir);
            let pending = dir.join(".tx-commit").exists();
            assert!(
                pending || now == *old || now == *new,
                "write {k}: {} is a mixture",
                dir.display()
            );
        }
        if data.join("shattered/.tx-commit").exists() {
            // A reader that cannot finish the commit says so, in one line.
            let lock = std::fs::File::open(data.join("shattered/.lock")).unwrap();
            use std::os::fd::AsRawFd;
            unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH) };
            let r = gradscope(&["report", "--out", path(&data), "--reports", path(&rep)]);
            let err = String::from_utf8_lossy(&r.stderr);
            assert!(
                !r.status.success() && err.contains("incomplete"),
                "write {k}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        }
        // The same command again finishes with the uninterrupted run's results.
        assert_ok(&gradscope(&with_folders(NEW, &data, &rep)));
        assert_eq!(
            results(&data.join("shattered")),
            new_d,
            "write {k}: data after rerun"
        );
        assert_eq!(
            results(&rep.join("shattered")),
            new_r,
            "write {k}: report after rerun"
        );
        assert_eq!(leftovers(&data), Vec::<String>::new(), "write {k}");
        assert_eq!(leftovers(&rep), Vec::<String>::new(), "write {k}");
        std::fs::remove_dir_all(&case).unwrap();
        k += 1;
    }
    assert!(crashed > 20, "{crashed} crashes");
}

#[test]
fn a_full_disk_leaves_the_old_results() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, base_rep) = (tmp.path().join("base"), tmp.path().join("base-rep"));
    assert_ok(&gradscope(&with_folders(NEW, &base, &base_rep)));
    assert_ok(&gradscope(&with_folders(OLD, &base, &base_rep)));
    let (old_d, old_r) = (
        results(&base.join("shattered")),
        results(&base_rep.join("shattered")),
    );
    let (new_data, new_rep) = (tmp.path().join("new"), tmp.path().join("new-rep"));
    assert_ok(&gradscope(&with_folders(NEW, &new_data, &new_rep)));
    let (new_d, new_r) = (
        results(&new_data.join("shattered")),
        results(&new_rep.join("shattered")),
    );
    // Files larger than the limit cannot be written (EFBIG, as ENOSPC would).
    for limit in [2_000u64, 20_000, 200_000] {
        let case = tmp.path().join(format!("l{limit}"));
        let (data, rep) = (case.join("data"), case.join("rep"));
        copy_dir(&base, &data);
        copy_dir(&base_rep, &rep);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradscope"));
        cmd.args(with_folders(NEW, &data, &rep));
        unsafe {
            cmd.pre_exec(move || {
                let l = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let r = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "limit {limit}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        // Each folder is old or new (the data may be committed before the report fails).
        let (d, rp) = (
            results(&data.join("shattered")),
            results(&rep.join("shattered")),
        );
        assert!(d == old_d || d == new_d, "limit {limit}: data mixed");
        assert!(rp == old_r || rp == new_r, "limit {limit}: report mixed");
        assert!(
            d == old_d || rp == old_r,
            "limit {limit}: nothing failed? {err}"
        );
        assert_eq!(leftovers(&data), Vec::<String>::new(), "limit {limit}");
        assert_eq!(leftovers(&rep), Vec::<String>::new(), "limit {limit}");
        assert_ok(&gradscope(&with_folders(NEW, &data, &rep)));
        assert_eq!(results(&data.join("shattered")), new_d);
        assert_eq!(results(&rep.join("shattered")), new_r);
    }
}

#[test]
fn two_configurations_on_one_out_cannot_mix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let long = [
        "shattered",
        "--threads",
        "1",
        "--seeds",
        "12",
        "--depths",
        "1,8,32",
        "--width",
        "96",
        "--no-report",
        "-q",
        "--out",
        path(&out),
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(long)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.join("shattered/.lock").exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let second = gradscope(&["shattered", "--quick", "--no-report", "--out", path(&out)]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(
        err.contains(&format!("is in use by pid {}", first.id())) && err.contains("--seeds 12"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(first.wait().unwrap().success());
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("shattered/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["config"]["seeds"], 12);
    assert_ok(&gradscope(&[
        "report",
        "--out",
        path(&out),
        "--reports",
        path(&tmp.path().join("r")),
    ]));
}

#[test]
fn a_bad_summary_is_one_line_and_no_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, rep) = (tmp.path().join("d"), tmp.path().join("r"));
    assert_ok(&gradscope(&with_folders(OLD, &data, &rep)));
    let summary = data.join("shattered/summary.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    v["results"] = serde_json::json!([]);
    std::fs::write(&summary, serde_json::to_vec(&v).unwrap()).unwrap();
    let report = || gradscope(&["report", "--out", path(&data), "--reports", path(&rep)]);
    // Against the manifest: a file of another run.
    let r = report();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("incomplete") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    // Without a manifest (as written before them): the summary's own check.
    std::fs::remove_file(data.join("shattered/manifest.json")).unwrap();
    let r = report();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains("0 results for") && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

/// The data write phase of every study, `kill -9` at each write in turn:
/// the folder holds the old results or the new ones (or a commit the next
/// reader finishes), and the same command again finishes byte-identical to
/// an uninterrupted run. Reports share one transaction code path, tested
/// write by write on shattered above.
#[test]
fn every_study_s_data_survives_a_kill_at_every_write() {
    use gradscope_cli::registry::STUDIES;
    let tmp = tempfile::tempdir().unwrap();
    // Training checkpoints are the runs' state, kept per configuration, not
    // their results; the configuration names its checkpoint folder, which
    // is where the folder was first written.
    let results = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut files = results(dir);
        files.retain(|name, _| !name.starts_with("checkpoints/"));
        if let Some(bytes) = files.get_mut("summary.json") {
            let mut v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            if let Some(config) = v.get_mut("config").and_then(|c| c.as_object_mut()) {
                config.remove("checkpoints");
            }
            *bytes = serde_json::to_vec(&v).unwrap();
        }
        files
    };
    // shattered's data and report writes are killed one by one above.
    for study in STUDIES.iter().filter(|s| s.name() != "shattered") {
        let name = study.name();
        let old: Vec<&str> = vec![name, "--quick", "-q", "--no-report", "--seed", "1"];
        let new: Vec<&str> = vec![name, "--quick", "-q", "--no-report", "--seed", "2"];
        fn out<'a>(args: &[&'a str], dir: &'a Path) -> Vec<&'a str> {
            let mut v = args.to_vec();
            v.extend(["--out", path(dir)]);
            v
        }
        let (new_data, base) = (
            tmp.path().join(format!("{name}-new")),
            tmp.path().join(format!("{name}-base")),
        );
        assert_ok(&gradscope(&out(&new, &new_data)));
        // The same command again takes every cell from the store.
        let again = gradscope(
            &out(&new, &new_data)[..]
                .iter()
                .filter(|a| **a != "-q")
                .copied()
                .collect::<Vec<_>>(),
        );
        assert_ok(&again);
        let log = String::from_utf8_lossy(&again.stderr);
        assert!(
            log.contains("computing 0") && !log.contains("recomputing"),
            "{name}: a rerun recomputes stored cells: {log}"
        );
        // A finished old configuration whose cells folder holds the new one's
        // cells too, so the runs below are only the write phase.
        copy_dir(&new_data, &base);
        assert_ok(&gradscope(&out(&old, &base)));
        let (old_d, new_d) = (results(&base.join(name)), results(&new_data.join(name)));
        assert_ne!(
            old_d, new_d,
            "{name}: the two configurations give the same results"
        );
        let mut k = 1;
        loop {
            let data = tmp.path().join(format!("{name}-k{k}"));
            copy_dir(&base, &data);
            let r = run(
                &out(&new, &data),
                &[("GRADSCOPE_CRASH_AT_WRITE", k.to_string())],
            );
            if r.status.success() {
                // Past the last write point: the run finished.
                assert!(k > 2, "{name}: only {k} write points");
                break;
            }
            assert_eq!(
                r.status.signal(),
                Some(9),
                "{name}, write {k}: {}",
                String::from_utf8_lossy(&r.stderr)
            );
            let dir = data.join(name);
            let now = results(&dir);
            assert!(
                dir.join(".tx-commit").exists() || now == old_d || now == new_d,
                "{name}, write {k}: a mixture"
            );
            assert_ok(&gradscope(&out(&new, &data)));
            let after = results(&dir);
            let differ: Vec<&String> = after
                .keys()
                .chain(new_d.keys())
                .filter(|f| after.get(*f) != new_d.get(*f))
                .collect();
            assert!(
                differ.is_empty(),
                "{name}, write {k}: after a rerun {differ:?} differ"
            );
            assert_eq!(leftovers(&data), Vec::<String>::new(), "{name}, write {k}");
            std::fs::remove_dir_all(&data).unwrap();
            k += 1;
        }
    }
}
