//! Which variants actually train. The skips and norms studies compare the
//! shortcuts, normalisers and inits of the grammar at initialisation; the
//! claims behind them are about training: Fixup (Zhang et al. 2019),
//! SkipInit (De & Smith 2020) and ReZero (Bachlechner et al. 2020) train deep
//! nets without normalisation; rSkip+LN trains where a scaled skip without LN
//! does not (Liu et al. 2020); highway gates let very deep nets train
//! (Srivastava et al. 2015); looks-linear initialisation trains deep nets
//! without skips (Balduzzi et al. 2017). Each cell trains one net of an
//! (arch, depth, learning rate, seed) on the same batches; the summary gives
//! final errors, divergence (with its step, never dropped), epochs to a
//! target error and the largest stable learning rate, and the seed-0 runs
//! record the gradient statistics of training.

use std::path::Path;

use gradscope_nets::derive_seed;
use gradscope_spec::{ModelArch, OptimizerParams, TrainParams};
use gradscope_stats::MeanStd;
use gradscope_train::{Examples, History};

use crate::provenance::Provenance;
use crate::study::{Study, StudyResults};
use crate::training::{RunControl, build_net, check_net, train_net, view_for};
use crate::{Result, StudyError};

pub use gradscope_contract::trainability::{
    LrResult, NAME, RunRecord, SCHEMA, Trainability, TrainabilityData, TrainabilityParams,
    TrainabilityResults, TrainabilitySummary, files,
};

impl crate::Params for TrainabilityParams {
    type Config = TrainabilityConfig;
    fn quick() -> Self {
        TrainabilityParams::quick()
    }
    fn check(&self) -> Result<TrainabilityConfig> {
        check(self)
    }
}

/// A validated study with its data loaded.
#[derive(Clone, Debug)]
pub struct TrainabilityConfig {
    params: TrainabilityParams,
    train: Examples,
    test: Examples,
    follow: crate::live::Follow,
}

/// Validate `params` and load the data: the only way to a runnable study.
pub fn check(params: &TrainabilityParams) -> Result<TrainabilityConfig> {
    let mut p = params.clone();
    crate::validate::check_archs(&p.archs, true)?;
    crate::validate::check_depths(&mut p.depths)?;
    if p.lrs.is_empty() || p.lrs.iter().any(|&lr| !(lr.is_finite() && lr > 0.0)) {
        return Err(StudyError::config(
            "lrs",
            format!("list at least one positive learning rate, got {:?}", p.lrs),
        ));
    }
    p.lrs.sort_by(f64::total_cmp);
    p.lrs.dedup();
    if !(1..=1000).contains(&p.seeds) {
        return Err(StudyError::config(
            "seeds",
            format!("must be 1..=1000, got {}", p.seeds),
        ));
    }
    if !(0.0..=1.0).contains(&p.target_error) {
        return Err(StudyError::config(
            "target_error",
            format!("must be in [0, 1], got {}", p.target_error),
        ));
    }
    let (train, test) = crate::data::load(&p.data)?;
    let train = crate::data::subset(train, p.max_train, p.seed)?;
    // The recipe's own learning rate is replaced by each of `lrs`, but a
    // non-finite one is still a mistake in the file, refused like any other.
    p.train
        .check(train.len())
        .map_err(|e| StudyError::config("train", e.to_string()))?;
    for &lr in &p.lrs {
        with_lr(&p.train, lr)
            .check(train.len())
            .map_err(|e| StudyError::config("train", e.to_string()))?;
    }
    for &arch in &p.archs {
        for &depth in &p.depths {
            check_net(ModelArch::Mlp(arch), depth, p.width, p.dtype, &train)?;
        }
    }
    Ok(TrainabilityConfig {
        params: p,
        train,
        test,
        follow: crate::live::Follow::default(),
    })
}

/// The recipe at learning rate `lr`.
fn with_lr(train: &TrainParams, lr: f64) -> TrainParams {
    let optimizer = match train.optimizer.clone() {
        OptimizerParams::Sgd {
            momentum,
            weight_decay,
            nesterov,
            ..
        } => OptimizerParams::Sgd {
            lr,
            momentum,
            weight_decay,
            nesterov,
        },
        OptimizerParams::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } => OptimizerParams::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        },
    };
    TrainParams {
        optimizer,
        ..train.clone()
    }
}

/// One training run.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Index into the configured archs.
    pub arch: usize,
    /// Index into the configured depths.
    pub depth: usize,
    /// Index into the configured learning rates.
    pub lr: usize,
    /// Seed index.
    pub seed: usize,
}

/// The first epoch (from 1) whose training error is at most `target`.
pub fn epochs_to_target(h: &History, target: f64) -> Option<usize> {
    h.epochs
        .iter()
        .find(|e| e.train_error <= target)
        .map(|e| e.epoch)
}

impl TrainabilityConfig {
    /// Run every cell and summarise (see [`run_study`](crate::run_study)).
    pub fn run(&self, opts: &crate::RunOptions) -> Result<TrainabilityResults> {
        crate::run_study(self, opts)
    }

    /// The validated parameters.
    pub fn params(&self) -> &TrainabilityParams {
        &self.params
    }

    /// Keep each cell's checkpoint under `dir` (none: no checkpoints).
    pub fn set_checkpoints(&mut self, dir: Option<std::path::PathBuf>) {
        self.params.checkpoints = dir;
    }

    fn key(&self, c: &Cell) -> String {
        let p = &self.params;
        format!(
            "arch={},depth={},lr={},seed={}",
            p.archs[c.arch], p.depths[c.depth], p.lrs[c.lr], c.seed
        )
    }

    /// The verdict on one (arch, depth) from its results over the grid.
    fn verdict(&self, results: &[LrResult]) -> Trainability {
        let stable: Vec<&LrResult> = results.iter().filter(|r| r.diverged == 0).collect();
        let best = stable
            .iter()
            .filter(|r| r.final_train_error.mean.is_finite())
            .min_by(|a, b| {
                a.final_train_error
                    .mean
                    .total_cmp(&b.final_train_error.mean)
            });
        let none = MeanStd::of([f64::NAN]);
        Trainability {
            arch: results[0].arch.clone(),
            depth: results[0].depth,
            largest_stable_lr: stable.iter().map(|r| r.lr).max_by(f64::total_cmp),
            best_lr: best.map(|r| r.lr),
            best_train_error: best.map_or(none, |r| r.final_train_error),
            best_test_error: best.map_or(none, |r| r.final_test_error),
            reached_target: best.map_or(0, |r| {
                r.epochs_to_target.iter().filter(|e| e.is_some()).count()
            }),
            diverged: results.iter().map(|r| r.diverged).sum(),
        }
    }
}

impl Study for TrainabilityConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = History;
    type Results = TrainabilityResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        let mut out = Vec::new();
        for arch in 0..p.archs.len() {
            for depth in 0..p.depths.len() {
                for lr in 0..p.lrs.len() {
                    for seed in 0..p.seeds {
                        out.push(Cell {
                            arch,
                            depth,
                            lr,
                            seed,
                        });
                    }
                }
            }
        }
        out
    }

    fn cell_key(&self, cell: &Cell) -> String {
        self.key(cell)
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

    fn cell_faults(&self, cell: &Cell, h: &History) -> Vec<String> {
        h.diverged_at
            .map(|step| {
                format!(
                    "{}: diverged at step {step} (a non-finite gradient or parameter, or a batch loss past {:e})",
                    self.key(cell),
                    gradscope_train::DIVERGENCE_LOSS
                )
            })
            .into_iter()
            .collect()
    }

    fn run_cell(&self, cell: &Cell) -> Result<History> {
        self.run_cell_stoppable(cell, None)
    }

    fn run_cell_stoppable(
        &self,
        cell: &Cell,
        stop: Option<&std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<History> {
        let p = &self.params;
        let arch = ModelArch::Mlp(p.archs[cell.arch]);
        // The same net and batches for a seed index at every learning rate.
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
        let mut train_params = TrainParams {
            seed: derive_seed(p.seed, &format!("batches{}", cell.seed)),
            ..with_lr(&p.train, p.lrs[cell.lr])
        };
        // Statistics for seed 0 only: the heat maps show one run, and the
        // tables of every seed of a full sweep would run to gigabytes.
        if cell.seed > 0 {
            train_params.stats_every = Some(0);
        }
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
            RunControl {
                checkpoints: p.checkpoints.as_deref(),
                stop,
                observer: Some(&hear),
                fresh_start: false,
            },
        )?;
        follower.finish()?;
        Ok(history)
    }

    fn summarise(
        &self,
        outputs: Vec<History>,
        provenance: Provenance,
    ) -> Result<TrainabilityResults> {
        let p = &self.params;
        let cells = self.cells();
        let mut results = Vec::new();
        let mut verdicts = Vec::new();
        for (a, arch) in p.archs.iter().enumerate() {
            for (d, &depth) in p.depths.iter().enumerate() {
                let mut per_lr = Vec::new();
                for (l, &lr) in p.lrs.iter().enumerate() {
                    let runs: Vec<&History> = cells
                        .iter()
                        .zip(&outputs)
                        .filter(|(c, _)| c.arch == a && c.depth == d && c.lr == l)
                        .map(|(_, h)| h)
                        .collect();
                    let last = |f: &dyn Fn(&gradscope_train::EpochRecord) -> f64| {
                        MeanStd::of(runs.iter().map(|h| match h.diverged_at {
                            Some(_) => f64::NAN,
                            None => h.final_epoch().map_or(f64::NAN, f),
                        }))
                    };
                    per_lr.push(LrResult {
                        arch: arch.to_string(),
                        depth,
                        lr,
                        final_train_error: last(&|e| e.train_error),
                        final_test_error: last(&|e| e.test_error),
                        diverged: runs.iter().filter(|h| h.diverged_at.is_some()).count(),
                        diverged_at: runs.iter().map(|h| h.diverged_at).collect(),
                        epochs_to_target: runs
                            .iter()
                            .map(|h| epochs_to_target(h, p.target_error))
                            .collect(),
                    });
                }
                verdicts.push(self.verdict(&per_lr));
                results.extend(per_lr);
            }
        }
        let runs = cells
            .iter()
            .zip(outputs)
            .map(|(c, history)| RunRecord {
                key: self.key(c),
                arch: p.archs[c.arch].to_string(),
                depth: p.depths[c.depth],
                lr: p.lrs[c.lr],
                seed: c.seed,
                history,
            })
            .collect();
        Ok(TrainabilityResults {
            summary: TrainabilitySummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                data: gradscope_contract::training::DataInfo {
                    source: p.data.to_string(),
                    train: self.train.len(),
                    test: self.test.len(),
                    shape: self.train.shape().to_vec(),
                    classes: self.train.classes(),
                },
                results,
                verdicts,
            },
            runs,
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
        }
        v
    }

    fn prepare(&self) -> Result<()> {
        match &self.params.checkpoints {
            Some(dir) => Ok(crate::output::create_dir(dir)?),
            None => Ok(()),
        }
    }
}

impl StudyResults for TrainabilityResults {
    fn write(&self, dir: &Path) -> Result<()> {
        Ok(TrainabilityResults::write(self, dir)?)
    }
}
