//! The landscape study's cells summarised into its data contract: the
//! arrays per (arch, depth, seed), and per (arch, depth) the means and
//! spreads over seeds the report compares.

use gradscope_stats::MeanStd;
use ndarray::s;

use super::smoothness::AlongGradient;
use super::study::{
    CellOutput, LandscapeConfig, LandscapeResults, LandscapeRow, LandscapeSummary, NAME,
    PointOutput, PointSummary, SCHEMA, SmoothnessSummary, hessian_method, nan_arrays, over_seeds,
};
use super::surface::symmetric_grid;
use crate::Result;
use crate::provenance::Provenance;

/// Mean of the finite values (NaN when there are none).
fn finite_mean(v: impl IntoIterator<Item = f64>) -> f64 {
    MeanStd::of(v).mean
}

fn point_summary(points: &[Option<&PointOutput>], ratio_points: usize) -> PointSummary {
    let of =
        |f: &dyn Fn(&PointOutput) -> f64| over_seeds(points.iter().map(|p| p.map_or(f64::NAN, f)));
    let centre = (ratio_points * ratio_points) / 2;
    let at_centre = |p: &PointOutput| p.extremes.get(centre).copied();
    PointSummary {
        loss: of(&|p| p.loss),
        curvature: of(&|p| p.curvature),
        surface_rise: of(&|p| finite_mean(p.surface.iter().map(|v| v - p.loss))),
        ratio_origin: of(&|p| at_centre(p).map_or(f64::NAN, |e| e.ratio())),
        ratio_max: of(&|p| {
            p.extremes
                .iter()
                .map(|e| e.ratio())
                .fold(f64::NAN, f64::max)
        }),
        lambda_max: of(&|p| at_centre(p).map_or(f64::NAN, |e| e.max)),
    }
}

/// One measurement as the columns of `smoothness.npy`.
fn columns(m: &AlongGradient, step_sizes: &[f64]) -> [f64; 5] {
    [
        m.loss,
        m.grad_norm,
        m.loss_variation(),
        m.gradient_predictiveness(),
        m.beta_smoothness(step_sizes),
    ]
}

/// Summarise the cells (in the order of `config.cells()`).
pub(super) fn summarise(
    config: &LandscapeConfig,
    outputs: Vec<CellOutput>,
    provenance: Provenance,
) -> Result<LandscapeResults> {
    let p = config.params();
    let shape = config.shape();
    let k = shape.seeds;
    let mut arrays = nan_arrays(p, shape.rows.len(), shape.measured_at.len());
    let mut rows = Vec::with_capacity(shape.rows.len());
    for (r, ((arch, depth), cells)) in shape.rows.iter().zip(outputs.chunks(k)).enumerate() {
        for (seed, out) in cells.iter().enumerate() {
            for (phase, point) in out.points.iter().enumerate() {
                let Some(pt) = point else { continue };
                for (d, c) in pt.curves.iter().enumerate() {
                    for (i, v) in c.iter().enumerate() {
                        arrays.curves[[r, seed, phase, d, i]] = *v;
                    }
                }
                let n = p.surface_points;
                for (i, v) in pt.surface.iter().enumerate() {
                    arrays.surfaces[[r, seed, phase, i / n, i % n]] = *v;
                }
                let n = p.ratio_points;
                for (i, e) in pt.extremes.iter().enumerate() {
                    arrays.eigenvalues[[r, seed, phase, i / n, i % n, 0]] = e.min;
                    arrays.eigenvalues[[r, seed, phase, i / n, i % n, 1]] = e.max;
                }
            }
            for (m, measure) in out.run.measures.iter().enumerate() {
                for (col, v) in columns(measure, &p.step_sizes).iter().enumerate() {
                    arrays.smoothness[[r, seed, m, col]] = *v;
                }
            }
        }
        let phase = |i: usize| -> Vec<Option<&PointOutput>> {
            cells.iter().map(|c| c.points[i].as_ref()).collect()
        };
        let per_seed = |col: usize| {
            over_seeds((0..k).map(|seed| {
                finite_mean(
                    arrays
                        .smoothness
                        .slice(s![r, seed, .., col])
                        .iter()
                        .copied(),
                )
            }))
        };
        rows.push(LandscapeRow {
            arch: arch.clone(),
            depth: *depth,
            parameters: cells.first().map_or(0, |c| c.parameters),
            init: point_summary(&phase(0), p.ratio_points),
            trained: point_summary(&phase(1), p.ratio_points),
            smoothness: SmoothnessSummary {
                loss_variation: per_seed(2),
                gradient_predictiveness: per_seed(3),
                beta_smoothness: per_seed(4),
            },
            diverged: cells.iter().filter(|c| c.run.diverged_at.is_some()).count(),
        });
    }
    Ok(LandscapeResults {
        summary: LandscapeSummary {
            schema: SCHEMA.into(),
            study: NAME.into(),
            provenance,
            config: p.clone(),
            bn_mode: gradscope_nets::BnMode::Full.name().into(),
            hessian: hessian_method(),
            measured_at: shape.measured_at,
            curve_grid: symmetric_grid(p.curve_points, p.extent),
            surface_grid: symmetric_grid(p.surface_points, p.extent),
            ratio_grid: symmetric_grid(p.ratio_points, p.extent),
            rows,
        },
        arrays,
    })
}
