//! The image part of a correlation run: nets on a batch of B real images
//! (conv nets of He et al. 2016a, or MLPs on the flattened image) at
//! initialisation. gᵢ = ∂ℓᵢ/∂θ is example i's cross-entropy gradient over
//! every parameter (BN in per-sample mode: the batch's statistics held
//! constant, so gᵢ depends on example i alone), Gᵢⱼ = ⟨gᵢ, gⱼ⟩ their Gram
//! matrix summed from the per-layer Grams, and cos(gᵢ, gⱼ) =
//! Gᵢⱼ/√(Gᵢᵢ·Gⱼⱼ). Per net: the mean off-diagonal cosine over all pairs,
//! over same-class and different-class pairs, and per block (the Gram of
//! the block's parameters alone); over seeds, mean and standard error.

use std::path::Path;

use gradscope_stats::MeanStd;
use ndarray::Array4;
use serde::{Deserialize, Serialize};

use super::CorrelationParams;
use crate::Result;
use crate::image_cells::check_image_cells;
use crate::io::{Csv, ensure, num, remove_stale_files, write_npy};

/// Files of the image part (absent when the run had no image archs).
pub mod files {
    /// One row per (image arch, depth): mean cosines with standard errors.
    pub const SUMMARY_CSV: &str = "images_summary.csv";
    /// One row per (image arch, depth, seed).
    pub const PER_SEED_CSV: &str = "images_per_seed.csv";
    /// Mean cosine of each block's parameters per (image arch, depth, block, seed).
    pub const BLOCK_COSINE_CSV: &str = "images_block_cosine.csv";
    /// Cosine matrices of seed 0, (image archs, image depths, B, B), f32,
    /// the images sorted by class.
    pub const COSINES: &str = "images_cosines.npy";

    /// Every file of the image part.
    pub const ALL: [&str; 4] = [SUMMARY_CSV, PER_SEED_CSV, BLOCK_COSINE_CSV, COSINES];
}

/// The image part of `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// One image's shape (channels, height, width).
    pub image_shape: Vec<usize>,
    /// Classes of the data (the nets' outputs).
    pub classes: usize,
    /// The labels of the B images, in the order of the cosine matrices
    /// (sorted by class).
    pub labels: Vec<u32>,
    /// One entry per (arch, depth), archs in config order, depths ascending.
    pub results: Vec<ImageDepthSummary>,
}

/// One net's similarities (one seed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSeed {
    /// Mean cos(gᵢ, gⱼ) over pairs i ≠ j.
    #[serde(with = "gradscope_stats::nan")]
    pub mean_cosine: f64,
    /// Over pairs of the same class.
    #[serde(with = "gradscope_stats::nan")]
    pub same_class: f64,
    /// Over pairs of different classes.
    #[serde(with = "gradscope_stats::nan")]
    pub different_class: f64,
    /// ‖ḡ‖² / mean‖gᵢ‖².
    #[serde(with = "gradscope_stats::nan")]
    pub coherence: f64,
    /// Mean off-diagonal cosine of each block's parameters alone.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub block_cosine: Vec<f64>,
}

/// One (image arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageDepthSummary {
    /// Architecture, by its grammar name (`conv-resnet`).
    pub arch: String,
    /// Depth (weighted layers for conv nets, blocks for MLPs).
    pub depth: usize,
    /// Mean off-diagonal cosine, over seeds.
    pub mean_cosine: MeanStd,
    /// Same-class pairs, over seeds.
    pub same_class: MeanStd,
    /// Different-class pairs, over seeds.
    pub different_class: MeanStd,
    /// Coherence, over seeds.
    pub coherence: MeanStd,
    /// Blocks with parameters in the net's order: `stem`, the blocks
    /// (`layer1.0`, … or `layers.0`, …), `head`.
    pub block_names: Vec<String>,
    /// Each block's mean cosine, over seeds.
    pub block_cosine: Vec<MeanStd>,
    /// Every seed's values.
    pub per_seed: Vec<ImageSeed>,
}

/// Write the image files beside the others (summary.json is written after).
pub(crate) fn write(s: &ImageSummary, cosines: &Array4<f32>, dir: &Path) -> Result<()> {
    write_npy(&dir.join(files::COSINES), cosines)?;
    let mut c = Csv::new(&[
        "arch",
        "depth",
        "blocks",
        "mean_cosine_mean",
        "mean_cosine_se",
        "same_class_mean",
        "same_class_se",
        "different_class_mean",
        "different_class_se",
        "coherence_mean",
        "coherence_se",
        "seeds",
    ]);
    for r in &s.results {
        let mut row = vec![
            r.arch.clone(),
            r.depth.to_string(),
            r.block_names.len().to_string(),
        ];
        for m in [
            &r.mean_cosine,
            &r.same_class,
            &r.different_class,
            &r.coherence,
        ] {
            row.push(num(m.mean));
            row.push(num(m.sem()));
        }
        row.push(r.mean_cosine.n.to_string());
        c.row(&row);
    }
    c.write(&dir.join(files::SUMMARY_CSV))?;
    let mut c = Csv::new(&[
        "arch",
        "depth",
        "seed",
        "mean_cosine",
        "same_class",
        "different_class",
        "coherence",
    ]);
    for r in &s.results {
        for (seed, v) in r.per_seed.iter().enumerate() {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                seed.to_string(),
                num(v.mean_cosine),
                num(v.same_class),
                num(v.different_class),
                num(v.coherence),
            ]);
        }
    }
    c.write(&dir.join(files::PER_SEED_CSV))?;
    let mut c = Csv::new(&["arch", "depth", "block", "name", "seed", "mean_cosine"]);
    for r in &s.results {
        for (seed, v) in r.per_seed.iter().enumerate() {
            for (b, (name, x)) in r.block_names.iter().zip(&v.block_cosine).enumerate() {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    b.to_string(),
                    name.clone(),
                    seed.to_string(),
                    num(*x),
                ]);
            }
        }
    }
    c.write(&dir.join(files::BLOCK_COSINE_CSV))
}

/// Remove the image files a previous run may have left.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    remove_stale_files(dir, &files::ALL)
}

/// One row per (image arch, depth) in config order, B labels, and for every
/// seed a cosine per block.
pub(crate) fn check_summary(s: &ImageSummary, c: &CorrelationParams, path: &Path) -> Result<()> {
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
    ensure(s.labels.len() == c.image_batch, path, || {
        format!(
            "{} image labels for a batch of {}",
            s.labels.len(),
            c.image_batch
        )
    })?;
    for r in &s.results {
        let blocks = r.block_names.len();
        ensure(
            r.block_cosine.len() == blocks
                && r.per_seed.len() == c.seeds
                && r.per_seed.iter().all(|v| v.block_cosine.len() == blocks),
            path,
            || {
                format!(
                    "image result ({}, depth {}) does not hold {blocks} block cosines for each of {} seeds",
                    r.arch, r.depth, c.seeds
                )
            },
        )?;
    }
    Ok(())
}
