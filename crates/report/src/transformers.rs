//! The transformers report: the output layer's gradient against depth per
//! layer-norm placement (Xiong et al. 2020), the per-block gradient
//! profiles, and the rank collapse of token representations with and
//! without skips and MLPs (Dong et al. 2021).

use std::path::Path;

use gradscope_contract::io::create_dir;
use gradscope_contract::transformers::{
    self, GradRow, TransformersParams, TransformersSummary, read_summary,
};
use gradscope_spec::{LnPlace, TransformerArch};

use crate::card::StudyCard;
use crate::claims::{Check, Claims};
use crate::doc::{Block, Doc};
use crate::figure::{Legend, LineChart, Mark, Panels, Series, save};
use crate::format::{decimals, mean_se};
use crate::style::{self, color};
use crate::{Result, pages};

/// Post-LN "keeps" its output-layer gradient when ‖∂L/∂W^{2,L}‖ at the
/// deepest depth is at least this share of it at the shallowest.
pub const POST_KEEPS: f64 = 0.8;
/// Pre-LN's output-layer gradient "shrinks" when the same ratio is at most this.
pub const PRE_SHRINKS: f64 = 0.85;
/// How far the fitted log-log slope may be from Xiong et al.'s −½ for
/// "scales like 1/√L".
pub const SLOPE_TOLERANCE: f64 = 0.2;
/// Pure attention has "collapsed" when res(h_L)/res(h_0) is at most this.
pub const COLLAPSED: f64 = 0.05;
/// A stack with skips "keeps its rank" when res(h_L)/res(h_0) is at least this.
pub const KEPT: f64 = 0.25;

/// ‖∂L/∂W^{2,L}‖ at the deepest over the shallowest depth, for `arch`.
pub fn output_growth(s: &TransformersSummary, arch: &str) -> Option<f64> {
    let rows: Vec<&GradRow> = s.grads.iter().filter(|r| r.arch == arch).collect();
    let (first, last) = (rows.first()?, rows.last()?);
    (first.depth != last.depth).then(|| last.last_ffn_grad.mean / first.last_ffn_grad.mean)
}

/// res(h_L)/res(h_0) of rank variant `i`.
pub fn rank_ratio(s: &TransformersSummary, i: usize) -> f64 {
    let r = &s.rank[i].residual;
    r[r.len() - 1].mean / r[0].mean
}

fn sci(v: f64) -> String {
    if v.is_finite() && v != 0.0 && (v.abs() >= 1e3 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        decimals(v, 3)
    }
}

/// Draw the study's figures and write its pages from the data folder alone.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let s = read_summary(data_dir)?;
    create_dir(report_dir)?;
    let mut doc =
        Doc::new("Transformers: where the layer norm goes, and rank collapse without skips");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(transformers::NAME);
    let finding = finding(&s, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&s.config));

    doc.heading("The output layer's gradient against depth, per layer-norm placement");
    doc.push(gradients(&s, report_dir)?);
    doc.push(table(&s));

    doc.heading("Rank collapse through depth");
    doc.push(rank(&s, report_dir)?);

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir),
        report_dir,
    )?;
    Ok(card(&s, finding))
}

fn placement(s: &TransformersSummary, ln: LnPlace) -> Option<String> {
    s.config
        .placements
        .iter()
        .find(|a| a.ln == ln && a.skip && a.mlp)
        .map(TransformerArch::to_string)
}

/// The finding: post-LN against pre-LN at the output layer, the slope
/// against 1/√L, and rank collapse with and without skips.
pub fn finding(s: &TransformersSummary, claims: &mut Claims) -> String {
    let c = &s.config;
    let (shallow, deep) = (c.depths[0], *c.depths.last().expect("depths checked"));
    let mut parts = Vec::new();
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
    if parts.is_empty() {
        return "These runs hold neither a post-LN or pre-LN placement at two depths nor a rank variant: the report shows the measurements without comparing them.".into();
    }
    parts.join(" ")
}

fn setup(c: &TransformersParams) -> String {
    format!(
        "Setup: transformer encoders of width d = {}, {} heads, feed-forward width 4d, on a task generated from the seed: reverse a sequence of T = {} uniform random tokens of a vocabulary of {}. \
         The loss is the mean token cross-entropy of one batch of {} sequences, at initialisation (token and position embeddings N(0, 1); block weights Xavier uniform, biases 0; LN γ = 1, β = 0; ReZero's α = 0). \
         {} seed(s) per placement and depth; a seed's depth-L net is the first L blocks of its deeper nets. \
         Gradients by reverse mode in f64 on the engine's kernels (attention, layer norm and the feed-forward sublayer as engine ops, tested equal to candle's autograd and to PyTorch's on identical weights). \
         res(X) = ‖X − 1x̄ᵀ‖_F / ‖X‖_F, x̄ the mean token, averaged over the batch's sequences. Error bars: standard errors over seeds.",
        c.width, c.heads, c.seq_len, c.vocab, c.batch, c.seeds
    )
}

/// Left: ‖∂L/∂W^{2,L}‖ against depth per placement (log-log, with the
/// 1/√L line through pre-LN's first point); then one panel per placement:
/// ‖∂L/∂θ_b‖ against the block, one line per depth.
fn gradients(s: &TransformersSummary, dir: &Path) -> Result<Block> {
    let mut panels = Vec::new();
    let mut ch = LineChart::new(
        "last block's ‖∂L/∂W²‖ against depth",
        "depth L (blocks)",
        "‖∂L/∂W²‖",
    )
    .log2_x()
    .log_y()
    .legend(Legend::Outside);
    for (i, arch) in s.config.placements.iter().enumerate() {
        let arch = arch.to_string();
        let (xy, err): (Vec<(f64, f64)>, Vec<f64>) = s
            .grads
            .iter()
            .filter(|r| r.arch == arch && r.last_ffn_grad.mean > 0.0)
            .map(|r| {
                let se = r.last_ffn_grad.se;
                (
                    (r.depth as f64, r.last_ffn_grad.mean),
                    if se.is_finite() { se } else { 0.0 },
                )
            })
            .unzip();
        if !xy.is_empty() {
            ch.push(
                Series::line(arch, xy, color(i))
                    .mark(Mark::LinePoints)
                    .errors(err),
            );
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
    ch.title_size = style::PANEL_TITLE_SIZE;
    panels.push(ch);
    for arch in &s.config.placements {
        let arch = arch.to_string();
        // A log scale only where the norms span more than a decade (a
        // narrower log axis would carry no tick labels).
        let positive: Vec<f64> = s
            .grads
            .iter()
            .filter(|r| r.arch == arch)
            .flat_map(|r| r.block_grad.iter().map(|g| g.mean))
            .filter(|v| *v > 0.0 && v.is_finite())
            .collect();
        let (lo, hi) = positive
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
        let mut ch = LineChart::new(&arch, "block b", "‖∂L/∂θ_b‖").legend(Legend::Outside);
        if hi > 10.0 * lo {
            ch = ch.log_y();
        }
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
        ch.title_size = style::PANEL_TITLE_SIZE;
        panels.push(ch);
    }
    let n = panels.len();
    let cols = n.min(3);
    let rows = n.div_ceil(cols);
    let fig = save(
        &Panels {
            title: "Gradients at initialisation per layer-norm placement".into(),
            rows,
            cols,
            panels,
        },
        dir,
        "gradients",
        (600 * cols as u32, 450 * rows as u32),
    )?;
    Ok(Block::figure(
        fig,
        "The last block's feed-forward gradient against depth, and every block's parameter gradient, per placement",
        "Means over seeds (standard errors on the first panel). Post-LN: LN(x + F(x)); pre-LN: x + F(LN(x)) and a final LN; none: x + F(x); \
         ReZero: x + α·F(x) with α = 0 at initialisation, so every branch weight's gradient is exactly 0: its ‖∂L/∂W²‖ is absent from the first panel's log scale, and its block panel shows the gradients of the α's alone. \
         The dashed line falls like 1/√L from pre-LN's shallowest point.",
    ))
}

fn table(s: &TransformersSummary) -> Block {
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
                decimals(slope, 2),
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

fn rank(s: &TransformersSummary, dir: &Path) -> Result<Block> {
    let mut ch = LineChart::new(
        "res(h_l) = ‖h_l − 1·(mean token)‖ / ‖h_l‖ against depth",
        "block l (0: the embedding)",
        "distance from rank one",
    )
    .legend(Legend::Outside);
    for (i, r) in s.rank.iter().enumerate() {
        let (xy, err): (Vec<(f64, f64)>, Vec<f64>) = r
            .residual
            .iter()
            .enumerate()
            .map(|(l, v)| {
                (
                    (l as f64, v.mean),
                    if v.se.is_finite() { v.se } else { 0.0 },
                )
            })
            .unzip();
        ch.push(
            Series::line(r.arch.clone(), xy, color(i))
                .mark(Mark::LinePoints)
                .errors(err),
        );
    }
    ch.title_size = style::PANEL_TITLE_SIZE;
    let fig = save(
        &Panels {
            title: "Rank collapse of the token representations".into(),
            rows: 1,
            cols: 1,
            panels: vec![ch],
        },
        dir,
        "rank",
        (1100, 500),
    )?;
    Ok(Block::figure(
        fig,
        "Distance of the token representations from the nearest rank-1 matrix, after each block",
        "Means over seeds and sequences, with standard errors over seeds. Variants without a layer norm, as Dong et al. 2021 analyse: \
         skip=off drops the residual, mlp=off the feed-forward sublayer.",
    ))
}

fn data_files(data_dir: &Path) -> Block {
    use transformers::files;
    Block::List(
        [
            files::SUMMARY,
            files::BLOCKS_CSV,
            files::OUTPUT_CSV,
            files::SLOPES_CSV,
            files::RANK_CSV,
        ]
        .iter()
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}

fn card(s: &TransformersSummary, finding: String) -> StudyCard {
    let numbers = s
        .slopes
        .iter()
        .map(|r| {
            (
                format!("{} slope of ‖∂L/∂W²‖ vs L", r.arch),
                decimals(r.slope, 2),
            )
        })
        .collect();
    StudyCard {
        name: transformers::NAME.into(),
        title: "Transformers: layer-norm placement and rank collapse".into(),
        href: format!("{}/index.html", transformers::NAME),
        thumbnail: Some(format!("{}/gradients.png", transformers::NAME)),
        finding,
        numbers,
    }
}
