//! A shattered folder read back and checked: every array has the shape the
//! summary implies, and the summary has a row for every (arch, depth) it
//! configures, so a reader can index them without checking again.

use std::path::Path;

use ndarray::{Array1, Array3, Array4, Axis, s};

use super::{DepthSummary, SCHEMA, ShatteredSummary, files};
use crate::Result;
use crate::io::{ensure, read_npy_shaped, read_summary};

/// The arrays of a study folder, read back (for reports and notebooks).
#[derive(Clone, Debug)]
pub struct ShatteredData {
    /// The summary.
    pub summary: ShatteredSummary,
    /// The input grid, (N,).
    pub grid: Array1<f64>,
    /// df/dx, (archs, depths, seeds, N).
    pub input_gradients: Array4<f64>,
    /// Power spectra, (archs, depths, seeds, N/2 + 1).
    pub power_spectra: Array4<f64>,
    /// Autocorrelation functions, (archs, depths, seeds, max_lag + 1).
    pub autocorrelation: Array4<f64>,
    /// Correlation across seeds, (archs, depths, N, N); absent with one seed.
    pub correlation: Option<Array4<f32>>,
    /// Calibration noise, (2, seeds, N).
    pub noise: Array3<f64>,
    /// The nets on images' arrays, when the run had any (`summary.images`).
    pub images: Option<super::ImageArrays>,
}

impl ShatteredData {
    /// Read a study folder written by [`ShatteredResults::write`](super::ShatteredResults::write),
    /// refusing one whose files disagree with its summary.
    pub fn read(dir: &Path) -> Result<Self> {
        let summary = read_checked_summary(dir)?;
        let c = &summary.config;
        let (na, nd, ns, n) = (c.archs.len(), c.depths.len(), c.seeds, c.points);
        let lags = c.max_lag.unwrap_or(0) + 1;
        let corr_path = dir.join(files::CORRELATION);
        Ok(ShatteredData {
            grid: read_npy_shaped(&dir.join(files::GRID), &[n])?,
            input_gradients: read_npy_shaped(&dir.join(files::INPUT_GRADIENTS), &[na, nd, ns, n])?,
            power_spectra: read_npy_shaped(
                &dir.join(files::POWER_SPECTRA),
                &[na, nd, ns, n / 2 + 1],
            )?,
            autocorrelation: read_npy_shaped(
                &dir.join(files::AUTOCORRELATION),
                &[na, nd, ns, lags],
            )?,
            correlation: if corr_path.exists() {
                Some(read_npy_shaped(&corr_path, &[na, nd, n, n])?)
            } else {
                None
            },
            noise: read_npy_shaped(&dir.join(files::NOISE), &[2, ns, n])?,
            images: match &summary.images {
                Some(s) => Some(super::ImageArrays::read(dir, s, c)?),
                None => None,
            },
            summary,
        })
    }

    /// Index of an arch in the config, by its string.
    pub fn arch_index(&self, arch: &str) -> Option<usize> {
        self.summary
            .config
            .archs
            .iter()
            .position(|a| a.to_string() == arch)
    }

    /// Position of `depth` in the configured depths.
    pub fn depth_index(&self, depth: usize) -> Option<usize> {
        self.summary.config.depths.iter().position(|&d| d == depth)
    }

    /// The summary of (arch, depth), if it was run.
    pub fn result(&self, arch: &str, depth: usize) -> Option<&DepthSummary> {
        self.summary
            .results
            .iter()
            .find(|r| r.arch == arch && r.depth == depth)
    }
}

/// Mean over seeds of a (archs, depths, seeds, k) array, for one (arch, depth).
///
/// # Panics
/// With no seeds, or indices out of range: a folder read by
/// [`ShatteredData::read`] has at least one seed and every configured index.
pub fn seed_mean(a: &Array4<f64>, arch: usize, depth: usize) -> Array1<f64> {
    a.slice(s![arch, depth, .., ..])
        .mean_axis(Axis(0))
        .expect("at least one seed")
}

/// `summary.json` of `dir`, with the checks [`ShatteredData::read`] relies on.
fn read_checked_summary(dir: &Path) -> Result<ShatteredSummary> {
    let path = dir.join(files::SUMMARY);
    let s: ShatteredSummary = read_summary(&path, SCHEMA, |s: &ShatteredSummary| &s.schema)?;
    check_summary(&s, &path)?;
    Ok(s)
}

/// The summary's own consistency: what its config promises, its rows hold.
pub(crate) fn check_summary(s: &ShatteredSummary, path: &Path) -> Result<()> {
    let c = &s.config;
    ensure(!c.archs.is_empty() && !c.depths.is_empty(), path, || {
        "the config lists no arch or no depth".into()
    })?;
    ensure(c.seeds >= 1, path, || "the config has no seeds".into())?;
    ensure(c.points >= 16, path, || {
        format!("{} grid points, fewer than 16", c.points)
    })?;
    ensure(c.max_lag.is_some(), path, || {
        "the config has no max_lag (not written by a run)".into()
    })?;
    ensure(s.references.len() == 2, path, || {
        format!(
            "{} noise references, expected 2 (white, brown)",
            s.references.len()
        )
    })?;
    ensure(s.fits.len() == c.archs.len(), path, || {
        format!("{} fits for {} archs", s.fits.len(), c.archs.len())
    })?;
    if let Some(images) = &s.images {
        super::images::check_summary(images, c, path)?;
    }
    check_rows(&s.results, c, path)
}

/// One row per (arch, depth) in config order, each with a norm per hidden state.
pub(crate) fn check_rows(
    rows: &[DepthSummary],
    c: &super::ShatteredParams,
    path: &Path,
) -> Result<()> {
    ensure(rows.len() == c.archs.len() * c.depths.len(), path, || {
        format!(
            "{} results for {} archs × {} depths",
            rows.len(),
            c.archs.len(),
            c.depths.len()
        )
    })?;
    let cells = c
        .archs
        .iter()
        .flat_map(|a| c.depths.iter().map(move |&d| (a.to_string(), d)));
    for (r, (arch, depth)) in rows.iter().zip(cells) {
        ensure(r.arch == arch && r.depth == depth, path, || {
            format!(
                "result ({}, depth {}) where ({arch}, depth {depth}) belongs",
                r.arch, r.depth
            )
        })?;
        let hidden = depth + 1;
        ensure(
            [
                r.layer_grad_norm_mean.len(),
                r.layer_grad_norm_std.len(),
                r.activation_norm_mean.len(),
            ]
            .iter()
            .all(|&n| n == hidden),
            path,
            || format!("({arch}, depth {depth}) needs {hidden} per-layer norms"),
        )?;
    }
    Ok(())
}
