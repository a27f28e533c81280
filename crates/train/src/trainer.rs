//! The training loop: mini-batch SGD/Adam on cross-entropy, train and test
//! error per epoch, gradient logging every k steps, and checkpoints after
//! every epoch from which a run resumes exactly where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{Device, Var};
use gradscope_contract::{EpochRecord, GradLog, History};
use gradscope_engine::{Engine, Options, Real, Request, Task};
use gradscope_nets::{
    BnMode, Model, Net, derive_seed, fs::write_atomic, load_safetensors, to_safetensors,
};
use gradscope_stats::{
    Band, adjacent_correlation, mean_off_diagonal, power_spectrum, spectral_slope,
};
use serde::{Deserialize, Serialize};

use crate::examples::{Examples, epoch_batches};
use crate::optim::Optimizer;
use crate::stats::{Recorder, layer_gsnr, layer_of};
use crate::steps;
use crate::{Result, TrainConfig, TrainError};

/// One training run of a model on a data set.
pub struct Trainer<'a> {
    /// The net to train (its parameters are updated in place).
    pub model: &'a Net,
    /// Names the run in its checkpoint's state (the weights files carry the net's spec).
    pub label: String,
    /// Validated training configuration.
    pub config: &'a TrainConfig,
    /// Training examples.
    pub train: &'a Examples,
    /// Test examples.
    pub test: &'a Examples,
    /// Save after every epoch here, and resume from here.
    pub checkpoint: Option<PathBuf>,
    /// Set to stop after the current epoch (its checkpoint is written).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Hears the run as it goes: each step, gradient log and epoch.
    pub observer: Option<&'a (dyn Fn(TrainEvent<'_>) + Sync)>,
}

/// What a run reports as it goes (to print, plot or log it live).
#[derive(Clone, Copy, Debug)]
pub enum TrainEvent<'e> {
    /// The run resumed from its checkpoint after `epoch` epochs, `step` steps.
    Restored {
        /// Epochs already done.
        epoch: usize,
        /// Optimiser steps already taken.
        step: usize,
    },
    /// An optimiser step was taken.
    Step {
        /// The epoch in flight, from 1.
        epoch: usize,
        /// Steps taken so far, this one included.
        step: usize,
        /// The batch's mean loss before the step.
        loss: f64,
        /// The step's learning rate.
        lr: f64,
    },
    /// A gradient log: per-layer norms in the order of `layers`.
    Grads {
        /// The log.
        log: &'e GradLog,
        /// The layer names.
        layers: &'e [String],
    },
    /// An epoch finished and its checkpoint (if any) is written.
    Epoch(&'e EpochRecord),
    /// The run diverged at this step (see [`History::diverged_at`]).
    Diverged {
        /// Steps taken before the diverging one.
        step: usize,
    },
}

const STATE: &str = "state.json";
/// The initial parameters θ₀ of a run, for its distance from initialisation.
const INIT: &str = "init.safetensors";
const SCHEMA: &str = "gradscope.checkpoint/1";

/// Epochs a checkpoint folder keeps: the latest complete one, which
/// `state.json` names. Older epochs (and those of a longer earlier run)
/// are removed once the new state is written, with the temporary files of
/// dead processes.
pub const KEPT_EPOCHS: usize = 1;

/// Remove every checkpoint epoch but `epoch`, and dead processes' temporaries.
fn remove_other_epochs(dir: &Path, epoch: usize) {
    let _ = gradscope_contract::io::remove_dead_temporaries(dir);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let of_epoch = ["model-e", "optimizer-e"]
            .iter()
            .find_map(|p| name.strip_prefix(p)?.strip_suffix(".safetensors"))
            .and_then(|n| n.parse::<usize>().ok());
        if of_epoch.is_some_and(|n| n != epoch) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    schema: String,
    config: serde_json::Value,
    epoch: usize,
    optimizer_steps: u64,
    history: History,
}

impl Trainer<'_> {
    /// Train (resuming from the last checkpoint if there is one) and return
    /// the history, on the engine's kernels where they cover the net.
    pub fn run(&self) -> Result<History> {
        self.run_with(Request::Auto)
    }

    /// [`run`](Self::run) on the kernels `request` asks for
    /// ([`Request::Candle`]: candle's autograd whatever the net, the oracle).
    pub fn run_with(&self, request: Request) -> Result<History> {
        let p = self.config.params();
        if self.train.shape() != self.test.shape() || self.train.classes() != self.test.classes() {
            return Err(TrainError::Data(
                "training and test sets differ in shape or classes".into(),
            ));
        }
        let mut opt = Optimizer::new(p.optimizer.clone())?;
        let (history, start) = match self.resume(&mut opt)? {
            Some(found) => found,
            None => (
                History {
                    layers: layer_names(&self.model.parameters()),
                    ..Default::default()
                },
                0,
            ),
        };
        let options = Options {
            request,
            ..Options::repeated(BnMode::Train)
        };
        gradscope_engine::run(
            self.model,
            options,
            Training {
                trainer: self,
                opt,
                history,
                start,
            },
        )
        .map_err(TrainError::from)?
    }

    fn train_on<T: Real>(
        &self,
        be: &mut dyn Engine<T>,
        mut opt: Optimizer,
        mut history: History,
        start: usize,
    ) -> Result<History> {
        let p = self.config.params();
        let log_batch = self.log_batch();
        let tell = |e: TrainEvent<'_>| {
            if let Some(f) = self.observer {
                f(e)
            }
        };
        if start == 0 && history.logs.is_empty() {
            let log = self.grad_log(be, 0, &log_batch)?;
            tell(TrainEvent::Grads {
                log: &log,
                layers: &history.layers,
            });
            history.logs.push(log);
        }
        let recorder = self.stats_recorder(&history)?;
        if let Some(r) = &recorder
            && history.stats.weight_edges.is_empty()
        {
            history.stats = r.empty();
        }
        let mut step = start * self.config.steps_per_epoch();
        if start > 0 {
            tell(TrainEvent::Restored { epoch: start, step });
        }
        'epochs: for epoch in start..p.epochs {
            for (b, batch) in epoch_batches(
                self.train.len(),
                p.batch_size,
                derive_seed(p.seed, &format!("epoch{epoch}")),
            )
            .into_iter()
            .enumerate()
            {
                let lr = self.config.lr(step);
                let mut record = match &recorder {
                    Some(r) if self.config.records_stats(step + 1, b) => {
                        let gsnr = layer_gsnr(be, self.train, &batch, &history.layers)?;
                        Some((r.begin(step + 1, lr), gsnr))
                    }
                    _ => None,
                };
                let recording = record.is_some();
                let mut hook = |name: &str, before: &[T], after: &[T], g: &[T]| {
                    if let Some((r, _)) = &mut record {
                        r.parameter(name, before, after, g);
                    }
                };
                let taken = steps::step(
                    be,
                    self.train,
                    &batch,
                    &mut opt,
                    lr,
                    recording.then_some(&mut hook as _),
                )?;
                if let (Some((r, gsnr)), steps::Step::Taken(_)) = (record, taken) {
                    history.stats.steps.push(r.finish(gsnr));
                }
                let steps::Step::Taken(loss) = taken else {
                    history.diverged_at = Some(step);
                    tell(TrainEvent::Diverged { step });
                    break 'epochs;
                };
                step += 1;
                tell(TrainEvent::Step {
                    epoch: epoch + 1,
                    step,
                    loss,
                    lr,
                });
                if p.log_every > 0 && step % p.log_every == 0 {
                    let log = self.grad_log(be, step, &log_batch)?;
                    tell(TrainEvent::Grads {
                        log: &log,
                        layers: &history.layers,
                    });
                    history.logs.push(log);
                }
            }
            if p.log_every == 0 {
                let log = self.grad_log(be, step, &log_batch)?;
                tell(TrainEvent::Grads {
                    log: &log,
                    layers: &history.layers,
                });
                history.logs.push(log);
            }
            let (train_loss, train_error) = steps::evaluate(be, self.train)?;
            let (test_loss, test_error) = steps::evaluate(be, self.test)?;
            let record = EpochRecord {
                epoch: epoch + 1,
                step,
                lr: self.config.lr(step.saturating_sub(1)),
                train_loss,
                train_error,
                test_loss,
                test_error,
            };
            history.epochs.push(record);
            if let Some(dir) = &self.checkpoint {
                be.sync()?;
                self.save(dir, epoch + 1, &opt, &history)?;
            }
            tell(TrainEvent::Epoch(
                history.epochs.last().expect("just pushed"),
            ));
            if self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
                && epoch + 1 < p.epochs
            {
                return Err(TrainError::Interrupted);
            }
        }
        be.sync()?;
        history.learned_lambda = learned_lambda(&self.model.parameters())?;
        Ok(history)
    }

    /// The statistics recorder of the run (none when `stats_every` is 0):
    /// θ₀ from the net before its first step, or from the checkpoint
    /// folder's `init.safetensors` when the run resumes (without it the
    /// distance from initialisation is not recorded).
    fn stats_recorder(&self, history: &History) -> Result<Option<Recorder>> {
        if self.config.params().stats_every == Some(0) {
            return Ok(None);
        }
        let fresh = history.epochs.is_empty();
        let init = if fresh {
            let mut init = BTreeMap::new();
            for (name, var) in self.model.parameters() {
                let v = var
                    .as_tensor()
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F64)?
                    .to_vec1::<f64>()?;
                init.insert(name, v);
            }
            if let Some(dir) = &self.checkpoint {
                self.save_init(dir, &init)?;
            }
            init
        } else {
            self.load_init()
        };
        Ok(Some(Recorder::new(self.model, &history.layers, init)?))
    }

    fn save_init(&self, dir: &Path, init: &BTreeMap<String, Vec<f64>>) -> Result<()> {
        let path = dir.join(INIT);
        let err = |reason: String| TrainError::Checkpoint {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let tensors = init
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    candle_core::Tensor::from_slice(v, v.len(), &Device::Cpu)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.as_str(), v)), None)
            .map_err(|e| err(e.to_string()))?;
        write_atomic(&path, &bytes).map_err(|e| err(e.to_string()))
    }

    fn load_init(&self) -> BTreeMap<String, Vec<f64>> {
        let Some(dir) = &self.checkpoint else {
            return BTreeMap::new();
        };
        let Ok(bytes) = std::fs::read(dir.join(INIT)) else {
            return BTreeMap::new();
        };
        let Ok(tensors) = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu) else {
            return BTreeMap::new();
        };
        tensors
            .into_iter()
            .filter_map(|(k, t)| Some((k, t.to_vec1::<f64>().ok()?)))
            .collect()
    }

    /// A fixed batch of training examples (seeded), the same at every log.
    fn log_batch(&self) -> Vec<usize> {
        let n = self.config.params().batch_size.min(self.train.len());
        epoch_batches(
            self.train.len(),
            n,
            derive_seed(self.config.params().seed, "log-batch"),
        )[0]
        .clone()
    }

    fn grad_log<T: Real>(
        &self,
        be: &mut dyn Engine<T>,
        step: usize,
        batch: &[usize],
    ) -> Result<GradLog> {
        let mut norms: BTreeMap<String, f64> = BTreeMap::new();
        for (name, sq) in steps::param_sq_norms(be, self.train, batch)? {
            *norms.entry(layer_of(&name).to_string()).or_default() += sq;
        }
        let layers = layer_names(&self.model.parameters());
        let layer_grad_norms = layers.iter().map(|l| norms[l].sqrt()).collect();
        let (line_r1, line_slope) = self.line_probe(be, batch)?;
        Ok(GradLog {
            step,
            layer_grad_norms,
            line_r1,
            line_slope,
            mean_cosine: self.mean_cosine(be, batch)?,
        })
    }

    /// r₁ and spectral slope of g(t) = d f_y(a + t(b − a))/dt on t ∈ [0, 1],
    /// a and b the first two examples of the log batch with different labels
    /// (BN in eval mode: the function the net computes at test time).
    fn line_probe<T: Real>(&self, be: &mut dyn Engine<T>, batch: &[usize]) -> Result<(f64, f64)> {
        let points = self.config.params().probe_points;
        let labels = self.train.labels();
        let Some(&j) = batch.iter().find(|&&j| labels[j] != labels[batch[0]]) else {
            return Ok((f64::NAN, f64::NAN));
        };
        if points == 0 {
            return Ok((f64::NAN, f64::NAN));
        }
        let (a, b) = (self.train.example(batch[0]), self.train.example(j));
        let d: Vec<f64> = a.iter().zip(b).map(|(u, v)| (v - u) as f64).collect();
        let line = ndarray::Array2::from_shape_fn((points, a.len()), |(k, c)| {
            let t = k as f64 / (points - 1) as f64;
            a[c] as f64 + t * d[c]
        });
        let gx = steps::input_gradients(be, line, labels[batch[0]] as usize)?;
        let g: ndarray::Array1<f64> = gx
            .rows()
            .into_iter()
            .map(|row| row.iter().zip(&d).map(|(u, v)| u * v).sum())
            .collect();
        if g.iter().any(|v| !v.is_finite()) {
            return Ok((f64::NAN, f64::NAN));
        }
        let r1 = adjacent_correlation(g.view())?;
        let slope = spectral_slope(power_spectrum(g.view())?.view(), Band::default_for(points))
            .map_or(f64::NAN, |f| f.slope);
        Ok((r1, slope))
    }

    /// Mean off-diagonal cosine of per-example loss gradients (all parameters),
    /// on the first examples of the log batch, BN in eval mode.
    fn mean_cosine<T: Real>(&self, be: &mut dyn Engine<T>, batch: &[usize]) -> Result<f64> {
        let m = self.config.params().similarity_examples.min(batch.len());
        if m < 2 {
            return Ok(f64::NAN);
        }
        let cos = steps::example_cosines(be, self.train, &batch[..m])?;
        Ok(mean_off_diagonal(cos.view())?)
    }

    fn save(&self, dir: &Path, epoch: usize, opt: &Optimizer, history: &History) -> Result<()> {
        let err = |path: &Path, e: std::io::Error| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
        let model_path = dir.join(format!("model-e{epoch}.safetensors"));
        write_atomic(
            &model_path,
            &to_safetensors(self.model, gradscope_nets::spec_json(self.model))?,
        )
        .map_err(|e| err(&model_path, e))?;
        let opt_path = dir.join(format!("optimizer-e{epoch}.safetensors"));
        let bytes = safetensors::serialize(opt.state()?.iter().map(|(k, v)| (k.as_str(), v)), None)
            .map_err(|e| TrainError::Checkpoint {
                path: opt_path.clone(),
                reason: e.to_string(),
            })?;
        write_atomic(&opt_path, &bytes).map_err(|e| err(&opt_path, e))?;
        // The state file is the commit point: it names the epoch whose files are complete.
        let state = CheckpointState {
            schema: SCHEMA.into(),
            config: self.config_json(),
            epoch,
            optimizer_steps: opt.steps(),
            history: history.clone(),
        };
        let state_path = dir.join(STATE);
        write_atomic(
            &state_path,
            &serde_json::to_vec_pretty(&state).expect("state serialises"),
        )
        .map_err(|e| err(&state_path, e))?;
        remove_other_epochs(dir, epoch);
        Ok(())
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::json!({ "train": self.config.params(), "model": self.label, "examples": self.train.len() })
    }

    /// Load the latest checkpoint, if there is one for this configuration.
    fn resume(&self, opt: &mut Optimizer) -> Result<Option<(History, usize)>> {
        let Some(dir) = &self.checkpoint else {
            return Ok(None);
        };
        let path = dir.join(STATE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(TrainError::Checkpoint {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.clone(),
            reason,
        };
        let state: CheckpointState =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("unreadable ({e})")))?;
        if state.schema != SCHEMA {
            return Err(bad(format!(
                "schema `{}`, expected `{SCHEMA}`",
                state.schema
            )));
        }
        if state.config != self.config_json() {
            return Err(bad(
                "was written by a run with another configuration; use another folder".into(),
            ));
        }
        load_safetensors(
            self.model,
            &dir.join(format!("model-e{}.safetensors", state.epoch)),
        )?;
        let opt_path = dir.join(format!("optimizer-e{}.safetensors", state.epoch));
        let opt_bytes = std::fs::read(&opt_path).map_err(|e| TrainError::Checkpoint {
            path: opt_path.clone(),
            reason: e.to_string(),
        })?;
        let tensors =
            candle_core::safetensors::load_buffer(&opt_bytes, &Device::Cpu).map_err(|e| {
                TrainError::Checkpoint {
                    path: opt_path.clone(),
                    reason: e.to_string(),
                }
            })?;
        opt.restore(tensors.into_iter().collect(), state.optimizer_steps)?;
        Ok(Some((state.history, state.epoch)))
    }
}

/// The trainable shortcut scales λ (`….skip.lambda`, one per block), in block order.
fn learned_lambda(params: &[(String, Var)]) -> Result<Vec<f64>> {
    params
        .iter()
        .filter(|(n, _)| n.ends_with(".skip.lambda"))
        .map(|(_, v)| {
            let t = v.as_tensor().to_dtype(candle_core::DType::F64)?;
            Ok(t.flatten_all()?.to_vec1::<f64>()?[0])
        })
        .collect()
}

fn layer_names(params: &[(String, Var)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (n, _) in params {
        let l = layer_of(n);
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    out
}

/// A training run on the engine of the net.
struct Training<'t, 'a> {
    trainer: &'t Trainer<'a>,
    opt: Optimizer,
    history: History,
    start: usize,
}

impl Task for Training<'_, '_> {
    type Output = Result<History>;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Result<History>> {
        Ok(self
            .trainer
            .train_on(engine, self.opt, self.history, self.start))
    }
}
