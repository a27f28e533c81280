//! The landscape report: loss curves and contour surfaces along
//! filter-normalised directions around the initial and the trained weights
//! (Li et al. 2018), |λ_min/λ_max| over the plane, and the smoothness of the
//! loss along the gradient during training (Santurkar et al. 2018).

mod plots;

use std::path::Path;

use gradscope_contract::io::create_dir;
use gradscope_contract::landscape::{
    self, LandscapeData, LandscapeParams, LandscapeRow, LandscapeSummary, PHASES, files,
};
use ndarray::s;

use crate::card::StudyCard;
use crate::claims::{Check, Claims};
use crate::doc::{Block, Doc};
use crate::figure::{Legend, LineChart, Panels, Series, save};
use crate::format::dash::{f2, f3};
use crate::format::mean_sd;
use crate::style::{self, color};
use crate::{Result, pages};

pub use plots::{Band, BandChart, BandPoint, Contour};

/// The (plain, residual) pairs the page compares, where both were run.
pub const SKIP_PAIRS: [(&str, &str); 2] = [("plain", "resnet"), ("plain-bn", "resnet-bn")];
/// The (without BN, with BN) pairs the page compares, where both were run.
pub const BN_PAIRS: [(&str, &str); 2] = [("plain", "plain-bn"), ("resnet", "resnet-bn")];

/// The summary and arrays with the lookups the page makes.
struct Run<'a> {
    s: &'a LandscapeSummary,
    data: &'a LandscapeData,
}

impl<'a> Run<'a> {
    fn config(&self) -> &'a LandscapeParams {
        &self.s.config
    }

    fn deepest(&self) -> usize {
        *self.config().depths.last().expect("a summary has depths")
    }

    fn row(&self, arch: &str, depth: usize) -> Option<&'a LandscapeRow> {
        self.s
            .rows
            .iter()
            .find(|r| r.arch == arch && r.depth == depth)
    }

    fn index(&self, arch: usize, depth: usize) -> usize {
        arch * self.config().depths.len() + depth
    }

    /// The pairs of `pairs` both run, at the deepest depth.
    fn pairs(&self, pairs: &[(&str, &str)]) -> Vec<(&'a LandscapeRow, &'a LandscapeRow)> {
        let d = self.deepest();
        pairs
            .iter()
            .filter_map(|(a, b)| Some((self.row(a, d)?, self.row(b, d)?)))
            .collect()
    }
}

/// Draw the landscape study's figures and write its pages from the data folder alone.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let data = LandscapeData::read(data_dir)?;
    create_dir(report_dir)?;
    let run = Run {
        s: &data.summary,
        data: &data,
    };
    let mut doc = Doc::new("The loss landscape and its smoothness");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(landscape::NAME);
    let finding = finding(&run, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&run));

    doc.heading("The loss along one direction");
    doc.push(curves(&run, report_dir)?);

    doc.heading("The loss over a plane");
    doc.push(surfaces(&run, report_dir)?);

    doc.heading("Curvature and |λ_min/λ_max|");
    doc.paragraph(ratio_sentence(&run, &mut said));
    doc.push(point_table(&run));

    doc.heading("Smoothness along the gradient during training");
    doc.paragraph(smoothness_sentence(&run, &mut said));
    doc.push(smoothness(&run, report_dir)?);
    doc.push(smoothness_table(&run));

    pages::finish(
        &mut doc,
        &said,
        &run.s.provenance,
        run.config(),
        data_files(data_dir),
        report_dir,
    )?;
    Ok(card(&run, finding))
}

fn setup(run: &Run) -> String {
    let c = run.config();
    format!(
        "Setup: MLPs of width {} on the embedded 8×8 digits, {} seeds per arch and depth, {}. The loss is the mean cross-entropy of a fixed batch of {} training digits, \
         BN on the batch's own statistics ({} mode, as a training step computes its loss; running statistics untouched). \
         Directions: Gaussian, each filter (a weight row) rescaled to the norm of the weights' filter, biases and BN parameters not moved (Li et al. 2018). \
         Curves: {} points on [−{e}, {e}]; surfaces: {}² points on [−{e}, {e}]². \
         Curvature dᵀHd and the Hessian's extremes: {}; {} products per end of the spectrum on a {}² grid. \
         Short training: {} epoch(s) of batch {}, the training code's optimiser and schedule; smoothness measured on the step's own batch before steps {:?} at η' ∈ {:?}.",
        c.width,
        c.seeds,
        c.dtype,
        c.examples,
        run.s.bn_mode,
        c.curve_points,
        c.surface_points,
        run.s.hessian,
        c.ratio_iterations,
        c.ratio_points,
        c.train.epochs,
        c.train.batch_size,
        run.s.measured_at,
        c.step_sizes,
        e = c.extent,
    )
}

/// A shared range over finite positive values, for log axes.
fn positive_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        })
}

/// 1-D curves of seed 0 along d₁: one panel per arch and phase, a line per
/// depth, one shared log y axis.
fn curves(run: &Run, dir: &Path) -> Result<Block> {
    let c = run.config();
    let a = &run.data.arrays.curves;
    let (lo, hi) = positive_range(a.slice(s![.., 0, .., 0, ..]).iter().copied());
    let mut panels = Vec::new();
    for (phase, name) in PHASES.iter().enumerate() {
        for (ai, arch) in c.archs.iter().enumerate() {
            let mut chart = LineChart::new(format!("{arch}, {name}"), "α (along d₁)", "loss")
                .log_y()
                .legend(Legend::Outside);
            chart.title_size = style::PANEL_TITLE_SIZE;
            if lo.is_finite() {
                chart = chart.y_range(lo, hi);
            }
            for (di, depth) in c.depths.iter().enumerate() {
                let r = run.index(ai, di);
                let pts = run
                    .s
                    .curve_grid
                    .iter()
                    .zip(a.slice(s![r, 0, phase, 0, ..]))
                    .map(|(&x, &y)| (x, y))
                    .collect();
                chart.push(Series::line(
                    format!("depth {depth}"),
                    pts,
                    style::ramp((di + 1) as f64 / c.depths.len() as f64),
                ));
            }
            panels.push(chart);
        }
    }
    let fig = Panels {
        title: "Loss along a filter-normalised direction (seed 0), shared scale".into(),
        rows: 2,
        cols: c.archs.len(),
        panels,
    };
    let files = save(&fig, dir, "curves", (380 * c.archs.len() as u32 + 40, 760))?;
    Ok(Block::figure(
        files,
        "Loss against the step along one filter-normalised direction, per arch, at initialisation and after training, one line per depth",
        format!(
            "L(θ + α·d₁) for α ∈ [−{e}, {e}] around the initial weights (top) and the trained ones (bottom), seed 0; all panels share the log y axis. \
             Li et al. 2018 (Figure 5) find the deep plain net's curve sharp and its minimum narrow, the residual one's wide.",
            e = c.extent
        ),
    ))
}

/// Contour surfaces of seed 0 at the deepest depth: one row per arch, one
/// column per phase, one colour scale (log₁₀ loss) and one set of levels.
fn surfaces(run: &Run, dir: &Path) -> Result<Block> {
    let c = run.config();
    let d = c.depths.len() - 1;
    let a = &run.data.arrays.surfaces;
    let rows: Vec<usize> = (0..c.archs.len()).map(|ai| run.index(ai, d)).collect();
    let log = |v: f64| if v > 0.0 { v.log10() } else { f64::NAN };
    let (lo, hi) = positive_range(
        rows.iter()
            .flat_map(|&r| a.slice(s![r, 0, .., .., ..]).to_owned().into_iter()),
    );
    let (lo, hi) = if lo.is_finite() {
        (log(lo), log(hi).max(log(lo) + 1e-6))
    } else {
        (0.0, 1.0)
    };
    let levels: Vec<f64> = (1..10).map(|k| lo + (hi - lo) * k as f64 / 10.0).collect();
    let mut maps = Vec::new();
    for (ai, arch) in c.archs.iter().enumerate() {
        for (phase, name) in PHASES.iter().enumerate() {
            maps.push(Contour {
                title: format!("{arch}, depth {}, {name}", c.depths[d]),
                grid: run.s.surface_grid.clone(),
                values: a
                    .slice(s![rows[ai], 0, phase, .., ..])
                    .iter()
                    .map(|&v| log(v))
                    .collect(),
                range: (lo, hi),
                levels: levels.clone(),
                labels: ("α (d₁)".into(), "β (d₂)".into()),
            });
        }
    }
    let fig = crate::figure::HeatmapGrid {
        title: format!(
            "log₁₀ loss around θ + α·d₁ + β·d₂ at depth {} (seed 0), one colour scale",
            c.depths[d]
        ),
        rows: c.archs.len(),
        cols: 2,
        maps,
        bar: crate::figure::ColorBar::sequential(
            "log₁₀ loss (contours at tenths of the range)",
            (lo, hi),
        ),
    };
    let files = save(
        &fig,
        dir,
        "surfaces",
        (900, 380 * c.archs.len() as u32 + 110),
    )?;
    Ok(Block::figure(
        files,
        "Contour maps of the loss over a plane of two filter-normalised directions, per arch, at initialisation and after training",
        format!(
            "L(θ + α·d₁ + β·d₂) on a {n}×{n} grid, log₁₀ scale shared by every panel, contour lines at the same nine levels everywhere; the cross marks θ. \
             Li et al. 2018 (Figure 5) see concentric, nearly convex contours for residual nets and chaotic ones for deep plain nets without skips.",
            n = c.surface_points
        ),
    ))
}

/// The sentence on |λ_min/λ_max| after training, decided on the data.
fn ratio_sentence(run: &Run, said: &mut Claims) -> String {
    let d = run.deepest();
    let pairs = run.pairs(&SKIP_PAIRS);
    let ratio = |r: &LandscapeRow| r.trained.ratio_origin.mean;
    let check = Check::all(pairs.iter().map(|(p, r)| {
        Check::at_most(
            &format!("{} − {} trained |λ_min/λ_max|", r.arch, p.arch),
            ratio(r) - ratio(p),
            0.0,
        )
    }));
    let nums = pairs
        .iter()
        .map(|(p, r)| {
            format!(
                "{} {} vs {} {}",
                r.arch,
                sci(ratio(r)),
                p.arch,
                sci(ratio(p))
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    said.decide(
        "skips-ratio-trained",
        check,
        format!(
            "At depth {d}, after the short training, |λ_min/λ_max| at the weights is smaller with skip connections than without ({nums}): the residual nets sit nearer a convex region, as Li et al. 2018 (Figure 7) report."
        ),
        format!(
            "At depth {d}, after the short training, |λ_min/λ_max| at the weights is not smaller with skip connections than without in every pair ({nums}); Li et al. 2018 (Figure 7) report the residual nets nearer convex."
        ),
    )
}

/// A ratio that may be far below 0.001, with three significant digits.
fn sci(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2e}")
    } else {
        "—".into()
    }
}

/// Each arch × depth: loss, curvature and the eigenvalue ratio at both points.
fn point_table(run: &Run) -> Block {
    let rows = run
        .s
        .rows
        .iter()
        .map(|r| {
            vec![
                r.arch.clone(),
                r.depth.to_string(),
                mean_sd(&r.init.loss, f3),
                mean_sd(&r.init.curvature, f2),
                mean_sd(&r.init.surface_rise, f2),
                mean_sd(&r.init.ratio_origin, sci),
                mean_sd(&r.trained.loss, f3),
                mean_sd(&r.trained.curvature, f2),
                mean_sd(&r.trained.ratio_origin, sci),
                mean_sd(&r.trained.ratio_max, sci),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "depth",
            "loss (init)",
            "d₁ᵀHd₁ (init)",
            "mean rise over the plane (init)",
            "|λ_min/λ_max| (init)",
            "loss (trained)",
            "d₁ᵀHd₁ (trained)",
            "|λ_min/λ_max| (trained)",
            "max over the plane (trained)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The sentence on BN and β-smoothness, decided on the data.
fn smoothness_sentence(run: &Run, said: &mut Claims) -> String {
    let d = run.deepest();
    let pairs = run.pairs(&BN_PAIRS);
    let beta = |r: &LandscapeRow| r.smoothness.beta_smoothness.mean;
    let nums = pairs
        .iter()
        .map(|(p, b)| format!("{} {} vs {} {}", b.arch, f2(beta(b)), p.arch, f2(beta(p))))
        .collect::<Vec<_>>()
        .join("; ");
    let check = Check::all(pairs.iter().map(|(p, b)| {
        Check::at_most(
            &format!("{} − {} β-smoothness", b.arch, p.arch),
            beta(b) - beta(p),
            0.0,
        )
    }));
    said.decide(
        "bn-beta",
        check,
        format!(
            "At depth {d}, the effective β-smoothness along the gradient, averaged over the measured steps, is lower with BN than without ({nums}): the gradient changes less per unit step, Santurkar et al. 2018's finding (Figure 4c)."
        ),
        format!(
            "At depth {d}, the effective β-smoothness along the gradient, averaged over the measured steps, is not lower with BN than without in every pair ({nums}), unlike Santurkar et al. 2018's Figure 4c."
        ),
    )
}

/// Loss variation, gradient predictiveness and β-smoothness against the
/// training step at the deepest depth, one line per arch with its seed band.
fn smoothness(run: &Run, dir: &Path) -> Result<Block> {
    let c = run.config();
    let d = c.depths.len() - 1;
    let a = &run.data.arrays.smoothness;
    let titles = [
        (2, "loss variation", "log₁₀ (max L − min L along −g)"),
        (
            3,
            "gradient predictiveness",
            "log₁₀ max ‖∇L(θ − η'g) − ∇L(θ)‖",
        ),
        (4, "effective β-smoothness", "log₁₀ max ‖Δ∇L‖ / ‖η'g‖"),
    ];
    let panels = titles
        .iter()
        .enumerate()
        .map(|(k, &(col, title, label))| BandChart {
            title: title.into(),
            x_label: "optimiser step".into(),
            y_label: label.into(),
            legend: k == 0,
            bands: c
                .archs
                .iter()
                .enumerate()
                .map(|(ai, arch)| Band {
                    label: arch.to_string(),
                    color: color(ai),
                    points: run
                        .s
                        .measured_at
                        .iter()
                        .enumerate()
                        .map(|(m, &step)| {
                            // Orders of magnitude apart between archs: log₁₀ per seed.
                            let seeds = a.slice(s![run.index(ai, d), .., m, col]);
                            let ms = gradscope_stats::MeanStd::of(seeds.iter().map(|v| v.log10()));
                            let sd = if ms.std.is_finite() { ms.std } else { 0.0 };
                            (step as f64, ms.mean, ms.mean - sd, ms.mean + sd)
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let fig = Panels {
        title: format!(
            "Smoothness along the gradient during training, depth {} (log₁₀, mean ± sd over {} seeds)",
            c.depths[d], c.seeds
        ),
        rows: 1,
        cols: 3,
        panels,
    };
    let files = save(&fig, dir, "smoothness", (1500, 520))?;
    Ok(Block::figure(
        files,
        "Loss variation, gradient predictiveness and effective β-smoothness against the training step, one line per arch with a seed band",
        format!(
            "At each measured step, with g the gradient of the step's batch: the range of L(θ − η'g) over η' ∈ {{0}} ∪ {:?} (left), the largest change of the gradient (middle), and that change over the distance moved (right), each on a log₁₀ scale; bands are ± one sd of the log over seeds. \
             Santurkar et al. 2018 (Figure 4) find all three smaller with BN.",
            c.step_sizes
        ),
    ))
}

fn smoothness_table(run: &Run) -> Block {
    let rows = run
        .s
        .rows
        .iter()
        .map(|r| {
            vec![
                r.arch.clone(),
                r.depth.to_string(),
                mean_sd(&r.smoothness.loss_variation, f3),
                mean_sd(&r.smoothness.gradient_predictiveness, f3),
                mean_sd(&r.smoothness.beta_smoothness, f2),
                r.diverged.to_string(),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "depth",
            "loss variation",
            "gradient predictiveness",
            "β-smoothness",
            "diverged",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The lead: how much the loss rises around the initial weights with and
/// without skip connections, decided on the data.
fn finding(run: &Run, said: &mut Claims) -> String {
    let d = run.deepest();
    let pairs = run.pairs(&SKIP_PAIRS);
    let rise = |r: &LandscapeRow| r.init.surface_rise.mean;
    let nums = pairs
        .iter()
        .map(|(p, r)| format!("{} {} vs {} {}", r.arch, f2(rise(r)), p.arch, f2(rise(p))))
        .collect::<Vec<_>>()
        .join("; ");
    let check = Check::all(pairs.iter().map(|(p, r)| {
        Check::at_most(
            &format!("{} − {} mean rise at init", r.arch, p.arch),
            rise(r) - rise(p),
            0.0,
        )
    }));
    said.decide(
        "skips-flatter-at-init",
        check,
        format!(
            "At depth {d}, the loss rises less around the initial weights with skip connections than without (mean L − L(θ) over the plane: {nums}), as Li et al. 2018 found: skips keep the landscape of a deep net wide."
        ),
        format!(
            "At depth {d}, the loss does not rise less around the initial weights with skip connections than without in every pair (mean L − L(θ) over the plane: {nums}); Li et al. 2018 found skips keep a deep net's landscape wide."
        ),
    )
}

fn data_files(data_dir: &Path) -> Block {
    Block::List(
        [
            files::SUMMARY,
            files::ROWS_CSV,
            files::SMOOTHNESS_CSV,
            files::CURVES,
            files::SURFACES,
            files::EIGENVALUES,
            files::SMOOTHNESS,
        ]
        .map(|f| format!("{}/{f}", data_dir.display()))
        .to_vec(),
    )
}

fn card(run: &Run, finding: String) -> StudyCard {
    let d = run.deepest();
    let numbers = run
        .pairs(&BN_PAIRS)
        .iter()
        .map(|(p, b)| {
            (
                format!("β-smoothness at depth {d}, {} / {}", p.arch, b.arch),
                format!(
                    "{} / {}",
                    f2(p.smoothness.beta_smoothness.mean),
                    f2(b.smoothness.beta_smoothness.mean)
                ),
            )
        })
        .collect();
    StudyCard {
        name: landscape::NAME.into(),
        title: "The loss landscape and its smoothness".into(),
        href: format!("{}/index.html", landscape::NAME),
        thumbnail: Some(format!("{}/surfaces.png", landscape::NAME)),
        finding,
        numbers,
    }
}
