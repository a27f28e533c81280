//! The transformers report: the output layer's gradient against depth per
//! layer-norm placement (Xiong et al. 2020), the per-block gradient
//! profiles, and the rank collapse of token representations with and
//! without skips and MLPs at initialisation and after training (Dong et
//! al. 2021), and training with and without learning-rate warm-up over a
//! grid of rates (Xiong et al. 2020).

use std::path::Path;

use gradscope_contract::io::create_dir;
use gradscope_contract::transformers::{
    self, DIVERGENCE_MARGIN, GradRow, TrainRow, TransformersParams, TransformersSummary,
    read_summary,
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

/// res(h_L)/res(h_0) of rank variant `i` after training (None untrained).
pub fn trained_rank_ratio(s: &TransformersSummary, i: usize) -> Option<f64> {
    let r = &s.rank[i].trained;
    (!r.is_empty()).then(|| r[r.len() - 1].mean / r[0].mean)
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

    if !s.interp.is_empty() {
        doc.heading("Input gradients along an interpolation between two sequences");
        doc.push(interpolation(&s, report_dir)?);
    }

    if !s.train.is_empty() {
        doc.heading("Training with and without learning-rate warm-up");
        doc.push(training(&s, report_dir)?);
        doc.push(train_table(&s));
    }

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
    interp_finding(s, claims, &mut parts);
    training_finding(s, claims, &mut parts);
    if parts.is_empty() {
        return "These runs hold neither a post-LN or pre-LN placement at two depths nor a rank variant: the report shows the measurements without comparing them.".into();
    }
    parts.join(" ")
}

/// r₁ at the deepest and the shallowest interpolation depth, per variant:
/// (arch, skip, shallow r₁, deep r₁).
pub fn interp_ends(s: &TransformersSummary) -> Vec<(String, bool, f64, f64)> {
    let c = &s.config;
    let (Some(&lo), Some(&hi)) = (c.interp_depths.iter().min(), c.interp_depths.iter().max())
    else {
        return Vec::new();
    };
    c.interp_archs
        .iter()
        .filter_map(|a| {
            let name = a.to_string();
            let at = |d: usize| {
                s.interp
                    .iter()
                    .find(|r| r.arch == name && r.depth == d)
                    .map(|r| r.r1.mean)
            };
            Some((name.clone(), a.skip, at(lo)?, at(hi)?))
        })
        .collect()
}

/// Skips against none at the deepest depth, and the decay without skips.
fn interp_finding(s: &TransformersSummary, claims: &mut Claims, parts: &mut Vec<String>) {
    let c = &s.config;
    let ends = interp_ends(s);
    let (Some(&lo), Some(&hi)) = (c.interp_depths.iter().min(), c.interp_depths.iter().max())
    else {
        return;
    };
    let with: Vec<f64> = ends.iter().filter(|e| e.1).map(|e| e.3).collect();
    let without: Vec<&(String, bool, f64, f64)> = ends.iter().filter(|e| !e.1).collect();
    if !with.is_empty() && !without.is_empty() {
        let least = with.iter().copied().fold(f64::INFINITY, f64::min);
        let most = without
            .iter()
            .map(|e| e.3)
            .fold(f64::NEG_INFINITY, f64::max);
        parts.push(claims.decide(
            "interp-skips-smoother",
            Check::that(
                least > most,
                format!("smallest r₁ at depth {hi} with skips ({}) above the largest without ({})", decimals(least, 3), decimals(most, 3)),
            ),
            format!(
                "Along a line from one sequence's embeddings to another's, the input gradient of a stack of {hi} blocks with skips is more correlated from point to point (r₁ ≥ {}) than without skips (r₁ ≤ {}), the direction of Balduzzi et al. 2017's shattered-gradients contrast.",
                decimals(least, 2),
                decimals(most, 2)
            ),
            format!(
                "Along a line from one sequence's embeddings to another's, the input gradient of a stack of {hi} blocks is not more correlated with skips (r₁ down to {}) than without (up to {}).",
                decimals(least, 2),
                decimals(most, 2)
            ),
        ));
    }
    if lo < hi && !without.is_empty() {
        let decays = without.iter().all(|e| e.3 < e.2);
        let list = without
            .iter()
            .map(|e| format!("{} → {}", decimals(e.2, 3), decimals(e.3, 3)))
            .collect::<Vec<_>>()
            .join(", ");
        parts.push(claims.decide(
            "interp-no-skip-decays",
            Check::that(
                decays,
                format!("r₁ without skips, depth {lo} → {hi}: {list}"),
            ),
            format!("Without skips r₁ falls with depth ({list} from {lo} to {hi} blocks)."),
            format!(
                "Without skips r₁ does not fall with depth here ({list} from {lo} to {hi} blocks)."
            ),
        ));
    }
}

fn train_placement(s: &TransformersSummary, ln: LnPlace) -> Option<String> {
    s.config
        .train_placements
        .iter()
        .find(|a| a.ln == ln && a.skip && a.mlp)
        .map(TransformerArch::to_string)
}

fn rates(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Post-LN without warm-up against pre-LN, and post-LN with warm-up, at
/// the rates where post-LN without warm-up fails.
fn training_finding(s: &TransformersSummary, claims: &mut Claims, parts: &mut Vec<String>) {
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

fn setup(c: &TransformersParams) -> String {
    format!(
        "Setup: transformer encoders of width d = {}, {} heads, feed-forward width 4d, on a task generated from the seed: reverse a sequence of T = {} uniform random tokens of a vocabulary of {}. \
         The loss is the mean token cross-entropy of one batch of {} sequences, at initialisation (token and position embeddings N(0, 1); block weights Xavier uniform, biases 0; LN γ = 1, β = 0; ReZero's α = 0). \
         {} seed(s) per placement and depth; a seed's depth-L net is the first L blocks of its deeper nets. \
         Gradients by reverse mode in f64 on the engine's kernels (attention, layer norm and the feed-forward sublayer as engine ops, tested equal to candle's autograd and to PyTorch's on identical weights). \
         res(X) = ‖X − 1x̄ᵀ‖_F / ‖X‖_F, x̄ the mean token, averaged over the batch's sequences. Error bars: standard errors over seeds. \
         Training: nets of {} blocks, Adam (β = 0.9, 0.98, ε = 10⁻⁹), {} steps of a fresh batch each, at peak rates {}, each with a constant rate and with a linear warm-up from 0 over {} steps; {} seed(s) per run. \
         A run diverges at the first step whose loss is not finite or exceeds its initial loss by {} nat; it fails when it diverges or its final loss (the mean over the last tenth of the steps) is at least {}·ln V, and a rate fails when more than half its seeds do. \
         The first {} net(s) of each rank variant are measured again after {} such steps at peak rate {} with the warm-up.",
        c.width,
        c.heads,
        c.seq_len,
        c.vocab,
        c.batch,
        c.seeds,
        c.train_depth,
        c.steps,
        rates(&c.lrs),
        c.warmup,
        c.train_seeds,
        DIVERGENCE_MARGIN,
        decimals(FAILED_SHARE, 1),
        c.train_seeds,
        c.steps,
        c.rank_lr
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
    let mut panels = vec![ch];
    if s.rank.iter().any(|r| !r.trained.is_empty()) {
        let mut tr = LineChart::new(
            format!(
                "after {} training steps (peak rate {})",
                s.config.steps, s.config.rank_lr
            ),
            "block l (0: the embedding)",
            "distance from rank one",
        )
        .legend(Legend::Outside);
        for (i, r) in s.rank.iter().enumerate() {
            let (xy, err): (Vec<(f64, f64)>, Vec<f64>) = r
                .trained
                .iter()
                .enumerate()
                .filter(|(_, v)| v.mean.is_finite())
                .map(|(l, v)| {
                    (
                        (l as f64, v.mean),
                        if v.se.is_finite() { v.se } else { 0.0 },
                    )
                })
                .unzip();
            tr.push(
                Series::line(r.arch.clone(), xy, color(i))
                    .mark(Mark::LinePoints)
                    .errors(err),
            );
        }
        tr.title_size = style::PANEL_TITLE_SIZE;
        panels[0].title = "at initialisation".into();
        panels.push(tr);
    }
    let cols = panels.len();
    let fig = save(
        &Panels {
            title: "Rank collapse of the token representations".into(),
            rows: 1,
            cols,
            panels,
        },
        dir,
        "rank",
        (if cols == 1 { 1100 } else { 1700 }, 500),
    )?;
    Ok(Block::figure(
        fig,
        "Distance of the token representations from the nearest rank-1 matrix, after each block",
        "Means over seeds and sequences, with standard errors over seeds. Variants without a layer norm, as Dong et al. 2021 analyse: \
         skip=off drops the residual, mlp=off the feed-forward sublayer.",
    ))
}

/// First panel: the final loss against the peak rate per placement, with
/// (dashed) and without warm-up, beside ln V; then per placement the loss
/// curves, one colour per rate.
fn training(s: &TransformersSummary, dir: &Path) -> Result<Block> {
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
    first.title_size = style::PANEL_TITLE_SIZE;
    let mut panels = vec![first];
    for arch in &c.train_placements {
        let arch = arch.to_string();
        let mut ch =
            LineChart::new(&arch, "step", "loss (mean over seeds)").legend(Legend::Outside);
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
        ch.title_size = style::PANEL_TITLE_SIZE;
        panels.push(ch);
    }
    let n = panels.len();
    let cols = n.min(3);
    let rows = n.div_ceil(cols);
    let fig = save(
        &Panels {
            title: "Training with Adam, with and without warm-up".into(),
            rows,
            cols,
            panels,
        },
        dir,
        "training",
        (700 * cols as u32, 450 * rows as u32),
    )?;
    Ok(Block::figure(
        fig,
        "The final loss against the peak learning rate, and the loss curves, per placement, with and without warm-up",
        "Means over seeds of the loss of each step's fresh batch (before its update); a run that went non-finite drops out of the means from that step on. \
         Dashed: with a linear warm-up from 0; the grey dashed line is ln V, the loss of a uniform guess.",
    ))
}

/// r₁ against depth per variant, and one coordinate of ∂f/∂e_s along s at
/// the deepest depth.
fn interpolation(s: &TransformersSummary, dir: &Path) -> Result<Block> {
    let c = &s.config;
    let mut first = LineChart::new(
        "r₁ of ∂f/∂e_s along s against depth",
        "depth L (blocks)",
        "r₁",
    )
    .log2_x()
    .legend(Legend::Outside);
    for (i, arch) in c.interp_archs.iter().enumerate() {
        let arch = arch.to_string();
        let (xy, err): (Vec<(f64, f64)>, Vec<f64>) = s
            .interp
            .iter()
            .filter(|r| r.arch == arch && r.r1.mean.is_finite())
            .map(|r| {
                (
                    (r.depth as f64, r.r1.mean),
                    if r.r1.se.is_finite() { r.r1.se } else { 0.0 },
                )
            })
            .unzip();
        first.push(
            Series::line(arch, xy, color(i))
                .mark(Mark::LinePoints)
                .errors(err),
        );
    }
    first.title_size = style::PANEL_TITLE_SIZE;
    let deep = c.interp_depths.iter().copied().max().unwrap_or(0);
    let mut second = LineChart::new(
        format!("one coordinate of ∂f/∂e_s, depth {deep}"),
        "s (0: sequence x, 1: sequence x′)",
        "∂f/∂e_s (first coordinate)",
    )
    .legend(Legend::Outside);
    for (i, t) in s.interp_traces.iter().enumerate() {
        // Scaled to unit maximum: the variants' gradients differ in scale.
        let m = t.trace.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let n = t.trace.len().max(2) - 1;
        let xy = t
            .trace
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k as f64 / n as f64, if m > 0.0 { v / m } else { *v }))
            .collect();
        second.push(Series::line(t.arch.clone(), xy, color(i)).mark(Mark::LinePoints));
    }
    second.title_size = style::PANEL_TITLE_SIZE;
    let fig = save(
        &Panels {
            title: "Input gradients along an interpolation between two sequences' embeddings"
                .into(),
            rows: 1,
            cols: 2,
            panels: vec![first, second],
        },
        dir,
        "interpolation",
        (1600, 500),
    )?;
    Ok(Block::figure(
        fig,
        "r₁ of the input gradient along the interpolation against depth, and one coordinate of it along s",
        format!(
            "e_s = (1 − s)E(x) + sE(x′) over {} points s, x and x′ two random sequences of the task; f = ⟨u, logits⟩ for a fixed N(0, 1) direction u; \
             r₁ is the lag-1 correlation along s of each of the T·d coordinates of ∂f/∂e_s, averaged over the coordinates (Balduzzi et al. 2017's measure); means and standard errors over {} seed(s). \
             Right: seed 0's first coordinate, each curve divided by its largest magnitude.",
            c.interp_points, c.seeds
        ),
    ))
}

fn train_table(s: &TransformersSummary) -> Block {
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

fn data_files(data_dir: &Path) -> Block {
    use transformers::files;
    Block::List(
        [
            files::SUMMARY,
            files::BLOCKS_CSV,
            files::OUTPUT_CSV,
            files::SLOPES_CSV,
            files::RANK_CSV,
            files::TRAIN_CSV,
            files::CURVES_CSV,
            files::INTERP_CSV,
            files::TRACES_CSV,
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
