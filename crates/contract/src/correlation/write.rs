//! A correlation run's results and how they are laid out in its folder.

use std::path::Path;

use ndarray::{Array1, Array4, Array5};

use super::{CorrelationSummary, SeedRow, files};
use crate::Result;
use crate::io::{Csv, create_dir, num, write_json, write_npy};

/// Everything a run produced, before it is written.
#[derive(Clone, Debug)]
pub struct CorrelationResults {
    /// What goes into summary.json.
    pub summary: CorrelationSummary,
    /// Rows of per_seed.csv.
    pub per_seed: Vec<SeedRow>,
    /// Grid coordinates along each axis, (H,).
    pub axis: Array1<f64>,
    /// ∂f/∂x₁, (archs, depths, seeds, H, H).
    pub pictures: Array5<f64>,
    /// ‖∇ₓf‖, (archs, depths, seeds, H, H).
    pub norm_pictures: Array5<f64>,
    /// Radial power spectra, (archs, depths, seeds, H/2 + 1).
    pub radial_spectra: Array4<f64>,
    /// Whole-net cosine matrices of seed 0, (archs, depths, B, B), f32.
    pub cosines: Array4<f32>,
    /// The image nets' cosine matrices of seed 0, (image archs, image
    /// depths, B, B), f32; written only with `summary.images`.
    pub image_cosines: Array4<f32>,
}

impl CorrelationResults {
    /// Write the study folder `dir` (created if missing); every file atomically,
    /// `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_npy(&dir.join(files::AXIS), &self.axis)?;
        write_npy(&dir.join(files::PICTURES), &self.pictures)?;
        write_npy(&dir.join(files::NORM_PICTURES), &self.norm_pictures)?;
        write_npy(&dir.join(files::RADIAL_SPECTRA), &self.radial_spectra)?;
        write_npy(&dir.join(files::COSINES), &self.cosines)?;
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "r1_mean",
            "r1_std",
            "radial_slope_mean",
            "radial_slope_std",
            "mean_cosine_mean",
            "mean_cosine_std",
            "coherence_mean",
            "snr_mean",
            "seeds",
        ]);
        for r in &self.summary.results {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.adjacent_correlation.mean),
                num(r.adjacent_correlation.std),
                num(r.radial_slope.mean),
                num(r.radial_slope.std),
                num(r.mean_cosine.mean),
                num(r.mean_cosine.std),
                num(r.coherence.mean),
                num(r.snr.mean),
                r.adjacent_correlation.n.to_string(),
            ]);
        }
        c.write(&dir.join(files::SUMMARY_CSV))?;
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "seed",
            "r1",
            "radial_slope",
            "mean_cosine",
            "coherence",
            "snr",
        ]);
        for r in &self.per_seed {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                r.seed.to_string(),
                num(r.r1),
                num(r.radial_slope),
                num(r.mean_cosine),
                num(r.coherence),
                num(r.snr),
            ]);
        }
        c.write(&dir.join(files::PER_SEED_CSV))?;
        let mut c = Csv::new(&["arch", "depth", "layer", "name", "mean_cosine"]);
        for r in &self.summary.results {
            for (l, (name, v)) in r.layer_names.iter().zip(&r.layer_cosine_mean).enumerate() {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    l.to_string(),
                    name.clone(),
                    num(*v),
                ]);
            }
        }
        c.write(&dir.join(files::LAYER_COSINE_CSV))?;
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "bin",
            "distance_lo",
            "distance_hi",
            "mean_cosine",
        ]);
        let e = &self.summary.distance_edges;
        for r in &self.summary.results {
            for (k, v) in r.cosine_by_distance_mean.iter().enumerate() {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    k.to_string(),
                    num(e[k]),
                    num(e[k + 1]),
                    num(*v),
                ]);
            }
        }
        c.write(&dir.join(files::COSINE_DISTANCE_CSV))?;
        match &self.summary.images {
            Some(images) => super::images::write(images, &self.image_cosines, dir)?,
            None => super::images::remove(dir)?,
        }
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}
