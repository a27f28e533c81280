//! The degradation problem (He et al. 2016a, "Deep Residual Learning for
//! Image Recognition", Figure 1): with the same training recipe, a deeper
//! plain net ends with *higher training error* than a shallower one — not
//! overfitting, an optimisation failure — while a residual net keeps improving
//! (or holds) with depth. Each cell trains one net and logs, every epoch, the
//! training and test error, per-layer gradient norms, the shattering metrics
//! along an input line, and per-example gradient cosines: the gradients
//! behind the curves.

use std::path::Path;

use gradscope_nets::{ConvNet, ConvNetParams, Mlp, Model, Net, NetParams, Precision, derive_seed};
use gradscope_stats::MeanStd;
use gradscope_train::{Examples, History, TrainParams, Trainer};

use crate::output::create_dir;
use crate::provenance::Provenance;
use crate::study::{Study, StudyResults};
use crate::{Result, StudyError};

pub use gradscope_contract::training::{
    ArchDepthResult, CellRecord, DEGRADATION_MARGIN, DataInfo, DepthComparison, NAME, RunOutput,
    SCHEMA, TrainingData, TrainingParams, TrainingResults, TrainingSummary, files,
};
pub use gradscope_spec::ModelArch;

impl crate::Params for TrainingParams {
    type Config = TrainingConfig;
    fn quick() -> Self {
        TrainingParams::quick()
    }
    fn check(&self) -> Result<TrainingConfig> {
        check(self)
    }
}

/// Validate `params` and load the data: the only way to a runnable study.
pub fn check(params: &TrainingParams) -> Result<TrainingConfig> {
    let mut p = params.clone();
    crate::validate::check_archs(&p.archs, false)?;
    crate::validate::check_depths(&mut p.depths)?;
    if !(1..=1000).contains(&p.seeds) {
        return Err(StudyError::config(
            "seeds",
            format!("must be 1..=1000, got {}", p.seeds),
        ));
    }
    let (train, test) = crate::data::load(&p.data)?;
    let train = crate::data::subset(train, p.max_train, p.seed)?;
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
        follow: crate::live::Follow::default(),
        fresh_start: false,
        save_weights: None,
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

/// What the program itself takes besides the nets and the data (code,
/// allocator, the data loader's buffers): `gradscope train` of an 8-block
/// width-64 MLP peaks at 13 MiB.
pub const PROCESS_MIB: f64 = 10.0;

/// A validated study with its data loaded.
#[derive(Clone, Debug)]
pub struct TrainingConfig {
    params: TrainingParams,
    train: Examples,
    test: Examples,
    follow: crate::live::Follow,
    fresh_start: bool,
    save_weights: Option<std::path::PathBuf>,
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

/// Where a training run keeps its checkpoints and what may stop it.
#[derive(Clone, Copy, Default)]
pub(crate) struct RunControl<'a> {
    /// The folder of the study's checkpoints, if any.
    pub(crate) checkpoints: Option<&'a Path>,
    /// Set by Ctrl-C or SIGTERM: the run stops after the epoch in flight.
    pub(crate) stop: Option<&'a std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Hears the run as it goes.
    pub(crate) observer: Option<&'a (dyn Fn(gradscope_train::TrainEvent<'_>) + Sync)>,
    /// Discard the run's checkpoint and train from the start (`--force`).
    pub(crate) fresh_start: bool,
}

/// Train `model`, checkpointing under `control.checkpoints` in a folder
/// named by `key` and a hash of `identity` (everything that shapes the
/// run), so a changed parameter starts afresh instead of refusing the folder.
pub(crate) fn train_net(
    model: &Net,
    key: &str,
    identity: serde_json::Value,
    params: &TrainParams,
    (train, test): (&Examples, &Examples),
    control: RunControl<'_>,
) -> Result<History> {
    let config = params.check(train.len())?;
    let checkpoint = control.checkpoints.map(|d| {
        d.join(format!(
            "{}-{:016x}",
            crate::shattered::file_stem(key),
            derive_seed(0, &identity.to_string())
        ))
    });
    if let Some(dir) = checkpoint
        .as_ref()
        .filter(|d| control.fresh_start && d.exists())
    {
        std::fs::remove_dir_all(dir).map_err(|e| gradscope_contract::ContractError::io(dir, e))?;
    }
    Trainer {
        model,
        label: key.to_string(),
        config: &config,
        train,
        test,
        checkpoint,
        cancel: control.stop.cloned(),
        observer: control.observer,
    }
    .run()
    .map_err(|e| match e {
        gradscope_train::TrainError::Interrupted => crate::StudyError::Interrupted,
        e => e.into(),
    })
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

impl TrainingConfig {
    /// Run every cell and summarise (see [`run_study`](crate::run_study)).
    pub fn run(&self, opts: &crate::RunOptions) -> Result<TrainingResults> {
        crate::run_study(self, opts)
    }

    /// The validated parameters.
    pub fn params(&self) -> &TrainingParams {
        &self.params
    }

    /// Keep each cell's checkpoint under `dir` (none: no checkpoints).
    pub fn set_checkpoints(&mut self, dir: Option<std::path::PathBuf>) {
        self.params.checkpoints = dir;
    }

    /// Discard the cells' checkpoints and train them from the start.
    pub fn set_fresh_start(&mut self, fresh: bool) {
        self.fresh_start = fresh;
    }

    /// Write the trained net's weights (safetensors) to `path`; only for a
    /// study of one cell.
    pub fn set_save_weights(&mut self, path: Option<std::path::PathBuf>) -> Result<()> {
        if path.is_some() && self.cells().len() != 1 {
            return Err(StudyError::config(
                "save_weights",
                "needs one arch, one depth and one seed",
            ));
        }
        self.save_weights = path;
        Ok(())
    }

    /// The training examples (after `max_train`).
    pub fn train_examples(&self) -> &Examples {
        &self.train
    }

    /// Peak memory of `threads` nets training at once, plus the data and
    /// the process: per net, its parameters four times (weights, gradients,
    /// two optimiser moments) and the activations of a batch kept for the
    /// backward pass (about eight tensors per layer); with the training
    /// statistics on, θ₀ in f64 and the weights before a step once more,
    /// and for a conv net the per-example gradients of its Gram pass;
    /// the examples in f32; and [`PROCESS_MIB`] for the program itself.
    /// Measured against the peak resident set of `gradscope train`
    /// (`tests/runs.rs`, statistics on): resnet-bn depth 32 width 256
    /// estimated 0.153 GiB, peak 0.168 GiB (without θ₀ and the copy the
    /// estimate was 0.106); width 1024 estimated 1.90 GiB, peak 2.29 GiB;
    /// conv-resnet depth 20 on the digits estimated 75 MiB, peak 91 MiB
    /// (batch 128: 132 and 163 MiB); conv-plain depth 56 estimated 132 MiB,
    /// peak 113 MiB (release build, one thread).
    pub fn memory_estimate_gib(&self, threads: usize) -> f64 {
        let p = &self.params;
        let bytes = if p.dtype == Precision::F32 { 4.0 } else { 8.0 };
        let batch = p.train.batch_size as f64;
        // Statistics keep θ₀ in f64 and the weights before the step.
        let stats = p.train.stats_every != Some(0);
        let (copies, init_bytes) = if stats { (5.0, 8.0) } else { (4.0, 0.0) };
        let per_net = p
            .archs
            .iter()
            .flat_map(|&a| p.depths.iter().map(move |&d| (a, d)))
            .map(
                |(arch, depth)| match net_params(arch, depth, p.width, p.dtype, 0, &self.train) {
                    Ok(NetChoice::Mlp(n)) => {
                        let layers = (depth * n.arch.layers_per_block() + 2) as f64;
                        let params = n.parameter_count() as f64;
                        (copies + init_bytes / bytes) * params
                            + 8.0 * layers * batch * p.width as f64
                    }
                    Ok(NetChoice::Conv(c)) => {
                        // Three stages of (depth − 2)/3 layers at full, half and quarter size.
                        let s = c.image_size as f64;
                        let per_stage = (depth.saturating_sub(2) / 3) as f64;
                        let acts = c.widths[0] as f64 * s * s
                            + c.widths[1] as f64 * s * s / 4.0
                            + c.widths[2] as f64 * s * s / 16.0;
                        // 3 × 3 convolutions of w × w (bottlenecks' 1 × 1 are fewer).
                        let params: f64 = c
                            .widths
                            .iter()
                            .map(|&w| per_stage * 9.0 * (w * w) as f64)
                            .sum();
                        // The statistics' Gram pass: about two f64 copies of the
                        // largest layer's per-example gradients (measured on the
                        // digits: +51 MB at batch 64, +123 MB at 128).
                        let widest = c.widths.iter().map(|&w| 9.0 * (w * w) as f64);
                        let per_example = if stats {
                            2.0 * 8.0 / bytes * batch * widest.fold(0.0, f64::max)
                        } else {
                            0.0
                        };
                        (copies + init_bytes / bytes) * params
                            + per_example
                            + 8.0 * per_stage * batch * acts
                    }
                    Err(_) => 0.0,
                },
            )
            .fold(0.0, f64::max);
        let data = (self.train.len() + self.test.len()) as f64
            * self.train.shape().iter().product::<usize>() as f64
            * 4.0;
        (threads.max(1) as f64 * per_net * bytes + data) / (1u64 << 30) as f64
            + PROCESS_MIB / 1024.0
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

    fn follow(&mut self, follow: crate::live::Follow) {
        self.follow = follow;
    }

    fn cell_steps(&self) -> Option<usize> {
        let p = &self.params.train;
        p.check(self.train.len())
            .ok()
            .map(|c| c.steps_per_epoch() * p.epochs)
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
                "{}: diverged at step {step} (a non-finite gradient or parameter, or a batch loss past {:e})",
                self.key(cell),
                gradscope_train::DIVERGENCE_LOSS
            ));
        }
        faults
    }

    fn run_cell(&self, cell: &Cell) -> Result<RunOutput> {
        self.run_cell_stoppable(cell, None)
    }

    fn run_cell_stoppable(
        &self,
        cell: &Cell,
        stop: Option<&std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<RunOutput> {
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
        let follower = crate::live::CellFollower::new(&self.follow, &key, self.cells().len() == 1)?;
        let hear = |e: gradscope_train::TrainEvent<'_>| follower.hear(e);
        let history = train_net(
            &model,
            &key,
            identity,
            &train_params,
            (&train, &test),
            crate::training::RunControl {
                checkpoints: p.checkpoints.as_deref(),
                stop,
                observer: Some(&hear),
                fresh_start: self.fresh_start,
            },
        )?;
        follower.finish()?;
        if let Some(path) = &self.save_weights {
            gradscope_nets::fs::write_atomic(
                path,
                &gradscope_nets::to_safetensors(&model, gradscope_nets::spec_json(&model))?,
            )
            .map_err(|e| gradscope_contract::ContractError::io(path, e))?;
        }
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
            Some(dir) => Ok(create_dir(dir)?),
            None => Ok(()),
        }
    }
}

impl StudyResults for TrainingResults {
    fn write(&self, dir: &Path) -> Result<()> {
        Ok(TrainingResults::write(self, dir)?)
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
        let arch = ModelArch::Mlp(gradscope_nets::Arch::PLAIN);
        let net = build_net(arch, 2, 8, Precision::F64, 0, &train).unwrap();
        let params = TrainParams {
            epochs: 1,
            batch_size: 4,
            ..TrainingParams::quick().train
        };
        let json = serde_json::json!({});
        let e = train_net(
            &net,
            "k",
            json,
            &params,
            (&train, &test),
            RunControl::default(),
        )
        .unwrap_err();
        assert!(matches!(e, StudyError::Train(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "data: training and test sets differ in shape or classes"
        );
    }
}
