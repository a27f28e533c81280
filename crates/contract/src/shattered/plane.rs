//! The plane of images of a shattered run: three test images x₀, x₁, x₂
//! (x₀, x₁ the path's pair, x₂ = `image_plane_third`) span the square
//! x(a, b) = x₀ + a·(x₁ − x₀) + b·(x₂ − x₀), a, b ∈ [0, 1], sampled on an
//! H × H grid (H = `image_plane_side`; x₀ at a = b = 0). At each grid point the
//! net's ∂f/∂x gives two pictures, the directional derivatives
//! ∂f/∂a = ∇ₓf·(x₁ − x₀) and ∂f/∂b = ∇ₓf·(x₂ − x₀), and each picture the
//! statistics of the correlation study's pictures ([`gradscope_stats::PictureStats`]):
//! r₁ along both grid axes, the radially averaged power spectrum with its
//! log-log slope over `radial_band`, the radially averaged autocorrelation.
//! Balduzzi et al. 2017 (Fig. 1, Sec. 3) picture the same contrast: plain
//! nets' gradients turn to noise with depth, resnets' stay smooth.

use std::path::Path;

use gradscope_stats::MeanStd;
use ndarray::{Array2, Array5, Array6};
use serde::{Deserialize, Serialize};

use super::ShatteredParams;
use crate::Result;
use crate::correlation::PlaneReference;
use crate::image_cells::check_image_cells;
use crate::io::{Csv, ensure, num, read_npy_shaped, remove_stale_files, write_npy};

/// Files of the plane (absent when the run had no plane).
pub mod files {
    /// One row per (image arch, depth, picture): r₁ and the radial slope over
    /// seeds (mean, std, n finite values).
    pub const SUMMARY_CSV: &str = "images_plane_summary.csv";
    /// One row per (image arch, depth, seed, picture).
    pub const PER_SEED_CSV: &str = "images_plane_per_seed.csv";
    /// x₀, x₁, x₂, (3, C·H·W).
    pub const CORNERS: &str = "images_plane_corners.npy";
    /// ∂f/∂a and ∂f/∂b over the grid, (archs, depths, plane seeds, 2, H, H); row i is b = i/(H − 1), column j is a = j/(H − 1).
    pub const PICTURES: &str = "images_plane_pictures.npy";
    /// Radially averaged power spectra, (archs, depths, plane seeds, 2, H/2 + 1).
    pub const RADIAL_SPECTRA: &str = "images_plane_spectra.npy";

    /// Every file of the plane.
    pub const ALL: [&str; 5] = [SUMMARY_CSV, PER_SEED_CSV, CORNERS, PICTURES, RADIAL_SPECTRA];
}

/// The pictures' names, in the order of the arrays' picture axis: ∂f/∂a, ∂f/∂b.
pub const PICTURES: [&str; 2] = ["a", "b"];

/// The plane part of `summary.json`'s `images`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaneSummary {
    /// Grid points H along each side.
    pub side: usize,
    /// The test-set index of x₂.
    pub third: usize,
    /// Seeds measured over the plane (the first `image_plane_seeds`).
    pub seeds: usize,
    /// Its label.
    pub third_label: u32,
    /// Radii of the slope fits (inclusive), [`gradscope_stats::radial_band`] of H.
    pub radial_band: [usize; 2],
    /// White and brown fields of side H through the same statistics, as many draws as plane seeds.
    pub references: Vec<PlaneReference>,
    /// One entry per (image arch, depth) in config order.
    pub results: Vec<PlaneDepthSummary>,
}

/// The two pictures of one (image arch, depth), over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlaneDepthSummary {
    /// Architecture, by its grammar name.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// ∂f/∂a then ∂f/∂b ([`PICTURES`]).
    pub pictures: Vec<PictureSummary>,
}

/// The statistics of one picture over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PictureSummary {
    /// r₁ along both grid axes.
    pub adjacent_correlation: MeanStd,
    /// Log-log slope of the radial power spectrum over the band.
    pub radial_slope: MeanStd,
    /// Radially averaged autocorrelation, radii 0 … H/2, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub radial_acf_mean: Vec<f64>,
}

/// One row of `images_plane_per_seed.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaneSeedRow {
    /// Architecture.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
    /// `a` or `b` ([`PICTURES`]).
    pub picture: String,
    /// r₁ along both grid axes.
    pub adjacent_correlation: f64,
    /// Radial spectral slope.
    pub radial_slope: f64,
    /// R² of the slope fit.
    pub radial_slope_r2: f64,
}

/// The arrays of the plane.
#[derive(Clone, Debug)]
pub struct PlaneArrays {
    /// Rows of `images_plane_per_seed.csv` (empty when read back).
    pub per_seed: Vec<PlaneSeedRow>,
    /// x₀, x₁, x₂, (3, C·H·W).
    pub corners: Array2<f64>,
    /// (archs, depths, plane seeds, 2, H, H).
    pub pictures: Array6<f64>,
    /// (archs, depths, plane seeds, 2, H/2 + 1).
    pub radial_spectra: Array5<f64>,
}

impl PlaneArrays {
    /// Write the plane's files (summary.json is written after).
    pub(crate) fn write(&self, summary: &PlaneSummary, dir: &Path) -> Result<()> {
        write_npy(&dir.join(files::CORNERS), &self.corners)?;
        write_npy(&dir.join(files::PICTURES), &self.pictures)?;
        write_npy(&dir.join(files::RADIAL_SPECTRA), &self.radial_spectra)?;
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "picture",
            "r1_mean",
            "r1_std",
            "r1_n",
            "slope_mean",
            "slope_std",
            "slope_n",
        ]);
        for r in &summary.results {
            for (name, p) in PICTURES.iter().zip(&r.pictures) {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    name.to_string(),
                    num(p.adjacent_correlation.mean),
                    num(p.adjacent_correlation.std),
                    p.adjacent_correlation.n.to_string(),
                    num(p.radial_slope.mean),
                    num(p.radial_slope.std),
                    p.radial_slope.n.to_string(),
                ]);
            }
        }
        c.write(&dir.join(files::SUMMARY_CSV))?;
        let mut c = Csv::new(&[
            "arch", "depth", "seed", "picture", "r1", "slope", "slope_r2",
        ]);
        for r in &self.per_seed {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                r.seed.to_string(),
                r.picture.clone(),
                num(r.adjacent_correlation),
                num(r.radial_slope),
                num(r.radial_slope_r2),
            ]);
        }
        c.write(&dir.join(files::PER_SEED_CSV))
    }

    /// Remove the plane's files a previous run may have left.
    pub(crate) fn remove(dir: &Path) -> Result<()> {
        remove_stale_files(dir, &files::ALL)
    }

    /// Read the plane's arrays, shapes checked against the summary and config.
    pub(crate) fn read(
        dir: &Path,
        s: &PlaneSummary,
        c: &ShatteredParams,
        pixels: usize,
    ) -> Result<Self> {
        let (na, nd, ns, h) = (c.image_archs.len(), c.image_depths.len(), s.seeds, s.side);
        Ok(PlaneArrays {
            per_seed: Vec::new(),
            corners: read_npy_shaped(&dir.join(files::CORNERS), &[3, pixels])?,
            pictures: read_npy_shaped(&dir.join(files::PICTURES), &[na, nd, ns, 2, h, h])?,
            radial_spectra: read_npy_shaped(
                &dir.join(files::RADIAL_SPECTRA),
                &[na, nd, ns, 2, h / 2 + 1],
            )?,
        })
    }
}

/// The plane's side and band as the config set them, two pictures per
/// (image arch, depth) in config order, and the two references.
pub(crate) fn check_summary(
    s: &PlaneSummary,
    shape: &[usize],
    c: &ShatteredParams,
    path: &Path,
) -> Result<()> {
    ensure(s.side == c.image_plane_side && s.side >= 8, path, || {
        format!(
            "plane side {} where the config has {}",
            s.side, c.image_plane_side
        )
    })?;
    ensure(
        s.seeds == c.image_plane_seeds && (1..=c.seeds).contains(&s.seeds),
        path,
        || {
            format!(
                "{} plane seeds where the config has {} of {} seeds",
                s.seeds, c.image_plane_seeds, c.seeds
            )
        },
    )?;
    let [lo, hi] = s.radial_band;
    ensure(0 < lo && lo < hi && hi <= s.side / 2, path, || {
        format!("radial band {lo}..={hi} outside radii 1..={}", s.side / 2)
    })?;
    ensure(s.references.len() == 2, path, || {
        format!(
            "{} plane references, expected 2 (white, brown)",
            s.references.len()
        )
    })?;
    ensure(
        s.results.iter().all(|r| r.pictures.len() == PICTURES.len()),
        path,
        || "a plane result without its two pictures (∂f/∂a, ∂f/∂b)".into(),
    )?;
    let labels: Vec<(&str, usize)> = s
        .results
        .iter()
        .map(|r| (r.arch.as_str(), r.depth))
        .collect();
    check_image_cells(shape, &labels, &c.image_archs, &c.image_depths, path)
}
