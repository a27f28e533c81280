//! The image part of a shattered run: nets on images (conv nets of He et al.
//! 2016a, or MLPs on the flattened image) along the straight path between
//! two images, x(t) = x₀ + t·(x₁ − x₀), t ∈ [0, 1]. At each point the input
//! gradient ∂f/∂x ∈ R^{C·H·W} of the scalar output; r₁, ACF and the power
//! spectrum are those of the 1-D study pooled over pixels
//! ([`gradscope_stats::adjacent_correlation_pooled`]).

use std::path::Path;

use gradscope_stats::{Band, MeanStd};
use ndarray::{Array1, Array2, Array4};
use serde::{Deserialize, Serialize};

use super::{FaultRecord, ShatteredParams};
use crate::Result;
use crate::image_cells::check_image_cells;
use crate::io::{Csv, num, read_npy_shaped, remove_stale_files, write_npy};

/// Files of the image part (absent when the run had no image archs).
pub mod files {
    /// One row per (image arch, depth).
    pub const SUMMARY_CSV: &str = "images_summary.csv";
    /// One row per (image arch, depth, seed).
    pub const PER_SEED_CSV: &str = "images_per_seed.csv";
    /// ‖∂L/∂h_l‖ per block of the nets on images.
    pub const LAYER_NORMS_CSV: &str = "images_layer_norms.csv";
    /// The path parameter t, (N,).
    pub const PATH: &str = "images_path.npy";
    /// The two images x₀, x₁, (2, C·H·W).
    pub const ENDPOINTS: &str = "images_endpoints.npy";
    /// ∂f/∂x of seed 0 along the path, (archs, depths, N, C·H·W).
    pub const GRADIENTS: &str = "images_gradients.npy";
    /// Power spectra, mean over pixels, (archs, depths, seeds, N/2 + 1).
    pub const POWER_SPECTRA: &str = "images_power_spectra.npy";
    /// Pooled autocorrelation functions, (archs, depths, seeds, max_lag + 1).
    pub const AUTOCORRELATION: &str = "images_autocorrelation.npy";

    /// Every file of the image part.
    pub const ALL: [&str; 8] = [
        SUMMARY_CSV,
        PER_SEED_CSV,
        LAYER_NORMS_CSV,
        PATH,
        ENDPOINTS,
        GRADIENTS,
        POWER_SPECTRA,
        AUTOCORRELATION,
    ];
}

/// The image part of `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// One image's shape (channels, height, width).
    pub image_shape: Vec<usize>,
    /// The test-set indices of x₀ and x₁.
    pub pair: Vec<usize>,
    /// Their labels.
    pub labels: Vec<u32>,
    /// Band of the spectral slopes (bins of the path's N points).
    pub band: Band,
    /// Largest ACF lag stored.
    pub max_lag: usize,
    /// One entry per (arch, depth), archs in config order, depths ascending.
    pub results: Vec<ImageDepthSummary>,
    /// The plane spanned by x₀, x₁ and a third image, when the run had one
    /// (`image_plane_side` > 0; see [`super::plane`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane: Option<super::PlaneSummary>,
}

/// Statistics of one (image arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageDepthSummary {
    /// Architecture, by its grammar name (`conv-resnet`).
    pub arch: String,
    /// Depth (weighted layers for conv nets, blocks for MLPs).
    pub depth: usize,
    /// r₁ of consecutive gradients, pooled over pixels.
    pub adjacent_correlation: MeanStd,
    /// Log-log slope of the pixel-mean power spectrum over the band.
    pub spectral_slope: MeanStd,
    /// ‖∂f/∂x‖ (RMS over the path).
    pub input_grad_norm: MeanStd,
    /// ‖∂L/∂h_l‖ for l = 0 (stem) … blocks, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub layer_grad_norm_mean: Vec<f64>,
    /// NaN/inf by seed and layer.
    pub faults: Vec<FaultRecord>,
}

/// One row of `images_per_seed.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSeedRow {
    /// Architecture.
    pub arch: String,
    /// Depth.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
    /// Pooled r₁.
    pub adjacent_correlation: f64,
    /// Spectral slope.
    pub spectral_slope: f64,
    /// R² of the slope fit.
    pub spectral_slope_r2: f64,
    /// RMS over the path of ‖∂f/∂x‖.
    pub input_grad_norm: f64,
}

/// The arrays of the image part.
#[derive(Clone, Debug)]
pub struct ImageArrays {
    /// Rows of `images_per_seed.csv`.
    pub per_seed: Vec<ImageSeedRow>,
    /// t, (N,).
    pub path: Array1<f64>,
    /// x₀ and x₁, (2, C·H·W).
    pub endpoints: Array2<f64>,
    /// ∂f/∂x of seed 0, (archs, depths, N, C·H·W).
    pub gradients: Array4<f64>,
    /// (archs, depths, seeds, N/2 + 1).
    pub power_spectra: Array4<f64>,
    /// (archs, depths, seeds, max_lag + 1).
    pub autocorrelation: Array4<f64>,
    /// The plane's arrays (with `ImageSummary::plane`).
    pub plane: Option<super::PlaneArrays>,
}

impl ImageArrays {
    /// Write the image files beside the 1-D ones (summary.json is written after).
    pub(crate) fn write(&self, summary: &ImageSummary, dir: &Path) -> Result<()> {
        match (&self.plane, &summary.plane) {
            (Some(a), Some(s)) => a.write(s, dir)?,
            _ => super::PlaneArrays::remove(dir)?,
        }
        write_npy(&dir.join(files::PATH), &self.path)?;
        write_npy(&dir.join(files::ENDPOINTS), &self.endpoints)?;
        write_npy(&dir.join(files::GRADIENTS), &self.gradients)?;
        write_npy(&dir.join(files::POWER_SPECTRA), &self.power_spectra)?;
        write_npy(&dir.join(files::AUTOCORRELATION), &self.autocorrelation)?;
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "r1_mean",
            "r1_std",
            "slope_mean",
            "slope_std",
            "input_grad_norm_mean",
            "seeds",
            "excluded",
            "faults",
        ]);
        for r in &summary.results {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.adjacent_correlation.mean),
                num(r.adjacent_correlation.std),
                num(r.spectral_slope.mean),
                num(r.spectral_slope.std),
                num(r.input_grad_norm.mean),
                r.adjacent_correlation.n.to_string(),
                r.adjacent_correlation.excluded.to_string(),
                r.faults.len().to_string(),
            ]);
        }
        c.write(&dir.join(files::SUMMARY_CSV))?;
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "seed",
            "r1",
            "slope",
            "slope_r2",
            "input_grad_norm",
        ]);
        for r in &self.per_seed {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                r.seed.to_string(),
                num(r.adjacent_correlation),
                num(r.spectral_slope),
                num(r.spectral_slope_r2),
                num(r.input_grad_norm),
            ]);
        }
        c.write(&dir.join(files::PER_SEED_CSV))?;
        let mut c = Csv::new(&["arch", "depth", "layer", "grad_norm_mean"]);
        for r in &summary.results {
            for (l, v) in r.layer_grad_norm_mean.iter().enumerate() {
                c.row(&[r.arch.clone(), r.depth.to_string(), l.to_string(), num(*v)]);
            }
        }
        c.write(&dir.join(files::LAYER_NORMS_CSV))
    }

    /// Remove the image files a previous run may have left.
    pub(crate) fn remove(dir: &Path) -> Result<()> {
        super::PlaneArrays::remove(dir)?;
        remove_stale_files(dir, &files::ALL)
    }

    /// Read the image files, shapes checked against `summary` and `config`.
    pub(crate) fn read(dir: &Path, s: &ImageSummary, c: &ShatteredParams) -> Result<Self> {
        let (na, nd, ns, n) = (
            c.image_archs.len(),
            c.image_depths.len(),
            c.seeds,
            c.image_points,
        );
        let pixels: usize = s.image_shape.iter().product();
        Ok(ImageArrays {
            per_seed: Vec::new(),
            path: read_npy_shaped(&dir.join(files::PATH), &[n])?,
            endpoints: read_npy_shaped(&dir.join(files::ENDPOINTS), &[2, pixels])?,
            gradients: read_npy_shaped(&dir.join(files::GRADIENTS), &[na, nd, n, pixels])?,
            power_spectra: read_npy_shaped(
                &dir.join(files::POWER_SPECTRA),
                &[na, nd, ns, n / 2 + 1],
            )?,
            autocorrelation: read_npy_shaped(
                &dir.join(files::AUTOCORRELATION),
                &[na, nd, ns, s.max_lag + 1],
            )?,
            plane: match &s.plane {
                Some(plane) => Some(super::PlaneArrays::read(dir, plane, c, pixels)?),
                None => None,
            },
        })
    }
}

/// One row per (image arch, depth) in config order.
pub(crate) fn check_summary(s: &ImageSummary, c: &ShatteredParams, path: &Path) -> Result<()> {
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
    match &s.plane {
        Some(plane) => super::plane::check_summary(plane, &s.image_shape, c, path),
        None => Ok(()),
    }
}
