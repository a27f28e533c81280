//! The norms report's image part: ‖∂L/∂h_l‖ per block and ‖∂L/∂W‖ per
//! weighted layer of conv nets on real images at initialisation, plain
//! against residual at each depth, and the per-block growth towards the
//! input with its interval; the comparisons decided on the data.

use std::path::Path;

use gradscope_contract::norms::{ImageDepthSummary, ImageSummary, NormsSummary};
use gradscope_spec::ModelArch;
use gradscope_stats::MeanStd;

use crate::Result;
use crate::claims::{Check, Claims};
use crate::doc::Block;
use crate::figure::{Legend, LineChart, Mark, Panels, Series, save};
use crate::format::na::{f2, f3};
use crate::style::{self, color};

/// The image part as read, with the nets it compares.
struct Images<'a> {
    s: &'a ImageSummary,
    archs: Vec<String>,
    depths: &'a [usize],
    /// The first plain and the first residual image arch.
    plain: Option<usize>,
    residual: Option<usize>,
}

impl<'a> Images<'a> {
    fn of(s: &'a NormsSummary) -> Option<Self> {
        let im = s.images.as_ref()?;
        let archs: &[ModelArch] = &s.config.image_archs;
        Some(Images {
            s: im,
            archs: archs.iter().map(|a| a.to_string()).collect(),
            depths: &s.config.image_depths,
            plain: archs.iter().position(|a| !a.is_residual()),
            residual: archs.iter().position(|a| a.is_residual()),
        })
    }

    fn at(&self, a: usize, di: usize) -> &'a ImageDepthSummary {
        &self.s.results[a * self.depths.len() + di]
    }
}

/// Mean over seeds of ‖∂L/∂W‖ of the first block's first weighted layer
/// over that of the last block's last: how much more gradient the weights
/// near the input get than those near the output, per seed.
pub fn weight_ratio(r: &ImageDepthSummary) -> MeanStd {
    let blocks = r.blocks();
    let first = r.weight_blocks.iter().position(|&b| b == 1);
    let last = r.weight_blocks.iter().rposition(|&b| b == blocks);
    let (Some(i), Some(j)) = (first, last) else {
        return MeanStd::of([f64::NAN]);
    };
    MeanStd::of(r.weight_grad_norm_per_seed.iter().map(|w| w[i] / w[j]))
}

/// The section's blocks: setup, the comparison, the figures and the table.
pub(super) fn section(
    s: &NormsSummary,
    dir: &Path,
    said: &mut Claims,
) -> Result<Option<Vec<Block>>> {
    let Some(im) = Images::of(s) else {
        return Ok(None);
    };
    let c = &s.config;
    let shape = &im.s.image_shape;
    let mut out = vec![Block::Paragraph(format!(
        "Nets on images: {} at depths {} (weighted layers; conv nets of He et al. 2016a with BN), at initialisation, on a batch of {} \
         training images of {} ({}×{}×{}, {} classes) drawn per seed, {} seeds, {:?}. L is the mean cross-entropy on the images' labels; \
         BN normalises with the batch's statistics and the gradient goes through them (training mode), so ∂L/∂W is the first SGD step's. \
         ‖∂L/∂h_l‖ is the Frobenius norm over the batch of the gradient at block l's output (l = 0: the stem's); ‖∂L/∂W‖ that of each \
         conv kernel and of the classifier (BN's γ and β are left out). The growth per block is e^(−slope) of the least-squares line of \
         the seed mean of ln ‖∂L/∂h_l‖ on l = 1 … blocks (the stem's output left out), with the line's 95 % Student-t interval.",
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
    let comparison = comparison(&im, said);
    out.push(block_figure(&im, dir, c.seeds, &comparison)?);
    let weights = weight_comparison(&im, said);
    out.push(weight_figure(&im, dir, c.seeds, &weights)?);
    out.push(Block::Paragraph(
        "Growth of ‖∂L/∂h_l‖ per block towards the input, e^(−slope) [95 % interval], R² of the line and blocks fitted; the loss at initialisation (mean over seeds):"
            .into(),
    ));
    out.push(growth_table(&im));
    Ok(Some(out))
}

/// Plain against residual, decided on the fitted growth: faster at every
/// depth, and with disjoint intervals at the deepest.
fn comparison(im: &Images, said: &mut Claims) -> String {
    let (Some(p), Some(r)) = (im.plain, im.residual) else {
        return String::new();
    };
    let (pn, rn) = (&im.archs[p], &im.archs[r]);
    let pairs: Vec<(usize, f64, f64)> = im
        .depths
        .iter()
        .enumerate()
        .map(|(di, &d)| (d, im.at(p, di).growth.growth, im.at(r, di).growth.growth))
        .collect();
    let listed = pairs
        .iter()
        .map(|(d, gp, gr)| format!("×{} against ×{} at depth {d}", f3(*gp), f3(*gr)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = said.decide(
        "images-plain-grows-faster",
        Check::all(pairs.iter().map(|(d, gp, gr)| {
            Check::that(
                gp > gr,
                format!("growth at depth {d}: {pn} {} > {rn} {}", f3(*gp), f3(*gr)),
            )
        })),
        format!(
            " At every depth the gradient of {pn} grows faster per block towards the input than that of {rn}: {listed}."
        ),
        format!(
            " The gradient of {pn} does not grow faster per block towards the input than that of {rn} at every depth: {listed}."
        ),
    );
    let last = im.depths.len() - 1;
    let d = im.depths[last];
    let (gp, gr) = (&im.at(p, last).growth, &im.at(r, last).growth);
    text += &said.decide(
        "images-growth-apart",
        Check::that(
            gp.lo > gr.hi,
            format!(
                "depth {d}: {pn} interval low end {} > {rn} interval high end {}",
                f3(gp.lo),
                f3(gr.hi)
            ),
        ),
        format!(
            " At depth {d} the two growth rates' 95 % intervals are apart ([{}, {}] against [{}, {}]).",
            f3(gp.lo),
            f3(gp.hi),
            f3(gr.lo),
            f3(gr.hi)
        ),
        format!(
            " At depth {d} the two growth rates' 95 % intervals overlap or are in the other order ([{}, {}] against [{}, {}]).",
            f3(gp.lo),
            f3(gp.hi),
            f3(gr.lo),
            f3(gr.hi)
        ),
    );
    text
}

/// The weight gradients near the input against those near the output, plain
/// against residual at the deepest depth.
fn weight_comparison(im: &Images, said: &mut Claims) -> String {
    let (Some(p), Some(r)) = (im.plain, im.residual) else {
        return String::new();
    };
    let last = im.depths.len() - 1;
    let d = im.depths[last];
    let (wp, wr) = (weight_ratio(im.at(p, last)), weight_ratio(im.at(r, last)));
    let (pn, rn) = (&im.archs[p], &im.archs[r]);
    said.decide(
        "images-weight-ratio",
        Check::that(
            wp.mean > wr.mean,
            format!(
                "depth {d}: first-block / last-block ‖∂L/∂W‖ {pn} {} > {rn} {}",
                f3(wp.mean),
                f3(wr.mean)
            ),
        ),
        format!(
            " At depth {d} the first block's first kernel gets {}× the gradient norm of the last block's last kernel in {pn}, {}× in {rn}: \
             the plain net's weight gradients are the more unequal through depth.",
            f2(wp.mean),
            f2(wr.mean)
        ),
        format!(
            " At depth {d} the first block's first kernel gets {}× the gradient norm of the last block's last kernel in {pn}, {}× in {rn}: \
             the plain net's weight gradients are not the more unequal through depth here.",
            f2(wp.mean),
            f2(wr.mean)
        ),
    )
}

/// One panel per depth, a series per arch with ± standard-error bars.
fn panels(
    im: &Images,
    x_label: &str,
    y_label: &str,
    series: &dyn Fn(&ImageDepthSummary) -> Vec<(f64, &MeanStd)>,
) -> Vec<LineChart> {
    im.depths
        .iter()
        .enumerate()
        .map(|(di, &d)| {
            let mut ch = LineChart::new(format!("depth {d}"), x_label, y_label)
                .integer_x()
                .log_y()
                .legend(Legend::Outside);
            ch.title_size = style::PANEL_TITLE_SIZE;
            for (a, name) in im.archs.iter().enumerate() {
                let pts = series(im.at(a, di));
                ch.push(
                    Series::line(
                        name.clone(),
                        pts.iter().map(|(x, m)| (*x, m.mean)).collect(),
                        color(a),
                    )
                    .mark(Mark::LinePoints)
                    .errors(pts.iter().map(|(_, m)| m.sem()).collect()),
                );
            }
            ch
        })
        .collect()
}

/// ‖∂L/∂h_l‖ against block, one panel per depth.
fn block_figure(im: &Images, dir: &Path, seeds: usize, comparison: &str) -> Result<Block> {
    let charts = panels(
        im,
        "block l (0: the stem's output)",
        "‖∂L/∂h_l‖ (mean ± se over seeds)",
        &|r| {
            r.grad_norm
                .iter()
                .enumerate()
                .map(|(l, m)| (l as f64, m))
                .collect()
        },
    );
    let n = charts.len();
    let fig = save(
        &Panels {
            title: "Conv nets on images: gradient norm at every block output".into(),
            rows: 1,
            cols: n,
            panels: charts,
        },
        dir,
        "images_block_norms",
        (620 * n as u32, 560),
    )?;
    Ok(Block::figure(
        fig,
        "‖∂L/∂h_l‖ against block for plain and residual conv nets at each depth",
        format!(
            "‖∂L/∂h_l‖ of the mean cross-entropy at each block's output, mean ± standard error over {seeds} seeds, log scale; the output \
             is on the right, the input on the left.{comparison}"
        ),
    ))
}

/// ‖∂L/∂W‖ against weighted layer, one panel per depth.
fn weight_figure(im: &Images, dir: &Path, seeds: usize, comparison: &str) -> Result<Block> {
    let charts = panels(
        im,
        "weighted layer (1: the stem's conv, last: the classifier)",
        "‖∂L/∂W‖ (mean ± se over seeds)",
        &|r| {
            r.weight_grad_norm
                .iter()
                .enumerate()
                .map(|(k, m)| ((k + 1) as f64, m))
                .collect()
        },
    );
    let n = charts.len();
    let fig = save(
        &Panels {
            title: "Conv nets on images: weight-gradient norm of every layer".into(),
            rows: 1,
            cols: n,
            panels: charts,
        },
        dir,
        "images_weight_norms",
        (620 * n as u32, 560),
    )?;
    Ok(Block::figure(
        fig,
        "‖∂L/∂W‖ of every conv kernel and the classifier for plain and residual conv nets at each depth",
        format!(
            "‖∂L/∂W‖ of each conv kernel (two per block; a projection shortcut's kernel where the arch has one) and of the classifier, \
             mean ± standard error over {seeds} seeds, log scale; names and blocks in images_weights.csv.{comparison}"
        ),
    ))
}

/// The growth fits, one row per (arch, depth).
fn growth_table(im: &Images) -> Block {
    let mut rows = Vec::new();
    for (a, name) in im.archs.iter().enumerate() {
        for (di, &d) in im.depths.iter().enumerate() {
            let r = im.at(a, di);
            let g = &r.growth;
            rows.push(vec![
                name.clone(),
                d.to_string(),
                r.blocks().to_string(),
                format!("{} [{}, {}]", f3(g.growth), f3(g.lo), f3(g.hi)),
                f3(g.r2),
                g.points.to_string(),
                f3(r.loss.mean),
            ]);
        }
    }
    Block::Table {
        header: [
            "arch",
            "depth",
            "blocks",
            "growth per block [95 %]",
            "R²",
            "blocks fitted",
            "loss",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}
