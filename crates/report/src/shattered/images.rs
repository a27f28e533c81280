//! The shattered report's image part: nets on images along the straight
//! path between two images — r₁ against depth, the gradient pictures along
//! the path, the gradient norm per block, and the comparison of plain and
//! residual nets decided on the data.

use std::path::Path;

use gradscope_contract::shattered::{ImageArrays, ImageSummary, ShatteredData};
use gradscope_spec::ModelArch;
use gradscope_stats::MeanStd;

use super::claims::MARGIN_SE;
use crate::Result;
use crate::claims::{Check, Claims, clearly_above};
use crate::doc::Block;
use crate::figure::{ColorBar, HeatmapGrid, Legend, LineChart, Mark, Raster, Series, save};
use crate::format::na::{f2, f3};
use crate::format::{ci_half_width, mean_ci};
use crate::style::{self, color};

/// Most path points and pixels a picture draws (every k-th beyond).
const PICTURE_MAX: usize = 256;

/// The image part as read: its summary, arrays and the nets it compares.
pub struct Images<'a> {
    s: &'a ImageSummary,
    a: &'a ImageArrays,
    archs: Vec<String>,
    depths: &'a [usize],
    /// The first plain and the first residual image arch.
    pub plain: Option<usize>,
    /// See `plain`.
    pub residual: Option<usize>,
}

impl<'a> Images<'a> {
    /// The image part of `d`, if the run had one.
    pub fn of(d: &'a ShatteredData) -> Option<Self> {
        let (s, a) = (d.summary.images.as_ref()?, d.images.as_ref()?);
        let archs: &[ModelArch] = &d.summary.config.image_archs;
        Some(Images {
            s,
            a,
            archs: archs.iter().map(|a| a.to_string()).collect(),
            depths: &d.summary.config.image_depths,
            plain: archs.iter().position(|a| !a.is_residual()),
            residual: archs.iter().position(|a| a.is_residual()),
        })
    }

    fn r1(&self, a: usize, di: usize) -> &'a MeanStd {
        &self.s.results[a * self.depths.len() + di].adjacent_correlation
    }

    fn slope(&self, a: usize, di: usize) -> &'a MeanStd {
        &self.s.results[a * self.depths.len() + di].spectral_slope
    }

    /// r₁ at the shallowest minus r₁ at the deepest depth, of arch `a`.
    fn fall(&self, a: usize) -> f64 {
        self.r1(a, 0).mean - self.r1(a, self.depths.len() - 1).mean
    }
}

/// The section's blocks: setup, the comparison, the figures and the table.
pub(super) fn section(
    d: &ShatteredData,
    dir: &Path,
    said: &mut Claims,
) -> Result<Option<Vec<Block>>> {
    let Some(im) = Images::of(d) else {
        return Ok(None);
    };
    let c = &d.summary.config;
    let shape = &im.s.image_shape;
    let mut out = vec![Block::Paragraph(format!(
        "Nets on images: {} at depths {} (weighted layers; conv nets of He et al. 2016a with BN, one output), \
         ∂f/∂x of the output along the straight path x(t) = x₀ + t·(x₁ − x₀) between test images {} (label {}) and {} (label {}) of {} \
         ({}×{}×{}), {} points of t in [0, 1], {} seeds. r₁ and the ACF are pooled over pixels (each pixel's gradient centred on its own mean), \
         the power spectrum is the mean over pixels, fitted over bins {}..={}. A net of each depth is drawn afresh (a conv net's stages depend on its depth).",
        im.archs.join(", "),
        im.depths
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        im.s.pair[0],
        im.s.labels[0],
        im.s.pair[1],
        im.s.labels[1],
        c.image_data,
        shape[0],
        shape[1],
        shape[2],
        c.image_points,
        c.seeds,
        im.s.band.lo,
        im.s.band.hi,
    ))];
    let comparison = comparison(&im, said);
    out.push(r1_figure(&im, dir, c.seeds, &comparison)?);
    out.push(Block::Paragraph(
        "r₁ on the path: mean ± standard error [95 % Student-t interval] over seeds:".into(),
    ));
    out.push(table(&im, &|a, i| mean_ci(im.r1(a, i), f3)));
    out.push(Block::Paragraph(format!(
        "Spectral slope (bins {}..={}): mean ± standard error [95 % Student-t interval]:",
        im.s.band.lo, im.s.band.hi
    )));
    out.push(table(&im, &|a, i| mean_ci(im.slope(a, i), f2)));
    out.push(pictures(&im, dir)?);
    out.push(layer_norms(&im, dir)?);
    out.extend(super::plane::blocks(d, &im, dir, said)?);
    Ok(Some(out))
}

/// The comparison of the plain and the residual net, decided on the data:
/// the plain net's r₁ falls more from the shallowest to the deepest depth,
/// and at the deepest it is clearly below the residual net's.
pub fn comparison(im: &Images, said: &mut Claims) -> String {
    let (Some(p), Some(r)) = (im.plain, im.residual) else {
        return String::new();
    };
    if im.depths.len() < 2 {
        return String::new();
    }
    let (lo, hi) = (im.depths[0], im.depths[im.depths.len() - 1]);
    let last = im.depths.len() - 1;
    let (fp, fr) = (im.fall(p), im.fall(r));
    let mut text = said.decide(
        "images-plain-falls-faster",
        Check::that(
            fp > fr,
            format!(
                "r₁ fall from depth {lo} to {hi}: {} {} > {} {}",
                im.archs[p],
                f3(fp),
                im.archs[r],
                f3(fr)
            ),
        ),
        format!(
            " On images the plain net shatters with depth faster: from depth {lo} to {hi} r₁ of {} falls by {} ({} → {}), that of {} by {} ({} → {}).",
            im.archs[p],
            f2(fp),
            f2(im.r1(p, 0).mean),
            f2(im.r1(p, last).mean),
            im.archs[r],
            f2(fr),
            f2(im.r1(r, 0).mean),
            f2(im.r1(r, last).mean)
        ),
        format!(
            " On images the plain net does not shatter faster here: from depth {lo} to {hi} r₁ of {} falls by {}, that of {} by {}.",
            im.archs[p],
            f2(fp),
            im.archs[r],
            f2(fr)
        ),
    );
    text += &said.decide(
        "images-residual-above-plain",
        clearly_above(
            &format!("r₁ {} − {} at depth {hi}", im.archs[r], im.archs[p]),
            im.r1(r, last),
            im.r1(p, last),
            MARGIN_SE,
        ),
        format!(
            " At depth {hi} the residual net's r₁ is clearly ({MARGIN_SE} standard errors) above the plain net's."
        ),
        format!(
            " At depth {hi} the residual net's r₁ is not clearly ({MARGIN_SE} standard errors) above the plain net's."
        ),
    );
    text
}

/// r₁ against depth for each image arch.
fn r1_figure(im: &Images, dir: &Path, seeds: usize, comparison: &str) -> Result<Block> {
    let mut ch = LineChart::new(
        "Nets on images: lag-1 correlation of ∂f/∂x along the path against depth",
        "depth (weighted layers)",
        "r₁ (mean, 95 % t interval over seeds)",
    )
    .integer_x()
    .y_range(-0.25, 1.08)
    .legend(Legend::Outside);
    for (a, name) in im.archs.iter().enumerate() {
        let m = im
            .depths
            .iter()
            .enumerate()
            .map(|(i, &l)| (l as f64, im.r1(a, i).mean))
            .collect();
        let e = (0..im.depths.len())
            .map(|i| ci_half_width(im.r1(a, i)))
            .collect();
        ch.push(
            Series::line(name.clone(), m, color(a))
                .mark(Mark::LinePoints)
                .errors(e),
        );
    }
    let fig = save(&ch, dir, "images_r1_vs_depth", style::SIZE)?;
    Ok(Block::figure(
        fig,
        "Lag-1 correlation of the input gradient of image nets along a path between two images, against depth",
        format!(
            "r₁ of consecutive gradients ∂f/∂x on the path between the two images, pooled over pixels, against depth; mean and 95 % \
             Student-t interval over {seeds} seeds.{comparison}"
        ),
    ))
}

/// A table with one row per image arch and one column per depth.
fn table(im: &Images, cell: &dyn Fn(usize, usize) -> String) -> Block {
    let mut header = vec!["arch".to_string()];
    header.extend(im.depths.iter().map(|l| format!("L={l}")));
    Block::Table {
        header,
        rows: im
            .archs
            .iter()
            .enumerate()
            .map(|(a, n)| {
                std::iter::once(n.clone())
                    .chain((0..im.depths.len()).map(|i| cell(a, i)))
                    .collect()
            })
            .collect(),
    }
}

/// Every k-th of `n` indices, at most [`PICTURE_MAX`].
fn thinned(n: usize) -> Vec<usize> {
    let k = n.div_ceil(PICTURE_MAX).max(1);
    (0..n).step_by(k).collect()
}

/// ∂f/∂x of seed 0 along the path, one picture per (arch, depth): a row per
/// path point, a column per pixel, each scaled by its largest |value|.
fn pictures(im: &Images, dir: &Path) -> Result<Block> {
    let g = &im.a.gradients;
    let (n, pixels) = (g.shape()[2], g.shape()[3]);
    let (rows, cols) = (thinned(n), thinned(pixels));
    let mut maps = Vec::new();
    for (a, name) in im.archs.iter().enumerate() {
        for (di, &depth) in im.depths.iter().enumerate() {
            let scale = g
                .slice(ndarray::s![a, di, .., ..])
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            let values = rows
                .iter()
                .flat_map(|&i| cols.iter().map(move |&j| g[[a, di, i, j]] / scale))
                .collect();
            maps.push(Raster {
                title: format!("{name}, L = {depth}: r₁ {}", f2(im.r1(a, di).mean)),
                x_label: "pixel (channel, row, column order)".into(),
                y_label: "path point (t from 0 up to 1)".into(),
                x_range: (0.0, pixels as f64),
                rows: rows.len(),
                cols: cols.len(),
                values,
                value_range: (-1.0, 1.0),
                color: |t| style::diverging(2.0 * t - 1.0),
                hline: None,
            });
        }
    }
    let (gr, gc) = (im.archs.len(), im.depths.len());
    let fig = save(
        &HeatmapGrid {
            title: "∂f/∂x along the path between two images (seed 0)".into(),
            rows: gr,
            cols: gc,
            maps,
            bar: ColorBar::correlation("∂f/∂x / max |∂f/∂x| of the panel"),
        },
        dir,
        "images_gradients",
        (520 * gc as u32, 420 * gr as u32 + 120),
    )?;
    Ok(Block::figure(
        fig,
        "The input gradient of each image net along the path between two images, a row per path point",
        "Each panel is one net (seed 0): a row per point of the path from x₀ (bottom) to x₁ (top), a column per pixel, coloured by ∂f/∂x \
         over the panel's largest |∂f/∂x|. A gradient that changes smoothly along the path shows as vertical stripes; a shattered one as \
         speckle that changes from row to row.",
    ))
}

/// ‖∂L/∂h_l‖ per block l of each image net at initialisation, mean over seeds.
fn layer_norms(im: &Images, dir: &Path) -> Result<Block> {
    let mut ch = LineChart::new(
        "Nets on images: gradient norm per block at initialisation",
        "block l (0: the stem's output)",
        "‖∂L/∂h_l‖ / ‖∂L/∂h_last‖ (means over seeds)",
    )
    .integer_x()
    .log_y()
    .legend(Legend::Outside);
    for (a, name) in im.archs.iter().enumerate() {
        for (di, &depth) in im.depths.iter().enumerate() {
            let r = &im.s.results[a * im.depths.len() + di];
            let n = &r.layer_grad_norm_mean;
            let last = n[n.len() - 1];
            let pts = n
                .iter()
                .enumerate()
                .map(|(l, &v)| (l as f64, v / last))
                .collect();
            let mut s = Series::line(format!("{name} L={depth}"), pts, color(a));
            if di + 1 < im.depths.len() {
                s = s.mark(Mark::Dashed);
            }
            ch.push(s);
        }
    }
    let fig = save(&ch, dir, "images_layer_norms", style::SIZE)?;
    let deepest = im.depths.len() - 1;
    let ratio = |a: usize| {
        let n = &im.s.results[a * im.depths.len() + deepest].layer_grad_norm_mean;
        n[0] / n[n.len() - 1]
    };
    let ratios = im
        .archs
        .iter()
        .enumerate()
        .map(|(a, name)| format!("{name} {}", f2(ratio(a))))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Block::figure(
        fig,
        "Gradient norm per block of the image nets at initialisation",
        format!(
            "‖∂L/∂h_l‖ of L = Σ f over the path's points, for each block's output h_l (l = 0 the stem's), mean over seeds, over its \
             value at the last block: the growth of the backward gradient towards the input. Solid the deepest net, dashed the shallower \
             ones. ‖∂L/∂h₀‖/‖∂L/∂h_last‖ at depth {}: {ratios}.",
            im.depths[deepest]
        ),
    ))
}
