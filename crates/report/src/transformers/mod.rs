//! The transformers report: the output layer's gradient against depth per
//! layer-norm placement (Xiong et al. 2020), the per-block gradient
//! profiles, and the rank collapse of token representations with and
//! without skips and MLPs at initialisation and after training (Dong et
//! al. 2021), and training with and without learning-rate warm-up over a
//! grid of rates (Xiong et al. 2020), and the input gradient along an
//! interpolation between two sequences (Balduzzi et al. 2017's view). One
//! file per section; the page, the finding and the shared figure helpers
//! here.

mod gradients;
mod interpolation;
mod rank;
mod training;

use std::path::Path;

use gradscope_contract::curvature::MeanSe;
use gradscope_contract::io::create_dir;
use gradscope_contract::transformers::{
    self, DIVERGENCE_MARGIN, TransformersParams, TransformersSummary, read_summary,
};
use plotters::style::RGBColor;

pub use gradients::{POST_KEEPS, PRE_SHRINKS, SLOPE_TOLERANCE, output_growth};
pub use interpolation::interp_ends;
pub use rank::{COLLAPSED, KEPT, rank_ratio, trained_rank_ratio};
pub use training::{FAILED_SHARE, failing_rates, fails_at, row_fails, run_failed};

use crate::card::StudyCard;
use crate::claims::Claims;
use crate::doc::{Block, Doc};
use crate::figure::{LineChart, Mark, Panels, Series, save};
use crate::format::decimals;
use crate::style;
use crate::{Result, pages};

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
    doc.push(gradients::plot(&s, report_dir)?);
    doc.push(gradients::table(&s));

    doc.heading("Rank collapse through depth");
    doc.push(rank::plot(&s, report_dir)?);

    if !s.interp.is_empty() {
        doc.heading("Input gradients along an interpolation between two sequences");
        doc.push(interpolation::plot(&s, report_dir)?);
    }

    if !s.train.is_empty() {
        doc.heading("Training with and without learning-rate warm-up");
        doc.push(training::plot(&s, report_dir)?);
        doc.push(training::table(&s));
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

/// The finding: post-LN against pre-LN at the output layer, the slope
/// against 1/√L, rank collapse with and without skips, the interpolation
/// and training.
pub fn finding(s: &TransformersSummary, claims: &mut Claims) -> String {
    let mut parts = Vec::new();
    gradients::finding(s, claims, &mut parts);
    rank::finding(s, claims, &mut parts);
    interpolation::finding(s, claims, &mut parts);
    training::finding(s, claims, &mut parts);
    if parts.is_empty() {
        return "These runs hold neither a post-LN or pre-LN placement at two depths nor a rank variant: the report shows the measurements without comparing them.".into();
    }
    parts.join(" ")
}

/// A line of means over seeds with their standard errors as error bars (0
/// where the standard error is not finite: one seed).
fn with_errors(
    label: impl Into<String>,
    points: impl IntoIterator<Item = (f64, MeanSe)>,
    c: RGBColor,
) -> Series {
    let (xy, err): (Vec<(f64, f64)>, Vec<f64>) = points
        .into_iter()
        .map(|(x, v)| ((x, v.mean), if v.se.is_finite() { v.se } else { 0.0 }))
        .unzip();
    Series::line(label, xy, c)
        .mark(Mark::LinePoints)
        .errors(err)
}

/// What a figure is called and says.
struct Figure<'a> {
    /// File stem.
    name: &'a str,
    /// Title over the panels.
    title: &'a str,
    alt: &'a str,
    caption: String,
}

/// Draw `panels` (each titled at the panel size) in a grid of at most
/// `max_cols` columns, of `size(cols, rows)` pixels, as a figure block.
fn figure(
    dir: &Path,
    f: Figure,
    mut panels: Vec<LineChart>,
    max_cols: usize,
    size: impl Fn(u32, u32) -> (u32, u32),
) -> Result<Block> {
    for p in &mut panels {
        p.title_size = style::PANEL_TITLE_SIZE;
    }
    let cols = panels.len().min(max_cols);
    let rows = panels.len().div_ceil(cols);
    let files = save(
        &Panels {
            title: f.title.into(),
            rows,
            cols,
            panels,
        },
        dir,
        f.name,
        size(cols as u32, rows as u32),
    )?;
    Ok(Block::figure(files, f.alt, f.caption))
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
        training::rates(&c.lrs),
        c.warmup,
        c.train_seeds,
        DIVERGENCE_MARGIN,
        decimals(FAILED_SHARE, 1),
        c.train_seeds,
        c.steps,
        c.rank_lr
    )
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
