//! A correlation folder read back and checked: every array has the shape the
//! summary implies, and every result row as many distance bins as the edges
//! bound, so a reader can index them without checking again.

use std::path::Path;

use ndarray::{Array1, Array4, Array5};

use super::{CorrelationSummary, SCHEMA, files};
use crate::Result;
use crate::io::{ensure, read_npy_shaped, read_summary};

/// A study folder read back (for reports and notebooks).
#[derive(Clone, Debug)]
pub struct CorrelationData {
    /// The summary.
    pub summary: CorrelationSummary,
    /// Grid coordinates, (H,).
    pub axis: Array1<f64>,
    /// ∂f/∂x₁ pictures, (archs, depths, seeds, H, H).
    pub pictures: Array5<f64>,
    /// ‖∇ₓf‖ pictures, (archs, depths, seeds, H, H).
    pub norm_pictures: Array5<f64>,
    /// Radial power spectra, (archs, depths, seeds, H/2 + 1).
    pub radial_spectra: Array4<f64>,
    /// Cosine matrices of seed 0, (archs, depths, B, B).
    pub cosines: Array4<f32>,
    /// The image nets' cosine matrices of seed 0, (image archs, image
    /// depths, B, B), with `summary.images`.
    pub image_cosines: Option<Array4<f32>>,
}

impl CorrelationData {
    /// Read a study folder written by a run, refusing one whose files
    /// disagree with its summary.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(files::SUMMARY);
        let summary: CorrelationSummary =
            read_summary(&path, SCHEMA, |s: &CorrelationSummary| &s.schema)?;
        check(&summary, &path)?;
        let c = &summary.config;
        let (na, nd, ns, n, b) = (c.archs.len(), c.depths.len(), c.seeds, c.side, c.examples);
        let image_cosines = match &summary.images {
            Some(_) => Some(read_npy_shaped(
                &dir.join(super::images::files::COSINES),
                &[
                    c.image_archs.len(),
                    c.image_depths.len(),
                    c.image_batch,
                    c.image_batch,
                ],
            )?),
            None => None,
        };
        Ok(CorrelationData {
            image_cosines,
            axis: read_npy_shaped(&dir.join(files::AXIS), &[n])?,
            pictures: read_npy_shaped(&dir.join(files::PICTURES), &[na, nd, ns, n, n])?,
            norm_pictures: read_npy_shaped(&dir.join(files::NORM_PICTURES), &[na, nd, ns, n, n])?,
            radial_spectra: read_npy_shaped(
                &dir.join(files::RADIAL_SPECTRA),
                &[na, nd, ns, n / 2 + 1],
            )?,
            cosines: read_npy_shaped(&dir.join(files::COSINES), &[na, nd, b, b])?,
            summary,
        })
    }
}

/// One result per (arch, depth) in config order, each with a cosine per distance bin.
fn check(s: &CorrelationSummary, path: &Path) -> Result<()> {
    let c = &s.config;
    ensure(!c.archs.is_empty() && !c.depths.is_empty(), path, || {
        "the config lists no arch or no depth".into()
    })?;
    ensure(c.seeds >= 1 && c.examples >= 1, path, || {
        "the config has no seeds or no examples".into()
    })?;
    ensure(s.distance_edges.len() == c.distance_bins + 1, path, || {
        format!(
            "{} distance edges for {} bins",
            s.distance_edges.len(),
            c.distance_bins
        )
    })?;
    ensure(
        s.results.len() == c.archs.len() * c.depths.len(),
        path,
        || {
            format!(
                "{} results for {} archs × {} depths",
                s.results.len(),
                c.archs.len(),
                c.depths.len()
            )
        },
    )?;
    let cells = c
        .archs
        .iter()
        .flat_map(|a| c.depths.iter().map(move |&d| (a.to_string(), d)));
    for (r, (arch, depth)) in s.results.iter().zip(cells) {
        ensure(r.arch == arch && r.depth == depth, path, || {
            format!(
                "result ({}, depth {}) where ({arch}, depth {depth}) belongs",
                r.arch, r.depth
            )
        })?;
        ensure(
            r.cosine_by_distance_mean.len() == c.distance_bins,
            path,
            || {
                format!(
                    "({arch}, depth {depth}) has {} distance bins, expected {}",
                    r.cosine_by_distance_mean.len(),
                    c.distance_bins
                )
            },
        )?;
    }
    if let Some(images) = &s.images {
        super::images::check_summary(images, c, path)?;
    }
    Ok(())
}
