//! The check shared by the studies' image parts: an image shape, and one
//! result per (image arch, depth) in config order.

use std::path::Path;

use gradscope_spec::ModelArch;

use crate::Result;
use crate::io::ensure;

/// `shape` is (channels, height, width) and `results` (each result's arch
/// and depth, in order) are the cells of `archs` × `depths`, arch-major.
pub(crate) fn check_image_cells(
    shape: &[usize],
    results: &[(&str, usize)],
    archs: &[ModelArch],
    depths: &[usize],
    path: &Path,
) -> Result<()> {
    ensure(shape.len() == 3, path, || {
        format!("image shape {shape:?}, expected (channels, height, width)")
    })?;
    ensure(results.len() == archs.len() * depths.len(), path, || {
        format!(
            "{} image results for {} archs × {} depths",
            results.len(),
            archs.len(),
            depths.len()
        )
    })?;
    let cells = archs
        .iter()
        .flat_map(|a| depths.iter().map(move |&d| (a.to_string(), d)));
    for (&(r_arch, r_depth), (arch, depth)) in results.iter().zip(cells) {
        ensure(r_arch == arch && r_depth == depth, path, || {
            format!(
                "image result ({r_arch}, depth {r_depth}) where ({arch}, depth {depth}) belongs"
            )
        })?;
    }
    Ok(())
}
