//! Research workflow: studies from files, resumable and sharded sweeps,
//! interruption, and escaping of what configs carry into reports.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gradscope_cli::registry::{STUDIES, parse_study_file};
use gradscope_studies::registry::params_from_table;
use gradscope_studies::shattered::ShatteredParams;

mod common;
use common::{assert_ok, gradscope, path};

/// summary.json without its provenance (time, command, run time differ between runs).
fn summary(dir: &Path, study: &str) -> serde_json::Value {
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(study).join("summary.json")).unwrap())
            .unwrap();
    v.as_object_mut().unwrap().remove("provenance");
    v
}

#[test]
fn every_example_study_file_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/studies");
    let mut named = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let (study, table) = parse_study_file(&text, &file).unwrap_or_else(|e| panic!("{e}"));
        study
            .check_table(table, &file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // Each file is named after its study, by the study's own name.
        assert_eq!(file.file_stem().unwrap(), study.name());
        assert!(text.contains(&format!("study = \"{}\"", study.name())));
        named.push(study.name());
    }
    // One file per study of the registry.
    named.sort();
    let mut all: Vec<&str> = STUDIES.iter().map(|e| e.name()).collect();
    all.sort();
    assert_eq!(named, all);
    // The example's shattered file is the default study.
    let text = std::fs::read_to_string(dir.join("shattered.toml")).unwrap();
    let (_, table) = parse_study_file(&text, Path::new("shattered.toml")).unwrap();
    assert_eq!(
        params_from_table::<ShatteredParams>(table, Path::new("x")).unwrap(),
        ShatteredParams::default()
    );
}

#[test]
fn a_study_file_runs_like_the_command_and_bad_files_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("s.toml");
    std::fs::write(&file, "study = \"shattered\"\narchs = [\"plain-bn\", \"resnet-bn\"]\ndepths = [2, 8]\nseeds = 2\n").unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    assert_ok(&gradscope(&[
        "run",
        path(&file),
        "--quick",
        "--no-report",
        "--out",
        path(&a),
    ]));
    assert_ok(&gradscope(&[
        "shattered",
        "--quick",
        "--archs",
        "plain-bn,resnet-bn",
        "--depths",
        "2,8",
        "--seeds",
        "2",
        "--no-report",
        "--out",
        path(&b),
    ]));
    assert!(summary(&a, "shattered")["results"] == summary(&b, "shattered")["results"]);
    for (text, needle) in [
        (
            "study = \"shattered\"\nwidht = 3\n",
            "unknown field `widht`",
        ),
        ("study = \"nope\"\n", "unknown study"),
        ("depths = [1]\n", "missing `study"),
        ("study = \"shattered\"\nwidth = \n", "line 2"),
        ("study = \"shattered\"\nwidth = 0\n", "width"),
    ] {
        std::fs::write(&file, text).unwrap();
        let r = gradscope(&["run", path(&file), "--out", path(&tmp.path().join("c"))]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && err.contains(needle) && err.trim_end().lines().count() == 1,
            "{text}: {err}"
        );
    }
    let r = gradscope(&["run", path(&tmp.path().join("absent.toml"))]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("absent.toml"));
}

#[test]
fn shards_merged_equal_one_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (whole, sharded) = (tmp.path().join("whole"), tmp.path().join("sharded"));
    let common = ["shattered", "--quick", "--no-report"];
    let mut a = common.to_vec();
    a.extend(["--out", path(&whole)]);
    assert_ok(&gradscope(&a));
    for i in 1..=3 {
        let shard = format!("{i}/3");
        let mut s = common.to_vec();
        s.extend(["--shard", &shard, "--out", path(&sharded)]);
        assert_ok(&gradscope(&s));
        assert!(
            !sharded.join("shattered/summary.json").exists(),
            "a shard writes no summary"
        );
    }
    // Merging before every shard is done names what is missing.
    let partial = tmp.path().join("partial");
    let mut s = common.to_vec();
    s.extend(["--shard", "1/3", "--out", path(&partial)]);
    assert_ok(&gradscope(&s));
    let r = gradscope(&["merge", "shattered", "--out", path(&partial)]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("not stored yet"));

    assert_ok(&gradscope(&[
        "merge",
        "shattered",
        "--out",
        path(&sharded),
        "--reports",
        path(&tmp.path().join("reports")),
    ]));
    assert!(
        summary(&whole, "shattered") == summary(&sharded, "shattered"),
        "merged summary differs"
    );
    for f in [
        "input_gradients.npy",
        "power_spectra.npy",
        "per_seed.csv",
        "fits.csv",
    ] {
        assert_eq!(
            std::fs::read(whole.join("shattered").join(f)).unwrap(),
            std::fs::read(sharded.join("shattered").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(tmp.path().join("reports/shattered/index.html").exists());
    for bad in ["0/3", "4/3", "1/0", "x/3", "1-3"] {
        let r = gradscope(&[
            "shattered",
            "--quick",
            "--shard",
            bad,
            "--out",
            path(&tmp.path().join("bad")),
        ]);
        assert!(!r.status.success(), "--shard {bad} accepted");
    }
}

/// 5 archs × 12 seeds = 60 cells on one thread: long enough to stop part-way.
fn sweep_args(out: &Path) -> Vec<String> {
    [
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
        "--out",
        path(out),
    ]
    .map(String::from)
    .to_vec()
}

/// Stored cell files, over every configuration's folder under cells/.
fn cells(dir: &Path) -> usize {
    config_dirs(dir)
        .iter()
        .map(|d| {
            std::fs::read_dir(d).map_or(0, |r| {
                r.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".cell")
                })
                .count()
            })
        })
        .sum()
}

/// The configuration folders under `shattered/cells/`.
fn config_dirs(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir.join("shattered/cells")).map_or(Vec::new(), |r| {
        r.map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect()
    })
}

#[test]
fn a_killed_sweep_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let (killed, whole) = (tmp.path().join("killed"), tmp.path().join("whole"));
    // 5 archs × 12 seeds = 60 cells on one thread: long enough to kill part-way.
    let args = |out: &Path| sweep_args(out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args(&killed))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while cells(&killed) < 3 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let stored = cells(&killed);
    assert!(
        (3..60).contains(&stored),
        "{stored} cells stored when killed"
    );
    assert!(!killed.join("shattered/summary.json").exists());

    let r = gradscope(&args(&killed).iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&r);
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("resumed"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_ok(&gradscope(
        &args(&whole).iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(
        summary(&killed, "shattered") == summary(&whole, "shattered"),
        "resumed summary differs"
    );
    assert_eq!(
        std::fs::read(killed.join("shattered/input_gradients.npy")).unwrap(),
        std::fs::read(whole.join("shattered/input_gradients.npy")).unwrap()
    );
    // No temporary files are left anywhere.
    // No temporary files are left anywhere: the rerun removed the killed run's.
    let dirs = config_dirs(&killed);
    assert_eq!(dirs.len(), 1);
    let leftovers: Vec<_> = [killed.join("shattered"), dirs[0].clone()]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.') && n != ".lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn ctrl_c_stops_after_the_cells_in_flight_and_a_rerun_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let args = sweep_args(&out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(&args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while cells(&out) < 2 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("resume"),
        "{err}"
    );
    assert!(cells(&out) < 60);
    assert_ok(&gradscope(&args));
    assert!(out.join("shattered/summary.json").exists());
}

#[test]
fn config_text_is_escaped_on_report_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let hostile = tmp.path().join("<script>alert('x')</script>");
    let (data, reports) = (tmp.path().join("data"), tmp.path().join("reports"));
    assert_ok(&gradscope(&[
        "shattered",
        "--quick",
        "--archs",
        "resnet-bn",
        "--depths",
        "2",
        "--save-weights",
        path(&hostile),
        "--out",
        path(&data),
        "--reports",
        path(&reports),
    ]));
    let html = std::fs::read_to_string(reports.join("shattered/index.html")).unwrap();
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "the path is shown, escaped"
    );
    assert!(!html.contains("<script"), "no script element on the page");
    let md = std::fs::read_to_string(reports.join("shattered/report.md")).unwrap();
    assert!(md.contains("alert"));
}

/// Every file of a folder (relative path → bytes), recursively.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn every_output_is_bit_identical_across_thread_counts_and_reruns() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, threads: &str| {
        let out = tmp.path().join(name);
        assert_ok(&gradscope(&[
            "reproduce",
            "--threads",
            threads,
            "--quick",
            "-q",
            "--out",
            path(&out),
            "--reports",
            path(&tmp.path().join(format!("{name}-reports"))),
        ]));
        out
    };
    let (one, two, again) = (run("one", "1"), run("two", "2"), run("again", "2"));
    let (a, b, c) = (files(&one), files(&two), files(&again));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    let mut compared = 0;
    for (name, bytes) in &a {
        if name.ends_with(".lock") {
            // The lock names its last holder (pid, command line).
            continue;
        }
        if name.ends_with("manifest.json") {
            // Checksums of every file; only the summaries' (provenance) may differ.
            let strip = |b: &[u8]| {
                let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                v["files"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|f| !f["name"].as_str().unwrap().ends_with("summary.json"));
                v
            };
            assert!(
                strip(bytes) == strip(&b[name]) && strip(bytes) == strip(&c[name]),
                "{name}"
            );
        } else if name.ends_with("summary.json") {
            // Provenance (time, threads, run time) differs; nothing else may.
            let strip = |b: &[u8]| {
                let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
                v.as_object_mut().unwrap().remove("provenance");
                v
            };
            assert!(
                strip(bytes) == strip(&b[name]) && strip(bytes) == strip(&c[name]),
                "{name}"
            );
        } else if name.contains("/cells/") || name.ends_with("state.json") {
            // Stored cells and checkpoint bookkeeping carry no timings; compare too.
            assert_eq!(bytes, &b[name], "{name}");
        } else {
            assert_eq!(bytes, &b[name], "{name} differs between 1 and 2 threads");
            assert_eq!(bytes, &c[name], "{name} differs between reruns");
        }
        compared += 1;
    }
    assert!(compared >= 20, "{compared} files");
}

#[test]
fn reproducing_one_study_keeps_the_others_reports_without_their_raw_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, reports) = (tmp.path().join("data"), tmp.path().join("reports"));
    let reproduce = |studies: &str| {
        gradscope(&[
            "reproduce",
            "--quick",
            "-q",
            "--studies",
            studies,
            "--out",
            path(&out),
            "--reports",
            path(&reports),
        ])
    };
    assert_ok(&reproduce("shattered,norms"));
    let page = reports.join("shattered").join("index.html");
    let before = std::fs::read(&page).unwrap();
    // As in a fresh clone: summaries are committed, raw arrays are not.
    for e in std::fs::read_dir(out.join("shattered")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "npy") {
            std::fs::remove_file(p).unwrap();
        }
    }
    assert_ok(&reproduce("norms"));
    assert_eq!(std::fs::read(&page).unwrap(), before);
    let index = std::fs::read_to_string(reports.join("index.html")).unwrap();
    assert!(index.contains("shattered/index.html") && index.contains("norms/index.html"));
    // Rebuilding every report needs the arrays, and says which one is missing.
    let o = gradscope(&["report", "--out", path(&out), "--reports", path(&reports)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(".npy"));
}
