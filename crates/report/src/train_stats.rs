//! The gradient statistics of training (`train_stats.csv`) as layer × step
//! maps, one panel per run on one colour scale: what the training
//! (degradation) and trainability reports show of GSNR, update size and
//! distance from initialisation.

use std::path::Path;

use gradscope_contract::train_stats::StatsRow;

use crate::doc::{Block, Doc};
use crate::figure::{ColorBar, HeatmapGrid, Raster, save};
use crate::{Result, style};

/// One run's rows of `train_stats.csv`, titled.
pub struct StatsPanel<'a> {
    /// The panel's title (the run).
    pub title: String,
    /// The run's rows.
    pub rows: Vec<&'a StatsRow>,
}

/// The statistics the reports map: (column of `train_stats.csv`, colour-bar
/// label, figure file name).
pub const MAPPED: [(&str, &str, &str); 3] = [
    ("gsnr", "log₁₀ GSNR ‖E g‖²/E‖g − E g‖²", "gsnr_heatmaps"),
    ("update_size", "log₁₀ ‖Δθ‖/‖θ‖", "update_size_heatmaps"),
    (
        "distance_from_init",
        "log₁₀ ‖θ − θ₀‖/‖θ₀‖",
        "distance_heatmaps",
    ),
];

/// The runs a figure shows: `title` names them in its title (`depth 32
/// (seed 0)`), `caption` in its caption (`seed 0 of each net`); at most
/// `cols` panels a row.
pub struct Runs<'a> {
    /// In the title.
    pub title: &'a str,
    /// In the caption.
    pub caption: &'a str,
    /// Panels per row (at most).
    pub cols: usize,
}

/// Each statistic of [`MAPPED`] as a figure of `panels`; nothing when no
/// panel has rows.
pub fn push_maps(
    doc: &mut Doc,
    panels: &[StatsPanel<'_>],
    runs: &Runs<'_>,
    dir: &Path,
) -> Result<()> {
    for (column, label, name) in MAPPED {
        if let Some(fig) = stats_maps(panels, column, label, name, runs, dir)? {
            doc.push(fig);
        }
    }
    Ok(())
}

/// Layer × step maps of one statistic (log₁₀ of `column`), one panel per
/// run with rows; `None` when none has.
fn stats_maps(
    panels: &[StatsPanel<'_>],
    column: &str,
    label: &str,
    name: &str,
    runs: &Runs<'_>,
    dir: &Path,
) -> Result<Option<Block>> {
    let mut rasters = Vec::new();
    for p in panels {
        let mut steps: Vec<usize> = p.rows.iter().map(|r| r.step).collect();
        steps.sort_unstable();
        steps.dedup();
        let layers = p.rows.iter().map(|r| r.layer + 1).max().unwrap_or(0);
        if steps.is_empty() || layers == 0 {
            continue;
        }
        let mut values = vec![f64::NAN; layers * steps.len()];
        for r in &p.rows {
            let c = steps.binary_search(&r.step).expect("listed");
            values[r.layer * steps.len() + c] = r.get(column).unwrap_or(f64::NAN).log10();
        }
        let (first, last) = (steps[0] as f64, steps[steps.len() - 1] as f64);
        let dx = if steps.len() > 1 {
            (last - first) / (steps.len() - 1) as f64
        } else {
            1.0
        };
        rasters.push(Raster {
            title: p.title.clone(),
            x_label: "step".into(),
            y_label: "layer".into(),
            x_range: (first - dx / 2.0, last + dx / 2.0),
            rows: layers,
            cols: steps.len(),
            values,
            value_range: (0.0, 0.0),
            color: style::ramp,
            hline: None,
        });
    }
    if rasters.is_empty() {
        return Ok(None);
    }
    let mut finite: Vec<f64> = rasters
        .iter()
        .flat_map(|r| r.values.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    finite.sort_by(f64::total_cmp);
    // The 2nd and 98th percentiles, so one outlying layer does not wash out the rest.
    let q = |p: f64| finite[((finite.len() - 1) as f64 * p).round() as usize];
    let range = if finite.is_empty() {
        (-1.0, 1.0)
    } else if q(0.02) < q(0.98) {
        (q(0.02), q(0.98))
    } else {
        (q(0.5) - 1.0, q(0.5) + 1.0)
    };
    for r in &mut rasters {
        r.value_range = range;
    }
    let cols = runs.cols.clamp(1, rasters.len());
    let rows = rasters.len().div_ceil(cols);
    let files = save(
        &HeatmapGrid {
            title: format!("{label} by layer and step, {}", runs.title),
            rows,
            cols,
            maps: rasters,
            bar: ColorBar::sequential(label, range),
        },
        dir,
        name,
        (560 * cols as u32, 400 * rows as u32 + 150),
    )?;
    Ok(Some(Block::figure(
        files,
        format!("{label} by layer and training step of each run"),
        format!(
            "{label} of each layer (stem at the bottom, head at the top) at each recorded step, {}; one colour scale for all panels, from the 2nd to the 98th percentile of the values. Grey: not defined (a layer initialised at zero has no relative distance; a gain has no per-example Gram matrix).",
            runs.caption
        ),
    )))
}
