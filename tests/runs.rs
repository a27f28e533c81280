//! Training runs as a researcher follows them: live files written as the
//! run goes, read back by TensorBoard's own reader.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_ok, gradscope, path};

/// A Python that imports tensorboard: `GRADSCOPE_PYTHON` (set by `.ci/run`)
/// or `python3`; None when neither does.
fn python_with_tensorboard() -> Option<String> {
    let python = std::env::var("GRADSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(python)
}

/// The live folder's scalars as TensorBoard reads them: `tag step value` lines.
fn tensorboard_scalars(python: &str, dir: &Path) -> String {
    let script = r#"
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
for tag in sorted(ea.Tags()["scalars"]):
    for s in ea.Scalars(tag):
        print(tag, s.step, repr(s.value))
"#;
    let o = Command::new(python)
        .args(["-c", script, path(dir)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

fn csv_rows(file: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn a_training_run_writes_its_scalars_live_and_tensorboard_reads_them_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let r = gradscope(&[
        "train",
        "--arch",
        "resnet-bn",
        "--depth",
        "2",
        "--width",
        "16",
        "--epochs",
        "3",
        "--max-train",
        "256",
        "--batch-size",
        "32",
        "--log-steps",
        "4",
        "--out",
        path(&out),
        "--no-report",
    ]);
    assert_ok(&r);
    let err = String::from_utf8_lossy(&r.stderr);
    // Each epoch is printed as it finishes.
    for e in 1..=3 {
        assert!(err.contains(&format!("epoch    {e}")), "{err}");
    }
    let live = walk_one_live(&out);
    let epochs = csv_rows(&live.join("epochs.csv"));
    assert_eq!(epochs.len(), 3);
    // 256 examples in batches of 32: 8 steps an epoch, a row every 4.
    assert_eq!(epochs[2][1], "24");
    let steps = csv_rows(&live.join("steps.csv"));
    assert_eq!(
        steps.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(),
        ["4", "8", "12", "16", "20", "24"]
    );
    let norms = csv_rows(&live.join("grad_norms.csv"));
    // A log at step 0 and one per epoch, each a row per layer.
    let layers = norms.iter().filter(|r| r[0] == "0").count();
    assert!(layers >= 3, "{norms:?}");
    assert_eq!(norms.len(), 4 * layers);
    // The live epochs are the run's curves.
    let curves = csv_rows(
        &out.join("degradation/runs")
            .join(run_name(&out))
            .join("curves.csv"),
    );
    for (e, c) in epochs.iter().zip(&curves) {
        assert_eq!(e[3], c[6], "train loss");
        assert_eq!(e[6], c[9], "test error");
    }
    let Some(python) = python_with_tensorboard() else {
        eprintln!(
            "SKIPPED the TensorBoard read-back: no Python with tensorboard (set GRADSCOPE_PYTHON, or pip install tensorboard)"
        );
        return;
    };
    let tb = tensorboard_scalars(&python, &live);
    let scalars: Vec<(&str, usize, f64)> = tb
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0], f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let values = |tag: &str| -> Vec<(usize, f64)> {
        scalars
            .iter()
            .filter(|s| s.0 == tag)
            .map(|s| (s.1, s.2))
            .collect()
    };
    for (tag, col) in [
        ("loss/train", 3),
        ("error/train", 4),
        ("loss/test", 5),
        ("error/test", 6),
    ] {
        let want: Vec<(usize, f64)> = epochs
            .iter()
            .map(|r| {
                let v: f64 = r[col].parse().unwrap();
                (r[1].parse().unwrap(), v as f32 as f64)
            })
            .collect();
        assert_eq!(values(tag), want, "{tag}");
    }
    let step_losses: Vec<(usize, f64)> = steps
        .iter()
        .map(|r| {
            (
                r[1].parse().unwrap(),
                r[3].parse::<f64>().unwrap() as f32 as f64,
            )
        })
        .collect();
    assert_eq!(values("loss/step"), step_losses);
    let stem: Vec<(usize, f64)> = norms
        .iter()
        .filter(|r| r[1] == "stem")
        .map(|r| {
            (
                r[0].parse().unwrap(),
                r[2].parse::<f64>().unwrap() as f32 as f64,
            )
        })
        .collect();
    assert_eq!(stem.len(), 4);
    assert_eq!(values("grad_norm/stem"), stem);
}

/// The one run folder under `<out>/degradation/runs`.
fn run_name(out: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(out.join("degradation/runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names.pop().unwrap()
}

fn walk_one_live(out: &Path) -> PathBuf {
    out.join("degradation/runs")
        .join(run_name(out))
        .join("live")
}

fn train_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--arch",
        "plain-bn",
        "--depth",
        "2",
        "--width",
        "16",
        "--epochs",
        "2",
        "--max-train",
        "128",
        "--batch-size",
        "32",
        "--out",
        path(out),
        "--no-report",
    ];
    v.extend_from_slice(extra);
    v
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn runs_with_different_learning_rates_both_survive_and_compare_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    assert_ok(&gradscope(&train_args(&out, &["--lr", "0.1"])));
    assert_ok(&gradscope(&train_args(
        &out,
        &["--lr", "0.001", "--name", "slow"],
    )));
    let root = out.join("degradation/runs");
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("plain-bn-2-") && names[1].starts_with("slow-"));
    for n in &names {
        assert!(root.join(n).join("summary.json").exists(), "{n}");
        assert_eq!(csv_rows(&root.join(n).join("live/epochs.csv")).len(), 2);
    }
    // A rerun says it restored its checkpoint instead of replaying in silence.
    let again = gradscope(&train_args(&out, &["--lr", "0.1"]));
    assert_ok(&again);
    assert!(
        stderr(&again).contains("restored from its checkpoint after epoch 2"),
        "{}",
        stderr(&again)
    );
    // --force trains afresh: the live rows are written once, not appended.
    let forced = gradscope(&train_args(&out, &["--lr", "0.1", "--force"]));
    assert_ok(&forced);
    assert!(!stderr(&forced).contains("restored"), "{}", stderr(&forced));
    assert!(stderr(&forced).contains("epoch    2"));
    assert_eq!(
        csv_rows(&root.join(&names[0]).join("live/epochs.csv")).len(),
        2
    );

    let list = gradscope(&["runs", "--out", path(&out)]);
    assert_ok(&list);
    let text = String::from_utf8_lossy(&list.stdout);
    for n in &names {
        assert!(
            text.contains(n.as_str()) && text.contains("finished"),
            "{text}"
        );
    }
    let csv = tmp.path().join("both.csv");
    let cmp = gradscope(&[
        "compare",
        "plain-bn",
        "slow",
        "--out",
        path(&out),
        "--csv",
        path(&csv),
    ]);
    assert_ok(&cmp);
    let text = String::from_utf8_lossy(&cmp.stdout);
    let lr_row = text
        .lines()
        .find(|l| l.trim_start().starts_with("train.optimizer.lr"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lr_row.contains("0.1") && lr_row.contains("0.001"),
        "{lr_row}"
    );
    // Only the learning rate differs.
    assert!(!text.contains("train.epochs"), "{text}");
    assert!(text.contains("epoch: test error"), "{text}");
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 5);
    // A name matching no run is refused, pointing at the list.
    let none = gradscope(&["compare", "slow", "fast", "--out", path(&out)]);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("no run `fast`"), "{}", stderr(&none));
}

#[test]
fn a_run_given_a_folder_of_another_configuration_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let dir = tmp.path().join("mine");
    assert_ok(&gradscope(&train_args(&out, &["--run-dir", path(&dir)])));
    let summary = std::fs::read(dir.join("summary.json")).unwrap();
    let other = gradscope(&train_args(
        &out,
        &["--run-dir", path(&dir), "--lr", "0.05"],
    ));
    assert!(!other.status.success());
    let err = stderr(&other);
    assert!(
        err.contains("another configuration") && err.contains("train.optimizer.lr"),
        "{err}"
    );
    assert_eq!(std::fs::read(dir.join("summary.json")).unwrap(), summary);
    assert_ok(&gradscope(&train_args(
        &out,
        &["--run-dir", path(&dir), "--lr", "0.05", "--force"],
    )));
    assert_ne!(std::fs::read(dir.join("summary.json")).unwrap(), summary);
}

#[test]
fn a_train_run_gets_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let reports = tmp.path().join("reports");
    let mut args = train_args(&out, &["--reports", path(&reports)]);
    args.retain(|a| *a != "--no-report");
    let r = gradscope(&args);
    assert_ok(&r);
    let name = run_name(&out);
    let page = reports.join("runs").join(&name).join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("plain-bn"), "{html}");
    // One net at one depth: the page compares no depths.
    assert!(html.contains("does not test degradation"), "{html}");
    assert!(!html.contains("more layers") && !html.contains("here the same comparison"));
    assert!(
        reports
            .join("runs")
            .join(&name)
            .join("error_curves.png")
            .exists()
    );
}

#[test]
fn shards_of_different_configurations_say_so_and_merge_refuses_to_mix_them() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let shard = |i: &str, lr: &str| {
        gradscope(&[
            "degradation",
            "--quick",
            "--archs",
            "plain",
            "--depths",
            "2",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--lr",
            lr,
            "--shard",
            i,
            "--out",
            path(&out),
            "--no-report",
        ])
    };
    let first = shard("1/2", "0.1");
    assert_ok(&first);
    assert!(!stderr(&first).contains("another configuration"));
    let second = shard("2/2", "0.05");
    assert_ok(&second);
    let err = stderr(&second);
    assert!(
        err.contains("shards of another configuration")
            && err.contains("train.optimizer.lr 0.05 here, 0.1 there"),
        "{err}"
    );
    let merge = gradscope(&["merge", "degradation", "--out", path(&out), "--no-report"]);
    assert!(!merge.status.success());
    assert!(stderr(&merge).contains("--config"), "{}", stderr(&merge));
}

#[test]
fn a_run_stopped_by_sigterm_resumes_to_the_weights_of_an_uninterrupted_run() {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let args = |out: &Path, weights: &Path| -> Vec<String> {
        [
            "train",
            "--arch",
            "resnet-bn",
            "--depth",
            "2",
            "--width",
            "16",
            "--epochs",
            "40",
            "--max-train",
            "256",
            "--batch-size",
            "32",
            "--no-report",
            "--out",
            path(out),
            "--save-weights",
            path(weights),
        ]
        .map(String::from)
        .to_vec()
    };
    let (whole, whole_w) = (
        tmp.path().join("whole"),
        tmp.path().join("whole.safetensors"),
    );
    let whole_args = args(&whole, &whole_w);
    assert_ok(&gradscope(
        &whole_args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));

    let (cut, cut_w) = (tmp.path().join("cut"), tmp.path().join("cut.safetensors"));
    let cut_args = args(&cut, &cut_w);
    let child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(&cut_args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop once two epochs are in the live file, long before the 40th.
    let epochs = || {
        common::walk(&cut)
            .into_iter()
            .find(|p| p.ends_with("live/epochs.csv"))
            .map_or(0, |p| csv_rows(&p).len())
    };
    let start = Instant::now();
    while epochs() < 2 && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", stderr(&done));
    let stopped_at = epochs();
    assert!(stopped_at < 40, "the run finished before the signal");
    assert!(!cut_w.exists());

    let resumed = gradscope(&cut_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&resumed);
    let err = stderr(&resumed);
    assert!(
        err.contains(&format!(
            "restored from its checkpoint after epoch {stopped_at}"
        )),
        "{err}"
    );
    // Every epoch once in the live file, and the same weights to the bit.
    assert_eq!(epochs(), 40);
    assert_eq!(
        std::fs::read(&cut_w).unwrap(),
        std::fs::read(&whole_w).unwrap()
    );
}

/// Run the binary and return its stderr and peak resident set in bytes
/// (`wait4`'s `ru_maxrss`, this child's alone).
// The child is reaped by wait4, which std's wait would not give the usage of.
#[allow(clippy::zombie_processes)]
fn peak_rss(args: &[&str]) -> (String, u64) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: `pid` is our child, not yet reaped; status and usage are valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{err}"
    );
    (err, usage.ru_maxrss as u64 * 1024)
}

#[test]
fn a_training_run_peaks_within_a_factor_1_5_of_its_memory_estimate() {
    let tmp = tempfile::tempdir().unwrap();
    for net in [
        &["--arch", "resnet-bn", "--depth", "32", "--width", "256"][..],
        &["--arch", "conv-resnet", "--depth", "20"][..],
    ] {
        let out = tmp.path().join(net[1]);
        let mut args = vec![
            "train",
            "--epochs",
            "1",
            "--max-train",
            "512",
            "--no-report",
        ];
        args.extend_from_slice(net);
        args.extend(["--out", path(&out)]);
        let (err, peak) = peak_rss(&args);
        let estimate: f64 = err
            .lines()
            .find_map(|l| l.strip_prefix("train: estimated peak memory "))
            .and_then(|l| l.strip_suffix(" GiB"))
            .unwrap_or_else(|| panic!("{err}"))
            .parse()
            .unwrap();
        let peak_gib = peak as f64 / (1u64 << 30) as f64;
        let ratio = peak_gib / estimate;
        assert!(
            (1.0 / 1.5..=1.5).contains(&ratio),
            "{net:?}: estimated {estimate} GiB, peak {peak_gib:.3} GiB"
        );
    }
}

#[test]
fn one_training_run_writes_its_history() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let reports = tmp.path().join("reports");
    let args = [
        "train",
        "--arch",
        "resnet-bn",
        "--depth",
        "3",
        "--width",
        "16",
        "--epochs",
        "2",
        "--out",
        path(&out),
        "--reports",
        path(&reports),
    ];
    let r = gradscope(&args);
    assert_ok(&r);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("final train error"), "{stdout}");
    // The run's folder is named from its configuration: <arch>-<depth>-<hash>.
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join("degradation/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let name = run.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with("resnet-bn-3-") && name.len() == 20,
        "{name}"
    );
    let curves = std::fs::read_to_string(run.join("curves.csv")).unwrap();
    assert_eq!(curves.lines().count(), 3, "{curves}");
    assert!(run.join("summary.json").exists());
    assert!(reports.join("runs").join(name).join("index.html").exists());
    // Its checkpoint lets the same command finish at once from the saved state.
    assert!(run.join("checkpoint").read_dir().unwrap().count() == 1);
    let again = gradscope(&args);
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("restored from its checkpoint"));
    assert_eq!(
        std::fs::read_to_string(run.join("curves.csv")).unwrap(),
        curves
    );
}
