//! End to end through the `gradscope` binary: outputs, reports, weights,
//! determinism and clean failures.

use std::path::{Path, PathBuf};

mod common;
use common::{assert_ok, gradscope, path};

/// Every `src`/`href` of a page that points at a local file exists and is non-empty.
fn check_links(page: &Path) -> usize {
    let html = std::fs::read_to_string(page).unwrap();
    let dir = page.parent().unwrap();
    let mut n = 0;
    for attr in ["src=\"", "href=\""] {
        for piece in html.split(attr).skip(1) {
            let target = &piece[..piece.find('"').unwrap()];
            if target.starts_with('#') || target.contains("://") {
                continue;
            }
            let f: PathBuf = dir.join(target);
            let len = std::fs::metadata(&f)
                .unwrap_or_else(|_| panic!("{} links to missing {}", page.display(), f.display()))
                .len();
            assert!(len > 0, "{} is empty", f.display());
            if target.ends_with(".png") {
                assert_eq!(&std::fs::read(&f).unwrap()[1..4], b"PNG");
                assert!(len > 10_000, "{} is suspiciously small", f.display());
            }
            if target.ends_with(".svg") {
                assert!(std::fs::read_to_string(&f).unwrap().starts_with("<svg"));
            }
            n += 1;
        }
    }
    n
}

#[test]
fn reproduce_writes_data_and_reports_and_report_rebuilds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, reports) = (tmp.path().join("data"), tmp.path().join("reports"));
    assert_ok(&gradscope(&[
        "reproduce",
        "--quick",
        "--out",
        path(&data),
        "--reports",
        path(&reports),
    ]));
    for f in [
        "summary.json",
        "summary.csv",
        "per_seed.csv",
        "layer_norms.csv",
        "fits.csv",
        "input_gradients.npy",
        "power_spectra.npy",
    ] {
        assert!(
            std::fs::metadata(data.join("shattered").join(f))
                .unwrap()
                .len()
                > 0,
            "{f}"
        );
    }
    assert!(check_links(&reports.join("index.html")) >= 2);
    let figures = check_links(&reports.join("shattered/index.html"));
    assert!(figures >= 14, "only {figures} links on the study page");
    let md = std::fs::read_to_string(reports.join("shattered/report.md")).unwrap();
    assert!(md.contains("![") && md.contains("r1_vs_depth.png"));

    // The report is rebuilt from the data folder alone.
    std::fs::remove_dir_all(&reports).unwrap();
    assert_ok(&gradscope(&[
        "report",
        "--out",
        path(&data),
        "--reports",
        path(&reports),
    ]));
    assert!(check_links(&reports.join("shattered/index.html")) >= 14);
}

#[test]
fn the_same_seed_gives_the_same_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, threads: &str| {
        let out = tmp.path().join(name);
        assert_ok(&gradscope(&[
            "--threads",
            threads,
            "shattered",
            "--quick",
            "--no-report",
            "--out",
            path(&out),
        ]));
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("shattered/summary.json")).unwrap())
                .unwrap();
        v.as_object_mut().unwrap().remove("provenance");
        (
            v,
            std::fs::read(out.join("shattered/input_gradients.npy")).unwrap(),
        )
    };
    let (a, ga) = run("a", "1");
    let (b, gb) = run("b", "2");
    assert!(a == b, "summaries differ");
    assert!(ga == gb, "gradients differ");
}

#[test]
fn weights_saved_by_one_run_reproduce_it_in_another() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("weights");
    let common = [
        "shattered",
        "--archs",
        "resnet-bn",
        "--depths",
        "3",
        "--seeds",
        "1",
        "--width",
        "16",
        "--points",
        "32",
        "--no-report",
        "--dtype",
        "f64",
    ];
    let d1 = tmp.path().join("d1");
    let mut a = common.to_vec();
    a.extend(["--save-weights", path(&w), "--out", path(&d1)]);
    assert_ok(&gradscope(&a));
    let file = w.join("resnet-bn-depth3-seed0.safetensors");
    assert!(file.exists());

    // Another seed draws other weights, unless the saved ones are loaded.
    let d2 = tmp.path().join("d2");
    let mut b = common.to_vec();
    b.extend(["--seed", "99", "--out", path(&d2)]);
    assert_ok(&gradscope(&b));
    let d3 = tmp.path().join("d3");
    let mut c = common.to_vec();
    c.extend([
        "--seed",
        "99",
        "--load-weights",
        path(&file),
        "--out",
        path(&d3),
    ]);
    assert_ok(&gradscope(&c));
    let grads = |d: &Path| std::fs::read(d.join("shattered/input_gradients.npy")).unwrap();
    assert_ne!(grads(&d1), grads(&d2));
    assert_eq!(grads(&d1), grads(&d3));
}

#[test]
fn archs_lists_every_preset_option_and_example() {
    use gradscope::spec::{Arch, ConvArch};
    let o = gradscope(&["archs"]);
    assert_ok(&o);
    let text = String::from_utf8(o.stdout).unwrap();
    for (name, _, line) in Arch::PRESETS {
        assert!(
            text.contains(&format!("{name:<13}{line}\n")),
            "{name}:\n{text}"
        );
    }
    for v in Arch::VARIANTS {
        assert!(text.contains(&format!("\n  {v}\n")), "{v}:\n{text}");
    }
    for (name, _, line) in ConvArch::PRESETS {
        assert!(text.contains(&format!("conv-{name}")) && text.contains(line));
    }
    // Every option with its value forms, as the listing had them by hand.
    for form in [
        "norm=none|bn|ln|gn(<groups>)|rms|wn",
        "init=standard|looks-linear",
        "order=pre|post|postnorm",
        "branch=1..8",
        "bottleneck=r",
        "alpha=<branch scale>",
        "skip=identity|scale(λ)|gate(b)|shortcut-gate(b)|proj|dropout(p)",
        "init=standard|fixup|skipinit|rezero",
        "lambda=λ",
        "xskip, xskip-ln only",
        "rskip-ln only",
        "bias=<initial gate bias>",
        "block=basic|bottleneck",
        "9n+2",
        "shortcut=a|b",
        "(conv nets train in `degradation`, `train` and `ensemble` on image data)",
    ] {
        assert!(text.contains(form), "{form}:\n{text}");
    }
    // Each example the listing shows parses back to itself.
    for line in text
        .lines()
        .skip_while(|l| !l.starts_with("examples"))
        .skip(1)
    {
        let Some(v) = line.strip_prefix("  ") else {
            break;
        };
        assert_eq!(v.parse::<Arch>().unwrap().to_string(), v);
    }
}

#[test]
fn bad_input_fails_with_one_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = path(&out);
    let cases: Vec<Vec<&str>> = vec![
        vec!["shattered", "--archs", "mlp", "--out", o],
        vec!["shattered", "--archs", "resnet:branch=0", "--out", o],
        vec!["shattered", "--depths", "0", "--out", o],
        vec!["shattered", "--depths", "x", "--out", o],
        vec!["shattered", "--width", "0", "--out", o],
        vec!["shattered", "--width", "-3", "--out", o],
        vec!["shattered", "--points", "8", "--out", o],
        vec!["shattered", "--seeds", "0", "--out", o],
        vec!["shattered", "--dtype", "f16", "--out", o],
        vec!["shattered", "--bias-init", "normal(nan)", "--out", o],
        vec!["shattered", "--weight-init", "normal(-1)", "--out", o],
        vec!["shattered", "--bn-mode", "sometimes", "--out", o],
        vec![
            "shattered",
            "--width",
            "100000",
            "--depths",
            "1000",
            "--out",
            o,
        ],
        vec![
            "shattered",
            "--load-weights",
            "missing.safetensors",
            "--out",
            o,
        ],
        vec![
            "shattered",
            "--archs",
            "plain",
            "--depths",
            "2",
            "--seeds",
            "1",
            "--load-weights",
            "missing.safetensors",
            "--out",
            o,
        ],
        vec!["--threads", "0", "shattered", "--out", o],
        vec!["report", "--out", o, "--reports", o],
        vec!["degradation", "--data", "imagenet", "--out", o],
        vec!["degradation", "--schedule", "step:x", "--out", o],
        vec!["degradation", "--lr", "-1", "--out", o],
        vec![
            "degradation",
            "--optimizer",
            "adam",
            "--momentum",
            "0.9",
            "--out",
            o,
        ],
        vec![
            "degradation",
            "--archs",
            "conv-resnet",
            "--depths",
            "21",
            "--out",
            o,
        ],
        vec!["train", "--arch", "resnet-bn", "--depth", "0", "--out", o],
        vec![
            "train",
            "--arch",
            "plain",
            "--depth",
            "2",
            "--batch-size",
            "0",
            "--out",
            o,
        ],
        vec!["frobnicate"],
        vec!["shattered", "--unknown-flag"],
    ];
    for args in cases {
        let r = gradscope(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("error"), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        let leftover: Vec<_> = walk(&out);
        assert!(leftover.is_empty(), "{args:?} left {leftover:?}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flat_map(|e| {
        let p = e.unwrap().path();
        if p.is_dir() { walk(&p) } else { vec![p] }
    })
    .collect()
}

#[test]
fn one_training_run_writes_its_history() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let r = gradscope(&[
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
    ]);
    assert_ok(&r);
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.contains("final train error"), "{stdout}");
    let run = out.join("training/runs/resnet-bn-3");
    let curves = std::fs::read_to_string(run.join("curves.csv")).unwrap();
    assert_eq!(curves.lines().count(), 3, "{curves}");
    assert!(run.join("summary.json").exists());
    // Its checkpoint lets the same command finish at once from the saved state.
    assert!(
        std::fs::read_dir(out.join("training/checkpoints"))
            .unwrap()
            .count()
            == 1
    );
    assert_ok(&gradscope(&[
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
    ]));
    assert_eq!(
        std::fs::read_to_string(run.join("curves.csv")).unwrap(),
        curves
    );
}

/// An IDX file of unsigned bytes (MNIST's format).
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.extend(data);
    b
}

#[test]
fn degradation_trains_on_mnist_files_and_names_missing_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    // A tiny 28×28 "MNIST": class k is a bright row k; separable.
    for (prefix, n) in [("train", 40u32), ("t10k", 20)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let pixels: Vec<u8> = labels
            .iter()
            .flat_map(|&l| (0..784).map(move |p| if p / 28 == 2 * l as usize { 255 } else { 0 }))
            .collect();
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx(&[n, 28, 28], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(&[n], &labels),
        )
        .unwrap();
    }
    let out = tmp.path().join("out");
    let data = format!("mnist:{}", path(&dir));
    let args = [
        "degradation",
        "--data",
        &data,
        "--archs",
        "resnet-bn",
        "--depths",
        "2",
        "--width",
        "32",
        "--epochs",
        "3",
        "--batch-size",
        "10",
        "--seeds",
        "1",
        "--no-report",
        "--out",
        path(&out),
    ];
    assert_ok(&gradscope(&args));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("training/summary.json")).unwrap()).unwrap();
    assert_eq!(s["data"]["train"], 40);
    assert_eq!(s["data"]["test"], 20);
    assert_eq!(s["data"]["shape"], serde_json::json!([1, 28, 28]));
    let train_error = s["results"][0]["final_train_error"]["mean"]
        .as_f64()
        .unwrap();
    assert!(
        train_error < 0.2,
        "separable toy MNIST: train error {train_error}"
    );

    std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
    let r = gradscope(&args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success()
            && err.contains("t10k-labels-idx1-ubyte")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn numerical_faults_are_data_unless_asked_to_be_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    // σ_w² = 100 in f32: activations grow ×√50 per layer and overflow before depth 50.
    let args = |out: &Path| -> Vec<String> {
        [
            "shattered",
            "--archs",
            "plain",
            "--depths",
            "2,50",
            "--seeds",
            "2",
            "--dtype",
            "f32",
            "--weight-init",
            "normal(100)",
            "--no-report",
            "--out",
            path(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let data = tmp.path().join("data");
    let a = args(&data);
    assert_ok(&gradscope(
        &a.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("shattered/summary.json")).unwrap())
            .unwrap();
    let (shallow, deep) = (&s["results"][0], &s["results"][1]);
    assert_eq!(shallow["faults"].as_array().unwrap().len(), 0);
    let faults = deep["faults"].as_array().unwrap();
    assert!(!faults.is_empty());
    // The first fault is in the forward pass, at a layer inside the net, and
    // the statistics say how many values they left out.
    assert_eq!(faults[0]["pass"], "forward");
    let layer = faults[0]["layer"].as_u64().unwrap();
    assert!((1..=50).contains(&layer), "{layer}");
    assert_eq!(deep["adjacent_correlation"]["excluded"], 2);
    assert_eq!(shallow["adjacent_correlation"]["n"], 2);

    let fatal = tmp.path().join("fatal");
    let mut b = args(&fatal);
    b.push("--fatal-faults".into());
    let r = gradscope(&b.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(
        err.contains("numerical fault")
            && err.contains("depth 50")
            && err.contains("first at layer"),
        "{err}"
    );
    assert!(!fatal.join("shattered/summary.json").exists());
}
