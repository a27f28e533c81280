//! Progress bars on stderr, hidden when stderr is not a terminal or with --quiet.
//!
//! A study whose cells train counts optimiser steps, so the bar moves within
//! a cell; its ETA is the steps left at the rate of the steps trained by
//! this process (steps restored from a checkpoint or a stored cell move the
//! bar but not the rate). Other studies count cells.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gradscope_studies::live::ObserverFn;
use gradscope_studies::{Progress, ProgressFn};
use gradscope_train::TrainEvent;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
    steps_per_cell: Option<usize>,
    state: Arc<Mutex<Steps>>,
}

/// Steps counted so far, per cell and trained here.
#[derive(Default)]
struct Steps {
    per_cell: HashMap<String, usize>,
    trained: usize,
    started: Option<Instant>,
}

/// `remaining` at the rate of `trained` steps in `elapsed`.
pub fn eta(remaining: u64, trained: usize, elapsed: Duration) -> Option<Duration> {
    (trained > 0).then(|| elapsed.mul_f64(remaining as f64 / trained as f64))
}

fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A line above the bar, or on stderr when the bar is not drawn.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

impl Bar {
    /// A bar over `cells` cells, of `steps_per_cell` optimiser steps each
    /// when they train.
    pub fn new(label: &str, cells: usize, steps_per_cell: Option<usize>, quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let (total, template) = match steps_per_cell {
            Some(n) => (
                cells * n,
                "{prefix:>12} [{bar:30}] {pos}/{len} steps, {elapsed} {msg}",
            ),
            None => (
                cells,
                "{prefix:>12} [{bar:30}] {pos}/{len} cells, {elapsed} (ETA {eta}) {msg}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Bar {
            bar,
            steps_per_cell,
            state: Arc::default(),
        }
    }

    /// A callback for the study runner: a finished (or reused) cell.
    pub fn callback(&self) -> ProgressFn {
        let bar = self.bar.clone();
        let steps = self.steps_per_cell;
        let state = self.state.clone();
        Arc::new(move |p: Progress<'_>| match steps {
            None => {
                bar.set_position(p.done as u64);
                bar.set_message(p.key.to_string());
            }
            Some(n) => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                let seen = s.per_cell.entry(p.key.to_string()).or_default();
                bar.inc(n.saturating_sub(*seen) as u64);
                *seen = n;
            }
        })
    }

    /// Hears the training cells: moves the bar with their steps, and
    /// prints each epoch (and a restored checkpoint, a divergence) above it.
    pub fn observer(&self, print: bool) -> ObserverFn {
        let bar = self.bar.clone();
        let state = self.state.clone();
        Arc::new(move |key: &str, e: TrainEvent<'_>| {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            let started = *s.started.get_or_insert_with(Instant::now);
            match e {
                TrainEvent::Restored { epoch, step } => {
                    *s.per_cell.entry(key.to_string()).or_default() = step;
                    bar.inc(step as u64);
                    if print {
                        say(
                            &bar,
                            format!(
                                "{key}: restored from its checkpoint after epoch {epoch} (step {step})"
                            ),
                        );
                    }
                }
                TrainEvent::Step {
                    epoch, loss, lr, ..
                } => {
                    *s.per_cell.entry(key.to_string()).or_default() += 1;
                    s.trained += 1;
                    bar.inc(1);
                    let left = bar.length().unwrap_or(0).saturating_sub(bar.position());
                    let eta = eta(left, s.trained, started.elapsed()).map_or("?".into(), short);
                    bar.set_message(format!(
                        "(ETA {eta}) epoch {epoch} loss {loss:.4} lr {lr:.3e}"
                    ));
                }
                TrainEvent::Epoch(r) if print => say(
                    &bar,
                    format!(
                        "{key}: epoch {:>4}  step {:>6}  lr {:.4}  train loss {:.4}  error {:.4}  test loss {:.4}  error {:.4}",
                        r.epoch,
                        r.step,
                        r.lr,
                        r.train_loss,
                        r.train_error,
                        r.test_loss,
                        r.test_error
                    ),
                ),
                TrainEvent::Diverged { step } if print => {
                    say(&bar, format!("{key}: diverged at step {step}"))
                }
                _ => {}
            }
        })
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_is_the_steps_left_at_the_trained_rate() {
        // 40 steps in 10 s, 120 left: 30 s.
        let e = eta(120, 40, Duration::from_secs(10)).unwrap();
        assert_eq!(e, Duration::from_secs(30));
        assert_eq!(eta(5, 0, Duration::from_secs(1)), None);
        assert_eq!(short(Duration::from_secs(3725)), "1h02m");
        assert_eq!(short(Duration::from_secs(75)), "1m15s");
    }
}
