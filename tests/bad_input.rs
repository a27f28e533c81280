//! The bad-input corpus: hundreds of malformed, hostile and absurd inputs —
//! study files, command lines, output folders (weights and data files:
//! `bad_files.rs`) — each refused with a one-line error that names the
//! problem, none panicking, none leaving a partial file behind.
//!
//! Study files are mutated key by key from every study's defaults and the
//! example files (wrong types, NaN/inf, negative, zero and huge values,
//! unknown keys), then byte by byte (a seeded fuzz loop). The parameters are
//! validated in-process (validation never allocates the net); a sample of the
//! same cases goes through the binary to check exit codes and output folders.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use gradscope_cli::registry::{STUDIES, parse_study_file};

mod common;
use common::{gradscope, path, refused, walk};

/// What validating one study file gave.
#[derive(Debug)]
enum Outcome {
    Valid,
    Refused(String),
}

/// Parse and validate a study file's text as the binary's `run` does, in-process.
fn validate(text: &str) -> Outcome {
    let file = Path::new("case.toml");
    let (study, table) = match parse_study_file(text, file) {
        Ok(x) => x,
        Err(e) => return Outcome::Refused(e.to_string()),
    };
    match study.check_table(table, file) {
        Ok(()) => Outcome::Valid,
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

/// Validate without letting a panic escape: a panic is a failure of its own.
fn validate_caught(text: &str) -> Result<Outcome, String> {
    catch_unwind(AssertUnwindSafe(|| validate(text))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// The starting points: every study's defaults, and the example files.
fn seeds() -> Vec<(String, toml::Table)> {
    let mut out: Vec<(String, toml::Table)> = STUDIES
        .iter()
        .map(|study| {
            let mut t = study.params_table(false);
            t.insert("study".into(), toml::Value::String(study.name().into()));
            (format!("{} defaults", study.name()), t)
        })
        .collect();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/studies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let t: toml::Table = toml::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        out.push((f.file_name().unwrap().to_string_lossy().into_owned(), t));
    }
    out
}

/// Every leaf of a table as a key path (tables recursed, arrays are leaves).
fn leaves(t: &toml::Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in t {
        prefix.push(k.clone());
        match v {
            toml::Value::Table(sub) => leaves(sub, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

fn set(t: &mut toml::Table, key: &[String], v: toml::Value) {
    match key {
        [last] => {
            t.insert(last.clone(), v);
        }
        [first, rest @ ..] => set(t[first].as_table_mut().unwrap(), rest, v),
        [] => unreachable!(),
    }
}

/// Keys that are counts or sizes: zero, negative and absurd values must be refused.
const SIZES: &[&str] = &[
    "width",
    "side",
    "examples",
    "batch",
    "chain_depth",
    "jacobian_width",
    "jacobian_depths",
    "points",
    "seeds",
    "depth",
    "depths",
    "epochs",
    "batch_size",
    "path_batch",
    "image_batch",
    "image_plane_seeds",
];
/// (study, key) where 0 is a documented setting, not a bad size: the
/// curvature study with no training measures at initialisation only.
const ZERO_IS_A_SETTING: &[(&str, &str)] = &[("curvature", "train.epochs")];
/// (study, key) where an empty list is a documented setting: the shattered,
/// norms and correlation studies with no image archs measure no nets on images.
const EMPTY_IS_A_SETTING: &[(&str, &str)] = &[
    ("shattered", "image_archs"),
    ("norms", "image_archs"),
    ("correlation", "image_archs"),
];
/// Keys whose value is free text (paths): any string is valid at validation.
const PATHS: &[&str] = &["save_weights", "load_weights", "checkpoints"];

/// The bad values tried on every key, with whether each must be refused there.
fn mutations(key: &str, original: &toml::Value) -> Vec<(String, toml::Value, bool)> {
    use toml::Value as V;
    let is_size = SIZES.contains(&key);
    let is_array = matches!(original, V::Array(_));
    let is_bool = matches!(original, V::Boolean(_));
    let mut m = vec![
        ("a table".to_string(), V::Table(toml::toml! { x = 1 }), true),
        (
            "a nested array".into(),
            V::Array(vec![V::Array(vec![])]),
            true,
        ),
        ("NaN".into(), V::Float(f64::NAN), true),
        ("+inf".into(), V::Float(f64::INFINITY), true),
        ("-inf".into(), V::Float(f64::NEG_INFINITY), true),
        (
            "1e308".into(),
            V::Float(1e308),
            !key.ends_with("_gib") || is_size,
        ),
        ("-1".into(), V::Integer(-1), is_size || is_array || is_bool),
        ("0".into(), V::Integer(0), is_size || is_array || is_bool),
        (
            "i64::MAX".into(),
            V::Integer(i64::MAX),
            is_size || is_array || is_bool,
        ),
        (
            "hostile text".into(),
            V::String("<script>alert(1)</script>\u{0}\n../../etc".into()),
            !PATHS.contains(&key),
        ),
        ("true".into(), V::Boolean(true), !is_bool),
    ];
    if is_array {
        m.push(("an empty list".into(), V::Array(vec![]), true));
        m.push((
            "a list with 0".into(),
            V::Array(vec![V::Integer(0)]),
            key == "depths",
        ));
        m.push((
            "a list with a huge value".into(),
            V::Array(vec![V::Integer(1 << 40)]),
            key == "depths",
        ));
    }
    // Values the key accepts in kind (e.g. a float for `x_min`) are not
    // claimed to be errors, only to be handled without a panic.
    if matches!(original, V::Float(_)) {
        for (name, _, must) in m.iter_mut() {
            if matches!(name.as_str(), "-1" | "0" | "i64::MAX" | "1e308") {
                *must = false;
            }
        }
    }
    m
}

struct Tally {
    cases: usize,
    refused: usize,
    problems: Vec<String>,
}

impl Tally {
    fn record(&mut self, label: &str, text: &str, must_refuse: bool) {
        self.cases += 1;
        match validate_caught(text) {
            Err(panic) => self.problems.push(format!("{label}: panicked: {panic}")),
            Ok(Outcome::Valid) if must_refuse => {
                self.problems.push(format!("{label}: accepted"));
            }
            Ok(Outcome::Valid) => {}
            Ok(Outcome::Refused(e)) => {
                self.refused += 1;
                if e.contains('\n') || e.trim().is_empty() {
                    self.problems
                        .push(format!("{label}: not a one-line error: {e:?}"));
                }
            }
        }
    }
}

#[test]
fn every_key_of_every_study_refuses_bad_values_with_one_line() {
    let mut tally = Tally {
        cases: 0,
        refused: 0,
        problems: vec![],
    };
    for (origin, table) in seeds() {
        let mut keys = vec![];
        leaves(&table, &mut vec![], &mut keys);
        for key in keys.iter().filter(|k| k[0] != "study") {
            let name = key.last().unwrap().as_str();
            let original = key
                .iter()
                .try_fold(&toml::Value::Table(table.clone()), |v, k| v.get(k))
                .unwrap()
                .clone();
            let study = table.get("study").and_then(|s| s.as_str()).unwrap_or("");
            let zero_is_a_setting = ZERO_IS_A_SETTING.contains(&(study, key.join(".").as_str()));
            let empty_is_a_setting = EMPTY_IS_A_SETTING.contains(&(study, key.join(".").as_str()));
            for (what, value, must_refuse) in mutations(name, &original) {
                let must_refuse = must_refuse
                    && !(zero_is_a_setting && what == "0")
                    && !(empty_is_a_setting && what == "an empty list");
                let mut t = table.clone();
                set(&mut t, key, value);
                let label = format!("{origin}: {} = {what}", key.join("."));
                tally.record(&label, &toml::to_string(&t).unwrap(), must_refuse);
            }
        }
        // Unknown keys, at the top and inside nested tables.
        let mut t = table.clone();
        t.insert("widht".into(), toml::Value::Integer(3));
        tally.record(
            &format!("{origin}: unknown key"),
            &toml::to_string(&t).unwrap(),
            true,
        );
        if table.contains_key("train") {
            let mut t = table.clone();
            set(
                &mut t,
                &["train".into(), "epoch".into()],
                toml::Value::Integer(3),
            );
            tally.record(
                &format!("{origin}: unknown nested key"),
                &toml::to_string(&t).unwrap(),
                true,
            );
        }
    }
    assert!(
        tally.problems.is_empty(),
        "{} of {} cases:\n{}",
        tally.problems.len(),
        tally.cases,
        tally.problems.join("\n")
    );
    eprintln!("{} cases, {} refused", tally.cases, tally.refused);
    assert!(tally.cases >= 400, "{} cases", tally.cases);
    assert!(
        tally.refused * 10 >= tally.cases * 9,
        "{} of {} refused",
        tally.refused,
        tally.cases
    );
}

#[test]
fn mangled_study_files_never_panic() {
    // A seeded fuzz loop: bytes deleted, duplicated, replaced in valid files.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let noise = [
        "\"", "[", "]", "=", "\n", "{", "}", "#", "-", "9", ".", "'", "\\", "\u{feff}", "\0", "é",
    ];
    let mut tally = Tally {
        cases: 0,
        refused: 0,
        problems: vec![],
    };
    for (origin, table) in seeds() {
        let text = toml::to_string(&table).unwrap();
        for i in 0..120 {
            let mut chars: Vec<char> = text.chars().collect();
            for _ in 0..1 + next(4) {
                let at = next(chars.len());
                match next(3) {
                    0 => {
                        chars.remove(at);
                    }
                    1 => chars
                        .splice(at..at, noise[next(noise.len())].chars())
                        .for_each(drop),
                    _ => chars[at] = noise[next(noise.len())].chars().next().unwrap(),
                }
            }
            let mangled: String = chars.into_iter().collect();
            tally.record(&format!("{origin} #{i}"), &mangled, false);
        }
    }
    assert!(tally.problems.is_empty(), "{}", tally.problems.join("\n"));
    eprintln!("{} mangled files, {} refused", tally.cases, tally.refused);
    assert!(tally.cases >= 300);
    // Most mangled files are refused; some edits land in comments or values and stay valid.
    assert!(
        tally.refused * 2 >= tally.cases,
        "{} of {} refused",
        tally.refused,
        tally.cases
    );
}

/// Files under `dir`, recursively.
#[test]
fn the_binary_refuses_bad_study_files_and_command_lines_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = path(&out);
    let file = tmp.path().join("study.toml");
    let f = path(&file);
    let files: &[(&str, &str)] = &[
        ("study = \"shattered\"\nwidth = \"wide\"\n", "width"),
        ("study = \"shattered\"\nwidth = -3\n", "width"),
        ("study = \"shattered\"\nwidth = 0\n", "width"),
        ("study = \"shattered\"\ndepths = [1, 0]\n", "depth"),
        ("study = \"shattered\"\ndepths = []\n", "depths"),
        ("study = \"shattered\"\nx_min = nan\n", "x_min"),
        ("study = \"shattered\"\nx_max = inf\n", "x_max"),
        ("study = \"shattered\"\nx_min = 1.0\nx_max = 1.0\n", "x_"),
        ("study = \"shattered\"\npoints = 99999999999\n", "points"),
        (
            "study = \"shattered\"\nwidth = 60000\ndepths = [2000]\n",
            "GiB",
        ),
        (
            "study = \"shattered\"\narchs = [\"resnet-bn:alpha=nan\"]\n",
            "alpha",
        ),
        (
            "study = \"shattered\"\narchs = [\"<script>\"]\n",
            "<script>",
        ),
        ("study = \"shattered\"\ndtype = \"f16\"\n", "f16"),
        ("study = \"shattered\"\nseeds = 1e9\n", "seeds"),
        ("study = \"degradation\"\nepochs = 3\n", "epochs"),
        (
            "study = \"degradation\"\nwidth = 12000\ndepths = [2]\n",
            "GiB",
        ),
        (
            "study = \"degradation\"\nmemory_limit_gib = 0\n",
            "memory_limit_gib",
        ),
        (
            "study = \"degradation\"\n[train]\nbatch_size = 0\n",
            "batch_size",
        ),
        (
            "study = \"degradation\"\n[train.optimizer]\nkind = \"sgd\"\nlr = -0.1\n",
            "lr",
        ),
        (
            "study = \"degradation\"\n[train.optimizer]\nkind = \"rmsprop\"\nlr = 0.1\n",
            "rmsprop",
        ),
        (
            "study = \"degradation\"\ndata = \"mnist:/nonexistent\"\n",
            "nonexistent",
        ),
        ("study = \"degradation\"\ndata = \"imagenet\"\n", "imagenet"),
        (
            "study = \"degradation\"\narchs = [\"conv-resnet\"]\ndepths = [21]\n",
            "depth",
        ),
        (
            "study = \"shattered\"\nimage_plane_side = 4\n",
            "image_plane_side",
        ),
        (
            "study = \"shattered\"\nimage_plane_third = 1\n",
            "image_plane_third",
        ),
        ("study = \"norms\"\nimage_depths = [21]\n", "image_depths"),
        ("study = \"norms\"\nimage_batch = 0\n", "image_batch"),
        (
            "study = \"norms\"\nimage_data = \"mnist:/nonexistent\"\n",
            "nonexistent",
        ),
        (
            "study = \"correlation\"\nimage_depths = [21]\n",
            "image_depths",
        ),
        ("study = \"correlation\"\nimage_batch = 1\n", "image_batch"),
        (
            "study = \"correlation\"\nimage_data = \"mnist:/nonexistent\"\n",
            "nonexistent",
        ),
        ("study = \"ensemble\"\ndepth = 0\n", "depth"),
        (
            "study = \"ensemble\"\nload_weights = \"/nonexistent.safetensors\"\narchs = [\"resnet-bn\"]\nseeds = 1\n",
            "nonexistent",
        ),
        ("study = 3\n", "study"),
        ("[[study]]\n", "study"),
        (
            "study = \"shattered\"\nwidth = 3\nwidth = 4\n",
            "duplicate key",
        ),
        ("\u{0}\u{1}\u{2}", "line"),
        ("study = \"shattered", "line"),
    ];
    for (text, needle) in files {
        std::fs::write(&file, text).unwrap();
        refused(&["run", f, "--out", o, "--reports", o], &out, needle);
    }
    let not_utf8 = tmp.path().join("binary.toml");
    std::fs::write(&not_utf8, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    refused(&["run", path(&not_utf8), "--out", o], &out, "binary.toml");
    refused(&["run", path(tmp.path()), "--out", o], &out, "");

    let lines: &[(&[&str], &str)] = &[
        (&["shattered", "--width", "-1"], "-1"),
        (&["shattered", "--width", "1e3"], "width"),
        (&["shattered", "--depths", "1,,2"], "depths"),
        (&["shattered", "--depths", "4,2,x"], "depths"),
        (&["shattered", "--points", "0"], "points"),
        (&["shattered", "--seeds", "18446744073709551616"], "seeds"),
        (&["shattered", "--archs", "resnet-bn:alpha=inf"], "alpha"),
        (&["shattered", "--archs", "resnet:branch=0"], "branch"),
        (&["shattered", "--bn-mode", "sideways"], "sideways"),
        (&["shattered", "--width", "nan"], "width"),
        (&["shattered", "--load-weights", "/dev/null"], "weights"),
        (&["shattered", "--threads", "0"], "threads"),
        (&["shattered", "--threads", "many"], "threads"),
        (&["--threads", "2", "shattered"], "threads"),
        (&["archs", "--threads", "2"], "threads"),
        (&["shattered", "--shard", "3/2"], "shard"),
        (&["degradation", "--lr", "nan"], "lr"),
        (&["degradation", "--epochs", "0"], "epochs"),
        (&["degradation", "--schedule", "step:5,2"], "milestones"),
        (&["degradation", "--schedule", "linear"], "linear"),
        (
            &["degradation", "--data", "cifar10:/nonexistent"],
            "nonexistent",
        ),
        (&["degradation", "--max-train", "0"], "max_train"),
        (
            &[
                "train",
                "--arch",
                "resnet-bn",
                "--depth",
                "2",
                "--momentum",
                "1.5",
            ],
            "momentum",
        ),
        (&["train", "--arch", "resnet-bn"], "--depth"),
        (&["ensemble", "--lesion-draws", "-2"], "-2"),
        (&["merge", "nope"], "nope"),
        (
            &["report", "--out", "/nonexistent-data"],
            "nonexistent-data",
        ),
        (&["bench", "--workloads", "everything"], "everything"),
        (&["bench", "--runs", "0"], "runs"),
    ];
    for (args, needle) in lines {
        let mut a = args.to_vec();
        if !matches!(a[0], "report" | "bench") {
            a.extend(["--out", o]);
        }
        refused(&a, &out, needle);
    }
}

#[test]
fn unwritable_output_folders_are_one_line_errors_with_nothing_left() {
    let tmp = tempfile::tempdir().unwrap();
    let a_file = tmp.path().join("a-file");
    std::fs::write(&a_file, b"x").unwrap();
    // An output folder under a regular file cannot be created.
    let under_file = a_file.join("out");
    let r = gradscope(&["shattered", "--quick", "--out", path(&under_file)]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.trim_end().lines().count() == 1 && err.contains("a-file"),
        "{err}"
    );
    // An unwritable report folder is found before the run, not after it.
    let data = tmp.path().join("data");
    let r = gradscope(&[
        "shattered",
        "--quick",
        "--archs",
        "plain",
        "--depths",
        "1",
        "--out",
        path(&data),
        "--reports",
        path(&under_file),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.trim_end().lines().count() == 1 && err.contains("output folder"),
        "{err}"
    );
    assert!(walk(&data).is_empty(), "{:?}", walk(&data));

    // A read-only folder stands in for a full disk. Root ignores permissions,
    // so the case is only meaningful (and only asserted) when they bind.
    let ro = tmp.path().join("read-only");
    std::fs::create_dir(&ro).unwrap();
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    perms.set_mode(0o555);
    std::fs::set_permissions(&ro, perms).unwrap();
    let binds = std::fs::write(ro.join("probe"), b"x").is_err();
    if binds {
        let r = gradscope(&[
            "shattered",
            "--quick",
            "--archs",
            "plain",
            "--depths",
            "1",
            "--no-report",
            "--out",
            path(&ro),
        ]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            !r.status.success() && err.trim_end().lines().count() == 1,
            "{err}"
        );
        assert!(walk(&ro).is_empty());
    } else {
        eprintln!("running as root: the read-only folder case is not asserted");
        std::fs::remove_file(ro.join("probe")).unwrap();
    }
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(&ro, perms).unwrap();
}
