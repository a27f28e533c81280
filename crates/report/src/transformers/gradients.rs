//! The output layer's gradient against depth per layer-norm placement
//! (Xiong et al. 2020): the claims on post-LN and pre-LN, the figure of
//! ‖∂L/∂W^{2,L}‖ and the per-block profiles, and the table.

use std::path::Path;

use gradscope_contract::curvature::MeanSe;
use gradscope_contract::transformers::{GradRow, TransformersSummary};
use gradscope_spec::{LnPlace, TransformerArch};

use super::{Figure, figure, sci, with_errors};
use crate::Result;
use crate::claims::{Check, Claims};
use crate::doc::Block;
use crate::figure::{Legend, LineChart, Mark, Series};
use crate::format::{decimals, mean_se};
use crate::style::{self, color};

/// Post-LN "keeps" its output-layer gradient when ‖∂L/∂W^{2,L}‖ at the
/// deepest depth is at least this share of it at the shallowest.
pub const POST_KEEPS: f64 = 0.8;
/// Pre-LN's output-layer gradient "shrinks" when the same ratio is at most this.
pub const PRE_SHRINKS: f64 = 0.85;
/// How far the fitted log-log slope may be from Xiong et al.'s −½ for
/// "scales like 1/√L".
pub const SLOPE_TOLERANCE: f64 = 0.2;

/// ‖∂L/∂W^{2,L}‖ at the deepest over the shallowest depth, for `arch`.
pub fn output_growth(s: &TransformersSummary, arch: &str) -> Option<f64> {
    let rows: Vec<&GradRow> = s.grads.iter().filter(|r| r.arch == arch).collect();
    let (first, last) = (rows.first()?, rows.last()?);
    (first.depth != last.depth).then(|| last.last_ffn_grad.mean / first.last_ffn_grad.mean)
}

/// The full block (skip and MLP on) of placement `ln`, if the run has it.
fn placement(s: &TransformersSummary, ln: LnPlace) -> Option<String> {
    s.config
        .placements
        .iter()
        .find(|a| a.ln == ln && a.skip && a.mlp)
        .map(TransformerArch::to_string)
}

/// Post-LN keeps its output-layer gradient, pre-LN's shrinks, and pre-LN's
/// log-log slope against 1/√L.
pub(super) fn finding(s: &TransformersSummary, claims: &mut Claims, parts: &mut Vec<String>) {
    let c = &s.config;
    let (shallow, deep) = (c.depths[0], *c.depths.last().expect("depths checked"));
    if let Some(post) = placement(s, LnPlace::Post)
        && let Some(g) = output_growth(s, &post)
    {
        parts.push(claims.decide(
            "post-ln-keeps",
            Check::at_least(
                &format!("‖∂L/∂W²‖ of the last block, {post}, depth {deep} over depth {shallow}"),
                g,
                POST_KEEPS,
            ),
            format!(
                "With the layer norm after the residual sum (post-LN), the gradient of the last block's feed-forward weights does not shrink with depth: at depth {deep} it is {}× its value at depth {shallow} (Xiong et al. 2020: independent of depth, hence warm-up).",
                decimals(g, 2)
            ),
            format!(
                "With post-LN the gradient of the last block's feed-forward weights at depth {deep} is only {}× its value at depth {shallow}: it shrinks with depth here.",
                decimals(g, 2)
            ),
        ));
    }
    if let Some(pre) = placement(s, LnPlace::Pre)
        && let Some(g) = output_growth(s, &pre)
    {
        parts.push(claims.decide(
            "pre-ln-shrinks",
            Check::at_most(
                &format!("‖∂L/∂W²‖ of the last block, {pre}, depth {deep} over depth {shallow}"),
                g,
                PRE_SHRINKS,
            ),
            format!(
                "With the norm before each sublayer (pre-LN) it shrinks: {}× from depth {shallow} to {deep}.",
                decimals(g, 2)
            ),
            format!(
                "With pre-LN it does not clearly shrink: {}× from depth {shallow} to {deep}.",
                decimals(g, 2)
            ),
        ));
        if let Some(slope) = s.slopes.iter().find(|r| r.arch == pre).map(|r| r.slope)
            && slope.is_finite()
        {
            parts.push(claims.decide(
                "pre-ln-sqrt",
                Check::within(
                    &format!("slope of log ‖∂L/∂W²‖ against log L, {pre}"),
                    slope,
                    -0.5 - SLOPE_TOLERANCE,
                    -0.5 + SLOPE_TOLERANCE,
                ),
                format!(
                    "Its log-log slope against L is {}, within {} of the −½ of Xiong et al.'s 1/√L.",
                    decimals(slope, 2),
                    decimals(SLOPE_TOLERANCE, 1)
                ),
                format!(
                    "Its log-log slope against L is {}, shallower than the −½ of Xiong et al.'s 1/√L bound at these depths (their bound is asymptotic: the final LN divides by the scale of a sum of L branches, which grows like √L only once the branches outweigh the embedding).",
                    decimals(slope, 2)
                ),
            ));
        }
    }
}

/// Left: ‖∂L/∂W^{2,L}‖ against depth per placement (log-log, with the
/// 1/√L line through pre-LN's first point); then one panel per placement:
/// ‖∂L/∂θ_b‖ against the block, one line per depth.
pub(super) fn plot(s: &TransformersSummary, dir: &Path) -> Result<Block> {
    let mut panels = Vec::new();
    let mut ch = LineChart::new(
        "last block's ‖∂L/∂W²‖ against depth",
        "depth L (blocks)",
        "‖∂L/∂W²‖",
    )
    .integer_x()
    .log2_x()
    .log_y()
    .legend(Legend::Outside);
    for (i, arch) in s.config.placements.iter().enumerate() {
        let arch = arch.to_string();
        let points: Vec<(f64, MeanSe)> = s
            .grads
            .iter()
            .filter(|r| r.arch == arch && r.last_ffn_grad.mean > 0.0)
            .map(|r| (r.depth as f64, r.last_ffn_grad))
            .collect();
        if !points.is_empty() {
            ch.push(with_errors(arch, points, color(i)));
        }
    }
    if let Some(pre) = placement(s, LnPlace::Pre)
        && let Some(first) = s.grads.iter().find(|r| r.arch == pre)
    {
        let (l0, g0) = (first.depth as f64, first.last_ffn_grad.mean);
        let xy = s
            .config
            .depths
            .iter()
            .map(|&d| (d as f64, g0 * (l0 / d as f64).sqrt()))
            .collect();
        ch.push(Series::line("1/√L (Xiong et al.)", xy, style::THEORY).mark(Mark::Dashed));
    }
    panels.push(ch);
    for arch in &s.config.placements {
        let arch = arch.to_string();
        let mut ch = LineChart::new(&arch, "block b", "‖∂L/∂θ_b‖")
            .integer_x()
            .log_y()
            .legend(Legend::Outside);
        for (k, r) in s.grads.iter().filter(|r| r.arch == arch).enumerate() {
            let xy: Vec<(f64, f64)> = r
                .block_grad
                .iter()
                .enumerate()
                .filter(|(_, g)| g.mean > 0.0)
                .map(|(b, g)| (b as f64, g.mean))
                .collect();
            ch.push(Series::line(format!("L = {}", r.depth), xy, color(k)).mark(Mark::LinePoints));
        }
        panels.push(ch);
    }
    // The placements beyond the four the caption defines, said only when run.
    let mut more = String::new();
    if s.config
        .placements
        .iter()
        .any(|a| matches!(a.ln, LnPlace::XSkip { .. }))
    {
        more += " xSkip+LN (Liu et al. 2020): LN(λx + F(x)).";
    }
    if s.config
        .placements
        .iter()
        .any(|a| matches!(a.ln, LnPlace::RSkip { .. }))
    {
        more += " rSkip+LN (Liu et al. 2020): y₁ = LN₁(x + F(x)), yᵢ = LNᵢ(x + yᵢ₋₁) up to i = λ, each LN its own γ, β.";
    }
    let f = Figure {
        name: "gradients",
        title: "Gradients at initialisation per layer-norm placement",
        alt: "The last block's feed-forward gradient against depth, and every block's parameter gradient, per placement",
        caption: "Means over seeds (standard errors on the first panel). Post-LN: LN(x + F(x)); pre-LN: x + F(LN(x)) and a final LN; none: x + F(x); \
         ReZero: x + α·F(x) with α = 0 at initialisation, so every branch weight's gradient is exactly 0: its ‖∂L/∂W²‖ is absent from the first panel's log scale, and its block panel shows the gradients of the α's alone. \
         The dashed line falls like 1/√L from pre-LN's shallowest point."
            .to_string()
            + &more,
    };
    figure(dir, f, panels, 3, |c, r| (600 * c, 450 * r))
}

pub(super) fn table(s: &TransformersSummary) -> Block {
    let rows = s
        .grads
        .iter()
        .map(|r| {
            let slope = s
                .slopes
                .iter()
                .find(|x| x.arch == r.arch)
                .map_or(f64::NAN, |x| x.slope);
            vec![
                r.arch.clone(),
                r.depth.to_string(),
                decimals(r.loss.mean, 3),
                mean_se(r.last_ffn_grad.mean, r.last_ffn_grad.se, sci, false),
                sci(r.block_grad[0].mean),
                // ReZero's branch gradients are exactly 0 at α = 0: no slope.
                if slope.is_finite() {
                    decimals(slope, 2)
                } else {
                    "n/a".into()
                },
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "depth",
            "loss",
            "‖∂L/∂W²‖ (last block)",
            "‖∂L/∂θ_0‖ (first block)",
            "log-log slope",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}
