//! The correlation report's image part: cosine matrices of per-example loss
//! gradients of plain and residual conv nets on real images at
//! initialisation, sorted by class, and their mean over all, same-class and
//! different-class pairs against depth; the comparisons decided on the data.

use std::path::Path;

use gradscope_contract::correlation::{CorrelationData, ImageDepthSummary, ImageSummary};
use gradscope_spec::ModelArch;
use gradscope_stats::MeanStd;
use ndarray::{Array4, s};

use crate::Result;
use crate::claims::{Check, Claims, clearly_above};
use crate::doc::Block;
use crate::figure::{
    ColorBar, Heatmap, HeatmapGrid, Legend, LineChart, Mark, Panels, Series, reduce_matrix, save,
};
use crate::format::mean_se;
use crate::format::na::f3;
use crate::shattered::claims::MARGIN_SE;
use crate::style::{self, color};

/// The image part as read, with the nets it compares.
struct Images<'a> {
    s: &'a ImageSummary,
    cosines: &'a Array4<f32>,
    archs: Vec<String>,
    depths: &'a [usize],
    /// The first plain and the first residual image arch.
    plain: Option<usize>,
    residual: Option<usize>,
}

impl<'a> Images<'a> {
    fn of(d: &'a CorrelationData) -> Option<Self> {
        let (im, cosines) = (d.summary.images.as_ref()?, d.image_cosines.as_ref()?);
        let archs: &[ModelArch] = &d.summary.config.image_archs;
        Some(Images {
            s: im,
            cosines,
            archs: archs.iter().map(|a| a.to_string()).collect(),
            depths: &d.summary.config.image_depths,
            plain: archs.iter().position(|a| !a.is_residual()),
            residual: archs.iter().position(|a| a.is_residual()),
        })
    }

    fn at(&self, a: usize, di: usize) -> &'a ImageDepthSummary {
        &self.s.results[a * self.depths.len() + di]
    }
}

/// The section's blocks: setup, the two figures and the table; `None`
/// when the run had no image nets.
pub(super) fn section(
    d: &CorrelationData,
    dir: &Path,
    said: &mut Claims,
) -> Result<Option<Vec<Block>>> {
    let Some(im) = Images::of(d) else {
        return Ok(None);
    };
    let c = &d.summary.config;
    let shape = &im.s.image_shape;
    let mut out = vec![Block::Paragraph(format!(
        "Nets on images: {} at depths {} (weighted layers; conv nets of He et al. 2016a with BN), at initialisation, on B = {} training \
         images of {} ({}×{}×{}, {} classes; a fixed, seeded draw, the same for every net, sorted by class), {} seeds, {:?}. gᵢ = ∂ℓᵢ/∂θ \
         is image i's cross-entropy gradient over every parameter, BN in per-sample mode (the batch's statistics held constant, so gᵢ \
         depends on image i alone); ⟨gᵢ, gⱼ⟩ is summed from each layer's Gram matrix (a conv kernel's from its per-image gradients) \
         and cos(gᵢ, gⱼ) = ⟨gᵢ, gⱼ⟩/(‖gᵢ‖‖gⱼ‖). A block's cosine uses its own parameters only.",
        im.archs.join(", "),
        im.depths
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        c.image_batch,
        c.image_data,
        shape[0],
        shape[1],
        shape[2],
        im.s.classes,
        c.seeds,
        c.dtype,
    ))];
    out.push(matrices(&im, dir)?);
    let comparison = comparison(&im, said);
    out.push(by_depth(&im, dir, c.seeds, &comparison)?);
    out.push(table(&im));
    Ok(Some(out))
}

/// Same-class pairs above different-class ones in every net; the same-class
/// cosine falling with depth, the residual net keeping the larger share of
/// it, and above the plain net at the deepest depth.
fn comparison(im: &Images, said: &mut Claims) -> String {
    let mut text = String::new();
    let mut apart = Vec::new();
    for (a, name) in im.archs.iter().enumerate() {
        for (di, &d) in im.depths.iter().enumerate() {
            let r = im.at(a, di);
            apart.push(clearly_above(
                &format!("{name} depth {d}: same-class − different-class cosine"),
                &r.same_class,
                &r.different_class,
                MARGIN_SE,
            ));
        }
    }
    text += &said.decide(
        "images-same-class-above",
        Check::all(apart),
        " In every net the gradients of two images of the same class are more alike than those of two images of different classes \
         (by more than three combined standard errors).",
        " The gradients of same-class pairs are not clearly more alike than those of different-class pairs in every net.",
    );
    let (Some(p), Some(r)) = (im.plain, im.residual) else {
        return text;
    };
    let last = im.depths.len() - 1;
    if last == 0 {
        return text;
    }
    let (lo, hi) = (im.depths[0], im.depths[last]);
    let (pn, rn) = (&im.archs[p], &im.archs[r]);
    let falls = [p, r].map(|a| {
        clearly_above(
            &format!(
                "{}: same-class cosine at depth {lo} − at depth {hi}",
                im.archs[a]
            ),
            &im.at(a, 0).same_class,
            &im.at(a, last).same_class,
            MARGIN_SE,
        )
    });
    text += &said.decide(
        "images-same-class-falls",
        Check::all(falls),
        format!(" From depth {lo} to {hi} the same-class cosine falls in both nets"),
        format!(
            " From depth {lo} to {hi} the same-class cosine does not clearly fall in both nets"
        ),
    );
    let kept = |a: usize| im.at(a, last).same_class.mean / im.at(a, 0).same_class.mean;
    let (kp, kr) = (kept(p), kept(r));
    text += &said.decide(
        "images-residual-keeps-more",
        Check::that(
            kr > kp,
            format!(
                "same-class cosine at depth {hi} over depth {lo}: {rn} {} > {pn} {}",
                f3(kr),
                f3(kp)
            ),
        ),
        format!(
            "; {rn} keeps the larger share of it ({} of its depth-{lo} value against {} for {pn}).",
            f3(kr),
            f3(kp)
        ),
        format!(
            "; {rn} does not keep a larger share of it ({} of its depth-{lo} value against {} for {pn}).",
            f3(kr),
            f3(kp)
        ),
    );
    let (sr, sp) = (&im.at(r, last).same_class, &im.at(p, last).same_class);
    text += &said.decide(
        "images-residual-above-plain",
        clearly_above(
            &format!("same-class cosine at depth {hi}: {rn} − {pn}"),
            sr,
            sp,
            MARGIN_SE,
        ),
        format!(
            " At depth {hi} the residual net's same-class gradients are clearly more alike than the plain net's ({} against {}).",
            mean_se(sr.mean, sr.sem(), f3, false),
            mean_se(sp.mean, sp.sem(), f3, false)
        ),
        format!(
            " At depth {hi} the residual net's same-class gradients are not clearly more alike than the plain net's ({} against {}).",
            mean_se(sr.mean, sr.sem(), f3, false),
            mean_se(sp.mean, sp.sem(), f3, false)
        ),
    );
    text
}

/// Seed 0's B × B cosine matrices, a row per arch and a column per depth.
fn matrices(im: &Images, dir: &Path) -> Result<Block> {
    let b = im.s.labels.len();
    let mut maps = Vec::new();
    for (a, arch) in im.archs.iter().enumerate() {
        for (di, &depth) in im.depths.iter().enumerate() {
            let m: Vec<f64> = im
                .cosines
                .slice(s![a, di, .., ..])
                .iter()
                .map(|&v| v as f64)
                .collect();
            let (values, n) = reduce_matrix(&m, b, 160);
            maps.push(Heatmap {
                title: format!("{arch}, depth {depth}"),
                values,
                n,
                axis_label: "image (sorted by class)".into(),
                axis_range: (0.0, b as f64),
            });
        }
    }
    let (rows, cols) = (im.archs.len(), im.depths.len());
    let fig = save(
        &HeatmapGrid {
            title: "Conv nets on images: per-example gradient cosines (seed 0)".into(),
            rows,
            cols,
            maps,
            bar: ColorBar::correlation("cosine"),
        },
        dir,
        "images_cosines",
        (420 * cols as u32, 420 * rows as u32 + 140),
    )?;
    let mut counts = vec![0usize; im.s.classes];
    for &y in &im.s.labels {
        counts[y as usize] += 1;
    }
    Ok(Block::figure(
        fig,
        "B × B cosine matrices of per-example parameter gradients of plain and residual conv nets at each depth",
        format!(
            "Entry (i, j) is cos(gᵢ, gⱼ) over every parameter; the diagonal is 1. The images are sorted by class, so same-class \
             agreement shows as squares along the diagonal (class sizes {}).",
            counts
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// One statistic of a summary row.
type Pick = fn(&ImageDepthSummary) -> &MeanStd;

/// Mean cosine against depth (all, same-class, different-class pairs), and
/// per block at the deepest depth.
fn by_depth(im: &Images, dir: &Path, seeds: usize, comparison: &str) -> Result<Block> {
    let stat: [(&str, Pick); 3] = [
        ("All pairs i ≠ j", |r| &r.mean_cosine),
        ("Same-class pairs", |r| &r.same_class),
        ("Different-class pairs", |r| &r.different_class),
    ];
    let mut panels = Vec::new();
    for (title, f) in stat {
        let mut ch = LineChart::new(title, "depth (weighted layers)", "mean cos(gᵢ, gⱼ) ± se")
            .legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        for (a, name) in im.archs.iter().enumerate() {
            let rs: Vec<&MeanStd> = (0..im.depths.len()).map(|di| f(im.at(a, di))).collect();
            ch.push(
                Series::line(
                    name.clone(),
                    im.depths
                        .iter()
                        .zip(&rs)
                        .map(|(&d, m)| (d as f64, m.mean))
                        .collect(),
                    color(a),
                )
                .mark(Mark::LinePoints)
                .errors(rs.iter().map(|m| m.sem()).collect()),
            );
        }
        panels.push(ch);
    }
    let last = im.depths.len() - 1;
    let mut blocks = LineChart::new(
        format!("Per block, depth {}", im.depths[last]),
        "block (0: stem, last: classifier)",
        "mean cos ± se, the block's parameters",
    )
    .legend(Legend::Outside);
    blocks.title_size = style::PANEL_TITLE_SIZE;
    for (a, name) in im.archs.iter().enumerate() {
        let r = im.at(a, last);
        blocks.push(
            Series::line(
                name.clone(),
                r.block_cosine
                    .iter()
                    .enumerate()
                    .map(|(k, m)| (k as f64, m.mean))
                    .collect(),
                color(a),
            )
            .mark(Mark::LinePoints)
            .errors(r.block_cosine.iter().map(|m| m.sem()).collect()),
        );
    }
    panels.push(blocks);
    let n = panels.len();
    let fig = save(
        &Panels {
            title: "Conv nets on images: how alike are the gradients of different images?".into(),
            rows: 1,
            cols: n,
            panels,
        },
        dir,
        "images_similarity",
        (560 * n as u32, 560),
    )?;
    Ok(Block::figure(
        fig,
        "Mean off-diagonal cosine against depth over all, same-class and different-class pairs, and per block at the deepest depth",
        format!(
            "Mean over {seeds} seeds ± standard error; a block's cosine is that of the gradients of its own parameters \
             (names in images_block_cosine.csv).{comparison}"
        ),
    ))
}

/// One row per (arch, depth): the three means and the coherence.
fn table(im: &Images) -> Block {
    let ms = |m: &MeanStd| mean_se(m.mean, m.sem(), f3, false);
    let mut rows = Vec::new();
    for (a, name) in im.archs.iter().enumerate() {
        for (di, &d) in im.depths.iter().enumerate() {
            let r = im.at(a, di);
            rows.push(vec![
                name.clone(),
                d.to_string(),
                ms(&r.mean_cosine),
                ms(&r.same_class),
                ms(&r.different_class),
                ms(&r.coherence),
            ]);
        }
    }
    Block::Table {
        header: [
            "arch",
            "depth",
            "mean cosine",
            "same class",
            "different class",
            "coherence ‖ḡ‖²/mean‖gᵢ‖²",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}
