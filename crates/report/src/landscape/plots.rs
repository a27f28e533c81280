//! The landscape report's two plot kinds: a surface as coloured cells with
//! contour lines at shared levels, and curves with shaded seed bands.

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::figure::Plot;
use crate::format;
use crate::style::{self, FONT};

/// A surface z(a, b) on a square grid: cells coloured on a shared scale and
/// contour lines at shared levels (marching squares), the centre marked.
#[derive(Clone, Debug)]
pub struct Contour {
    /// Panel title.
    pub title: String,
    /// Coordinates along both axes (the grid is square).
    pub grid: Vec<f64>,
    /// Row-major values; row i is a = gridᵢ (x axis), column j is b = gridⱼ (y axis).
    pub values: Vec<f64>,
    /// Values at the light and dark ends of the colour scale.
    pub range: (f64, f64),
    /// Levels of the contour lines.
    pub levels: Vec<f64>,
    /// x and y axis descriptions.
    pub labels: (String, String),
}

impl Contour {
    fn at(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.grid.len() + j]
    }

    /// The contour segments at `level`, in data coordinates.
    pub fn segments(&self, level: f64) -> Vec<[(f64, f64); 2]> {
        let n = self.grid.len();
        let g = &self.grid;
        let mut out = Vec::new();
        for i in 0..n.saturating_sub(1) {
            for j in 0..n.saturating_sub(1) {
                // Corners counter-clockwise: (i,j), (i+1,j), (i+1,j+1), (i,j+1).
                let c = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
                let v: Vec<f64> = c.iter().map(|&(a, b)| self.at(a, b)).collect();
                if v.iter().any(|x| !x.is_finite()) {
                    continue;
                }
                // Where the level crosses each edge.
                let mut cuts = Vec::new();
                for e in 0..4 {
                    let (p, q) = (e, (e + 1) % 4);
                    if (v[p] < level) != (v[q] < level) {
                        let t = (level - v[p]) / (v[q] - v[p]);
                        let (pa, pb) = (g[c[p].0], g[c[p].1]);
                        let (qa, qb) = (g[c[q].0], g[c[q].1]);
                        cuts.push((pa + t * (qa - pa), pb + t * (qb - pb)));
                    }
                }
                // Two cuts: one segment; four (a saddle): pair them in order.
                for pair in cuts.chunks(2).filter(|p| p.len() == 2) {
                    out.push([pair[0], pair[1]]);
                }
            }
        }
        out
    }
}

impl Plot for Contour {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let n = self.grid.len();
        let (lo, hi) = (self.grid[0], self.grid[n - 1]);
        let half = (hi - lo) / (n - 1).max(1) as f64 / 2.0;
        let (x0, x1) = (lo - half, hi + half);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, style::PANEL_TITLE_SIZE))
            .margin(8)
            .x_label_area_size(42)
            .y_label_area_size(48)
            .build_cartesian_2d(x0..x1, x0..x1)
            .map_err(|x| e(&x))?;
        let fmt = |v: &f64| format::tick(*v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&self.labels.0)
            .y_desc(&self.labels.1)
            .axis_desc_style((FONT, style::LABEL_SIZE))
            .label_style((FONT, style::LABEL_SIZE - 2))
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .x_labels(5)
            .y_labels(5)
            .draw()
            .map_err(|x| e(&x))?;
        let (vlo, vhi) = self.range;
        chart
            .draw_series((0..n * n).map(|k| {
                let (i, j) = (k / n, k % n);
                let v = self.at(i, j);
                let t = ((v - vlo) / (vhi - vlo)).clamp(0.0, 1.0);
                let color = if v.is_finite() && t.is_finite() {
                    style::ramp(t)
                } else {
                    RGBColor(160, 160, 160)
                };
                let (a, b) = (self.grid[i], self.grid[j]);
                Rectangle::new([(a - half, b - half), (a + half, b + half)], color.filled())
            }))
            .map_err(|x| e(&x))?;
        for &level in &self.levels {
            chart
                .draw_series(
                    self.segments(level).into_iter().map(|[p, q]| {
                        PathElement::new(vec![p, q], BLACK.mix(0.75).stroke_width(1))
                    }),
                )
                .map_err(|x| e(&x))?;
        }
        chart
            .draw_series(std::iter::once(Cross::new(
                (0.0, 0.0),
                6,
                WHITE.stroke_width(2),
            )))
            .map_err(|x| e(&x))?;
        Ok(())
    }
}

/// (x, mean, low, high) of one point of a band.
pub type BandPoint = (f64, f64, f64, f64);

/// One curve with its band.
#[derive(Clone, Debug)]
pub struct Band {
    /// Legend entry.
    pub label: String,
    /// Line and band colour.
    pub color: RGBColor,
    /// The points, in x order.
    pub points: Vec<BandPoint>,
}

/// Curves with shaded bands (mean and its spread over seeds) on linear axes.
#[derive(Clone, Debug)]
pub struct BandChart {
    /// Panel title.
    pub title: String,
    /// x axis description.
    pub x_label: String,
    /// y axis description.
    pub y_label: String,
    /// The curves.
    pub bands: Vec<Band>,
    /// Draw the legend.
    pub legend: bool,
}

impl BandChart {
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let pts = self.bands.iter().flat_map(|b| &b.points);
        let finite: Vec<&(f64, f64, f64, f64)> =
            pts.filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
        let fold = |f: &dyn Fn(&BandPoint) -> [f64; 2]| {
            finite
                .iter()
                .flat_map(|p| f(p))
                .filter(|v| v.is_finite())
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                    (a.min(v), b.max(v))
                })
        };
        let xs = fold(&|p| [p.0, p.0]);
        let ys = fold(&|p| [p.2.min(p.1), p.3.max(p.1)]);
        let fix = |(a, b): (f64, f64)| {
            if !a.is_finite() {
                (0.0, 1.0)
            } else if a == b {
                (a - 0.5, b + 0.5)
            } else {
                let pad = 0.05 * (b - a);
                (a - pad, b + pad)
            }
        };
        let (x, y) = (fix(xs), fix(ys));
        // The x data range itself, without padding.
        (
            if xs.0.is_finite() && xs.0 < xs.1 {
                xs
            } else {
                x
            },
            y,
        )
    }
}

impl Plot for BandChart {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, style::PANEL_TITLE_SIZE))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|x| e(&x))?;
        let fmt = |v: &f64| format::tick(*v);
        chart
            .configure_mesh()
            .light_line_style(style::GRID.mix(0.0))
            .bold_line_style(style::GRID)
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style((FONT, style::AXIS_DESC_SIZE))
            .label_style((FONT, style::LABEL_SIZE))
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .x_labels(6)
            .y_labels(6)
            .draw()
            .map_err(|x| e(&x))?;
        for b in &self.bands {
            let ok: Vec<&BandPoint> = b
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            let mut outline: Vec<(f64, f64)> = ok
                .iter()
                .map(|p| (p.0, if p.3.is_finite() { p.3 } else { p.1 }))
                .collect();
            outline.extend(
                ok.iter()
                    .rev()
                    .map(|p| (p.0, if p.2.is_finite() { p.2 } else { p.1 })),
            );
            chart
                .draw_series(std::iter::once(Polygon::new(
                    outline,
                    b.color.mix(0.18).filled(),
                )))
                .map_err(|x| e(&x))?;
            let color = b.color;
            chart
                .draw_series(LineSeries::new(
                    ok.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?
                .label(&b.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
        }
        if self.legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, style::LEGEND_SIZE))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .draw()
                .map_err(|x| e(&x))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contour_segments_of_a_cone_lie_on_its_circle() {
        let grid: Vec<f64> = (0..21).map(|i| -1.0 + i as f64 * 0.1).collect();
        let values = grid
            .iter()
            .flat_map(|a| grid.iter().map(move |b| (a * a + b * b).sqrt()))
            .collect();
        let c = Contour {
            title: String::new(),
            grid,
            values,
            range: (0.0, 1.5),
            levels: vec![0.5],
            labels: (String::new(), String::new()),
        };
        let segs = c.segments(0.5);
        assert!(segs.len() > 20);
        for s in &segs {
            for &(a, b) in s {
                // Linear interpolation of r between grid points: within a cell's reach.
                assert!(((a * a + b * b).sqrt() - 0.5).abs() < 0.02, "{a} {b}");
            }
        }
        assert!(c.segments(2.0).is_empty());
    }
}
