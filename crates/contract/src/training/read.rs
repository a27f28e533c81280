//! A training folder read back and checked: a result for every (arch, depth)
//! the config lists, and gradient logs as long as the layers they name.

use std::path::Path;

use super::{CellRecord, SCHEMA, TrainingSummary, files};
use crate::Result;
use crate::io::{ensure, read_json, read_summary};

/// A study folder read back.
#[derive(Clone, Debug)]
pub struct TrainingData {
    /// The summary.
    pub summary: TrainingSummary,
    /// Every run's history (without its statistics).
    pub runs: Vec<CellRecord>,
    /// Statistics rows of `train_stats.csv` (empty when the runs recorded none).
    pub stats: Vec<crate::train_stats::StatsRow>,
}

impl TrainingData {
    /// Read a study folder written by a run, refusing one whose results or
    /// histories disagree with its config.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(files::SUMMARY);
        let summary: TrainingSummary =
            read_summary(&path, SCHEMA, |s: &TrainingSummary| &s.schema)?;
        check_results(&summary, &path)?;
        let runs_path = dir.join(files::RUNS);
        let runs: Vec<CellRecord> = read_json(&runs_path)?;
        for run in &runs {
            let h = &run.output.history;
            ensure(
                h.logs
                    .iter()
                    .all(|l| l.layer_grad_norms.len() == h.layers.len()),
                &runs_path,
                || {
                    format!(
                        "{}: a gradient log does not have one norm per layer",
                        run.key
                    )
                },
            )?;
        }
        let stats = crate::train_stats::read_stats_csv(
            &dir.join(crate::train_stats::files::TRAIN_STATS_CSV),
            3,
        )?;
        Ok(TrainingData {
            summary,
            runs,
            stats,
        })
    }
}

/// One result per (arch, depth), archs in config order, depths ascending.
fn check_results(s: &TrainingSummary, path: &Path) -> Result<()> {
    let c = &s.config;
    ensure(!c.depths.is_empty(), path, || {
        "the config lists no depth".into()
    })?;
    ensure(
        s.results.len() == c.archs.len() * c.depths.len(),
        path,
        || {
            format!(
                "{} results for {} archs × {} depths",
                s.results.len(),
                c.archs.len(),
                c.depths.len()
            )
        },
    )?;
    let cells = c
        .archs
        .iter()
        .flat_map(|a| c.depths.iter().map(move |&d| (a.to_string(), d)));
    for (r, (arch, depth)) in s.results.iter().zip(cells) {
        ensure(r.arch == arch && r.depth == depth, path, || {
            format!(
                "result ({}, depth {}) where ({arch}, depth {depth}) belongs",
                r.arch, r.depth
            )
        })?;
    }
    Ok(())
}
