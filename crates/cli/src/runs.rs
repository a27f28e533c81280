//! `train` runs as things to find again: each in its own folder under
//! `<out>/degradation/runs/`, named from its configuration (a short hash,
//! after `--name` or `<arch>-<depth>`), listed by `gradscope runs` and put
//! side by side by `gradscope compare`.
//!
//! A run folder holds the study's result files once the run ends, its
//! checkpoint in `checkpoint/` (unless `--checkpoints` puts it elsewhere),
//! and `live/`: `config.json` (the configuration, written before the first
//! step) and the files the run appends to as it trains (see
//! `gradscope_studies::live`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use gradscope_contract::training::TrainingData;
use serde::{Deserialize, Serialize};

/// The live subfolder of a run.
pub const LIVE: &str = "live";
/// The checkpoint subfolder of a run.
pub const CHECKPOINT: &str = "checkpoint";
/// The configuration file of a run, in its live subfolder.
const CONFIG: &str = "config.json";
/// Hex digits of the configuration hash in a run's folder name.
const HASH_DIGITS: usize = 8;

/// What `live/config.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    /// The folder name.
    pub name: String,
    /// The configuration hash (of `config`).
    pub hash: String,
    /// Everything that shapes the run's numbers (the study's cell identity).
    pub config: serde_json::Value,
    /// The command line that started it.
    pub command: String,
}

/// The folder name of a run: `<label>-<hash>`, `label` a file-safe stem.
pub fn run_name(label: &str, identity: &serde_json::Value) -> String {
    let key = gradscope_studies::cells::config_key(identity);
    format!(
        "{}-{}",
        gradscope_studies::shattered::file_stem(label),
        &key[..HASH_DIGITS]
    )
}

/// Where runs go under a data folder.
pub fn runs_root(out: &Path) -> PathBuf {
    out.join(gradscope_studies::training::NAME).join("runs")
}

/// Check that `dir` holds no run or a run of `config` (a `--run-dir` named
/// twice); then write `config` there.
pub fn claim(dir: &Path, config: &RunConfig, force: bool) -> Result<()> {
    let path = dir.join(LIVE).join(CONFIG);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let old: RunConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run configuration", path.display()))?;
        if old.config != config.config && !force {
            bail!(
                "{} holds a run of another configuration ({}); give another --run-dir or --name, or --force to replace it",
                dir.display(),
                differences(&[&old.config, &config.config])
                    .iter()
                    .map(|(k, v)| format!("{k}: {} → {}", v[0], v[1]))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    gradscope_contract::io::create_dir(&dir.join(LIVE))?;
    gradscope_contract::io::write_atomic(
        &path,
        &serde_json::to_vec_pretty(config).expect("config serialises"),
    )?;
    Ok(())
}

/// `a.b.c → value` for every leaf of `v`.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// The settings on which `configs` differ: (key, one value per config).
pub fn differences(configs: &[&serde_json::Value]) -> Vec<(String, Vec<String>)> {
    let flat: Vec<BTreeMap<String, String>> = configs
        .iter()
        .map(|c| {
            let mut m = BTreeMap::new();
            flatten("", c, &mut m);
            m
        })
        .collect();
    let mut keys: Vec<&String> = flat.iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let vals: Vec<String> = flat
                .iter()
                .map(|m| m.get(k).cloned().unwrap_or_else(|| "—".into()))
                .collect();
            vals.iter()
                .any(|v| v != &vals[0])
                .then(|| (k.clone(), vals))
        })
        .collect()
}

/// One run found on disk.
pub struct FoundRun {
    /// Its folder.
    pub dir: PathBuf,
    /// `live/config.json`, when written.
    pub config: Option<RunConfig>,
    /// The results, once the run has ended.
    pub data: Option<TrainingData>,
    /// Rows of `live/epochs.csv`: epoch, train loss, train error, test loss, test error.
    pub epochs: Vec<[f64; 5]>,
}

impl FoundRun {
    fn read(dir: &Path) -> FoundRun {
        let config = std::fs::read_to_string(dir.join(LIVE).join(CONFIG))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let data = TrainingData::read(dir).ok();
        let epochs = std::fs::read_to_string(dir.join(LIVE).join("epochs.csv"))
            .map(|t| {
                t.lines()
                    .skip(1)
                    .filter_map(|l| {
                        let f: Vec<f64> = l.split(',').filter_map(|v| v.parse().ok()).collect();
                        (f.len() == 7).then(|| [f[0], f[3], f[4], f[5], f[6]])
                    })
                    .collect()
            })
            .unwrap_or_default();
        FoundRun {
            dir: dir.to_path_buf(),
            config,
            data,
            epochs,
        }
    }

    /// The folder name.
    pub fn name(&self) -> String {
        self.dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// The configuration: from `live/config.json`, else the results' summary.
    pub fn config_json(&self) -> serde_json::Value {
        match (&self.config, &self.data) {
            (Some(c), _) => c.config.clone(),
            (None, Some(d)) => serde_json::to_value(&d.summary.config).unwrap_or_default(),
            _ => serde_json::Value::Null,
        }
    }

    /// Epochs the run is configured for.
    fn planned_epochs(&self) -> Option<u64> {
        self.config_json()
            .pointer("/train/epochs")
            .and_then(|v| v.as_u64())
    }

    /// finished, diverged, or stopped after epoch k.
    pub fn status(&self) -> String {
        match &self.data {
            Some(d) if d.summary.results.iter().any(|r| r.diverged > 0) => "diverged".into(),
            Some(_) => "finished".into(),
            None => format!(
                "stopped after epoch {} of {}",
                self.epochs.len(),
                self.planned_epochs().map_or("?".into(), |e| e.to_string())
            ),
        }
    }
}

/// Every run under `root`, by name.
pub fn find_all(root: &Path) -> Vec<FoundRun> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.iter().map(|d| FoundRun::read(d)).collect()
}

/// The run named `name` (its folder name, a unique prefix of it, or a path).
pub fn find(root: &Path, name: &str) -> Result<FoundRun> {
    let as_path = Path::new(name);
    if as_path.is_dir() && as_path.join(LIVE).exists() {
        return Ok(FoundRun::read(as_path));
    }
    let all = find_all(root);
    if let Some(r) = all.iter().position(|r| r.name() == name) {
        return Ok(all.into_iter().nth(r).expect("found"));
    }
    let mut matching: Vec<FoundRun> = all
        .into_iter()
        .filter(|r| r.name().starts_with(name))
        .collect();
    match matching.len() {
        1 => Ok(matching.pop().expect("one")),
        0 => bail!(
            "no run `{name}` in {} (`gradscope runs` lists them)",
            root.display()
        ),
        _ => bail!(
            "`{name}` names {} runs: {}",
            matching.len(),
            matching
                .iter()
                .map(FoundRun::name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.4}"))
}

/// The table `gradscope runs` prints.
pub fn list_text(root: &Path) -> String {
    let runs = find_all(root);
    if runs.is_empty() {
        return format!(
            "no runs in {} (`gradscope train` makes them)\n",
            root.display()
        );
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let c = r.config_json();
            let last = r.epochs.last();
            vec![
                r.name(),
                c.pointer("/archs/0")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .into(),
                c.pointer("/depths/0").map_or("?".into(), |v| v.to_string()),
                format!(
                    "{}/{}",
                    r.epochs.len(),
                    r.planned_epochs().map_or("?".into(), |e| e.to_string())
                ),
                cell(last.map(|e| e[2])),
                cell(last.map(|e| e[4])),
                r.status(),
            ]
        })
        .collect();
    crate::summary::table(
        &[
            "run",
            "arch",
            "depth",
            "epochs",
            "train error",
            "test error",
            "status",
        ],
        &rows,
    )
}

/// The text `gradscope compare` prints: the settings that differ, then the
/// curves epoch by epoch, one column per run.
pub fn compare_text(runs: &[FoundRun]) -> String {
    let names: Vec<String> = runs.iter().map(FoundRun::name).collect();
    let configs: Vec<serde_json::Value> = runs.iter().map(FoundRun::config_json).collect();
    let refs: Vec<&serde_json::Value> = configs.iter().collect();
    let diff = differences(&refs);
    let mut out = String::new();
    let mut head = vec!["setting".to_string()];
    head.extend(names.iter().cloned());
    let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
    if diff.is_empty() {
        out.push_str("the runs share one configuration\n");
    } else {
        let rows: Vec<Vec<String>> = diff
            .into_iter()
            .map(|(k, vals)| std::iter::once(k).chain(vals).collect())
            .collect();
        out.push_str(&crate::summary::table(&head_refs, &rows));
    }
    out.push('\n');
    let epochs = runs.iter().map(|r| r.epochs.len()).max().unwrap_or(0);
    for (what, col) in [
        ("train loss", 1),
        ("train error", 2),
        ("test loss", 3),
        ("test error", 4),
    ] {
        let mut head = vec![format!("epoch: {what}")];
        head.extend(names.iter().cloned());
        let head_refs: Vec<&str> = head.iter().map(String::as_str).collect();
        let rows: Vec<Vec<String>> = (0..epochs)
            .map(|e| {
                std::iter::once((e + 1).to_string())
                    .chain(
                        runs.iter()
                            .map(|r| cell(r.epochs.get(e).map(|row| row[col]))),
                    )
                    .collect()
            })
            .collect();
        out.push_str(&crate::summary::table(&head_refs, &rows));
        out.push('\n');
    }
    out
}

/// The curves of `runs` as one CSV: `run,epoch,train_loss,train_error,test_loss,test_error`.
pub fn compare_csv(runs: &[FoundRun]) -> String {
    let mut out = String::from("run,epoch,train_loss,train_error,test_loss,test_error\n");
    for r in runs {
        for e in &r.epochs {
            out.push_str(&format!(
                "{},{},{},{},{},{}\n",
                r.name(),
                e[0],
                e[1],
                e[2],
                e[3],
                e[4]
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_every_setting_that_differs() {
        let a = serde_json::json!({"train": {"lr": 0.1, "epochs": 3}, "width": 16});
        let b = serde_json::json!({"train": {"lr": 0.001, "epochs": 3}, "width": 16, "x": 1});
        let d = differences(&[&a, &b]);
        assert_eq!(
            d,
            vec![
                ("train.lr".to_string(), vec!["0.1".into(), "0.001".into()]),
                ("x".to_string(), vec!["—".into(), "1".into()]),
            ]
        );
        assert!(differences(&[&a, &a]).is_empty());
    }

    #[test]
    fn a_run_name_is_its_label_and_a_configuration_hash() {
        let a = serde_json::json!({"lr": 0.1});
        let b = serde_json::json!({"lr": 0.001});
        let (na, nb) = (run_name("plain-4", &a), run_name("plain-4", &b));
        assert!(na.starts_with("plain-4-") && na.len() == "plain-4-".len() + HASH_DIGITS);
        assert_ne!(na, nb);
        assert_eq!(na, run_name("plain-4", &a));
    }
}
