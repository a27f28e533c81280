//! Colour-mapped figures: correlation heatmaps, rasters with a colour bar,
//! and grids of them.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::*;

/// A square matrix as coloured cells on [−1, 1] (correlations).
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// Panel title.
    pub title: String,
    /// Row-major, n × n, already reduced to a drawable size.
    pub values: Vec<f64>,
    /// Rows (and columns) of the matrix.
    pub n: usize,
    /// Axis label and the data range the axis spans.
    pub axis_label: String,
    /// The data range both axes span.
    pub axis_range: (f64, f64),
}

impl Plot for Heatmap {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let (a0, a1) = axis::linear(self.axis_range.0, self.axis_range.1);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, style::PANEL_TITLE_SIZE))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(a0..a1, a0..a1)
            .map_err(|x| e(&x))?;
        let fmt = |v: &f64| format::tick(*v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&self.axis_label)
            .axis_desc_style((FONT, style::LABEL_SIZE))
            .label_style((FONT, style::LABEL_SIZE - 2))
            .x_label_formatter(&fmt)
            .y_label_formatter(&fmt)
            .x_labels(5)
            .y_labels(5)
            .draw()
            .map_err(|x| e(&x))?;
        let step = (a1 - a0) / self.n as f64;
        chart
            .draw_series((0..self.n * self.n).map(|k| {
                let (i, j) = (k / self.n, k % self.n);
                let (x, y) = (a0 + j as f64 * step, a0 + i as f64 * step);
                Rectangle::new(
                    [(x, y), (x + step, y + step)],
                    style::diverging(self.values[k]).filled(),
                )
            }))
            .map_err(|x| e(&x))?;
        Ok(())
    }
}

/// Average an n × n matrix in blocks down to at most `max` × `max` cells.
pub fn reduce_matrix(m: &[f64], n: usize, max: usize) -> (Vec<f64>, usize) {
    let k = n.div_ceil(max).max(1);
    let out_n = n.div_ceil(k);
    let mut out = vec![0.0; out_n * out_n];
    for bi in 0..out_n {
        for bj in 0..out_n {
            let (mut sum, mut cnt) = (0.0, 0usize);
            for i in bi * k..((bi + 1) * k).min(n) {
                for j in bj * k..((bj + 1) * k).min(n) {
                    let v = m[i * n + j];
                    if v.is_finite() {
                        sum += v;
                        cnt += 1;
                    }
                }
            }
            out[bi * out_n + bj] = if cnt > 0 { sum / cnt as f64 } else { f64::NAN };
        }
    }
    (out, out_n)
}

/// A colour bar for [−1, 1], drawn as a thin chart.
pub struct ColorBar {
    /// Description under the bar.
    pub label: String,
    /// The values at the bar's two ends.
    pub range: (f64, f64),
    /// Colour of a position t in [0, 1] along the bar.
    pub color: fn(f64) -> RGBColor,
}

impl ColorBar {
    /// Correlations: blue (−1) → white → red (+1).
    pub fn correlation(label: impl Into<String>) -> Self {
        ColorBar {
            label: label.into(),
            range: (-1.0, 1.0),
            color: |t| style::diverging(2.0 * t - 1.0),
        }
    }

    /// Any quantity on `range`, light to dark.
    pub fn sequential(label: impl Into<String>, range: (f64, f64)) -> Self {
        ColorBar {
            label: label.into(),
            range,
            color: style::ramp,
        }
    }
}

impl Plot for ColorBar {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let (lo, hi) = axis::linear(self.range.0, self.range.1);
        let mut chart = ChartBuilder::on(area)
            .margin(20)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .build_cartesian_2d(lo..hi, 0.0f64..1.0f64)
            .map_err(|x| e(&x))?;
        let fmt = |v: &f64| format::tick(*v);
        chart
            .configure_mesh()
            .disable_mesh()
            .disable_y_axis()
            .x_desc(&self.label)
            .axis_desc_style((FONT, style::LABEL_SIZE))
            .label_style((FONT, style::LABEL_SIZE - 2))
            .x_label_formatter(&fmt)
            .x_labels(5)
            .draw()
            .map_err(|x| e(&x))?;
        let steps = 100;
        let w = (hi - lo) / steps as f64;
        chart
            .draw_series((0..steps).map(|i| {
                let x = lo + i as f64 * w;
                Rectangle::new(
                    [(x, 0.0), (x + w, 1.0)],
                    (self.color)((i as f64 + 0.5) / steps as f64).filled(),
                )
            }))
            .map_err(|x| e(&x))?;
        Ok(())
    }
}

/// A rows × cols matrix of values as coloured cells (e.g. log gradient norm
/// over layer × training step), light to dark over `value_range`; NaN and
/// ±inf are grey.
#[derive(Clone, Debug)]
pub struct Raster {
    /// Panel title.
    pub title: String,
    /// x axis description.
    pub x_label: String,
    /// y axis description.
    pub y_label: String,
    /// Data range of the columns (left edge of the first, right edge of the last).
    pub x_range: (f64, f64),
    /// Rows of the matrix (drawn bottom to top).
    pub rows: usize,
    /// Columns of the matrix.
    pub cols: usize,
    /// Row-major; row 0 is drawn at the bottom.
    pub values: Vec<f64>,
    /// Values at the light and dark ends of the colour scale.
    pub value_range: (f64, f64),
    /// Colour of a position t in [0, 1] of the value range.
    pub color: fn(f64) -> RGBColor,
    /// A dashed horizontal line at this row coordinate (e.g. a critical value).
    pub hline: Option<f64>,
}

impl Plot for Raster {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let (x0, x1) = axis::linear(self.x_range.0, self.x_range.1);
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, style::PANEL_TITLE_SIZE))
            .margin(10)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, 0.0..self.rows as f64)
            .map_err(|x| e(&x))?;
        let fmt = |v: &f64| format::tick(*v);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .axis_desc_style((FONT, style::LABEL_SIZE))
            .label_style((FONT, style::LABEL_SIZE - 2))
            .x_label_formatter(&fmt)
            .y_label_formatter(&|v| format!("{}", *v as usize))
            .x_labels(6)
            .y_labels(6.min(self.rows + 1))
            .draw()
            .map_err(|x| e(&x))?;
        let (lo, hi) = self.value_range;
        let dx = (x1 - x0) / self.cols.max(1) as f64;
        chart
            .draw_series((0..self.rows * self.cols).map(|k| {
                let (r, c) = (k / self.cols, k % self.cols);
                let v = self.values[k];
                // Where v sits on the scale; NaN (v or an infinite scale) is grey.
                let t = if hi > lo {
                    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.5
                };
                let color = if v.is_finite() && t.is_finite() {
                    (self.color)(t)
                } else {
                    RGBColor(160, 160, 160)
                };
                let x = x0 + c as f64 * dx;
                Rectangle::new([(x, r as f64), (x + dx, r as f64 + 1.0)], color.filled())
            }))
            .map_err(|x| e(&x))?;
        if let Some(y) = self.hline {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0, y), (x1, y)],
                    8,
                    5,
                    ShapeStyle::from(&style::THEORY).stroke_width(3),
                ))
                .map_err(|x| e(&x))?;
        }
        Ok(())
    }
}

/// Heatmaps (or rasters) in a grid with one shared colour bar underneath.
pub struct HeatmapGrid<P: Plot = Heatmap> {
    /// Title over the grid.
    pub title: String,
    /// Rows of maps.
    pub rows: usize,
    /// Columns of maps.
    pub cols: usize,
    /// The maps, row by row.
    pub maps: Vec<P>,
    /// The colour bar under the grid.
    pub bar: ColorBar,
}

impl<P: Plot> Plot for HeatmapGrid<P> {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let body = area
            .titled(&self.title, (FONT, style::TITLE_SIZE))
            .map_err(|e| e.to_string())?;
        let (_, h) = body.dim_in_pixel();
        let (grid, bar) = body.split_vertically(h.saturating_sub(90));
        for (cell, m) in grid
            .split_evenly((self.rows, self.cols))
            .iter()
            .zip(&self.maps)
        {
            m.draw(cell)?;
        }
        let (w, _) = bar.dim_in_pixel();
        let margin = w / 4;
        let (_, rest) = bar.split_horizontally(margin);
        let (mid, _) = rest.split_horizontally(w - 2 * margin);
        self.bar.draw(&mid)
    }
}
