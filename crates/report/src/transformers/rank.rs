//! Rank collapse of the token representations through depth (Dong et al.
//! 2021): the claims on pure attention and on the variants with skips, at
//! initialisation and after training, and the figure.

use std::path::Path;

use gradscope_contract::transformers::TransformersSummary;

use super::{Figure, figure, sci, with_errors};
use crate::Result;
use crate::claims::{Check, Claims};
use crate::doc::Block;
use crate::figure::{Legend, LineChart};
use crate::format::decimals;
use crate::style::color;

/// Pure attention has "collapsed" when res(h_L)/res(h_0) is at most this.
pub const COLLAPSED: f64 = 0.05;
/// A stack with skips "keeps its rank" when res(h_L)/res(h_0) is at least this.
pub const KEPT: f64 = 0.25;

/// res(h_L)/res(h_0) of rank variant `i`.
pub fn rank_ratio(s: &TransformersSummary, i: usize) -> f64 {
    let r = &s.rank[i].residual;
    r[r.len() - 1].mean / r[0].mean
}

/// res(h_L)/res(h_0) of rank variant `i` after training (None untrained).
pub fn trained_rank_ratio(s: &TransformersSummary, i: usize) -> Option<f64> {
    let r = &s.rank[i].trained;
    (!r.is_empty()).then(|| r[r.len() - 1].mean / r[0].mean)
}

/// Pure attention collapses, the variants with skips keep their rank, and
/// training does not undo the collapse.
pub(super) fn finding(s: &TransformersSummary, claims: &mut Claims, parts: &mut Vec<String>) {
    let c = &s.config;
    let pure = s.config.rank_archs.iter().position(|a| !a.skip && !a.mlp);
    let depth = c.rank_depth;
    if let Some(i) = pure {
        let r = rank_ratio(s, i);
        parts.push(claims.decide(
            "pure-attention-collapses",
            Check::at_most(
                &format!("res(h_{depth})/res(h_0), {}", s.rank[i].arch),
                r,
                COLLAPSED,
            ),
            format!(
                "A pure attention stack (no skips, no MLPs) loses rank: after {depth} blocks the token representations' distance from the nearest rank-1 matrix 1xᵀ is {} of its value at the embedding (Dong et al. 2021).",
                sci(r)
            ),
            format!(
                "A pure attention stack keeps {} of its distance from rank one after {depth} blocks: no collapse below {}.",
                sci(r),
                decimals(COLLAPSED, 2)
            ),
        ));
    }
    let skipped: Vec<usize> = (0..s.rank.len())
        .filter(|&i| s.config.rank_archs[i].skip)
        .collect();
    if !skipped.is_empty() {
        let worst = skipped
            .iter()
            .map(|&i| rank_ratio(s, i))
            .fold(f64::INFINITY, f64::min);
        parts.push(claims.decide(
            "skips-keep-rank",
            Check::at_least(
                &format!("smallest res(h_{depth})/res(h_0) of the variants with skips"),
                worst,
                KEPT,
            ),
            format!(
                "With skip connections it declines slowly instead: every such variant keeps {} or more of it (at least a quarter).",
                decimals(worst, 2)
            ),
            format!(
                "With skip connections the distance still falls to {} of its start in some variant.",
                decimals(worst, 2)
            ),
        ));
    }
    if let Some(i) = pure
        && let Some(r) = trained_rank_ratio(s, i)
    {
        parts.push(claims.decide(
            "trained-pure-attention-collapses",
            Check::at_most(
                &format!("res(h_{depth})/res(h_0) after training, {}", s.rank[i].arch),
                r,
                COLLAPSED,
            ),
            format!(
                "Training does not undo the collapse: after {} steps the pure stack's ratio is {}.",
                c.steps,
                sci(r)
            ),
            format!(
                "After {} training steps the pure stack's ratio is {}: training moved it above {}.",
                c.steps,
                sci(r),
                decimals(COLLAPSED, 2)
            ),
        ));
    }
}

/// One panel: res(h_l) against the block, per variant, at initialisation
/// or after training (`trained`); non-finite means left out.
fn panel(s: &TransformersSummary, title: String, trained: bool) -> LineChart {
    let mut ch = LineChart::new(
        title,
        "block l (0: the embedding)",
        "distance from rank one",
    )
    .integer_x()
    .legend(Legend::Outside);
    for (i, r) in s.rank.iter().enumerate() {
        let values = if trained { &r.trained } else { &r.residual };
        let points = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.mean.is_finite())
            .map(|(l, v)| (l as f64, *v));
        ch.push(with_errors(r.arch.clone(), points, color(i)));
    }
    ch
}

pub(super) fn plot(s: &TransformersSummary, dir: &Path) -> Result<Block> {
    let mut panels = Vec::new();
    if s.rank.iter().any(|r| !r.trained.is_empty()) {
        panels.push(panel(s, "at initialisation".into(), false));
        let title = format!(
            "after {} training steps (peak rate {})",
            s.config.steps, s.config.rank_lr
        );
        panels.push(panel(s, title, true));
    } else {
        let title = "res(h_l) = ‖h_l − 1·(mean token)‖ / ‖h_l‖ against depth";
        panels.push(panel(s, title.into(), false));
    }
    let f = Figure {
        name: "rank",
        title: "Rank collapse of the token representations",
        alt: "Distance of the token representations from the nearest rank-1 matrix, after each block",
        caption: "Means over seeds and sequences, with standard errors over seeds. Variants without a layer norm, as Dong et al. 2021 analyse: \
         skip=off drops the residual, mlp=off the feed-forward sublayer."
            .into(),
    };
    let cols = panels.len();
    figure(dir, f, panels, cols, |c, _| {
        (if c == 1 { 1100 } else { 1700 }, 500)
    })
}
