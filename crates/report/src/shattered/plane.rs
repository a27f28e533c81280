//! The shattered report's plane of images: the pictures of ∂f/∂a and ∂f/∂b
//! over the square x₀ + a·(x₁ − x₀) + b·(x₂ − x₀) for the plain and the
//! residual image nets, their r₁ and radial spectral slopes with standard
//! errors, and the comparison decided on the data.

use std::path::Path;

use gradscope_contract::shattered::plane::PICTURES;
use gradscope_contract::shattered::{PlaneArrays, PlaneSummary, ShatteredData};
use gradscope_stats::MeanStd;
use ndarray::s;

use super::claims::MARGIN_SE;
use super::images::Images;
use crate::Result;
use crate::claims::{Check, Claims, clearly_above};
use crate::doc::Block;
use crate::figure::{
    ColorBar, Heatmap, HeatmapGrid, Legend, LineChart, Mark, Panels, Series, save,
};
use crate::format::mean_ci;
use crate::format::na::{f2, f3};
use crate::style::{self, color};

/// The plane as read, beside the image part it belongs to.
struct Plane<'a> {
    s: &'a PlaneSummary,
    a: &'a PlaneArrays,
    archs: Vec<String>,
    depths: &'a [usize],
}

impl Plane<'_> {
    fn picture(
        &self,
        a: usize,
        di: usize,
        k: usize,
    ) -> &gradscope_contract::shattered::PictureSummary {
        &self.s.results[a * self.depths.len() + di].pictures[k]
    }

    fn r1(&self, a: usize, di: usize, k: usize) -> &MeanStd {
        &self.picture(a, di, k).adjacent_correlation
    }

    fn slope(&self, a: usize, di: usize, k: usize) -> &MeanStd {
        &self.picture(a, di, k).radial_slope
    }

    fn reference(&self, name: &str) -> Option<&gradscope_contract::correlation::PlaneReference> {
        self.s.references.iter().find(|r| r.name == name)
    }
}

/// The words for picture k.
fn derivative(k: usize) -> &'static str {
    ["∂f/∂a", "∂f/∂b"][k]
}

/// The plane's blocks (none when the run had no plane).
pub(super) fn blocks(
    d: &ShatteredData,
    im: &Images,
    dir: &Path,
    said: &mut Claims,
) -> Result<Vec<Block>> {
    let Some(images) = d.summary.images.as_ref() else {
        return Ok(Vec::new());
    };
    let (Some(s), Some(a)) = (
        images.plane.as_ref(),
        d.images.as_ref().and_then(|i| i.plane.as_ref()),
    ) else {
        return Ok(Vec::new());
    };
    let c = &d.summary.config;
    let pl = Plane {
        s,
        a,
        archs: c.image_archs.iter().map(|a| a.to_string()).collect(),
        depths: &c.image_depths,
    };
    let reference = |name: &str| {
        pl.reference(name).map_or("n/a".into(), |r| {
            format!(
                "r₁ {}, slope {}",
                f2(r.adjacent_correlation.mean),
                f2(r.radial_slope.mean)
            )
        })
    };
    let mut out = vec![Block::Paragraph(format!(
        "Over a plane of images: the {h}×{h} grid x(a, b) = x₀ + a·(x₁ − x₀) + b·(x₂ − x₀), a, b ∈ [0, 1] (x₀ at the lower left, \
         x₁ at the lower right, x₂ at the upper left), with x₀, x₁ the path's two images and x₂ test image {} (label {}). At every grid \
         point ∂f/∂x of the same output, in one batch of all {} points; the pictures are the directional derivatives ∂f/∂a = ∇ₓf·(x₁ − x₀) \
         and ∂f/∂b = ∇ₓf·(x₂ − x₀). Per picture, as in the correlation study: r₁ along both grid axes, the radially averaged power \
         spectrum with its log-log slope over radii {}..={}, over the first {} seeds. Fields of the same side through the same statistics: white \
         noise {}, brown noise (power ∝ k⁻²) {}.",
        s.third,
        s.third_label,
        s.side * s.side,
        s.radial_band[0],
        s.radial_band[1],
        s.seeds,
        reference("white"),
        reference("brown"),
        h = s.side,
    ))];
    let comparison = comparison(&pl, im, said);
    out.push(pictures(&pl, images.pair.as_slice(), dir, &comparison)?);
    out.push(Block::Paragraph(format!(
        "r₁ of the pictures over the plane, then their radial spectral slope (radii {}..={}): mean ± standard error [95 % Student-t \
         interval] over seeds:",
        s.radial_band[0], s.radial_band[1]
    )));
    out.push(table(&pl, &|a, di, k| mean_ci(pl.r1(a, di, k), f3)));
    out.push(table(&pl, &|a, di, k| mean_ci(pl.slope(a, di, k), f2)));
    out.push(spectra(&pl, dir)?);
    Ok(out)
}

/// Radial power spectra of the pictures per arch (log-log, mean over the
/// plane's seeds), and their radial autocorrelation against distance.
fn spectra(pl: &Plane, dir: &Path) -> Result<Block> {
    let (lo, hi) = (pl.s.radial_band[0], pl.s.radial_band[1]);
    let nd = pl.depths.len();
    let mark = |k: usize| if k == 0 { Mark::Line } else { Mark::Dashed };
    let mut panels = Vec::new();
    for (a, arch) in pl.archs.iter().enumerate() {
        let mut ch = LineChart::new(
            arch.clone(),
            "radial frequency k (cycles per side)",
            "power (mean over seeds)",
        )
        .log_x()
        .log_y()
        .legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        for (di, &depth) in pl.depths.iter().enumerate() {
            for k in 0..PICTURES.len() {
                let sp = pl.a.radial_spectra.slice(s![a, di, .., k, ..]);
                let pts: Vec<(f64, f64)> = (1..sp.ncols())
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
                ch.push(
                    Series::line(
                        format!(
                            "L = {depth}, {} (slope {})",
                            derivative(k),
                            f2(pl.slope(a, di, k).mean)
                        ),
                        pts,
                        style::ramp(di as f64 / (nd.max(2) - 1) as f64),
                    )
                    .mark(mark(k))
                    .width(2),
                );
            }
        }
        panels.push(ch);
    }
    let mut acf = LineChart::new(
        "Correlation against distance",
        "distance (grid steps)",
        "radially averaged autocorrelation",
    )
    .legend(Legend::Outside);
    acf.title_size = style::PANEL_TITLE_SIZE;
    for (a, arch) in pl.archs.iter().enumerate() {
        for (di, &depth) in pl.depths.iter().enumerate() {
            for k in 0..PICTURES.len() {
                acf.push(
                    Series::line(
                        format!("{arch}, L = {depth}, {}", derivative(k)),
                        pl.picture(a, di, k)
                            .radial_acf_mean
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (i as f64, *v))
                            .collect(),
                        color(a),
                    )
                    .mark(mark(k))
                    .width(1 + di as u32),
                );
            }
        }
    }
    panels.push(acf);
    let n = panels.len();
    let fig = save(
        &Panels {
            title: "Radially averaged power spectra and autocorrelation of ∂f/∂a and ∂f/∂b over the plane".into(),
            rows: 1,
            cols: n,
            panels,
        },
        dir,
        "images_plane_spectra",
        (600 * n as u32, 560),
    )?;
    Ok(Block::figure(
        fig,
        "Radial power spectra of the pictures over the plane of images (log-log) and their autocorrelation against distance",
        format!(
            "The 2-D power spectrum |FFT₂(g − ḡ)|²/H² of each picture averaged over rings of radius k, mean over seeds (solid ∂f/∂a, \
             dashed ∂f/∂b; lighter the shallower net); the slopes in the legends are fitted over k = {lo}…{hi}, mean over seeds. The \
             last panel is the inverse transform of the same spectrum averaged over rings: the correlation of the picture at two grid \
             points against their distance (thicker the deeper net)."
        ),
    ))
}

/// The plain against the residual net at the deepest depth, on both
/// pictures: its r₁ clearly (by [`MARGIN_SE`] standard errors) below, its
/// spectrum clearly flatter.
fn comparison(pl: &Plane, im: &Images, said: &mut Claims) -> String {
    let (Some(p), Some(r)) = (im.plain, im.residual) else {
        return String::new();
    };
    let last = pl.depths.len() - 1;
    let hi = pl.depths[last];
    // "x and y (u and v)": the residual net's value for ∂f/∂a and ∂f/∂b, the plain net's in brackets.
    let both = |q: &dyn Fn(usize, usize) -> String| {
        let of = |a: usize| {
            (0..PICTURES.len())
                .map(|k| q(a, k))
                .collect::<Vec<_>>()
                .join(" and ")
        };
        format!("{} ({})", of(r), of(p))
    };
    let r1s = both(&|a, k| f2(pl.r1(a, last, k).mean));
    let slopes = both(&|a, k| f2(pl.slope(a, last, k).mean));
    let mut text = said.decide(
        "images-plane-residual-smoother",
        Check::all((0..PICTURES.len()).map(|k| {
            clearly_above(
                &format!(
                    "r₁ of {} {} − {} at depth {hi}",
                    derivative(k),
                    pl.archs[r],
                    pl.archs[p]
                ),
                pl.r1(r, last, k),
                pl.r1(p, last, k),
                MARGIN_SE,
            )
        })),
        format!(
            " Over the plane the residual net's pictures stay smoother: at depth {hi} r₁ of ∂f/∂a and ∂f/∂b is {r1s} for {} ({}), \
             clearly ({MARGIN_SE} standard errors) above the plain net's in both.",
            pl.archs[r], pl.archs[p]
        ),
        format!(
            " Over the plane the residual net's pictures are not clearly ({MARGIN_SE} standard errors) smoother in both directions: \
             at depth {hi} r₁ of ∂f/∂a and ∂f/∂b is {r1s} for {} ({}).",
            pl.archs[r], pl.archs[p]
        ),
    );
    text += &said.decide(
        "images-plane-residual-steeper",
        Check::all((0..PICTURES.len()).map(|k| {
            clearly_above(
                &format!(
                    "radial slope of {} {} − {} at depth {hi}",
                    derivative(k),
                    pl.archs[p],
                    pl.archs[r]
                ),
                pl.slope(p, last, k),
                pl.slope(r, last, k),
                MARGIN_SE,
            )
        })),
        format!(
            " Their spectra fall more steeply in both directions: radial slopes {slopes} for {} ({}), clearly ({MARGIN_SE} standard \
             errors) below the plain net's.",
            pl.archs[r], pl.archs[p]
        ),
        format!(
            " Their spectra are not clearly steeper in both directions: radial slopes {slopes} for {} ({}).",
            pl.archs[r], pl.archs[p]
        ),
    );
    text
}

/// ∂f/∂a and ∂f/∂b of seed 0 over the plane: a row of panels per depth,
/// columns arch by arch, each panel scaled by its own largest |value|.
fn pictures(pl: &Plane, pair: &[usize], dir: &Path, comparison: &str) -> Result<Block> {
    let h = pl.s.side;
    let mut maps = Vec::new();
    // Rows from the top: the deepest depth first.
    for di in (0..pl.depths.len()).rev() {
        for (a, name) in pl.archs.iter().enumerate() {
            for k in 0..PICTURES.len() {
                let pic = pl.a.pictures.slice(s![a, di, 0, k, .., ..]);
                let scale = pic.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                maps.push(Heatmap {
                    title: format!(
                        "{name}, L = {}, {}: r₁ {}",
                        pl.depths[di],
                        derivative(k),
                        f2(pl.r1(a, di, k).mean)
                    ),
                    values: pic
                        .iter()
                        .map(|v| if scale > 0.0 { v / scale } else { f64::NAN })
                        .collect(),
                    n: h,
                    axis_label: "a (b up)".into(),
                    axis_range: (0.0, 1.0),
                });
            }
        }
    }
    let (rows, cols) = (pl.depths.len(), pl.archs.len() * PICTURES.len());
    let fig = save(
        &HeatmapGrid {
            title: format!(
                "∂f/∂a and ∂f/∂b over the plane of test images {}, {}, {} (seed 0)",
                pair[0], pair[1], pl.s.third
            ),
            rows,
            cols,
            maps,
            bar: ColorBar::correlation("derivative / max |derivative| of the panel"),
        },
        dir,
        "images_plane_pictures",
        (400 * cols as u32, 400 * rows as u32 + 140),
    )?;
    Ok(Block::figure(
        fig,
        "Pictures of the directional derivatives of image nets over a plane of images, plain against residual",
        format!(
            "Each panel is one net (seed 0), a row of panels per depth (the deepest on top): ∂f/∂a = ∇ₓf·(x₁ − x₀) or \
             ∂f/∂b = ∇ₓf·(x₂ − x₀) at the {h}×{h} points x₀ + a·(x₁ − x₀) + b·(x₂ − x₀), over the panel's largest magnitude (red \
             positive, blue negative); r₁ in the titles is the mean over seeds. Balduzzi et al. 2017 (Figure 1) draw such pictures \
             for nets on 2-D inputs: a feedforward net's turn to noise with depth, a resnet's stay structured.{comparison}"
        ),
    ))
}

/// One row per (image arch, picture), one column per depth.
fn table(pl: &Plane, cell: &dyn Fn(usize, usize, usize) -> String) -> Block {
    let mut header = vec!["arch".to_string(), "picture".to_string()];
    header.extend(pl.depths.iter().map(|l| format!("L={l}")));
    let mut rows = Vec::new();
    for (a, name) in pl.archs.iter().enumerate() {
        for k in 0..PICTURES.len() {
            rows.push(
                [name.clone(), derivative(k).to_string()]
                    .into_iter()
                    .chain((0..pl.depths.len()).map(|di| cell(a, di, k)))
                    .collect(),
            );
        }
    }
    Block::Table { header, rows }
}
