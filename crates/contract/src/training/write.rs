//! A training run's results and how they are laid out in its folder.

use std::path::Path;

use super::{CellRecord, TrainingSummary, files};
use crate::Result;
use crate::io::{Csv, create_dir, num, write_json};

#[derive(Clone, Debug)]
/// Everything a run produced, before it is written.
pub struct TrainingResults {
    /// What goes into summary.json.
    pub summary: TrainingSummary,
    /// Every run, for runs.json and the CSV tables.
    pub cells: Vec<CellRecord>,
}

impl TrainingResults {
    /// Write the study folder `dir` (created if missing); every file atomically,
    /// `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        // The gradient statistics go to their own tables, not runs.json.
        let mut runs = self.cells.clone();
        for c in &mut runs {
            c.output.history.stats = Default::default();
        }
        write_json(&dir.join(files::RUNS), &runs)?;
        let stats: Vec<_> = self
            .cells
            .iter()
            .filter(|c| !c.output.history.stats.is_empty())
            .map(|c| {
                let h = &c.output.history;
                let id = vec![c.arch.clone(), c.depth.to_string(), c.seed.to_string()];
                (id, h.layers.as_slice(), &h.stats)
            })
            .collect();
        if !stats.is_empty() {
            crate::train_stats::write_csv(dir, &["arch", "depth", "seed"], &stats)?;
        }
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
