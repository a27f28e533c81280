//! Training with and without learning-rate warm-up over a grid of peak
//! rates (Xiong et al. 2020): which runs fail, the claims on post-LN and
//! pre-LN, the figure and the table.

use std::path::Path;

use gradscope_contract::transformers::{TrainRow, TransformersSummary};
use gradscope_spec::{LnPlace, TransformerArch};

use super::{Figure, figure};
use crate::Result;
use crate::claims::{Check, Claims};
use crate::doc::Block;
use crate::figure::{Legend, LineChart, Mark, Series};
use crate::format::{decimals, mean_se};
use crate::style::{self, color};

/// A training run fails when it diverged or its final loss is at least
/// this share of the chance loss ln V (it learnt next to nothing).
pub const FAILED_SHARE: f64 = 0.9;

/// Whether one seed's run failed: diverged, or a final loss (NaN when it
/// went non-finite) not below `FAILED_SHARE`·ln V.
pub fn run_failed(final_loss: f64, diverged: bool, vocab: usize) -> bool {
    diverged || final_loss.is_nan() || final_loss >= FAILED_SHARE * (vocab as f64).ln()
}

/// Whether a (placement, rate, warm-up) fails: more than half its seeds do.
pub fn row_fails(r: &TrainRow, vocab: usize) -> bool {
    let failed = r
        .final_loss
        .iter()
        .zip(&r.diverged_at)
        .filter(|(f, d)| run_failed(**f, d.is_some(), vocab))
        .count();
    2 * failed > r.final_loss.len()
}

/// The peak rates at which `arch` fails without warm-up.
pub fn failing_rates(s: &TransformersSummary, arch: &str) -> Vec<f64> {
    s.train
        .iter()
        .filter(|r| r.arch == arch && r.warmup == 0 && row_fails(r, s.config.vocab))
        .map(|r| r.lr)
        .collect()
}

/// Whether `arch` fails at peak rate `lr` with (`warm`) or without warm-up.
pub fn fails_at(s: &TransformersSummary, arch: &str, lr: f64, warm: bool) -> Option<bool> {
    s.train
        .iter()
        .find(|r| r.arch == arch && r.lr == lr && (r.warmup > 0) == warm)
        .map(|r| row_fails(r, s.config.vocab))
}

fn train_placement(s: &TransformersSummary, ln: LnPlace) -> Option<String> {
    s.config
        .train_placements
        .iter()
        .find(|a| a.ln == ln && a.skip && a.mlp)
        .map(TransformerArch::to_string)
}

pub(super) fn rates(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Post-LN without warm-up against pre-LN, and post-LN with warm-up, at
/// the rates where post-LN without warm-up fails.
pub(super) fn finding(s: &TransformersSummary, claims: &mut Claims, parts: &mut Vec<String>) {
    let c = &s.config;
    let Some(post) = train_placement(s, LnPlace::Post) else {
        return;
    };
    let failing = failing_rates(s, &post);
    let grid = rates(&c.lrs);
    parts.push(claims.decide(
        "post-ln-fails-without-warmup",
        Check::that(
            !failing.is_empty(),
            format!("{post} without warm-up fails at some rate of {grid}"),
        ),
        format!(
            "Trained with Adam for {} steps, post-LN without warm-up fails (diverges, or ends above {}·ln V) at peak rate(s) {} of the grid {grid}.",
            c.steps,
            decimals(FAILED_SHARE, 1),
            rates(&failing)
        ),
        format!(
            "Trained with Adam for {} steps, post-LN without warm-up trains at every peak rate of the grid {grid}: none fails here.",
            c.steps
        ),
    ));
    if failing.is_empty() {
        return;
    }
    if let Some(pre) = train_placement(s, LnPlace::Pre) {
        let ok: Vec<f64> = failing
            .iter()
            .copied()
            .filter(|&lr| fails_at(s, &pre, lr, false) == Some(false))
            .collect();
        parts.push(claims.decide(
            "pre-ln-trains-without-warmup",
            Check::that(
                ok.len() == failing.len(),
                format!("{pre} without warm-up trains at every rate where {post} fails"),
            ),
            "Pre-LN trains without warm-up at each of those rates (Xiong et al. 2020).".to_string(),
            format!(
                "Pre-LN without warm-up does not train at every one of them either (it trains at {}).",
                if ok.is_empty() { "none".into() } else { rates(&ok) }
            ),
        ));
    }
    let rescued: Vec<f64> = failing
        .iter()
        .copied()
        .filter(|&lr| fails_at(s, &post, lr, true) == Some(false))
        .collect();
    parts.push(claims.decide(
        "warmup-rescues-post-ln",
        Check::that(
            rescued.len() == failing.len(),
            format!("{post} with warm-up trains at every rate where it fails without"),
        ),
        format!(
            "A linear warm-up over the first {} steps rescues post-LN at each of them.",
            c.warmup
        ),
        format!(
            "A linear warm-up over the first {} steps rescues post-LN at {} of them ({}).",
            c.warmup,
            rescued.len(),
            if rescued.is_empty() {
                "none".into()
            } else {
                rates(&rescued)
            }
        ),
    ));
}

/// First panel: the final loss against the peak rate per placement, with
/// (dashed) and without warm-up, beside ln V; then per placement the loss
/// curves, one colour per rate.
pub(super) fn plot(s: &TransformersSummary, dir: &Path) -> Result<Block> {
    let c = &s.config;
    let chance = (c.vocab as f64).ln();
    let mut first = LineChart::new(
        "final loss against the peak rate",
        "peak learning rate",
        "final loss",
    )
    .log_x()
    .legend(Legend::Outside);
    for (i, arch) in c.train_placements.iter().enumerate() {
        let arch = arch.to_string();
        for warm in [false, true] {
            let xy: Vec<(f64, f64)> = s
                .train
                .iter()
                .filter(|r| r.arch == arch && (r.warmup > 0) == warm)
                .filter_map(|r| {
                    let finite: Vec<f64> = r
                        .final_loss
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite())
                        .collect();
                    (!finite.is_empty())
                        .then(|| (r.lr, finite.iter().sum::<f64>() / finite.len() as f64))
                })
                .collect();
            let label = if warm {
                format!("{arch}, warm-up")
            } else {
                format!("{arch}, no warm-up")
            };
            let mark = if warm { Mark::Dashed } else { Mark::LinePoints };
            first.push(Series::line(label, xy, color(i)).mark(mark));
        }
    }
    let (lo, hi) = (
        c.lrs.iter().copied().fold(f64::INFINITY, f64::min),
        c.lrs.iter().copied().fold(0.0, f64::max),
    );
    first.push(
        Series::line(
            "ln V (chance)",
            vec![(lo, chance), (hi, chance)],
            style::THEORY,
        )
        .mark(Mark::Dashed),
    );
    let mut panels = vec![first];
    for arch in &c.train_placements {
        let arch = arch.to_string();
        let mut ch = LineChart::new(&arch, "step", "loss (mean over seeds)")
            .integer_x()
            .legend(Legend::Outside);
        for (k, &lr) in c.lrs.iter().enumerate() {
            for warm in [false, true] {
                let Some(r) = s
                    .train
                    .iter()
                    .find(|r| r.arch == arch && r.lr == lr && (r.warmup > 0) == warm)
                else {
                    continue;
                };
                let xy: Vec<(f64, f64)> = r
                    .curve
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.mean.is_finite())
                    .map(|(t, v)| (t as f64, v.mean))
                    .collect();
                let (label, mark) = if warm {
                    (format!("{lr}, warm-up"), Mark::Dashed)
                } else {
                    (format!("{lr}"), Mark::Line)
                };
                ch.push(Series::line(label, xy, color(k)).mark(mark));
            }
        }
        panels.push(ch);
    }
    let f = Figure {
        name: "training",
        title: "Training with Adam, with and without warm-up",
        alt: "The final loss against the peak learning rate, and the loss curves, per placement, with and without warm-up",
        caption: "Means over seeds of the loss of each step's fresh batch (before its update); a run that went non-finite drops out of the means from that step on. \
         Dashed: with a linear warm-up from 0; the grey dashed line is ln V, the loss of a uniform guess."
            .into(),
    };
    figure(dir, f, panels, 3, |c, r| (700 * c, 450 * r))
}

pub(super) fn table(s: &TransformersSummary) -> Block {
    let rows = s
        .train
        .iter()
        .map(|r| {
            let finite: Vec<f64> = r
                .final_loss
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let n = finite.len() as f64;
            let mean = finite.iter().sum::<f64>() / n;
            let se = if finite.len() > 1 {
                (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
            } else {
                f64::NAN
            };
            let diverged: Vec<String> = r
                .diverged_at
                .iter()
                .flatten()
                .map(|d| d.to_string())
                .collect();
            vec![
                r.arch.clone(),
                format!("{}", r.lr),
                if r.warmup > 0 {
                    r.warmup.to_string()
                } else {
                    "none".into()
                },
                if finite.is_empty() {
                    "non-finite".into()
                } else {
                    mean_se(mean, se, |v| decimals(v, 3), false)
                },
                format!(
                    "{}/{}{}",
                    diverged.len(),
                    r.diverged_at.len(),
                    if diverged.is_empty() {
                        String::new()
                    } else {
                        format!(" (step {})", diverged.join(", "))
                    }
                ),
                if row_fails(r, s.config.vocab) {
                    "fails".into()
                } else {
                    "trains".into()
                },
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "peak rate",
            "warm-up steps",
            "final loss",
            "diverged",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}
