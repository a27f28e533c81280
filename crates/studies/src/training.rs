//! The degradation problem (He et al. 2016a, "Deep Residual Learning for
//! Image Recognition", Figure 1): with the same training recipe, a deeper
//! plain net ends with *higher training error* than a shallower one — not
//! overfitting, an optimisation failure — while a residual net keeps improving
//! (or holds) with depth. Each cell trains one net and logs, every epoch, the
//! training and test error, per-layer gradient norms, the shattering metrics
//! along an input line, and per-example gradient cosines: the gradients
//! behind the curves.

use std::path::{Path, PathBuf};

use gradscope_nets::{
    Arch, ConvNet, ConvNetParams, Mlp, Model, Net, NetParams, Precision, derive_seed,
};
use gradscope_stats::MeanStd;
use gradscope_train::{
    Decay, Examples, History, OptimizerParams, Schedule, TrainParams, Trainer, epoch_batches,
};
use serde::{Deserialize, Serialize};

use crate::data::DataSource;
use crate::output::{Csv, create_dir, num, write_json};
use crate::provenance::Provenance;
use crate::study::{Study, StudyResults};
use crate::{Result, StudyError};
pub use gradscope_spec::ModelArch;

/// Folder name under the data and report roots.
pub const NAME: &str = "training";
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.training/1";

/// Unchecked parameters of the degradation study; defaults show the effect
/// on the embedded digits in well under a minute on 2 cores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingParams {
    /// Architectures to train.
    pub archs: Vec<ModelArch>,
    /// MLP: blocks; conv: weighted layers (6n + 2, or 9n + 2 for bottlenecks).
    pub depths: Vec<usize>,
    /// MLP width (conv nets use the paper's 16/32/64).
    pub width: usize,
    /// Runs per (arch, depth).
    pub seeds: usize,
    /// Base seed.
    pub seed: u64,
    /// Data set.
    pub data: DataSource,
    /// Train on at most this many examples (all when unset).
    pub max_train: Option<usize>,
    /// Training recipe.
    pub train: TrainParams,
    /// f32 or f64.
    pub dtype: Precision,
    /// Keep a checkpoint per cell here, so an interrupted run resumes mid-training.
    pub checkpoints: Option<PathBuf>,
    /// Refuse runs whose estimated peak memory exceeds this many GiB.
    pub memory_limit_gib: f64,
}

impl Default for TrainingParams {
    fn default() -> Self {
        TrainingParams {
            archs: vec![
                ModelArch::Mlp(Arch::PLAIN_BN),
                ModelArch::Mlp(Arch::RESNET_BN),
            ],
            depths: vec![4, 32],
            width: 64,
            seeds: 2,
            seed: 0,
            data: DataSource::Digits,
            max_train: None,
            train: TrainParams {
                epochs: 20,
                batch_size: 64,
                optimizer: OptimizerParams::Sgd {
                    lr: 0.01,
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
                probe_points: 128,
                similarity_examples: 16,
            },
            dtype: Precision::F32,
            checkpoints: None,
            memory_limit_gib: 8.0,
        }
    }
}

impl TrainingParams {
    /// A small run for tests and a first look.
    pub fn quick() -> Self {
        let d = Self::default();
        TrainingParams {
            depths: vec![2, 16],
            width: 32,
            seeds: 1,
            train: TrainParams {
                epochs: 6,
                probe_points: 64,
                similarity_examples: 8,
                ..d.train.clone()
            },
            ..d
        }
    }

    /// Validate and load the data: the only way to a runnable study.
    pub fn check(&self) -> Result<TrainingConfig> {
        let mut p = self.clone();
        crate::validate::check_archs(&p.archs, false)?;
        crate::validate::check_depths(&mut p.depths)?;
        if !(1..=1000).contains(&p.seeds) {
            return Err(StudyError::config(
                "seeds",
                format!("must be 1..=1000, got {}", p.seeds),
            ));
        }
        let (train, test) = crate::data::load(&p.data)?;
        let train = match p.max_train {
            Some(0) => return Err(StudyError::config("max_train", "must be at least 1")),
            Some(m) if m < train.len() => {
                let idx = epoch_batches(train.len(), train.len(), derive_seed(p.seed, "subset"))[0]
                    [..m]
                    .to_vec();
                train.select(&idx)
            }
            _ => train,
        };
        p.train
            .check(train.len())
            .map_err(|e| StudyError::config("train", e.to_string()))?;
        // Every (arch, depth) must make a valid net for this data.
        for arch in &p.archs {
            for &depth in &p.depths {
                check_net(*arch, depth, p.width, p.dtype, &train)?;
            }
        }
        if !(p.memory_limit_gib.is_finite() && p.memory_limit_gib > 0.0) {
            return Err(StudyError::config(
                "memory_limit_gib",
                format!("must be a positive number, got {}", p.memory_limit_gib),
            ));
        }
        let config = TrainingConfig {
            params: p,
            train,
            test,
        };
        let need = config.memory_estimate_gib(1);
        if need > config.params.memory_limit_gib {
            return Err(StudyError::config(
                "size",
                format!(
                    "one net and the data need about {need:.1} GiB, above the limit of {} GiB (memory_limit_gib)",
                    config.params.memory_limit_gib
                ),
            ));
        }
        Ok(config)
    }
}

/// A validated study with its data loaded.
#[derive(Clone, Debug)]
pub struct TrainingConfig {
    params: TrainingParams,
    train: Examples,
    test: Examples,
}

/// Build a net of `arch` and `depth` for examples shaped like `data`
/// (MLPs take the flattened example, conv nets the image).
pub(crate) fn build_net(
    arch: ModelArch,
    depth: usize,
    width: usize,
    dtype: Precision,
    seed: u64,
    data: &Examples,
) -> Result<Net> {
    Ok(match net_params(arch, depth, width, dtype, seed, data)? {
        NetChoice::Mlp(p) => Net::Mlp(Mlp::new(&p.check()?)?),
        NetChoice::Conv(p) => Net::Conv(ConvNet::new(&p.check()?)?),
    })
}

/// Validate a net's parameters without drawing its weights.
pub(crate) fn check_net(
    arch: ModelArch,
    depth: usize,
    width: usize,
    dtype: Precision,
    data: &Examples,
) -> Result<()> {
    match net_params(arch, depth, width, dtype, 0, data)? {
        NetChoice::Mlp(p) => {
            p.check()?;
        }
        NetChoice::Conv(p) => {
            p.check()?;
        }
    }
    Ok(())
}

enum NetChoice {
    Mlp(NetParams),
    Conv(ConvNetParams),
}

fn net_params(
    arch: ModelArch,
    depth: usize,
    width: usize,
    dtype: Precision,
    seed: u64,
    data: &Examples,
) -> Result<NetChoice> {
    let shape = data.shape();
    Ok(match arch {
        ModelArch::Mlp(arch) => NetChoice::Mlp(NetParams {
            arch,
            depth,
            width,
            input_dim: shape.iter().product(),
            output_dim: data.classes(),
            precision: dtype,
            seed,
            ..Default::default()
        }),
        ModelArch::Conv(c) => {
            if shape.len() != 3 || shape[1] != shape[2] {
                return Err(StudyError::config(
                    "archs",
                    format!(
                        "{arch} needs square images (channels, size, size); the data has shape {shape:?}"
                    ),
                ));
            }
            NetChoice::Conv(ConvNetParams {
                arch: c,
                depth,
                in_channels: shape[0],
                image_size: shape[1],
                classes: data.classes(),
                precision: dtype,
                seed,
                ..Default::default()
            })
        }
    })
}

/// The examples as `arch` takes them: flattened for MLPs, images for conv nets.
pub(crate) fn view_for(arch: ModelArch, data: &Examples) -> Result<Examples> {
    match arch {
        ModelArch::Mlp(_) => Ok(data.reshaped(vec![data.shape().iter().product()])?),
        ModelArch::Conv(_) => Ok(data.clone()),
    }
}

/// Train `model`, checkpointing under `checkpoints` in a folder named by
/// `key` and a hash of `identity` (everything that shapes the run), so a
/// changed parameter starts afresh instead of refusing the folder.
pub(crate) fn train_net(
    model: &Net,
    key: &str,
    identity: serde_json::Value,
    params: &TrainParams,
    train: &Examples,
    test: &Examples,
    checkpoints: Option<&Path>,
) -> Result<History> {
    let config = params.check(train.len())?;
    let checkpoint = checkpoints.map(|d| {
        d.join(format!(
            "{}-{:016x}",
            crate::shattered::file_stem(key),
            derive_seed(0, &identity.to_string())
        ))
    });
    Ok(Trainer {
        model,
        label: key.to_string(),
        config: &config,
        train,
        test,
        checkpoint,
        cancel: None,
        on_epoch: None,
    }
    .run()?)
}

/// One training run.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Index into the configured archs.
    pub arch: usize,
    /// Depth.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
}

/// What a cell records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOutput {
    /// Per-epoch errors and gradient logs.
    pub history: History,
    /// Trainable parameters of the net.
    pub parameters: usize,
}

impl TrainingConfig {
    /// Run every cell and summarise (see [`run_study`](crate::run_study)).
    pub fn run(&self, opts: &crate::RunOptions) -> Result<TrainingResults> {
        crate::run_study(self, opts)
    }

    /// The validated parameters.
    pub fn params(&self) -> &TrainingParams {
        &self.params
    }

    /// The training examples (after `max_train`).
    pub fn train_examples(&self) -> &Examples {
        &self.train
    }

    /// Rough peak memory of `threads` nets training at once, plus the data:
    /// parameters four times (weights, gradients, two optimiser moments) and
    /// the activations of a batch kept for the backward pass (about eight
    /// tensors per layer).
    pub fn memory_estimate_gib(&self, threads: usize) -> f64 {
        let p = &self.params;
        let bytes = if p.dtype == Precision::F32 { 4.0 } else { 8.0 };
        let batch = p.train.batch_size as f64;
        let per_net = p
            .archs
            .iter()
            .flat_map(|&a| p.depths.iter().map(move |&d| (a, d)))
            .map(
                |(arch, depth)| match net_params(arch, depth, p.width, p.dtype, 0, &self.train) {
                    Ok(NetChoice::Mlp(n)) => {
                        let layers = (depth * n.arch.layers_per_block() + 2) as f64;
                        4.0 * n.parameter_count() as f64 + 8.0 * layers * batch * p.width as f64
                    }
                    Ok(NetChoice::Conv(c)) => {
                        // Three stages of (depth − 2)/3 layers at full, half and quarter size.
                        let s = c.image_size as f64;
                        let per_stage = (depth.saturating_sub(2) / 3) as f64;
                        let acts = c.widths[0] as f64 * s * s
                            + c.widths[1] as f64 * s * s / 4.0
                            + c.widths[2] as f64 * s * s / 16.0;
                        8.0 * per_stage * batch * acts
                    }
                    Err(_) => 0.0,
                },
            )
            .fold(0.0, f64::max);
        let data = (self.train.len() + self.test.len()) as f64
            * self.train.shape().iter().product::<usize>() as f64
            * 4.0;
        (threads.max(1) as f64 * per_net * bytes + data) / (1u64 << 30) as f64
    }

    fn key(&self, c: &Cell) -> String {
        format!(
            "arch={},depth={},seed={}",
            self.params.archs[c.arch], self.params.depths[c.depth], c.seed
        )
    }
}

impl Study for TrainingConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = RunOutput;
    type Results = TrainingResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        let mut out = Vec::new();
        for arch in 0..p.archs.len() {
            for depth in 0..p.depths.len() {
                for seed in 0..p.seeds {
                    out.push(Cell { arch, depth, seed });
                }
            }
        }
        out
    }

    fn cell_key(&self, cell: &Cell) -> String {
        self.key(cell)
    }

    fn memory_estimate_gib(&self, threads: usize) -> Option<f64> {
        Some(TrainingConfig::memory_estimate_gib(self, threads))
    }

    fn cell_faults(&self, cell: &Cell, output: &RunOutput) -> Vec<String> {
        let h = &output.history;
        let mut faults = Vec::new();
        // The first logged step where a layer's gradient norm is not finite.
        if let Some((log, l)) = h.logs.iter().find_map(|log| {
            log.layer_grad_norms
                .iter()
                .position(|v| !v.is_finite())
                .map(|l| (log, l))
        }) {
            faults.push(format!(
                "{}: ‖∂L/∂θ‖ of layer {} not finite at step {}",
                self.key(cell),
                h.layers.get(l).map_or("?", String::as_str),
                log.step
            ));
        }
        if let Some(step) = h.diverged_at {
            faults.push(format!(
                "{}: the training loss is not finite from step {step}",
                self.key(cell)
            ));
        }
        faults
    }

    fn run_cell(&self, cell: &Cell) -> Result<RunOutput> {
        let p = &self.params;
        let arch = p.archs[cell.arch];
        // Same seed index, same batch order for every arch and depth: the nets
        // differ, the data they see does not.
        let net_seed = derive_seed(p.seed, &format!("net{}", cell.seed));
        let model = build_net(
            arch,
            p.depths[cell.depth],
            p.width,
            p.dtype,
            net_seed,
            &self.train,
        )?;
        let (train, test) = (view_for(arch, &self.train)?, view_for(arch, &self.test)?);
        let train_params = TrainParams {
            seed: derive_seed(p.seed, &format!("batches{}", cell.seed)),
            ..p.train.clone()
        };
        let key = self.key(cell);
        let identity = serde_json::json!({ "key": key, "train": train_params, "width": p.width, "dtype": p.dtype, "data": p.data, "max_train": p.max_train, "seed": p.seed });
        let history = train_net(
            &model,
            &key,
            identity,
            &train_params,
            &train,
            &test,
            p.checkpoints.as_deref(),
        )?;
        let parameters = model.parameters().iter().map(|(_, v)| v.elem_count()).sum();
        Ok(RunOutput {
            history,
            parameters,
        })
    }

    fn summarise(
        &self,
        outputs: Vec<RunOutput>,
        provenance: Provenance,
    ) -> Result<TrainingResults> {
        let p = &self.params;
        let cells = self.cells();
        let mut results = Vec::new();
        for (a, arch) in p.archs.iter().enumerate() {
            for (d, &depth) in p.depths.iter().enumerate() {
                let runs: Vec<&RunOutput> = cells
                    .iter()
                    .zip(&outputs)
                    .filter(|(c, _)| c.arch == a && c.depth == d)
                    .map(|(_, o)| o)
                    .collect();
                let last = |f: &dyn Fn(&gradscope_train::EpochRecord) -> f64| {
                    MeanStd::of(runs.iter().map(|r| {
                        if r.history.diverged_at.is_some() {
                            f64::NAN
                        } else {
                            r.history.final_epoch().map_or(f64::NAN, f)
                        }
                    }))
                };
                let epochs = p.train.epochs;
                let curve = |f: &dyn Fn(&gradscope_train::EpochRecord) -> f64| -> Vec<f64> {
                    (0..epochs)
                        .map(|e| {
                            MeanStd::of(runs.iter().filter_map(|r| r.history.epochs.get(e)).map(f))
                                .mean
                        })
                        .collect()
                };
                results.push(ArchDepthResult {
                    arch: arch.to_string(),
                    depth,
                    residual: arch.is_residual(),
                    parameters: runs[0].parameters,
                    final_train_error: last(&|e| e.train_error),
                    final_test_error: last(&|e| e.test_error),
                    final_train_loss: last(&|e| e.train_loss),
                    diverged: runs
                        .iter()
                        .filter(|r| r.history.diverged_at.is_some())
                        .count(),
                    train_error_curve: curve(&|e| e.train_error),
                    test_error_curve: curve(&|e| e.test_error),
                    train_loss_curve: curve(&|e| e.train_loss),
                });
            }
        }
        let comparisons = p
            .archs
            .iter()
            .enumerate()
            .filter(|_| p.depths.len() >= 2)
            .map(|(a, arch)| {
                let row = |d: usize| &results[a * p.depths.len() + d];
                let (shallow, deep) = (row(0), row(p.depths.len() - 1));
                DepthComparison {
                    arch: arch.to_string(),
                    shallow_depth: shallow.depth,
                    deep_depth: deep.depth,
                    shallow_train_error: shallow.final_train_error.mean,
                    deep_train_error: deep.final_train_error.mean,
                    degrades: deep.final_train_error.mean.is_nan()
                        || deep.final_train_error.mean
                            > shallow.final_train_error.mean + DEGRADATION_MARGIN,
                }
            })
            .collect();
        Ok(TrainingResults {
            summary: TrainingSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                data: DataInfo {
                    source: p.data.to_string(),
                    train: self.train.len(),
                    test: self.test.len(),
                    shape: self.train.shape().to_vec(),
                    classes: self.train.classes(),
                },
                results,
                comparisons,
            },
            cells: cells
                .iter()
                .map(|c| self.key(c))
                .zip(
                    cells
                        .iter()
                        .map(|c| (p.archs[c.arch].to_string(), p.depths[c.depth], c.seed)),
                )
                .zip(outputs)
                .map(|((k, (a, d, s)), o)| CellRecord {
                    key: k,
                    arch: a,
                    depth: d,
                    seed: s,
                    output: o,
                })
                .collect(),
        })
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }

    /// The checkpoint folder changes no cell.
    fn cell_identity(&self) -> serde_json::Value {
        let mut v = self.config_json();
        if let Some(m) = v.as_object_mut() {
            m.remove("checkpoints");
            m.remove("memory_limit_gib");
        }
        v
    }

    fn prepare(&self) -> Result<()> {
        match &self.params.checkpoints {
            Some(dir) => create_dir(dir),
            None => Ok(()),
        }
    }
}

/// A deeper net "degrades" when its final training error exceeds the
/// shallower one's by more than this (absolute error rate).
pub const DEGRADATION_MARGIN: f64 = 0.02;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// The data set a study used.
pub struct DataInfo {
    /// `digits`, `mnist:DIR` or `cifar10:DIR`.
    pub source: String,
    /// Training examples.
    pub train: usize,
    /// Test examples.
    pub test: usize,
    /// Shape of one example (channels, height, width).
    pub shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
}

/// Final numbers and mean curves of one (arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchDepthResult {
    /// Architecture spec.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Whether blocks have shortcuts.
    pub residual: bool,
    /// Trainable parameters.
    pub parameters: usize,
    /// Training error after the last epoch.
    pub final_train_error: MeanStd,
    /// Test error after the last epoch.
    pub final_test_error: MeanStd,
    /// Training loss after the last epoch.
    pub final_train_loss: MeanStd,
    /// Seeds whose loss stopped being finite (their errors are excluded).
    pub diverged: usize,
    /// Mean over seeds, per epoch.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub train_error_curve: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    /// Test error per epoch, mean over seeds.
    pub test_error_curve: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    /// Training loss per epoch, mean over seeds.
    pub train_loss_curve: Vec<f64>,
}

/// The deepest against the shallowest net of one arch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthComparison {
    /// Architecture spec.
    pub arch: String,
    /// The shallowest configured depth.
    pub shallow_depth: usize,
    /// The deepest configured depth.
    pub deep_depth: usize,
    #[serde(with = "gradscope_stats::nan")]
    /// Final training error of the shallow net, mean over seeds.
    pub shallow_train_error: f64,
    #[serde(with = "gradscope_stats::nan")]
    /// Final training error of the deep net, mean over seeds.
    pub deep_train_error: f64,
    /// Deep training error above shallow + [`DEGRADATION_MARGIN`] (or not finite).
    pub degrades: bool,
}

/// `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Layout version, `gradscope.training/1`.
    pub schema: String,
    /// Study name, `training`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: TrainingParams,
    /// The data set.
    pub data: DataInfo,
    /// One entry per (arch, depth).
    pub results: Vec<ArchDepthResult>,
    /// Deepest against shallowest, per arch.
    pub comparisons: Vec<DepthComparison>,
}

/// One run's full history, in `runs.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellRecord {
    /// Cell key (arch, depth, seed).
    pub key: String,
    /// Architecture spec.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
    /// History and size of the run.
    pub output: RunOutput,
}

#[derive(Clone, Debug)]
/// Everything a run produced, before it is written.
pub struct TrainingResults {
    /// What goes into summary.json.
    pub summary: TrainingSummary,
    /// Every run, for runs.json and the CSV tables.
    pub cells: Vec<CellRecord>,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Every run's history.
    pub const RUNS: &str = "runs.json";
    /// Per-epoch loss and error of every run.
    pub const CURVES_CSV: &str = "curves.csv";
    /// Final errors per (arch, depth).
    pub const FINAL_CSV: &str = "final.csv";
    /// Per-layer gradient norms over training.
    pub const GRAD_NORMS_CSV: &str = "grad_norms.csv";
    /// Shattering and similarity probes over training.
    pub const PROBES_CSV: &str = "probes.csv";
}

impl StudyResults for TrainingResults {
    fn write(&self, dir: &std::path::Path) -> Result<()> {
        create_dir(dir)?;
        write_json(&dir.join(files::RUNS), &self.cells)?;
        let mut curves = Csv::new(&[
            "arch",
            "depth",
            "seed",
            "epoch",
            "step",
            "lr",
            "train_loss",
            "train_error",
            "test_loss",
            "test_error",
        ]);
        let mut norms = Csv::new(&[
            "arch",
            "depth",
            "seed",
            "step",
            "layer",
            "name",
            "grad_norm",
        ]);
        let mut probes = Csv::new(&[
            "arch",
            "depth",
            "seed",
            "step",
            "line_r1",
            "line_slope",
            "mean_cosine",
        ]);
        for c in &self.cells {
            let id = [c.arch.clone(), c.depth.to_string(), c.seed.to_string()];
            let h = &c.output.history;
            for e in &h.epochs {
                let mut row = id.to_vec();
                row.extend([
                    e.epoch.to_string(),
                    e.step.to_string(),
                    num(e.lr),
                    num(e.train_loss),
                    num(e.train_error),
                    num(e.test_loss),
                    num(e.test_error),
                ]);
                curves.row(&row);
            }
            for g in &h.logs {
                for (l, (name, v)) in h.layers.iter().zip(&g.layer_grad_norms).enumerate() {
                    let mut row = id.to_vec();
                    row.extend([g.step.to_string(), l.to_string(), name.clone(), num(*v)]);
                    norms.row(&row);
                }
                let mut row = id.to_vec();
                row.extend([
                    g.step.to_string(),
                    num(g.line_r1),
                    num(g.line_slope),
                    num(g.mean_cosine),
                ]);
                probes.row(&row);
            }
        }
        curves.write(&dir.join(files::CURVES_CSV))?;
        norms.write(&dir.join(files::GRAD_NORMS_CSV))?;
        probes.write(&dir.join(files::PROBES_CSV))?;
        let mut fin = Csv::new(&[
            "arch",
            "depth",
            "parameters",
            "train_error_mean",
            "train_error_std",
            "test_error_mean",
            "test_error_std",
            "train_loss_mean",
            "diverged",
        ]);
        for r in &self.summary.results {
            fin.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                r.parameters.to_string(),
                num(r.final_train_error.mean),
                num(r.final_train_error.std),
                num(r.final_test_error.mean),
                num(r.final_test_error.std),
                num(r.final_train_loss.mean),
                r.diverged.to_string(),
            ]);
        }
        fin.write(&dir.join(files::FINAL_CSV))?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

/// A study folder read back.
pub struct TrainingData {
    /// The summary.
    pub summary: TrainingSummary,
    /// Every run's history.
    pub runs: Vec<CellRecord>,
}

impl TrainingData {
    /// Read a study folder written by a run.
    pub fn read(dir: &std::path::Path) -> Result<Self> {
        let summary: TrainingSummary = crate::output::read_summary(
            &dir.join(files::SUMMARY),
            SCHEMA,
            |s: &TrainingSummary| &s.schema,
        )?;
        let runs = crate::output::read_json(&dir.join(files::RUNS))?;
        Ok(TrainingData { summary, runs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run the trainer refuses is a training error, with the trainer's
    /// message, not a configuration error.
    #[test]
    fn a_training_failure_keeps_its_kind() {
        let examples = |width: usize| {
            let labels: Vec<u32> = (0..8).map(|i| i % 2).collect();
            Examples::new(vec![0.5; 8 * width], vec![width], labels, 2).unwrap()
        };
        let (train, test) = (examples(4), examples(5));
        let net = build_net(ModelArch::Mlp(Arch::PLAIN), 2, 8, Precision::F64, 0, &train).unwrap();
        let params = TrainParams {
            epochs: 1,
            batch_size: 4,
            ..TrainingParams::quick().train
        };
        let json = serde_json::json!({});
        let e = train_net(&net, "k", json, &params, &train, &test, None).unwrap_err();
        assert!(matches!(e, StudyError::Train(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "data: training and test sets differ in shape or classes"
        );
    }
}
