//! The image part of a norms run: nets on a batch of real images (conv nets
//! of He et al. 2016a, or MLPs on the flattened image) at initialisation,
//! L = (1/B)·Σᵢ −log softmax(f(xᵢ))\[yᵢ\] on their labels, BN on the batch's
//! statistics with the gradient through them (training mode). Per block l
//! ‖∂L/∂h_l‖ (l = 0 the stem's output), per weighted layer ‖∂L/∂W‖ (conv
//! kernels and the classifier; BN's γ and β are left out), over seeds, and
//! the per-block growth towards the input fitted on ln ‖∂L/∂h_l‖ against l.

use std::path::Path;

use gradscope_stats::MeanStd;
use serde::{Deserialize, Serialize};

use super::{FaultRow, NormsParams};
use crate::Result;
use crate::image_cells::check_image_cells;
use crate::io::{Csv, ensure, num, remove_stale_files};

/// Files of the image part (absent when the run had no image archs).
pub mod files {
    /// ‖∂L/∂h_l‖ per (image arch, depth, block): mean, standard error, 95 % t interval.
    pub const LAYERS_CSV: &str = "images_layers.csv";
    /// ‖∂L/∂W‖ per (image arch, depth, weighted layer): mean, standard error, interval.
    pub const WEIGHTS_CSV: &str = "images_weights.csv";
    /// The per-block growth fit per (image arch, depth).
    pub const GROWTH_CSV: &str = "images_growth.csv";
    /// Every seed's norms, one row per (image arch, depth, seed, tensor).
    pub const PER_SEED_CSV: &str = "images_per_seed.csv";

    /// Every file of the image part.
    pub const ALL: [&str; 4] = [LAYERS_CSV, WEIGHTS_CSV, GROWTH_CSV, PER_SEED_CSV];
}

/// The image part of `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// One image's shape (channels, height, width).
    pub image_shape: Vec<usize>,
    /// Classes of the data (the nets' outputs).
    pub classes: usize,
    /// One entry per (arch, depth), archs in config order, depths ascending.
    pub results: Vec<ImageDepthSummary>,
}

/// The per-block growth of ‖∂L/∂h_l‖ towards the input: the least-squares
/// line of m_l = mean over seeds of ln ‖∂L/∂h_l‖ on l = 1 … blocks (the
/// stem's output h₀ left out), growth = e^{−slope} = the factor by which the
/// gradient grows per block from the output back to the input, with the 95 %
/// interval [e^{−slope_hi}, e^{−slope_lo}] of the line's Student-t interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrowthFit {
    /// e^{−slope}.
    #[serde(with = "gradscope_stats::nan")]
    pub growth: f64,
    /// Lower end of its 95 % interval.
    #[serde(with = "gradscope_stats::nan")]
    pub lo: f64,
    /// Upper end of its 95 % interval.
    #[serde(with = "gradscope_stats::nan")]
    pub hi: f64,
    /// R² of the line.
    #[serde(with = "gradscope_stats::nan")]
    pub r2: f64,
    /// Blocks fitted.
    pub points: usize,
}

/// One (image arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageDepthSummary {
    /// Architecture, by its grammar name (`conv-resnet`).
    pub arch: String,
    /// Depth (weighted layers for conv nets, blocks for MLPs).
    pub depth: usize,
    /// The loss at initialisation.
    pub loss: MeanStd,
    /// ‖∂L/∂h_l‖ for l = 0 (stem) … blocks, over seeds.
    pub grad_norm: Vec<MeanStd>,
    /// ‖∂L/∂h_l‖ per seed (rows) and block (columns).
    pub grad_norm_per_seed: Vec<Vec<f64>>,
    /// Weighted layers in the net's order (stem, blocks, classifier).
    pub weight_names: Vec<String>,
    /// The block each weighted layer belongs to: 0 the stem, blocks + 1 the classifier.
    pub weight_blocks: Vec<usize>,
    /// ‖∂L/∂W‖ per weighted layer, over seeds.
    pub weight_grad_norm: Vec<MeanStd>,
    /// ‖∂L/∂W‖ per seed (rows) and weighted layer (columns).
    pub weight_grad_norm_per_seed: Vec<Vec<f64>>,
    /// The per-block growth fit.
    pub growth: GrowthFit,
    /// NaN/inf by seed.
    pub faults: Vec<FaultRow>,
}

impl ImageDepthSummary {
    /// Blocks between stem and classifier.
    pub fn blocks(&self) -> usize {
        self.grad_norm.len().saturating_sub(1)
    }
}

/// `mean`, standard error and the 95 % Student-t interval of `m`, as CSV fields.
fn mean_se_ci(m: &MeanStd) -> [String; 4] {
    let i = gradscope_stats::MeanInterval::from_summary(m, gradscope_stats::Confidence::P95);
    [num(m.mean), num(i.se), num(i.lo), num(i.hi)]
}

/// Write the image files beside the others (summary.json is written after).
pub(crate) fn write(s: &ImageSummary, dir: &Path) -> Result<()> {
    let mut c = Csv::new(&[
        "arch",
        "depth",
        "block",
        "grad_norm_mean",
        "grad_norm_se",
        "ci_lo",
        "ci_hi",
        "seeds",
    ]);
    for r in &s.results {
        for (l, g) in r.grad_norm.iter().enumerate() {
            let mut row = vec![r.arch.clone(), r.depth.to_string(), l.to_string()];
            row.extend(mean_se_ci(g));
            row.push(g.n.to_string());
            c.row(&row);
        }
    }
    c.write(&dir.join(files::LAYERS_CSV))?;
    let mut c = Csv::new(&[
        "arch",
        "depth",
        "layer",
        "block",
        "name",
        "grad_norm_mean",
        "grad_norm_se",
        "ci_lo",
        "ci_hi",
        "seeds",
    ]);
    for r in &s.results {
        for (k, g) in r.weight_grad_norm.iter().enumerate() {
            let mut row = vec![
                r.arch.clone(),
                r.depth.to_string(),
                k.to_string(),
                r.weight_blocks[k].to_string(),
                r.weight_names[k].clone(),
            ];
            row.extend(mean_se_ci(g));
            row.push(g.n.to_string());
            c.row(&row);
        }
    }
    c.write(&dir.join(files::WEIGHTS_CSV))?;
    let mut c = Csv::new(&[
        "arch",
        "depth",
        "blocks",
        "growth",
        "ci_lo",
        "ci_hi",
        "r2",
        "points",
        "loss_mean",
        "faults",
    ]);
    for r in &s.results {
        let g = &r.growth;
        c.row(&[
            r.arch.clone(),
            r.depth.to_string(),
            r.blocks().to_string(),
            num(g.growth),
            num(g.lo),
            num(g.hi),
            num(g.r2),
            g.points.to_string(),
            num(r.loss.mean),
            r.faults.len().to_string(),
        ]);
    }
    c.write(&dir.join(files::GROWTH_CSV))?;
    let mut c = Csv::new(&[
        "arch",
        "depth",
        "seed",
        "kind",
        "index",
        "block",
        "name",
        "grad_norm",
    ]);
    for r in &s.results {
        for (seed, (h, w)) in r
            .grad_norm_per_seed
            .iter()
            .zip(&r.weight_grad_norm_per_seed)
            .enumerate()
        {
            for (l, v) in h.iter().enumerate() {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    seed.to_string(),
                    "hidden".into(),
                    l.to_string(),
                    l.to_string(),
                    format!("h{l}"),
                    num(*v),
                ]);
            }
            for (k, v) in w.iter().enumerate() {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    seed.to_string(),
                    "weight".into(),
                    k.to_string(),
                    r.weight_blocks[k].to_string(),
                    r.weight_names[k].clone(),
                    num(*v),
                ]);
            }
        }
    }
    c.write(&dir.join(files::PER_SEED_CSV))
}

/// Remove the image files a previous run may have left.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    remove_stale_files(dir, &files::ALL)
}

/// One row per (image arch, depth) in config order, each with a norm per
/// block and per weighted layer for every seed.
pub(crate) fn check_summary(s: &ImageSummary, c: &NormsParams, path: &Path) -> Result<()> {
    let labels: Vec<(&str, usize)> = s
        .results
        .iter()
        .map(|r| (r.arch.as_str(), r.depth))
        .collect();
    check_image_cells(
        &s.image_shape,
        &labels,
        &c.image_archs,
        &c.image_depths,
        path,
    )?;
    for r in &s.results {
        let what = || format!("image result ({}, depth {})", r.arch, r.depth);
        let (hidden, weights) = (r.grad_norm.len(), r.weight_grad_norm.len());
        ensure(hidden >= 2, path, || {
            format!("{} has {hidden} block norms, expected at least 2", what())
        })?;
        ensure(
            r.weight_names.len() == weights && r.weight_blocks.len() == weights,
            path,
            || {
                format!(
                    "{}: names, blocks and norms of its weights differ in number",
                    what()
                )
            },
        )?;
        ensure(
            r.grad_norm_per_seed.len() == c.seeds && r.weight_grad_norm_per_seed.len() == c.seeds,
            path,
            || format!("{} does not hold one row per seed ({})", what(), c.seeds),
        )?;
        ensure(
            r.grad_norm_per_seed.iter().all(|v| v.len() == hidden)
                && r.weight_grad_norm_per_seed
                    .iter()
                    .all(|v| v.len() == weights),
            path,
            || {
                format!(
                    "{}: a seed's norms differ in number from the means' ({hidden} blocks, {weights} weights)",
                    what()
                )
            },
        )?;
    }
    Ok(())
}
