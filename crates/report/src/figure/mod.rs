//! Figures: each kind of plot is a value that draws itself on any plotters
//! backend, saved side by side as PNG, SVG and PDF (the SVG's vector
//! drawing, for papers).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::axis;
use crate::format;
use crate::style::{self, FONT};
use crate::{ReportError, Result};

mod draw;
mod heatmap;
mod legend;
mod table_map;
pub mod ticks;
use draw::draw_chart;
pub use heatmap::{ColorBar, Heatmap, HeatmapGrid, Raster, reduce_matrix};
pub use legend::LegendEntry;
pub use table_map::TableMap;

/// Anything that can draw itself into a drawing area.
pub trait Plot {
    /// Draw into `area`; plotters' errors come back as text.
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;

    /// Entries of a legend drawn beside the plot rather than over its data
    /// (none: the plot has no such legend).
    fn side_legend(&self) -> Vec<LegendEntry> {
        Vec::new()
    }

    /// Draw the plot without its side legend (a grid of panels draws one
    /// legend for all of them).
    fn draw_plot<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        self.draw(area)
    }
}

/// The two files of a saved figure, relative to the report folder.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureFiles {
    /// The PNG file name.
    pub png: String,
    /// The SVG file name.
    pub svg: String,
    /// The PDF file name (the SVG converted, fonts embedded).
    pub pdf: String,
}

/// Draw `plot` to `dir/name.png`, `dir/name.svg` and `dir/name.pdf`, each
/// written atomically.
pub fn save(plot: &impl Plot, dir: &Path, name: &str, size: (u32, u32)) -> Result<FigureFiles> {
    style::register_fonts();
    let png = dir.join(format!("{name}.png"));
    let svg = dir.join(format!("{name}.svg"));
    let draw_err = |path: &Path, reason: String| ReportError::Draw {
        path: path.to_path_buf(),
        reason,
    };

    // PNG: the encoder picks the format from the extension, so the temp name ends in .png.
    // An unguessable name: plotters creates the file itself, following any symlink.
    let tmp_png: PathBuf = dir.join(format!(
        "{}.png",
        gradscope_contract::io::temp_name(&format!("{name}.png"))
    ));
    gradscope_contract::fault::point(&png).map_err(|e| ReportError::Io {
        path: png.clone(),
        source: e,
    })?;
    {
        let root = BitMapBackend::new(&tmp_png, size).into_drawing_area();
        let r = root
            .fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| plot.draw(&root))
            .and_then(|_| root.present().map_err(|e| e.to_string()));
        if let Err(e) = r {
            let _ = std::fs::remove_file(&tmp_png);
            return Err(draw_err(&png, e));
        }
    }
    // plotters wrote the temp file; make it durable before it takes the name.
    std::fs::File::open(&tmp_png)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp_png, &png))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp_png);
            ReportError::Io {
                path: png.clone(),
                source: e,
            }
        })?;

    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|_| plot.draw(&root))
            .and_then(|_| root.present().map_err(|e| e.to_string()))
            .map_err(|e| draw_err(&svg, e))?;
    }
    gradscope_contract::io::write_atomic(&svg, text.as_bytes())?;
    let pdf = dir.join(format!("{name}.pdf"));
    let bytes = pdf_of(&text).map_err(|e| draw_err(&pdf, e))?;
    gradscope_contract::io::write_atomic(&pdf, &bytes)?;
    Ok(FigureFiles {
        png: format!("{name}.png"),
        svg: format!("{name}.svg"),
        pdf: format!("{name}.pdf"),
    })
}

/// An SVG figure as a one-page PDF: vector paths, and the text set in the
/// embedded DejaVu Sans (the fonts the PNG is drawn with), subset into the
/// file, so no system fonts or tools are needed.
fn pdf_of(svg: &str) -> std::result::Result<Vec<u8>, String> {
    use svg2pdf::usvg;
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_font_data(dejavu::sans::regular().to_vec());
    fonts.load_font_data(dejavu::sans::bold().to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions::default(),
    )
    .map_err(|e| e.to_string())
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mark {
    /// A solid line.
    Line,
    /// A dashed line (theory curves).
    Dashed,
    /// Markers only.
    Points,
    /// A line with markers.
    LinePoints,
    /// Open markers only (points a fit left out).
    Hollow,
}

#[derive(Clone, Debug)]
/// One curve of a chart.
pub struct Series {
    /// Legend entry; none keeps it out of the legend.
    pub label: Option<String>,
    /// (x, y) points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// ± error per point (drawn as vertical bars).
    pub error: Option<Vec<f64>>,
    /// Line and marker colour.
    pub color: RGBColor,
    /// How the points are drawn.
    pub mark: Mark,
    /// Line width in pixels.
    pub width: u32,
}

impl Series {
    /// A solid line through `points`.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Self {
        Series {
            label: Some(label.into()),
            points,
            error: None,
            color,
            mark: Mark::Line,
            width: 2,
        }
    }

    /// Draw it as `mark`.
    pub fn mark(mut self, mark: Mark) -> Self {
        self.mark = mark;
        self
    }

    /// Error bars: ± e per point.
    pub fn errors(mut self, e: Vec<f64>) -> Self {
        self.error = Some(e);
        self
    }

    /// Line width in pixels.
    pub fn width(mut self, w: u32) -> Self {
        self.width = w;
        self
    }

    /// Keep it out of the legend.
    pub fn unlabelled(mut self) -> Self {
        self.label = None;
        self
    }
}

/// Where the legend sits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Legend {
    /// Beside the plot, to its right, never over the data (the default).
    Outside,
    /// Legend box at the upper right.
    UpperRight,
    /// Legend box at the upper left.
    UpperLeft,
    /// Legend box at the lower left.
    LowerLeft,
    /// Legend box at the lower right.
    LowerRight,
    /// No legend.
    None,
}

/// An x–y chart with optional log axes.
#[derive(Clone, Debug)]
pub struct LineChart {
    /// Chart title.
    pub title: String,
    /// x axis description.
    pub x_label: String,
    /// y axis description.
    pub y_label: String,
    /// Log-scaled x axis.
    pub x_log: bool,
    /// Log-scaled y axis.
    pub y_log: bool,
    /// Base of the log x axis' ticks (2 suits depths and frequency bins).
    pub x_base: f64,
    /// The x axis counts (blocks, depths, epochs): whole-number ticks only.
    pub x_integer: bool,
    /// Fixed x range (default: the data's).
    pub x_range: Option<(f64, f64)>,
    /// Fixed y range (default: the data's).
    pub y_range: Option<(f64, f64)>,
    /// The curves.
    pub series: Vec<Series>,
    /// Where the legend goes.
    pub legend: Legend,
    /// Title font size (smaller inside panels).
    pub title_size: u32,
}

impl LineChart {
    /// An empty chart with a title and axis descriptions.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log: false,
            y_log: false,
            x_base: 10.0,
            x_integer: false,
            x_range: None,
            y_range: None,
            series: Vec::new(),
            legend: Legend::Outside,
            title_size: style::TITLE_SIZE,
        }
    }

    /// Log x axis with ticks at powers of 10.
    pub fn log_x(mut self) -> Self {
        self.x_log = true;
        self
    }

    /// Log x axis with ticks at powers of 2.
    pub fn log2_x(mut self) -> Self {
        self.x_log = true;
        self.x_base = 2.0;
        self
    }

    /// The x axis counts (block index, depth, layer, epoch, lag): only
    /// whole numbers are labelled.
    pub fn integer_x(mut self) -> Self {
        self.x_integer = true;
        self
    }

    /// Log y axis.
    pub fn log_y(mut self) -> Self {
        self.y_log = true;
        self
    }

    /// Place the legend.
    pub fn legend(mut self, l: Legend) -> Self {
        self.legend = l;
        self
    }

    /// Fix the y range.
    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// Fix the x range.
    pub fn x_range(mut self, lo: f64, hi: f64) -> Self {
        self.x_range = Some((lo, hi));
        self
    }

    /// Add a curve.
    pub fn push(&mut self, s: Series) {
        self.series.push(s);
    }

    fn usable(&self, (x, y): (f64, f64)) -> bool {
        axis::fits(x, self.x_log)
            && axis::fits(y, self.y_log)
            && (!self.x_log || x > 0.0)
            && (!self.y_log || y > 0.0)
    }

    /// Points left out for being NaN, ±inf or beyond ±[`axis::DATA_LIMIT`],
    /// or below a log axis cut to [`axis::LOG_SPAN`] decades (zero and
    /// negative values on a log axis are left out uncounted).
    pub fn excluded(&self) -> usize {
        let ranges = self.ranges();
        self.series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|&&p| {
                let (x, y) = p;
                let fits = axis::fits(x, self.x_log) && axis::fits(y, self.y_log);
                !fits || (self.usable(p) && !self.on_log_axes(p, ranges))
            })
            .count()
    }

    /// Whether a point is not below either log axis's lower end.
    fn on_log_axes(&self, (x, y): (f64, f64), (xr, yr): Ranges) -> bool {
        (!self.x_log || x >= xr.0) && (!self.y_log || y >= yr.0)
    }

    /// The ends of the error bar ± e at y (the point itself below where a
    /// log axis ends at zero), within ±[`axis::DATA_LIMIT`].
    fn bar_ends(&self, y: f64, e: f64) -> (f64, f64) {
        let lo = if self.y_log && y - e <= 0.0 { y } else { y - e };
        (axis::clamp_to_limit(lo), axis::clamp_to_limit(y + e))
    }

    /// Data ranges over drawable points (with the error bars), padded.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
        let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
        for s in &self.series {
            for (i, &p) in s.points.iter().enumerate() {
                if !self.usable(p) {
                    continue;
                }
                let e = s
                    .error
                    .as_ref()
                    .map_or(0.0, |e| if e[i].is_finite() { e[i] } else { 0.0 });
                xs = (xs.0.min(p.0), xs.1.max(p.0));
                let (lo, hi) = self.bar_ends(p.1, e);
                ys = (ys.0.min(lo), ys.1.max(hi));
            }
        }
        if !xs.0.is_finite() {
            xs = if self.x_log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if !ys.0.is_finite() {
            ys = if self.y_log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        let pad = |(lo, hi): (f64, f64), log: bool| {
            if log {
                let (l, h) = (lo.log10(), hi.log10().max(lo.log10() + 1e-9));
                let d = (h - l).max(0.2) * 0.05;
                // Within 10^±307, where 10^x is finite and normal.
                (
                    10f64.powf((l - d).max(-307.0)),
                    10f64.powf((h + d).min(307.0)),
                )
            } else {
                let scale = lo.abs().max(hi.abs()).max(1.0);
                // One value (a single depth): 5 % of it either side, so its
                // ticks are distinct numbers.
                let d = if (hi - lo).abs() <= 1e-9 * scale {
                    0.05 * scale
                } else {
                    (hi - lo).abs() * 0.05
                };
                (lo - d, hi + d)
            }
        };
        let safe = |(lo, hi): (f64, f64), log: bool| {
            if log {
                axis::log(lo, hi)
            } else {
                axis::linear(lo, hi)
            }
        };
        (
            safe(
                self.x_range.unwrap_or_else(|| pad(xs, self.x_log)),
                self.x_log,
            ),
            safe(
                self.y_range.unwrap_or_else(|| pad(ys, self.y_log)),
                self.y_log,
            ),
        )
    }

    /// A drawable point moved to within a few range widths of the axes: a
    /// fixed range may leave data far outside, whose pixels plotters would
    /// otherwise step through one by one.
    fn clipped(&self, (x, y): (f64, f64), (xr, yr): Ranges) -> (f64, f64) {
        (
            axis::clip(x, xr, self.x_log, 4.0),
            axis::clip(y, yr, self.y_log, 4.0),
        )
    }
}

impl Plot for LineChart {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let entries = self.side_legend();
        if entries.is_empty() {
            return self.draw_plot(area);
        }
        let (plot, strip) = legend::split(area, &entries);
        self.draw_plot(&plot)?;
        // Level with the top of the plotting area, below the title.
        legend::draw(&strip, &entries, 12 + 2 * self.title_size as i32)
    }

    fn side_legend(&self) -> Vec<LegendEntry> {
        if self.legend != Legend::Outside {
            return Vec::new();
        }
        self.series
            .iter()
            .filter_map(|s| {
                s.label.as_ref().map(|label| LegendEntry {
                    label: label.clone(),
                    color: s.color,
                    mark: s.mark,
                    width: s.width,
                })
            })
            .collect()
    }

    fn draw_plot<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let r @ ((x0, x1), (y0, y1)) = self.ranges();
        let linear = RangedCoordf64::from;
        let log = |lo: f64, hi: f64| LogCoord::from((lo..hi).log_scale());
        match (self.x_log, self.y_log) {
            (false, false) => draw_chart(self, area, r, linear(x0..x1), linear(y0..y1)),
            (true, false) => draw_chart(self, area, r, log(x0, x1), linear(y0..y1)),
            (false, true) => draw_chart(self, area, r, linear(x0..x1), log(y0, y1)),
            (true, true) => draw_chart(self, area, r, log(x0, x1), log(y0, y1)),
        }?;
        let excluded = self.excluded();
        if excluded > 0 {
            // Said on the figure itself, so no caption can lose it.
            let (_, h) = area.dim_in_pixel();
            let note = format!(
                "{excluded} point{} not drawn (NaN, ±inf or beyond ±1e300)",
                if excluded == 1 { "" } else { "s" }
            );
            area.draw(&Text::new(
                note,
                (6, h as i32 - 16),
                (FONT, style::LABEL_SIZE - 2).into_font().color(&RED),
            ))
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The x and y ranges of a chart.
type Ranges = ((f64, f64), (f64, f64));

/// A grid of plots under one title.
pub struct Panels<P: Plot> {
    /// Title over the grid (none when empty).
    pub title: String,
    /// Rows of panels.
    pub rows: usize,
    /// Columns of panels.
    pub cols: usize,
    /// The panels, row by row.
    pub panels: Vec<P>,
}

impl<P: Plot> Plot for Panels<P> {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let body = if self.title.is_empty() {
            area.clone()
        } else {
            area.titled(&self.title, (FONT, style::TITLE_SIZE))
                .map_err(|e| e.to_string())?
        };
        let shared = legend::shared(self.panels.iter().map(|p| p.side_legend()))
            .filter(|entries| !entries.is_empty());
        let Some(entries) = shared else {
            for (cell, p) in body
                .split_evenly((self.rows, self.cols))
                .iter()
                .zip(&self.panels)
            {
                p.draw(cell)?;
            }
            return Ok(());
        };
        let (grid, strip) = legend::split(&body, &entries);
        for (cell, p) in grid
            .split_evenly((self.rows, self.cols))
            .iter()
            .zip(&self.panels)
        {
            p.draw_plot(cell)?;
        }
        legend::draw(&strip, &entries, 12 + 2 * style::PANEL_TITLE_SIZE as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_reduction_averages_blocks() {
        let m: Vec<f64> = (0..16).map(|v| v as f64).collect();
        let (r, n) = reduce_matrix(&m, 4, 2);
        assert_eq!(n, 2);
        assert_eq!(r, vec![2.5, 4.5, 10.5, 12.5]);
        let (same, n) = reduce_matrix(&m, 4, 8);
        assert_eq!((same, n), (m, 4));
    }

    #[test]
    fn a_chart_renders_to_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LineChart::new("test μ σ² ∇", "x", "y").log_y();
        c.push(
            Series::line(
                "a",
                vec![(1.0, 1.0), (2.0, 10.0), (3.0, 0.0)],
                style::color(0),
            )
            .errors(vec![0.1, 1.0, 0.0]),
        );
        c.push(
            Series::line("b", vec![(1.0, 5.0), (3.0, 50.0)], style::color(1)).mark(Mark::Dashed),
        );
        let f = save(&c, dir.path(), "fig", (400, 300)).unwrap();
        let png = std::fs::read(dir.path().join(&f.png)).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.path().join(&f.svg)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("test μ σ² ∇"));
        let pdf = std::fs::read(dir.path().join(&f.pdf)).unwrap();
        assert!(pdf.starts_with(b"%PDF-") && pdf.ends_with(b"%%EOF"));
        // The text is set in the embedded font, not left to the reader's fonts.
        assert!(contains(&pdf, b"/FontFile2"), "no embedded font");
        // No temp files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// svg2pdf walked HashMaps (a new random order for each conversion) when
    /// it numbered fonts and wrote resource dictionaries; vendor/svg2pdf sorts
    /// them. Translucent bands (as the seed bands of the figures) each need a
    /// graphics state, so an unsorted dictionary would differ between
    /// conversions.
    #[test]
    fn a_figure_converts_to_the_same_pdf_bytes_every_time() {
        let bands: String = (1..=6)
            .map(|k| {
                format!(
                    r#"<rect x="{}" y="10" width="20" height="50" fill="blue" fill-opacity="0.{k}"/>"#,
                    10 * k
                )
            })
            .collect();
        let svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">{bands}<text x="5" y="75" font-family="sans-serif" font-size="9">r₁ σ² ∇</text></svg>"#
        );
        let first = pdf_of(&svg).unwrap();
        let states = first.windows(3).filter(|w| w == b"/gs").count();
        assert!(
            states >= 2,
            "the test needs a dictionary of several entries, found {states}"
        );
        for _ in 0..4 {
            assert!(
                pdf_of(&svg).unwrap() == first,
                "PDF bytes differ between conversions"
            );
        }
    }
}
