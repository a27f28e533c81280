//! The correlation report: 2-D gradient pictures and per-example gradient
//! similarity on the digits; with image nets, the same similarity for conv
//! nets on real images (the `images` module).

mod images;

use std::path::Path;

use gradscope_contract::correlation::{
    self, CorrelationData, CorrelationParams, CorrelationSummary, DepthSummary, PlaneReference,
};
use gradscope_contract::io::create_dir;
use ndarray::s;

use crate::card::StudyCard;
use crate::claims::{Check, Claims, clearly_above};
use crate::doc::{Block, Doc};
use crate::figure::{
    ColorBar, Heatmap, HeatmapGrid, Legend, LineChart, Mark, Panels, Raster, Series, reduce_matrix,
    save,
};
use crate::format::na::{f2, f3};
use crate::format::{ci_half_width, mean_ci};
use crate::shattered::claims::{MARGIN_SE, WHITE_BAND};
use crate::style::{self, color};
use crate::{Result, pages};

/// The data with the archs and depths the page refers to.
struct Run<'a> {
    d: &'a CorrelationData,
    /// Arch spec strings, in config order.
    archs: Vec<String>,
    /// The shallowest and deepest configured depths.
    shallow: usize,
    deep: usize,
}

impl<'a> Run<'a> {
    fn new(d: &'a CorrelationData) -> Self {
        let c = &d.summary.config;
        Run {
            d,
            archs: c.archs.iter().map(|a| a.to_string()).collect(),
            shallow: c.depths[0],
            deep: *c.depths.last().unwrap_or(&1),
        }
    }

    fn summary(&self) -> &'a CorrelationSummary {
        &self.d.summary
    }

    fn config(&self) -> &'a CorrelationParams {
        &self.d.summary.config
    }

    /// The summary of (arch, depth), if it was run.
    fn result(&self, arch: &str, depth: usize) -> Option<&'a DepthSummary> {
        self.summary()
            .results
            .iter()
            .find(|r| r.arch == arch && r.depth == depth)
    }

    /// Each arch's summaries at the shallowest and the deepest depth.
    fn ends(&self) -> impl Iterator<Item = (&String, &'a DepthSummary, &'a DepthSummary)> {
        self.archs.iter().filter_map(|a| {
            let (r0, r1) = (self.result(a, self.shallow)?, self.result(a, self.deep)?);
            Some((a, r0, r1))
        })
    }

    fn reference(&self, name: &str) -> Option<&'a PlaneReference> {
        self.summary().references.iter().find(|r| r.name == name)
    }

    /// Rows (archs) and columns (depths) of a grid of panels, and its size in pixels.
    fn grid(&self) -> (usize, usize, (u32, u32)) {
        let (rows, cols) = (self.archs.len(), self.config().depths.len());
        (rows, cols, (420 * cols as u32, 420 * rows as u32 + 140))
    }
}

/// Draw the correlation study's figures and write its pages from the data folder alone.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let d = CorrelationData::read(data_dir)?;
    create_dir(report_dir)?;
    let run = Run::new(&d);
    let s = &d.summary;
    let mut doc = Doc::new("Gradient correlation in two dimensions and across examples");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(correlation::NAME);
    let finding = finding(&run, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&s.config));

    doc.heading("What the gradients look like");
    doc.push(pictures(&run, report_dir)?);
    doc.push(gradient_norms(&run, report_dir)?);

    doc.heading("Spectra and correlation with distance");
    doc.push(spectra(&run, report_dir)?);
    doc.push(summary_table(s));
    doc.paragraph(crate::format::CI_NOTE);

    doc.heading("Per-example gradient similarity on the digits");
    doc.push(cosines(&run, report_dir)?);
    doc.push(similarity(&run, report_dir, &mut said)?);
    doc.push(layer_cosine_table(s));

    if let Some(blocks) = images::section(&d, report_dir, &mut said)? {
        doc.heading("Per-example gradient similarity of conv nets on images");
        for b in blocks {
            doc.push(b);
        }
    }

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir, s.images.is_some()),
        report_dir,
    )?;
    Ok(card(&run, finding))
}

/// Whether arch `a` has shortcuts (unparsable specs count as feedforward).
fn is_residual(a: &str) -> bool {
    a.parse::<gradscope_spec::Arch>()
        .is_ok_and(|a| a.is_residual())
}

/// The finding: picture r₁ and slope, and mean cosine, shallow → deep.
fn finding(run: &Run, claims: &mut Claims) -> String {
    let (c, shallow, deep) = (run.config(), run.shallow, run.deep);
    let mut parts = Vec::new();
    for (a, r0, r1) in run.ends() {
        parts.push(format!(
            "{a}: r₁ of the ∂f/∂x₁ picture {} at depth {shallow} → {} at depth {deep}, radial slope {} → {}",
            f2(r0.adjacent_correlation.mean),
            f2(r1.adjacent_correlation.mean),
            f2(r0.radial_slope.mean),
            f2(r1.radial_slope.mean)
        ));
    }
    let (white, brown) = (run.reference("white"), run.reference("brown"));
    let mut text = format!(
        "Over an input plane: {} (white noise: r₁ {}, slope {}; smooth brown-like field: {}, {}).",
        parts.join("; "),
        white.map_or("n/a".into(), |w| f2(w.adjacent_correlation.mean)),
        white.map_or("n/a".into(), |w| f2(w.radial_slope.mean)),
        brown.map_or("n/a".into(), |w| f2(w.adjacent_correlation.mean)),
        brown.map_or("n/a".into(), |w| f2(w.radial_slope.mean)),
    );
    let ff = run.archs.iter().find(|a| !is_residual(a));
    let res = run.archs.iter().find(|a| is_residual(a));
    if let (Some(ff), Some(w)) = (ff.and_then(|a| run.result(a, deep).map(|r| (a, r))), white) {
        let r = ff.1.adjacent_correlation.mean;
        text += &claims.decide(
            "feedforward-shatters",
            Check::within(
                &format!("r₁ of {} at depth {deep} − white noise", ff.0),
                r - w.adjacent_correlation.mean,
                -WHITE_BAND,
                WHITE_BAND,
            ),
            format!(" As on a line, the feedforward picture ({}) turns into white noise by depth {deep}", ff.0),
            format!(" Unlike on a line, the feedforward picture ({}) is not white noise at depth {deep}", ff.0),
        );
        if let Some((res, rr)) = res.and_then(|a| run.result(a, deep).map(|r| (a, r))) {
            text += &claims.decide(
                "residual-above-feedforward",
                clearly_above(
                    &format!("r₁ {res} − {} at depth {deep}", ff.0),
                    &rr.adjacent_correlation,
                    &ff.1.adjacent_correlation,
                    MARGIN_SE,
                ),
                format!(", while the residual one ({res}) keeps more structure."),
                format!(", and the residual one ({res}) is not clearly smoother."),
            );
        } else {
            text += ".";
        }
    }
    let mut cos_parts = Vec::new();
    let mut falls = Vec::new();
    let mut toward = Vec::new();
    let floor = 1.0 / c.examples as f64;
    for (a, r0, r1) in run.ends() {
        cos_parts.push(format!(
            "{a} {} → {}",
            f3(r0.mean_cosine.mean),
            f3(r1.mean_cosine.mean)
        ));
        falls.push(clearly_above(
            &format!("mean cosine {a} at depth {shallow} − at depth {deep}"),
            &r0.mean_cosine,
            &r1.mean_cosine,
            MARGIN_SE,
        ));
        toward.push(Check::at_least(
            &format!("{a}: |coherence − 1/B| at depth {shallow} − at depth {deep}"),
            (r0.coherence.mean - floor).abs() - (r1.coherence.mean - floor).abs(),
            0.0,
        ));
    }
    if !cos_parts.is_empty() {
        let cos = cos_parts.join(", ");
        text += &claims.decide(
            "cosine-falls",
            Check::all(falls),
            format!(
                " Per-example gradients of the loss on {} digits grow more orthogonal with depth (mean off-diagonal cosine {cos})",
                c.examples
            ),
            format!(
                " Per-example gradients of the loss on {} digits do not clearly grow more orthogonal with depth in every net (mean off-diagonal cosine {cos})",
                c.examples
            ),
        );
        text += &claims.decide(
            "coherence-toward-floor",
            Check::all(toward),
            format!(", with coherence falling toward 1/B = {}.", f3(floor)),
            format!(
                "; coherence does not approach 1/B = {} in every net.",
                f3(floor)
            ),
        );
    }
    text
}

/// Mean cosine of the nearest-distance bin minus the farthest's.
fn near_minus_far(r: &DepthSummary) -> f64 {
    match (
        r.cosine_by_distance_mean.first(),
        r.cosine_by_distance_mean.last(),
    ) {
        (Some(n), Some(f)) => n - f,
        _ => f64::NAN,
    }
}

/// The similarity caption's claims about distance: nearby inputs agree in
/// shallow nets, and less so with depth.
fn distance_claims(run: &Run, claims: &mut Claims) -> String {
    let (shallow, deep) = (run.shallow, run.deep);
    let (mut near, mut shrinks) = (Vec::new(), Vec::new());
    for (a, r0, r1) in run.ends() {
        near.push(Check::at_least(
            &format!("{a} depth {shallow}: cosine nearest − farthest bin"),
            near_minus_far(r0),
            0.0,
        ));
        shrinks.push(Check::at_least(
            &format!("{a}: (nearest − farthest) at depth {shallow} − at depth {deep}"),
            near_minus_far(r0) - near_minus_far(r1),
            0.0,
        ));
    }
    if near.is_empty() {
        return String::new();
    }
    let mut text = claims.decide(
        "nearby-similar",
        Check::all(near),
        " nearby inputs have more similar gradients than distant ones in shallow nets",
        " in shallow nets nearby inputs do not have clearly more similar gradients than distant ones",
    );
    text += &claims.decide(
        "distance-range-shrinks",
        Check::all(shrinks),
        ", and the difference shrinks with depth.",
        ", and the difference does not shrink with depth in every net.",
    );
    text
}

/// The setup paragraph.
fn setup(c: &CorrelationParams) -> String {
    format!(
        "Setup: nets of width {} with a 2-D input over a {}×{} grid of [−{e}, {e}]² (the grid is the batch; BN in per-sample mode, its \
         statistics held constant in the backward pass), {} seeds, {:?}. Per-example similarity: the same architectures with a 64-pixel \
         input and 10 outputs on {} digits (a fixed, seeded choice), at initialisation; gᵢ = ∂ℓᵢ/∂θ of example i's cross-entropy over \
         every parameter, compared through the per-layer Gram trick ⟨gᵢ, gⱼ⟩ = Σ_layers (aᵢ·aⱼ)(δᵢ·δⱼ).",
        c.width,
        c.side,
        c.side,
        c.seeds,
        c.dtype,
        c.examples,
        e = c.extent
    )
}

/// ∂f/∂x₁ of seed 0 over the plane, each panel scaled to its own largest magnitude.
fn pictures(run: &Run, dir: &Path) -> Result<Block> {
    let c = run.config();
    let n = c.side;
    let mut maps = Vec::new();
    for (a, arch) in run.archs.iter().enumerate() {
        for (k, &depth) in c.depths.iter().enumerate() {
            let pic = run.d.pictures.slice(s![a, k, 0, .., ..]);
            let scale = pic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let values: Vec<f64> = pic
                .iter()
                .map(|v| if scale > 0.0 { v / scale } else { f64::NAN })
                .collect();
            let (values, m) = reduce_matrix(&values, n, 96);
            maps.push(Heatmap {
                title: format!("{arch}, depth {depth}"),
                values,
                n: m,
                axis_label: "x₁ (x₂ up)".into(),
                axis_range: (-c.extent, c.extent),
            });
        }
    }
    let (rows, cols, size) = run.grid();
    let fig = save(
        &HeatmapGrid {
            title: "∂f/∂x₁ over the input plane (seed 0)".into(),
            rows,
            cols,
            maps,
            bar: ColorBar::correlation("∂f/∂x₁ / max |∂f/∂x₁|"),
        },
        dir,
        "pictures",
        size,
    )?;
    Ok(Block::figure(
        fig,
        "Pictures of ∂f/∂x₁ over the input plane for each architecture and depth",
        "Balduzzi et al. 2017 (Figure 1 and §2) show the gradient of a feedforward net turning into noise as depth grows, while a \
         resnet's stays structured. Each panel is scaled to its own largest magnitude (red positive, blue negative).",
    ))
}

/// log₁₀ ‖∇ₓf‖ of seed 0 over the plane, relative to its mean.
fn gradient_norms(run: &Run, dir: &Path) -> Result<Block> {
    let c = run.config();
    let n = c.side;
    let mut norm_maps = Vec::new();
    for (a, arch) in run.archs.iter().enumerate() {
        for (k, &depth) in c.depths.iter().enumerate() {
            let norm = run.d.norm_pictures.slice(s![a, k, 0, .., ..]);
            let logs: Vec<f64> = norm.iter().map(|v| v.log10()).collect();
            let finite: Vec<f64> = logs.iter().copied().filter(|v| v.is_finite()).collect();
            let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
            norm_maps.push(Raster {
                title: format!("{arch}, depth {depth}"),
                x_label: "x₁".into(),
                y_label: "x₂ (grid row)".into(),
                x_range: (-c.extent, c.extent),
                rows: n,
                cols: n,
                // Relative to the picture's mean: the texture, not the overall scale.
                values: logs.iter().map(|v| v - mean).collect(),
                value_range: (-1.0, 1.0),
                color: style::ramp,
                hline: None,
            });
        }
    }
    let (rows, cols, size) = run.grid();
    let fig = save(
        &HeatmapGrid {
            title: "log₁₀ ‖∇ₓf‖ relative to its mean over the plane (seed 0)".into(),
            rows,
            cols,
            maps: norm_maps,
            bar: ColorBar::sequential("log₁₀ ‖∇ₓf‖ − mean", (-1.0, 1.0)),
        },
        dir,
        "gradient_norms",
        size,
    )?;
    Ok(Block::figure(
        fig,
        "Pictures of the gradient norm over the input plane",
        "The norm of the whole input gradient, on a log scale relative to its mean over the plane, so that texture is comparable \
         between depths whose overall scale differs.",
    ))
}

/// Radial power spectra per arch (log-log) and the autocorrelation against distance.
fn spectra(run: &Run, dir: &Path) -> Result<Block> {
    let (s, c) = (run.summary(), run.config());
    let (band_lo, band_hi) = (s.radial_band[0], s.radial_band[1]);
    let cols = c.depths.len();
    let mut spectra = Vec::new();
    for (a, arch) in run.archs.iter().enumerate() {
        let mut ch = LineChart::new(
            arch.clone(),
            "radial frequency k (cycles per side)",
            "power (mean over seeds)",
        )
        .log_x()
        .log_y()
        .legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        for (k, &depth) in c.depths.iter().enumerate() {
            let sp = run.d.radial_spectra.slice(s![a, k, .., ..]);
            let radii = sp.ncols();
            let pts: Vec<(f64, f64)> = (1..radii)
                .map(|r| {
                    let v: Vec<f64> = sp
                        .column(r)
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite())
                        .collect();
                    (r as f64, v.iter().sum::<f64>() / v.len().max(1) as f64)
                })
                .filter(|(_, y)| *y > 0.0)
                .collect();
            let slope = run
                .result(arch, depth)
                .map_or(f64::NAN, |r| r.radial_slope.mean);
            ch.push(
                Series::line(
                    format!("depth {depth} (slope {})", f2(slope)),
                    pts,
                    style::ramp(k as f64 / (cols.max(2) - 1) as f64),
                )
                .width(2),
            );
        }
        spectra.push(ch);
    }
    let mut acf = LineChart::new(
        "Correlation against distance",
        "distance (grid steps)",
        "radially averaged autocorrelation",
    )
    .legend(Legend::Outside);
    acf.title_size = style::PANEL_TITLE_SIZE;
    for (a, arch) in run.archs.iter().enumerate() {
        for (k, &depth) in c.depths.iter().enumerate() {
            if let Some(r) = run.result(arch, depth) {
                acf.push(
                    Series::line(
                        format!("{arch}, depth {depth}"),
                        r.radial_acf_mean
                            .iter()
                            .enumerate()
                            .take(c.side / 4 + 1)
                            .map(|(i, v)| (i as f64, *v))
                            .collect(),
                        color(a),
                    )
                    .mark(if k == 0 { Mark::Dashed } else { Mark::Line })
                    .width(1 + k as u32),
                );
            }
        }
    }
    let mut panels = spectra;
    panels.push(acf);
    let cols_n = panels.len();
    let fig = save(
        &Panels {
            title: "Radially averaged power spectra and autocorrelation of ∂f/∂x₁".into(),
            rows: 1,
            cols: cols_n,
            panels,
        },
        dir,
        "spectra",
        (600 * cols_n as u32, 560),
    )?;
    Ok(Block::figure(
        fig,
        "Radial power spectra of the pictures (log-log) and their autocorrelation against distance",
        format!(
            "The 2-D power spectrum |FFT₂(g − ḡ)|²/H² averaged over rings of radius k; slopes fitted over k = {band_lo}…{band_hi}. \
             White noise is flat (slope 0); the smooth reference field (power ∝ k⁻²) has slope −2. The last panel is the inverse \
             transform of the same spectrum, averaged over rings: the correlation of ∂f/∂x₁ at two points as a function of their distance."
        ),
    ))
}

/// Every (arch, depth) and reference field: picture r₁, slope, cosine, coherence, SNR.
fn summary_table(s: &CorrelationSummary) -> Block {
    let mut rows = Vec::new();
    for r in &s.results {
        rows.push(vec![
            r.arch.clone(),
            r.depth.to_string(),
            mean_ci(&r.adjacent_correlation, f3),
            mean_ci(&r.radial_slope, f2),
            mean_ci(&r.mean_cosine, f3),
            f3(r.coherence.mean),
            f2(r.snr.mean),
        ]);
    }
    for r in &s.references {
        rows.push(vec![
            format!("{} noise (β = {})", r.name, r.beta),
            "—".into(),
            mean_ci(&r.adjacent_correlation, f3),
            mean_ci(&r.radial_slope, f2),
            "—".into(),
            "—".into(),
            "—".into(),
        ]);
    }
    Block::Table {
        header: [
            "arch",
            "depth",
            "picture r₁",
            "radial slope",
            "mean cosine",
            "coherence",
            "SNR of ḡ",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// B × B cosine matrices of per-example gradients, seed 0.
fn cosines(run: &Run, dir: &Path) -> Result<Block> {
    let c = run.config();
    let b = c.examples;
    let mut cos_maps = Vec::new();
    for (a, arch) in run.archs.iter().enumerate() {
        for (k, &depth) in c.depths.iter().enumerate() {
            let m: Vec<f64> = run
                .d
                .cosines
                .slice(s![a, k, .., ..])
                .iter()
                .map(|&v| v as f64)
                .collect();
            let (values, m_n) = reduce_matrix(&m, b, 160);
            cos_maps.push(Heatmap {
                title: format!("{arch}, depth {depth}"),
                values,
                n: m_n,
                axis_label: "example".into(),
                axis_range: (0.0, b as f64),
            });
        }
    }
    let (rows, cols, size) = run.grid();
    let fig = save(
        &HeatmapGrid {
            title: "Cosine similarity of per-example loss gradients (seed 0)".into(),
            rows,
            cols,
            maps: cos_maps,
            bar: ColorBar::correlation("cosine"),
        },
        dir,
        "cosines",
        size,
    )?;
    Ok(Block::figure(
        fig,
        "B × B cosine matrices of per-example parameter gradients",
        "Entry (i, j) is cos(gᵢ, gⱼ) for the loss gradients of examples i and j with respect to every parameter; the diagonal is 1; \
         examples are sorted by class (0 to 9), so same-class agreement shows as blocks along the diagonal. At initialisation a shallow \
         net's gradients agree within a class (the blocks) and point apart across some classes (blue); with depth the blocks fade and \
         the gradients of all examples become nearly orthogonal — the parameter-space face of shattering. Residual nets keep the class \
         blocks deeper than plain ones.",
    ))
}

/// Mean cosine and coherence against depth, and cosine against input distance.
fn similarity(run: &Run, dir: &Path, said: &mut Claims) -> Result<Block> {
    let (s, c) = (run.summary(), run.config());
    let b = c.examples;
    let mut by_depth = LineChart::new(
        "Mean off-diagonal cosine",
        "depth",
        "mean cos(gᵢ, gⱼ), i ≠ j",
    )
    .integer_x()
    .log2_x()
    .legend(Legend::Outside);
    let mut coh = LineChart::new("Gradient coherence", "depth", "‖ḡ‖² / mean ‖gᵢ‖²")
        .integer_x()
        .log2_x()
        .log_y()
        .legend(Legend::Outside);
    let mut dist = LineChart::new(
        "Cosine against input distance",
        "‖xᵢ − xⱼ‖ (bin centre)",
        "mean cosine",
    )
    .legend(Legend::Outside);
    for (a, arch) in run.archs.iter().enumerate() {
        let rs: Vec<&DepthSummary> = c
            .depths
            .iter()
            .filter_map(|&dd| run.result(arch, dd))
            .collect();
        by_depth.push(
            Series::line(
                arch.clone(),
                rs.iter()
                    .map(|r| (r.depth as f64, r.mean_cosine.mean))
                    .collect(),
                color(a),
            )
            .mark(Mark::LinePoints)
            .errors(rs.iter().map(|r| ci_half_width(&r.mean_cosine)).collect()),
        );
        coh.push(
            Series::line(
                arch.clone(),
                rs.iter()
                    .map(|r| (r.depth as f64, r.coherence.mean))
                    .collect(),
                color(a),
            )
            .mark(Mark::LinePoints),
        );
        for (k, r) in rs.iter().enumerate() {
            let e = &s.distance_edges;
            dist.push(
                Series::line(
                    format!("{arch}, depth {}", r.depth),
                    r.cosine_by_distance_mean
                        .iter()
                        .enumerate()
                        .map(|(i, v)| ((e[i] + e[i + 1]) / 2.0, *v))
                        .collect(),
                    color(a),
                )
                .mark(if k == 0 {
                    Mark::Dashed
                } else {
                    Mark::LinePoints
                })
                .width(1 + k as u32),
            );
        }
    }
    coh.push(
        Series::line(
            format!("1/B = {}", f3(1.0 / b as f64)),
            c.depths
                .iter()
                .map(|&dd| (dd as f64, 1.0 / b as f64))
                .collect(),
            style::THEORY,
        )
        .mark(Mark::Dashed),
    );
    for ch in [&mut by_depth, &mut coh, &mut dist] {
        ch.title_size = style::PANEL_TITLE_SIZE;
    }
    let fig = save(
        &Panels {
            title: "How similar are the gradients of different examples?".into(),
            rows: 1,
            cols: 3,
            panels: vec![by_depth, coh, dist],
        },
        dir,
        "similarity",
        (1800, 600),
    )?;
    Ok(Block::figure(
        fig,
        "Mean cosine and coherence against depth, and cosine against the distance between inputs",
        format!(
            "Left: the mean off-diagonal cosine (95 % Student-t interval over seeds). Middle: coherence ‖ḡ‖²/mean‖gᵢ‖², 1 when all examples agree and 1/B \
             (dashed) when their gradients are orthogonal; the signal-to-noise ratio of the mean gradient, B·coh/(1 − coh), is in the table. \
             Right: the mean cosine of example pairs binned by the Euclidean distance of their images (equal-count bins):{}",
            distance_claims(run, said)
        ),
    ))
}

/// Mean cosine of the first layer and of the head, per (arch, depth).
fn layer_cosine_table(s: &CorrelationSummary) -> Block {
    let rows = s
        .results
        .iter()
        .map(|r| {
            let first = r.layer_cosine_mean.first().copied().unwrap_or(f64::NAN);
            let last = r.layer_cosine_mean.last().copied().unwrap_or(f64::NAN);
            vec![
                r.arch.clone(),
                r.depth.to_string(),
                r.layer_names.len().to_string(),
                f3(first),
                f3(last),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "depth",
            "layers with parameters",
            "mean cosine, first layer",
            "mean cosine, head",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The data files behind the page (the image part's with `images`).
fn data_files(data_dir: &Path, images: bool) -> Block {
    let image_files = correlation::images::files::ALL;
    Block::List(
        [
            correlation::files::SUMMARY,
            correlation::files::SUMMARY_CSV,
            correlation::files::PER_SEED_CSV,
            correlation::files::LAYER_COSINE_CSV,
            correlation::files::COSINE_DISTANCE_CSV,
            correlation::files::PICTURES,
            correlation::files::NORM_PICTURES,
            correlation::files::RADIAL_SPECTRA,
            correlation::files::COSINES,
        ]
        .iter()
        .chain(image_files.iter().filter(|_| images))
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}

/// The index card: picture r₁ and mean cosine of each arch, shallow → deep.
fn card(run: &Run, finding: String) -> StudyCard {
    let (shallow, deep) = (run.shallow, run.deep);
    let mut numbers = Vec::new();
    for (a, r0, r1) in run.ends() {
        numbers.push((
            format!("{a} picture r₁ L={shallow} → L={deep}"),
            format!(
                "{} → {}",
                f2(r0.adjacent_correlation.mean),
                f2(r1.adjacent_correlation.mean)
            ),
        ));
        numbers.push((
            format!("{a} mean cosine L={shallow} → L={deep}"),
            format!("{} → {}", f3(r0.mean_cosine.mean), f3(r1.mean_cosine.mean)),
        ));
    }
    StudyCard {
        name: correlation::NAME.into(),
        title: "Gradient correlation in 2-D and across examples".into(),
        href: format!("{}/index.html", correlation::NAME),
        thumbnail: Some(format!("{}/pictures.png", correlation::NAME)),
        finding,
        numbers,
    }
}
