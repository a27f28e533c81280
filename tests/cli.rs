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
            "shattered",
            "--threads",
            threads,
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

    // The file's spec stands in for --archs, --depths, --width and --seeds.
    let d4 = tmp.path().join("d4");
    let r = gradscope(&[
        "shattered",
        "--load-weights",
        path(&file),
        "--points",
        "32",
        "--dtype",
        "f64",
        "--no-report",
        "--out",
        path(&d4),
    ]);
    assert_ok(&r);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("--archs resnet-bn --depths 3 --width 16 --seeds 1"),
        "{err}"
    );
    assert_eq!(grads(&d1), grads(&d4));
    // A flag given wins over the file, and the error names the flag to set.
    let r = gradscope(&[
        "shattered",
        "--load-weights",
        path(&file),
        "--width",
        "32",
        "--points",
        "32",
        "--no-report",
        "--out",
        path(&tmp.path().join("d5")),
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("has shape [16, 1], the net needs [32, 1]: use --width 16"),
        "{err}"
    );
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
        "skip=identity|scale(λ)|scale(learn(λ))|gate(b)|shortcut-gate(b)|proj|dropout(p)",
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
        vec!["shattered", "--threads", "0", "--out", o],
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
        // Folder locks (`.lock`, empty but for their last holder) are not output.
        let leftover: Vec<_> = walk(&out)
            .into_iter()
            .filter(|p| p.file_name().is_none_or(|n| n != ".lock"))
            .collect();
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
        serde_json::from_slice(&std::fs::read(out.join("degradation/summary.json")).unwrap())
            .unwrap();
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

#[test]
fn every_study_help_shows_every_parameter_with_its_default() {
    use gradscope_cli::registry::STUDIES;
    for study in STUDIES {
        let r = gradscope(&[study.name(), "--help"]);
        assert_ok(&r);
        let help = String::from_utf8_lossy(&r.stdout);
        // clap's help: `--flag <VALUE>`, its text and `[default: …]`, on
        // one line or (long help) on the indented lines below it.
        let mut blocks: Vec<String> = Vec::new();
        for line in help.lines() {
            let text = line.trim_start();
            if text.starts_with('-') && line.len() - text.len() <= 6 {
                blocks.push(text.to_string());
            } else if let Some(b) = blocks.last_mut() {
                b.push(' ');
                b.push_str(text);
            }
        }
        for (key, value) in study.params_table(false) {
            if matches!(value, toml::Value::Table(_)) {
                continue;
            }
            let flag = format!("--{} ", key.replace('_', "-"));
            let block = blocks
                .iter()
                .find(|b| b.starts_with(&flag))
                .unwrap_or_else(|| panic!("{}: no {flag}in\n{help}", study.name()));
            assert!(
                block.contains("[default: "),
                "{}: {flag}shows no default: {block}",
                study.name()
            );
        }
    }
    // The shown default is the parameters' own (shattered's width is 200, its grid -2 to 2).
    let help = String::from_utf8_lossy(&gradscope(&["shattered", "--help"]).stdout).into_owned();
    assert!(
        help.contains("[default: 200]") && help.contains("[default: -2]"),
        "{help}"
    );
    // The recipe flags of the studies that train show theirs too.
    let help = String::from_utf8_lossy(&gradscope(&["degradation", "--help"]).stdout).into_owned();
    assert!(
        help.contains("[default: 0.01]") && help.contains("[default: sgd]"),
        "{help}"
    );
}

#[test]
fn one_name_per_study_for_command_folder_file_and_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let quick = [
        "degradation",
        "--quick",
        "--depths",
        "2",
        "--archs",
        "resnet-bn",
        "--epochs",
        "1",
        "--no-report",
        "-q",
    ];
    for shard in ["1/2", "2/2"] {
        let mut a = quick.to_vec();
        a.extend(["--shard", shard, "--out", path(&out)]);
        assert_ok(&gradscope(&a));
    }
    assert!(out.join("degradation/cells").is_dir());
    assert_ok(&gradscope(&[
        "merge",
        "degradation",
        "--no-report",
        "-q",
        "--out",
        path(&out),
    ]));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("degradation/summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["study"], "degradation");
    assert!(!out.join("training").exists());
    // A study file says the same name; the older `training` is still read.
    let file = tmp.path().join("old.toml");
    std::fs::write(&file, "study = \"training\"\nfoo = 1\n").unwrap();
    let r = gradscope(&["run", path(&file), "--out", path(&out)]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("unknown field `foo`"),
        "{err}"
    );
}

#[test]
fn negative_numbers_are_values_and_reach_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("out");
    for (args, needle) in [
        (&["degradation", "--lr", "-1"][..], "lr"),
        (&["shattered", "--x-min", "-3", "--x-max", "-4"][..], "x_"),
        (&["skips", "--lambdas", "-0.5"][..], "λ"),
    ] {
        let mut a = args.to_vec();
        a.extend(["--out", path(&o)]);
        let r = gradscope(&a);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(
            !err.contains("unexpected argument") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn threads_is_a_flag_of_the_commands_that_run_cells_only() {
    for args in [
        &["archs", "--threads", "2"][..],
        &["report", "--threads", "2"],
        &["--threads", "2", "shattered"],
    ] {
        let r = gradscope(args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && err.contains("unexpected argument '--threads'"),
            "{args:?}: {err}"
        );
    }
    for cmd in [
        "shattered",
        "reproduce",
        "run",
        "merge",
        "train",
        "degradation",
    ] {
        let help = String::from_utf8_lossy(&gradscope(&[cmd, "--help"]).stdout).into_owned();
        assert!(help.contains("--threads <N>"), "{cmd}: {help}");
    }
}

#[test]
fn a_bare_gradscope_prints_the_whole_help() {
    let r = gradscope(&[]);
    assert_eq!(r.status.code(), Some(2));
    let help = String::from_utf8_lossy(&r.stderr);
    for study in gradscope_cli::registry::STUDIES {
        assert!(help.contains(&format!("  {}", study.name())), "{help}");
    }
    for cmd in [
        "reproduce",
        "run",
        "merge",
        "report",
        "archs",
        "bench",
        "train",
    ] {
        assert!(help.contains(&format!("  {cmd}")), "{help}");
    }
    assert!(help.contains("--help"), "{help}");
    assert!(help.contains("Train one net"), "{help}");
    // `train` takes one --arch and --depth, not the study's lists.
    let r = gradscope(&[
        "train", "--arch", "plain", "--depth", "2", "--archs", "plain",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("--archs"), "{err}");
}

#[test]
fn a_study_ends_with_a_table_of_its_main_numbers_unless_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let args = [
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
        path(&out),
    ];
    let r = gradscope(&args);
    assert_ok(&r);
    let table = String::from_utf8_lossy(&r.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("r₁"), "{table}");
    assert!(lines[1].contains('2') && lines[1].contains('8'), "{table}");
    // The numbers are the summary's.
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("shattered/summary.json")).unwrap())
            .unwrap();
    let r1 = s["results"][0]["adjacent_correlation"]["mean"]
        .as_f64()
        .unwrap();
    assert!(
        lines[2].starts_with("  plain-bn") && lines[2].contains(&format!("{r1:.3}")),
        "{table}"
    );
    assert!(lines[3].starts_with("  resnet-bn"), "{table}");
    let mut quiet = args.to_vec();
    quiet.push("-q");
    let r = gradscope(&quiet);
    assert_ok(&r);
    assert!(
        r.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
}

#[test]
fn the_docs_name_every_registered_study() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let data = std::fs::read_to_string(root.join("docs/data.md")).unwrap();
    for study in gradscope_cli::registry::STUDIES {
        let name = study.name();
        assert!(
            readme.contains(&format!("gradscope {name}")),
            "README.md shows no `gradscope {name}`"
        );
        assert!(
            data.contains(&format!("## `{name}/`")),
            "docs/data.md has no section `{name}/`"
        );
        assert!(
            root.join("examples/studies")
                .join(format!("{name}.toml"))
                .exists(),
            "no examples/studies/{name}.toml"
        );
    }
}

#[test]
fn threads_beyond_the_bound_are_a_one_line_error_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let t = std::time::Instant::now();
    let o = gradscope(&[
        "shattered",
        "--quick",
        "--threads",
        "100000",
        "--out",
        path(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--threads 100000 is more than 1024"), "{err}");
    assert!(!out.exists());
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn sigterm_stops_training_after_the_epoch_in_flight() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // Enough epochs that the run would take minutes if the signal were ignored.
    let child = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args([
            "train",
            "--arch",
            "plain",
            "--depth",
            "2",
            "--epochs",
            "5000",
            "-q",
            "--no-report",
        ])
        .args(["--out", path(&out)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let checkpointed = || {
        walk(&out)
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == "state.json"))
    };
    while !checkpointed() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(checkpointed(), "no epoch finished in 120 s");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let stopped = Instant::now();
    let done = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("resume"),
        "{err}"
    );
    assert!(stopped.elapsed() < Duration::from_secs(60));
}
