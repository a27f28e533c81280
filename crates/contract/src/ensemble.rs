//! The ensemble study's data (Veit, Wilber & Belongie 2016): its
//! parameters, `summary.json`, each net's lesions and path gradients in
//! `nets.json`, and the CSV tables beside them.

use std::path::{Path, PathBuf};

use gradscope_spec::{DataSource, ModelArch, Precision, Schedule, TrainParams};
use gradscope_stats::MeanStd;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::io::{Csv, create_dir, ensure, num, write_json};
use crate::provenance::Provenance;
use crate::training::TrainingParams;

/// Folder name under the data and report roots.
pub const NAME: &str = "ensemble";
/// Layout version of `summary.json`.
pub const SCHEMA: &str = "gradscope.ensemble/1";

/// Unchecked parameters; defaults train on the embedded digits in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleParams {
    /// Architectures to train and lesion (MLP or conv).
    #[arg(long, value_parser = crate::args::model_arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<ModelArch>,
    /// Blocks (MLP) or layers (conv, 6n + 2).
    #[arg(long)]
    pub depth: usize,
    /// MLP width.
    #[arg(long)]
    pub width: usize,
    /// Trained nets per arch.
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
    /// Training recipe.
    #[arg(skip)]
    pub train: TrainParams,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Precision,
    /// Evaluate these weights (safetensors) instead of training (one arch, seeds = 1).
    #[arg(long, value_name = "FILE")]
    pub load_weights: Option<PathBuf>,
    /// Random draws per number of deleted blocks and per number of swaps.
    #[arg(long)]
    pub lesion_draws: usize,
    /// Sampled paths per path length (all of them when there are fewer).
    #[arg(long)]
    pub path_samples: usize,
    /// Training examples in the batch whose input gradient is measured.
    #[arg(long)]
    pub path_batch: usize,
    /// Checkpoint folder, so interrupted training resumes.
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
}

impl Default for EnsembleParams {
    fn default() -> Self {
        let t = TrainingParams::default();
        EnsembleParams {
            archs: t.archs.clone(),
            depth: 16,
            width: 64,
            seeds: 2,
            seed: 0,
            data: DataSource::Digits,
            max_train: None,
            train: TrainParams {
                probe_points: 0,
                similarity_examples: 0,
                epochs: 20,
                schedule: Schedule::default(),
                ..t.train
            },
            dtype: Precision::F32,
            load_weights: None,
            lesion_draws: 20,
            path_samples: 24,
            path_batch: 64,
            checkpoints: None,
        }
    }
}

impl EnsembleParams {
    /// Small sizes, for tests and a first look.
    pub fn quick() -> Self {
        let d = Self::default();
        EnsembleParams {
            depth: 8,
            width: 32,
            seeds: 1,
            train: TrainParams {
                epochs: 6,
                ..d.train.clone()
            },
            lesion_draws: 6,
            path_samples: 8,
            path_batch: 32,
            ..d
        }
    }
}

/// Test error under one kind of lesion, over random draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LesionCurve {
    /// Number of blocks deleted, or of swaps.
    pub count: Vec<usize>,
    /// Test error for each count, over draws.
    pub error: Vec<MeanStd>,
}

/// What one trained net shows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetOutput {
    /// Blocks n of the net.
    pub blocks: usize,
    #[serde(with = "gradscope_stats::nan")]
    /// Test error of the intact net.
    pub intact_error: f64,
    /// Test error with block b deleted (NaN where a plain block changes shape).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub single_deletion: Vec<f64>,
    /// Test error with k random blocks deleted.
    pub random_deletion: LesionCurve,
    /// Test error after s random swaps of adjacent blocks.
    pub reordering: LesionCurve,
    /// Mean ‖∂L/∂x‖ through paths of length k = 0 … n (residual nets only).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub path_gradient: Vec<f64>,
    /// Paths measured per length.
    pub path_measured: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// One arch's lesion and path results over seeds.
pub struct ArchEnsemble {
    /// Architecture spec.
    pub arch: String,
    /// Whether blocks have shortcuts.
    pub residual: bool,
    /// Blocks n.
    pub blocks: usize,
    /// Test error of the intact nets.
    pub intact_error: MeanStd,
    #[serde(with = "gradscope_stats::nan::vec")]
    /// Mean test error with block b deleted.
    pub single_deletion: Vec<f64>,
    /// Test error with k random blocks deleted.
    pub random_deletion: LesionCurve,
    /// Test error after s random swaps.
    pub reordering: LesionCurve,
    /// C(n, k)/2^n for k = 0 … n.
    pub path_length_share: Vec<f64>,
    /// Mean ‖∂L/∂x‖ of one path of length k.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub path_gradient: Vec<f64>,
    /// C(n, k)·mean: the gradient all paths of length k carry.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub total_gradient: Vec<f64>,
    /// Shortest range of lengths carrying 90 % of the total gradient.
    pub effective_range: Option<(usize, usize)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// `summary.json` of the ensemble study.
pub struct EnsembleSummary {
    /// Layout version, `gradscope.ensemble/1`.
    pub schema: String,
    /// Study name, `ensemble`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: EnsembleParams,
    /// Per-arch results, in config order.
    pub archs: Vec<ArchEnsemble>,
}

#[derive(Clone, Debug)]
/// Everything a run produced, before it is written.
pub struct EnsembleResults {
    /// What goes into summary.json.
    pub summary: EnsembleSummary,
    /// Per-net results (cell key, output), for nets.json.
    pub nets: Vec<(String, NetOutput)>,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Per-net lesion and path results.
    pub const NETS: &str = "nets.json";
    /// Test error after deletions and swaps.
    pub const DELETION_CSV: &str = "deletion.csv";
    /// Gradient by path length.
    pub const PATHS_CSV: &str = "paths.csv";
}

impl EnsembleResults {
    /// Write the study folder `dir` (created if missing); every file atomically,
    /// `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_json(&dir.join(files::NETS), &self.nets)?;
        let mut del = Csv::new(&["arch", "kind", "count", "error_mean", "error_std"]);
        let mut paths = Csv::new(&[
            "arch",
            "length",
            "share_of_paths",
            "gradient_per_path",
            "total_gradient",
        ]);
        for a in &self.summary.archs {
            for (b, e) in a.single_deletion.iter().enumerate() {
                del.row(&[
                    a.arch.clone(),
                    "single".into(),
                    b.to_string(),
                    num(*e),
                    String::new(),
                ]);
            }
            for (kind, curve) in [("random", &a.random_deletion), ("swaps", &a.reordering)] {
                for (c, e) in curve.count.iter().zip(&curve.error) {
                    del.row(&[
                        a.arch.clone(),
                        kind.into(),
                        c.to_string(),
                        num(e.mean),
                        num(e.std),
                    ]);
                }
            }
            for k in 0..a.path_length_share.len() {
                paths.row(&[
                    a.arch.clone(),
                    k.to_string(),
                    num(a.path_length_share[k]),
                    num(a.path_gradient[k]),
                    num(a.total_gradient[k]),
                ]);
            }
        }
        del.write(&dir.join(files::DELETION_CSV))?;
        paths.write(&dir.join(files::PATHS_CSV))?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

/// Read the summary of a study folder, refusing one whose per-arch curves
/// disagree with their nets' block counts.
pub fn read_summary(dir: &Path) -> Result<EnsembleSummary> {
    let path = dir.join(files::SUMMARY);
    let s: EnsembleSummary =
        crate::io::read_summary(&path, SCHEMA, |s: &EnsembleSummary| &s.schema)?;
    for a in &s.archs {
        let lengths = [
            a.path_length_share.len(),
            a.path_gradient.len(),
            a.total_gradient.len(),
        ];
        ensure(lengths.iter().all(|&n| n == a.blocks + 1), &path, || {
            format!(
                "{}: path curves of lengths {lengths:?} for {} blocks (expected {} each)",
                a.arch,
                a.blocks,
                a.blocks + 1
            )
        })?;
        ensure(a.single_deletion.len() == a.blocks, &path, || {
            format!(
                "{}: {} single deletions for {} blocks",
                a.arch,
                a.single_deletion.len(),
                a.blocks
            )
        })?;
        for (kind, curve) in [
            ("random deletion", &a.random_deletion),
            ("reordering", &a.reordering),
        ] {
            ensure(curve.count.len() == curve.error.len(), &path, || {
                format!(
                    "{}: the {kind} curve has {} counts and {} errors",
                    a.arch,
                    curve.count.len(),
                    curve.error.len()
                )
            })?;
        }
    }
    Ok(s)
}
