//! The skips report: every skip connection and normaliser side by side (r₁,
//! spectral slope, per-layer gradient norms, df/dx pictures), and the λ sweep
//! of xSkip, xSkip+LN and rSkip+LN against the mean-field factor √(λ² + 2α²).

pub mod claims;

use std::path::Path;

use gradscope_contract::io::create_dir;
use gradscope_contract::shattered::{DepthSummary, ShatteredData};
use gradscope_contract::skips::{self, SkipsData, SkipsParams, SkipsSummary, SweepRow, files};

use crate::card::StudyCard;
use crate::claims::Claims;
use crate::doc::{Block, Doc};
use crate::figure::{Legend, LineChart, Mark, Panels, Series, save};
use crate::format::dash::{f2, f3};
use crate::format::mean_ci;
use crate::style::{self, color};
use crate::{Result, pages};

/// The summary and the comparison's arrays, with the rows the page refers to.
struct Run<'a> {
    s: &'a SkipsSummary,
    /// The comparison, a shattered-study folder.
    data: &'a ShatteredData,
    /// Variant spec strings, in config order.
    archs: Vec<String>,
    /// The swept families: xSkip, xSkip+LN, rSkip+LN.
    xs: Vec<&'a SweepRow>,
    xln: Vec<&'a SweepRow>,
    rln: Vec<&'a SweepRow>,
}

impl<'a> Run<'a> {
    fn new(s: &'a SkipsSummary, data: &'a ShatteredData) -> Self {
        let family =
            |f: &str| -> Vec<&SweepRow> { s.sweep.iter().filter(|r| r.family == f).collect() };
        Run {
            s,
            data,
            archs: s.config.archs.iter().map(|a| a.to_string()).collect(),
            xs: family("xskip"),
            xln: family("xskip-ln"),
            rln: family("rskip-ln"),
        }
    }

    fn depths(&self) -> &'a [usize] {
        &self.s.config.depths
    }

    /// Index of the deepest depth.
    fn last(&self) -> usize {
        self.depths().len() - 1
    }

    fn deepest(&self) -> usize {
        self.depths()[self.last()]
    }

    /// The comparison row of variant `a` at depth index `d`.
    fn row(&self, a: usize, d: usize) -> &'a DepthSummary {
        &self.s.compare[a * self.depths().len() + d]
    }

    /// r₁ of white noise through the same statistics.
    fn white(&self) -> f64 {
        self.data.summary.references[0].adjacent_correlation.mean
    }
}

/// Smallest and largest per-block factor of a family.
fn growth(rows: &[&SweepRow]) -> (f64, f64) {
    let g: Vec<f64> = rows.iter().map(|r| r.gradient_growth.mean).collect();
    (
        g.iter().copied().fold(f64::INFINITY, f64::min),
        g.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    )
}

/// Draw the skips study's figures and write its pages from the data folder alone.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let SkipsData {
        summary: s,
        compare: data,
    } = SkipsData::read(data_dir)?;
    create_dir(report_dir)?;
    let run = Run::new(&s, &data);

    let mut doc = Doc::new("Skip connections and normalisation");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(skips::NAME);
    let finding = claims::finding(&run, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&s.config));

    doc.heading("Every variant at a glance");
    doc.push(compare_table(&run));

    doc.heading("Shattering against depth");
    doc.push(r1_vs_depth(&run, report_dir)?);

    doc.heading("Vanishing and exploding, block by block");
    doc.push(layer_norms(&run, report_dir, &mut said)?);

    doc.heading("What the gradients look like");
    doc.push(gradients(&run, report_dir)?);

    doc.heading("The λ sweep: scaled skips vanish or explode, LN holds them");
    doc.push(sweep(&run, report_dir, &mut said)?);
    doc.push(sweep_table(&s.sweep));
    doc.paragraph(crate::format::CI_NOTE);

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir),
        report_dir,
    )?;
    Ok(card(&run, finding))
}

/// The setup paragraph.
fn setup(c: &SkipsParams) -> String {
    format!(
        "Setup: MLPs of width {}, scalar input on {} grid points in [−2, 2], L = Σ f(xᵢ), {} seeds per variant and depth, {} init, {}, BN in {} mode. \
         r₁ and the spectral slope are those of the shattered-gradients study; the per-block gradient factor is (‖∂L/∂h_0‖/‖∂L/∂h_L‖)^(1/L). \
         Fixup, SkipInit and ReZero start with every branch off, so at initialisation their nets are their shortcuts (r₁ = 1, flat df/dx); \
         their point is what training does from there. Spec strings: `gradscope archs`.",
        c.width, c.points, c.seeds, c.weight_init, c.dtype, c.bn_mode
    )
}

/// Every variant: r₁ at each depth, and slope, factor and faults at the deepest.
fn compare_table(run: &Run) -> Block {
    let (depths, last, deepest) = (run.depths(), run.last(), run.deepest());
    let mut header = vec!["variant".to_string()];
    header.extend(depths.iter().map(|d| format!("r₁ @ {d}")));
    header.extend([
        format!("slope @ {deepest}"),
        format!("factor/block @ {deepest}"),
        "NaN/inf".to_string(),
    ]);
    let rows = (0..run.archs.len())
        .map(|a| {
            let mut r = vec![run.archs[a].clone()];
            r.extend((0..depths.len()).map(|d| mean_ci(&run.row(a, d).adjacent_correlation, f2)));
            let deepest_row = run.row(a, last);
            r.push(f2(deepest_row.spectral_slope.mean));
            r.push(f3(deepest_row.gradient_growth.mean));
            r.push(deepest_row.faults.len().to_string());
            r
        })
        .collect();
    Block::Table { header, rows }
}

/// The first eight variants solid, the rest dashed.
fn variant_mark(a: usize) -> Mark {
    if a < 8 { Mark::Line } else { Mark::Dashed }
}

/// r₁ of df/dx against depth for every variant, with the white-noise level.
fn r1_vs_depth(run: &Run, dir: &Path) -> Result<Block> {
    let (depths, deepest, white) = (run.depths(), run.deepest(), run.white());
    let mut ch = LineChart::new(
        "r₁ of df/dx against depth",
        "depth (blocks)",
        "r₁ (mean over seeds)",
    )
    .integer_x()
    .log2_x()
    .legend(Legend::Outside);
    for (a, name) in run.archs.iter().enumerate() {
        let pts = (0..depths.len())
            .map(|d| (depths[d] as f64, run.row(a, d).adjacent_correlation.mean))
            .filter(|p| p.1.is_finite())
            .collect();
        ch.push(Series::line(name.clone(), pts, color(a)).mark(variant_mark(a)));
    }
    ch.push(
        Series::line(
            "white noise",
            vec![(depths[0] as f64, white), (deepest as f64, white)],
            style::THEORY,
        )
        .mark(Mark::Dashed)
        .width(1),
    );
    let fig = save(&ch, dir, "r1_vs_depth", (1200, 800))?;
    Ok(Block::figure(
        fig,
        "r₁ of df/dx against depth for every variant",
        claims::r1_caption(run),
    ))
}

/// Per-layer gradient norms of the deepest nets.
fn layer_norms(run: &Run, dir: &Path, said: &mut Claims) -> Result<Block> {
    let mut ch = LineChart::new(
        format!("‖∂L/∂h_l‖ through the depth-{} nets", run.deepest()),
        "block l (input → output)",
        "‖∂L/∂h_l‖ (mean over seeds)",
    )
    .integer_x()
    .log_y()
    .legend(Legend::Outside);
    for (a, name) in run.archs.iter().enumerate() {
        let pts = run
            .row(a, run.last())
            .layer_grad_norm_mean
            .iter()
            .enumerate()
            .map(|(l, g)| (l as f64, *g))
            .filter(|p| p.1 > 0.0 && p.1.is_finite())
            .collect();
        ch.push(Series::line(name.clone(), pts, color(a)).mark(variant_mark(a)));
    }
    let fig = save(&ch, dir, "layer_norms", (1200, 800))?;
    Ok(Block::figure(
        fig,
        "Gradient norm at every block output of the deepest nets",
        claims::layer_norms_caption(run, said),
    ))
}

/// df/dx of one net per variant at the deepest depth.
fn gradients(run: &Run, dir: &Path) -> Result<Block> {
    let grid = &run.data.grid;
    let panels: Vec<LineChart> = run
        .archs
        .iter()
        .enumerate()
        .map(|(a, name)| {
            let mut ch = LineChart::new(name.clone(), "x", "df/dx").legend(Legend::None);
            ch.title_size = style::PANEL_TITLE_SIZE;
            let g = run
                .data
                .input_gradients
                .slice(ndarray::s![a, run.last(), 0, ..]);
            ch.push(
                Series::line(
                    name.clone(),
                    grid.iter().zip(g.iter()).map(|(x, y)| (*x, *y)).collect(),
                    color(a),
                )
                .width(1),
            );
            ch
        })
        .collect();
    let cols = 4;
    let rows_n = panels.len().div_ceil(cols);
    let fig = save(
        &Panels {
            title: format!("df/dx of one net per variant, depth {}", run.deepest()),
            rows: rows_n,
            cols,
            panels,
        },
        dir,
        "gradients",
        (1600, 330 * rows_n as u32 + 60),
    )?;
    Ok(Block::figure(
        fig,
        "df/dx over the input grid for one net of each variant at the deepest depth",
        claims::gradients_caption(run),
    ))
}

/// (λ, f(row)) of a family, finite values only.
fn sweep_points(rows: &[&SweepRow], f: &dyn Fn(&SweepRow) -> f64) -> Vec<(f64, f64)> {
    rows.iter()
        .map(|r| (r.lambda, f(r)))
        .filter(|p| p.1.is_finite())
        .collect()
}

/// The λ sweep: per-block factor and r₁ of xSkip, xSkip+LN and rSkip+LN.
fn sweep(run: &Run, dir: &Path, said: &mut Claims) -> Result<Block> {
    let c = &run.s.config;
    let (xs, xln, rln) = (&run.xs, &run.xln, &run.rln);
    let pts = sweep_points;
    let sweep_panel = |title: &str, y: &str| {
        let mut ch = LineChart::new(title, "λ", y).legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        ch
    };
    let mut g = sweep_panel(
        "per-block gradient factor, xSkip and xSkip+LN",
        "(‖∂L/∂h_0‖/‖∂L/∂h_L‖)^(1/L)",
    );
    let mut r = sweep_panel("r₁ of df/dx", "r₁ (mean over seeds)");
    let mut k = LineChart::new(
        "rSkip+LN: factor and r₁ against recursions",
        "λ (LN recursions)",
        "value",
    )
    .integer_x()
    .legend(Legend::Outside);
    k.title_size = style::PANEL_TITLE_SIZE;
    g.push(
        Series::line("xSkip", pts(xs, &|r| r.gradient_growth.mean), color(0))
            .mark(Mark::LinePoints),
    );
    g.push(
        Series::line(
            "mean field √(λ² + 2α²)",
            pts(xs, &|r| r.mean_field_growth),
            style::THEORY,
        )
        .mark(Mark::Dashed)
        .width(1),
    );
    g.push(
        Series::line("xSkip+LN", pts(xln, &|r| r.gradient_growth.mean), color(1))
            .mark(Mark::LinePoints),
    );
    if let (Some(a), Some(b)) = (xs.first(), xs.last()) {
        g.push(
            Series::line(
                "1 (no vanishing, no exploding)",
                vec![(a.lambda, 1.0), (b.lambda, 1.0)],
                plotters::style::RGBColor(150, 150, 150),
            )
            .width(1),
        );
    }
    r.push(
        Series::line("xSkip", pts(xs, &|r| r.adjacent_correlation.mean), color(0))
            .mark(Mark::LinePoints),
    );
    r.push(
        Series::line(
            "xSkip+LN",
            pts(xln, &|r| r.adjacent_correlation.mean),
            color(1),
        )
        .mark(Mark::LinePoints),
    );
    k.push(
        Series::line(
            "factor per block",
            pts(rln, &|r| r.gradient_growth.mean),
            color(2),
        )
        .mark(Mark::LinePoints),
    );
    k.push(
        Series::line("r₁", pts(rln, &|r| r.adjacent_correlation.mean), color(3))
            .mark(Mark::LinePoints),
    );
    let fig = save(
        &Panels {
            title: format!("λ sweep at depth {}", c.sweep_depth),
            rows: 1,
            cols: 3,
            panels: vec![g, r, k],
        },
        dir,
        "sweep",
        (1800, 600),
    )?;
    Ok(Block::figure(
        fig,
        "Per-block gradient factor and r₁ against λ for xSkip, xSkip+LN and rSkip+LN",
        claims::sweep_caption(run, said),
    ))
}

/// Every swept variant: factor, mean field, ratio, forward factor, r₁.
fn sweep_table(sweep: &[SweepRow]) -> Block {
    let rows = sweep
        .iter()
        .map(|r| {
            vec![
                r.family.clone(),
                r.lambda.to_string(),
                mean_ci(&r.gradient_growth, f3),
                f3(r.mean_field_growth),
                f2(r.log10_gradient_ratio),
                f3(r.forward_growth),
                f2(r.adjacent_correlation.mean),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "family",
            "λ",
            "factor/block",
            "mean field",
            "log₁₀ ‖∂L/∂h₀‖/‖∂L/∂h_L‖",
            "forward factor",
            "r₁",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The data files behind the page.
fn data_files(data_dir: &Path) -> Block {
    Block::List(
        [
            files::SUMMARY,
            files::COMPARE_CSV,
            files::SWEEP_CSV,
            "compare/ (a shattered-study folder: df/dx, spectra, ACFs, per-layer norms)",
            "sweep/ (the same for the swept variants)",
        ]
        .map(|f| format!("{}/{f}", data_dir.display()))
        .to_vec(),
    )
}

/// The index card: the xSkip factors at the ends of the sweep and the xSkip+LN range.
fn card(run: &Run, finding: String) -> StudyCard {
    let mut numbers = Vec::new();
    if let (Some(a), Some(b)) = (run.xs.first(), run.xs.last()) {
        numbers.push((
            format!("xSkip factor at λ = {} / {}", a.lambda, b.lambda),
            format!(
                "{} / {}",
                f3(a.gradient_growth.mean),
                f3(b.gradient_growth.mean)
            ),
        ));
    }
    if !run.xln.is_empty() {
        let (lo, hi) = growth(&run.xln);
        numbers.push((
            "xSkip+LN factor, all λ".into(),
            format!("{}–{}", f3(lo), f3(hi)),
        ));
    }
    StudyCard {
        name: skips::NAME.into(),
        title: "Skip connections and normalisation".into(),
        href: format!("{}/index.html", skips::NAME),
        thumbnail: Some(format!("{}/sweep.png", skips::NAME)),
        finding,
        numbers,
    }
}
