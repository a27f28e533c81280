//! Training runs followed as they go: each epoch (and, when asked, every N
//! steps) appended to CSV files and to a TensorBoard event file, flushed as
//! it happens, so `tail -f`, a notebook or `tensorboard --logdir` follows a
//! run, and an observer that prints lines and moves a progress bar.
//!
//! A run folder's live files:
//! - `epochs.csv`: `epoch,step,lr,train_loss,train_error,test_loss,test_error`;
//! - `steps.csv`: `epoch,step,lr,loss` every `every_steps` steps (when > 0);
//! - `grad_norms.csv`: `step,layer,grad_norm` (‖∂L/∂θ‖ of each layer at each gradient log);
//! - `events.out.tfevents.*`: the same scalars, tags `loss/train`, `loss/test`,
//!   `error/train`, `error/test`, `lr`, `loss/step`, `grad_norm/<layer>`.
//!
//! A run resumed from its checkpoint first drops the rows past the
//! checkpoint (an interrupted epoch's steps), so every row is written once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gradscope_contract::tensorboard::EventWriter;
use gradscope_train::TrainEvent;

use crate::{Result, StudyError};

/// Hears every training cell's events with the cell's key.
pub type ObserverFn = Arc<dyn Fn(&str, TrainEvent<'_>) + Send + Sync>;

/// How to follow the training cells of a study.
#[derive(Clone, Default)]
pub struct Follow {
    /// Write each cell's live files here: this folder itself for a study of
    /// one cell (`gradscope train`), else a subfolder per cell.
    pub files: Option<PathBuf>,
    /// Steps between rows of `steps.csv` and `loss/step` (0: epochs only).
    pub every_steps: usize,
    /// Hears each event (progress bars, printed lines).
    pub observer: Option<ObserverFn>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("files", &self.files)
            .field("every_steps", &self.every_steps)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

const EPOCHS: &str = "epochs.csv";
const STEPS: &str = "steps.csv";
const GRAD_NORMS: &str = "grad_norms.csv";

/// The live files of one run, appended to as it trains.
#[derive(Debug)]
pub struct LiveLog {
    dir: PathBuf,
    every_steps: usize,
    events: EventWriter,
}

fn io_err(path: &Path, e: std::io::Error) -> StudyError {
    StudyError::from(gradscope_contract::ContractError::io(path, e))
}

/// Append `line` to `dir/name`, writing `header` first into a new file.
fn append(dir: &Path, name: &str, header: &str, line: &str) -> Result<()> {
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    let empty = f.metadata().map_err(|e| io_err(&path, e))?.len() == 0;
    let text = if empty {
        format!("{header}\n{line}\n")
    } else {
        format!("{line}\n")
    };
    f.write_all(text.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|e| io_err(&path, e))
}

/// Keep the header and the rows of `dir/name` whose column `col` is at
/// most `limit`.
fn drop_rows_after(dir: &Path, name: &str, col: usize, limit: usize) -> Result<()> {
    let path = dir.join(name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(&path, e)),
    };
    let mut lines = text.lines();
    let mut kept: Vec<&str> = lines.next().into_iter().collect();
    let before = text.lines().count();
    kept.extend(lines.filter(|l| {
        l.split(',')
            .nth(col)
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|v| v <= limit)
    }));
    if kept.len() == before {
        return Ok(());
    }
    let mut out = kept.join("\n");
    out.push('\n');
    gradscope_contract::io::write_atomic(&path, out.as_bytes())?;
    Ok(())
}

impl LiveLog {
    /// Open the live files of a run in `dir` (created if missing) and start
    /// a new TensorBoard event file there.
    pub fn open(dir: &Path, every_steps: usize) -> Result<Self> {
        Ok(LiveLog {
            dir: dir.to_path_buf(),
            every_steps,
            events: EventWriter::create(dir)?,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write what `event` says.
    pub fn record(&mut self, event: TrainEvent<'_>) -> Result<()> {
        match event {
            TrainEvent::Restored { epoch, step } => {
                drop_rows_after(&self.dir, EPOCHS, 0, epoch)?;
                drop_rows_after(&self.dir, STEPS, 1, step)?;
                drop_rows_after(&self.dir, GRAD_NORMS, 0, step)?;
            }
            TrainEvent::Step {
                epoch,
                step,
                loss,
                lr,
            } => {
                if self.every_steps > 0 && step % self.every_steps == 0 {
                    append(
                        &self.dir,
                        STEPS,
                        "epoch,step,lr,loss",
                        &format!("{epoch},{step},{lr},{loss}"),
                    )?;
                    self.events
                        .scalars(step as u64, &[("loss/step", loss), ("lr", lr)])?;
                }
            }
            TrainEvent::Grads { log, layers } => {
                let mut tags = Vec::new();
                for (layer, norm) in layers.iter().zip(&log.layer_grad_norms) {
                    append(
                        &self.dir,
                        GRAD_NORMS,
                        "step,layer,grad_norm",
                        &format!("{},{layer},{norm}", log.step),
                    )?;
                    tags.push((format!("grad_norm/{layer}"), *norm));
                }
                let tags: Vec<(&str, f64)> = tags.iter().map(|(t, v)| (t.as_str(), *v)).collect();
                self.events.scalars(log.step as u64, &tags)?;
            }
            TrainEvent::Epoch(r) => {
                append(
                    &self.dir,
                    EPOCHS,
                    "epoch,step,lr,train_loss,train_error,test_loss,test_error",
                    &format!(
                        "{},{},{},{},{},{},{}",
                        r.epoch,
                        r.step,
                        r.lr,
                        r.train_loss,
                        r.train_error,
                        r.test_loss,
                        r.test_error
                    ),
                )?;
                self.events.scalars(
                    r.step as u64,
                    &[
                        ("loss/train", r.train_loss),
                        ("loss/test", r.test_loss),
                        ("error/train", r.train_error),
                        ("error/test", r.test_error),
                        ("lr", r.lr),
                    ],
                )?;
            }
            TrainEvent::Diverged { .. } => {}
        }
        Ok(())
    }
}

/// A cell's observer: its live files (the first write error is kept and
/// the files left alone after it) and `follow`'s observer.
pub(crate) struct CellFollower<'f> {
    key: &'f str,
    follow: &'f Follow,
    log: Option<Mutex<(LiveLog, Option<StudyError>)>>,
}

impl<'f> CellFollower<'f> {
    /// Open the live files of cell `key` (in `dir` itself when `one_cell`).
    pub(crate) fn new(follow: &'f Follow, key: &'f str, one_cell: bool) -> Result<Self> {
        let log = match &follow.files {
            Some(dir) => {
                let dir = if one_cell {
                    dir.clone()
                } else {
                    dir.join(crate::shattered::file_stem(key))
                };
                Some(Mutex::new((LiveLog::open(&dir, follow.every_steps)?, None)))
            }
            None => None,
        };
        Ok(CellFollower { key, follow, log })
    }

    /// Hear one event.
    pub(crate) fn hear(&self, event: TrainEvent<'_>) {
        if let Some(m) = &self.log {
            let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
            let (log, failed) = &mut *guard;
            if failed.is_none()
                && let Err(e) = log.record(event)
            {
                *failed = Some(e);
            }
        }
        if let Some(f) = &self.follow.observer {
            f(self.key, event);
        }
    }

    /// The first error writing the live files, if any.
    pub(crate) fn finish(self) -> Result<()> {
        match self
            .log
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
        {
            Some((_, Some(e))) => Err(e),
            _ => Ok(()),
        }
    }
}
