//! The trainability study's data: which variants of the grammar train, at
//! which depth and learning rate. Its parameters, `summary.json` (one
//! result per arch × depth × learning rate and one verdict per arch ×
//! depth), `runs.json` (every run's history without its statistics), the
//! CSV tables beside them, and the gradient statistics of the seed-0 runs
//! (`train_stats.csv`, `grad_histograms.csv`, `weight_histograms.csv`).

use std::path::{Path, PathBuf};

use gradscope_spec::{Arch, DataSource, Decay, OptimizerParams, Precision, Schedule, TrainParams};
use gradscope_stats::MeanStd;
use serde::{Deserialize, Serialize};

use crate::io::{Csv, create_dir, ensure, num, read_json, read_summary, write_json};
use crate::training::DataInfo;
use crate::{History, Provenance, Result};

/// Folder name under the data and report roots.
pub const NAME: &str = "trainability";
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.trainability/1";

/// Unchecked parameters. The default is what `reproduce` runs: a deep plain
/// net beside Fixup and ReZero without normalisation; the full
/// sweep ([`full`](Self::full), `examples/studies/trainability.toml`) trains
/// every shortcut, normaliser and init of the grammar at depths 8, 32 and
/// 128; [`quick`](Self::quick) is a first look in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct TrainabilityParams {
    /// MLP architectures to train (specs of the grammar).
    #[arg(long, value_parser = crate::args::arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<Arch>,
    /// Blocks.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// Learning rates each (arch, depth) trains at (replacing the recipe's).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub lrs: Vec<f64>,
    /// Width of the blocks.
    #[arg(long)]
    pub width: usize,
    /// Runs per (arch, depth, learning rate).
    #[arg(long)]
    pub seeds: usize,
    /// Base seed.
    #[arg(long)]
    pub seed: u64,
    /// Data set.
    #[arg(long, value_name = "SOURCE")]
    pub data: DataSource,
    /// Train on at most this many examples (all when unset).
    #[arg(long)]
    pub max_train: Option<usize>,
    /// A run "reaches the target" at the first epoch whose training error is at most this.
    #[arg(long)]
    pub target_error: f64,
    /// Training recipe (its learning rate is replaced by each of `lrs`;
    /// its gradient statistics are recorded for seed 0 only).
    #[arg(skip)]
    pub train: TrainParams,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Precision,
    /// Keep a checkpoint per cell here, so an interrupted run resumes mid-training.
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
}

fn arch(s: &str) -> Arch {
    s.parse().expect("a preset of the grammar")
}

impl TrainabilityParams {
    /// The full sweep: 24 variants × depths 8, 32, 128 × four learning
    /// rates × three seeds (864 runs).
    pub fn full() -> Self {
        TrainabilityParams {
            archs: [
                "plain",
                "plain-bn",
                "plain:norm=ln",
                "plain:norm=gn(2)",
                "plain:norm=rms",
                "plain:norm=wn",
                "looks-linear",
                "resnet",
                "resnet-bn",
                "resnet-bn:order=post",
                "resnet:norm=ln,order=postnorm",
                "resnet:skip=scale(0.5)",
                "resnet:skip=gate(-2)",
                "resnet:skip=shortcut-gate(-2)",
                "resnet:skip=proj",
                "resnet:skip=dropout(0.3)",
                "resnet:init=fixup",
                "resnet:init=skipinit",
                "resnet:init=rezero",
                "highway",
                "xskip:lambda=0.5",
                "xskip-ln:lambda=2",
                "xskip-ln:lambda=learn(2)",
                "rskip-ln:lambda=3",
            ]
            .into_iter()
            .map(arch)
            .collect(),
            depths: vec![8, 32, 128],
            lrs: vec![0.01, 0.03, 0.1, 0.3],
            width: 32,
            seeds: 3,
            seed: 0,
            data: DataSource::Digits,
            max_train: Some(512),
            target_error: 0.1,
            train: TrainParams {
                epochs: 6,
                batch_size: 64,
                optimizer: OptimizerParams::Sgd {
                    lr: 0.1,
                    momentum: 0.9,
                    weight_decay: 0.0,
                    nesterov: false,
                },
                schedule: Schedule {
                    decay: Decay::Constant,
                    warmup_epochs: 0,
                },
                seed: 0,
                log_every: 0,
                probe_points: 0,
                similarity_examples: 0,
                stats_every: None,
            },
            dtype: Precision::F32,
            checkpoints: None,
        }
    }
}

impl Default for TrainabilityParams {
    /// What `reproduce` runs: a deep plain net beside Fixup and ReZero
    /// without normalisation, at depths 8 and 32, two learning rates, three
    /// seeds, 4 epochs on 384 digits. SkipInit is left to the full sweep:
    /// without a normaliser its block x + α·F(x), α₀ = 0, is ReZero's.
    fn default() -> Self {
        TrainabilityParams {
            archs: ["plain", "resnet:init=fixup", "resnet:init=rezero"]
                .into_iter()
                .map(arch)
                .collect(),
            depths: vec![8, 32],
            lrs: vec![0.03, 0.1],
            max_train: Some(384),
            train: TrainParams {
                epochs: 4,
                ..Self::full().train
            },
            ..Self::full()
        }
    }
}

impl TrainabilityParams {
    /// A first look in seconds: plain and Fixup at depth 8, one learning
    /// rate, one seed, two epochs.
    pub fn quick() -> Self {
        let d = Self::default();
        TrainabilityParams {
            archs: d.archs[..2].to_vec(),
            depths: vec![8],
            lrs: vec![0.1],
            seeds: 1,
            max_train: Some(128),
            train: TrainParams {
                epochs: 2,
                ..d.train
            },
            ..d
        }
    }
}

/// One (arch, depth, learning rate) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrResult {
    /// Architecture spec.
    pub arch: String,
    /// Blocks.
    pub depth: usize,
    /// Learning rate.
    pub lr: f64,
    /// Final training error over the seeds that did not diverge.
    pub final_train_error: MeanStd,
    /// Final test error over the seeds that did not diverge.
    pub final_test_error: MeanStd,
    /// Seeds that diverged (a loss not finite or past the bound, a
    /// non-finite gradient or parameter), counted, never dropped.
    pub diverged: usize,
    /// Per seed, the step at which it diverged (null: it did not).
    pub diverged_at: Vec<Option<usize>>,
    /// Per seed, the first epoch whose training error is at most the target (null: never).
    pub epochs_to_target: Vec<Option<usize>>,
}

/// The verdict on one (arch, depth) over the learning-rate grid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trainability {
    /// Architecture spec.
    pub arch: String,
    /// Blocks.
    pub depth: usize,
    /// The largest learning rate of the grid at which no seed diverged (null: none).
    pub largest_stable_lr: Option<f64>,
    /// The learning rate with the lowest mean final training error among
    /// those where no seed diverged (null: none).
    pub best_lr: Option<f64>,
    /// Final training error at `best_lr` (NaN when there is none).
    pub best_train_error: MeanStd,
    /// Final test error at `best_lr`.
    pub best_test_error: MeanStd,
    /// Seeds at `best_lr` that reached the target error.
    pub reached_target: usize,
    /// Runs that diverged, over every learning rate and seed.
    pub diverged: usize,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainabilitySummary {
    /// Layout version, `gradscope.trainability/1`.
    pub schema: String,
    /// Study name, `trainability`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters.
    pub config: TrainabilityParams,
    /// The data set.
    pub data: DataInfo,
    /// One per (arch, depth, lr), archs in config order, then depths, then lrs.
    pub results: Vec<LrResult>,
    /// One per (arch, depth), archs in config order, then depths.
    pub verdicts: Vec<Trainability>,
}

/// One run, in `runs.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// Cell key.
    pub key: String,
    /// Architecture spec.
    pub arch: String,
    /// Blocks.
    pub depth: usize,
    /// Learning rate.
    pub lr: f64,
    /// Seed index.
    pub seed: usize,
    /// The run's history (its statistics in `train_stats.csv` and the
    /// histogram tables, not here).
    pub history: History,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Every run's history.
    pub const RUNS: &str = "runs.json";
    /// Per-epoch loss and error of every run.
    pub const CURVES_CSV: &str = "curves.csv";
    /// One row per (arch, depth, lr).
    pub const RESULTS_CSV: &str = "results.csv";
    /// One row per (arch, depth).
    pub const VERDICTS_CSV: &str = "verdicts.csv";
}

/// Everything a run produced, before it is written.
#[derive(Clone, Debug)]
pub struct TrainabilityResults {
    /// What goes into summary.json.
    pub summary: TrainabilitySummary,
    /// Every run, statistics included.
    pub runs: Vec<RunRecord>,
}

impl TrainabilityResults {
    /// Write the study folder `dir`; every file atomically, `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        let stats: Vec<_> = self
            .runs
            .iter()
            .filter(|r| !r.history.stats.is_empty())
            .map(|r| {
                let id = vec![
                    r.arch.clone(),
                    r.depth.to_string(),
                    num(r.lr),
                    r.seed.to_string(),
                ];
                (id, r.history.layers.as_slice(), &r.history.stats)
            })
            .collect();
        crate::train_stats::write_csv(dir, &["arch", "depth", "lr", "seed"], &stats)?;
        let mut runs = self.runs.clone();
        for r in &mut runs {
            r.history.stats = Default::default();
        }
        write_json(&dir.join(files::RUNS), &runs)?;
        let mut curves = Csv::new(&[
            "arch",
            "depth",
            "lr",
            "seed",
            "epoch",
            "train_loss",
            "train_error",
            "test_loss",
            "test_error",
        ]);
        for r in &self.runs {
            for e in &r.history.epochs {
                curves.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    num(r.lr),
                    r.seed.to_string(),
                    e.epoch.to_string(),
                    num(e.train_loss),
                    num(e.train_error),
                    num(e.test_loss),
                    num(e.test_error),
                ]);
            }
        }
        curves.write(&dir.join(files::CURVES_CSV))?;
        let opt = |v: Option<usize>| v.map_or(String::new(), |s| s.to_string());
        let mut results = Csv::new(&[
            "arch",
            "depth",
            "lr",
            "train_error_mean",
            "train_error_std",
            "test_error_mean",
            "diverged",
            "diverged_at",
            "epochs_to_target",
        ]);
        for r in &self.summary.results {
            let list =
                |v: &[Option<usize>]| v.iter().map(|s| opt(*s)).collect::<Vec<_>>().join(";");
            results.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.lr),
                num(r.final_train_error.mean),
                num(r.final_train_error.std),
                num(r.final_test_error.mean),
                r.diverged.to_string(),
                list(&r.diverged_at),
                list(&r.epochs_to_target),
            ]);
        }
        results.write(&dir.join(files::RESULTS_CSV))?;
        let mut verdicts = Csv::new(&[
            "arch",
            "depth",
            "largest_stable_lr",
            "best_lr",
            "best_train_error",
            "best_test_error",
            "reached_target",
            "diverged",
        ]);
        for v in &self.summary.verdicts {
            let o = |x: Option<f64>| x.map_or(String::new(), num);
            verdicts.row(&[
                v.arch.clone(),
                v.depth.to_string(),
                o(v.largest_stable_lr),
                o(v.best_lr),
                num(v.best_train_error.mean),
                num(v.best_test_error.mean),
                v.reached_target.to_string(),
                v.diverged.to_string(),
            ]);
        }
        verdicts.write(&dir.join(files::VERDICTS_CSV))?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

/// A study folder read back.
#[derive(Clone, Debug)]
pub struct TrainabilityData {
    /// The summary.
    pub summary: TrainabilitySummary,
    /// Every run's history (without statistics).
    pub runs: Vec<RunRecord>,
    /// Statistics rows of `train_stats.csv` (seed-0 runs).
    pub stats: Vec<crate::train_stats::StatsRow>,
}

impl TrainabilityData {
    /// Read a study folder, refusing one whose results disagree with its config.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(files::SUMMARY);
        let summary: TrainabilitySummary =
            read_summary(&path, SCHEMA, |s: &TrainabilitySummary| &s.schema)?;
        let c = &summary.config;
        let cells = c.archs.len() * c.depths.len();
        ensure(summary.verdicts.len() == cells, &path, || {
            format!(
                "{} verdicts for {} archs × {} depths",
                summary.verdicts.len(),
                c.archs.len(),
                c.depths.len()
            )
        })?;
        ensure(summary.results.len() == cells * c.lrs.len(), &path, || {
            format!(
                "{} results for {cells} (arch, depth) × {} learning rates",
                summary.results.len(),
                c.lrs.len()
            )
        })?;
        let runs_path = dir.join(files::RUNS);
        let runs: Vec<RunRecord> = read_json(&runs_path)?;
        let per_cell = cells * c.lrs.len() * c.seeds;
        ensure(runs.len() == per_cell, &runs_path, || {
            format!("{} runs for {per_cell} cells", runs.len())
        })?;
        // A run that learns its shortcut scales records one λ per block.
        if let Some(r) = runs.iter().find(|r| {
            let n = r.history.learned_lambda.len();
            n != 0 && n != r.depth
        }) {
            return Err(crate::ContractError::data(
                &runs_path,
                format!(
                    "run {} has {} learned shortcut scales for {} blocks",
                    r.key,
                    r.history.learned_lambda.len(),
                    r.depth
                ),
            ));
        }
        let stats = crate::train_stats::read_stats_csv(
            &dir.join(crate::train_stats::files::TRAIN_STATS_CSV),
            4,
        )?;
        Ok(TrainabilityData {
            summary,
            runs,
            stats,
        })
    }
}
