//! Drawing one x–y chart: the plotting area, the mesh with the ticks of
//! [`super::ticks`], and the series.

use super::*;

/// Width and height in pixels of the plotting area `ChartBuilder` leaves
/// inside `area` with a caption, margins and label areas as [`draw_chart`]
/// sets them (the axes' ticks are chosen for these lengths).
pub(super) fn plotting_size<DB: DrawingBackend>(
    c: &LineChart,
    area: &DrawingArea<DB, Shift>,
) -> std::result::Result<(f64, f64), String> {
    let (w, h) = area.dim_in_pixel();
    // As `DrawingArea::titled` takes it: the text and padding of
    // min(height / 2, 5) above and below.
    let (_, th) = area
        .estimate_text_size(&c.title, &(FONT, c.title_size).into_text_style(area))
        .map_err(|e| e.to_string())?;
    let title = th + 2 * (th / 2).min(5);
    Ok((
        w as f64 - 2.0 * MARGIN as f64 - Y_LABEL_AREA as f64,
        h as f64 - 2.0 * MARGIN as f64 - X_LABEL_AREA as f64 - title as f64,
    ))
}

/// Margin around a chart, in pixels.
const MARGIN: u32 = 12;
/// Height of the x axis's label area (tick labels and description).
const X_LABEL_AREA: u32 = 52;
/// Width of the y axis's label area.
const Y_LABEL_AREA: u32 = 80;

pub(super) fn draw_chart<DB, X, Y>(
    c: &LineChart,
    area: &DrawingArea<DB, Shift>,
    ranges: Ranges,
    x: X,
    y: Y,
) -> std::result::Result<(), String>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (w, h) = plotting_size(c, area)?;
    let label_font = (FONT, style::LABEL_SIZE).into_text_style(area);
    // A label's width (x) and height (y) as the backend draws it, with room
    // to read each apart.
    let size = |s: &str| area.estimate_text_size(s, &label_font).unwrap_or((0, 0));
    let width = |s: &str| size(s).0 as f64 + 0.6 * style::LABEL_SIZE as f64;
    let height = |s: &str| size(s).1 as f64 + 0.5 * style::LABEL_SIZE as f64;
    let scale = |log: bool, base: f64| {
        if log {
            ticks::Scale::Log(base)
        } else {
            ticks::Scale::Linear
        }
    };
    let xt = ticks::Axis {
        lo: ranges.0.0,
        hi: ranges.0.1,
        scale: scale(c.x_log, c.x_base),
        integer: c.x_integer,
        px: w,
        overhang: MARGIN as f64,
    }
    .ticks(&width);
    let yt = ticks::Axis {
        lo: ranges.1.0,
        hi: ranges.1.1,
        scale: scale(c.y_log, 10.0),
        integer: false,
        px: h,
        overhang: MARGIN as f64,
    }
    .ticks(&height);
    let (xp, yp) = (xt.print, yt.print);
    let mut chart = ChartBuilder::on(area)
        .caption(&c.title, (FONT, c.title_size))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(ticks::Ticked::new(x, xt), ticks::Ticked::new(y, yt))
        .map_err(|x| e(&x))?;
    let (fmt_x, fmt_y) = (|v: &f64| xp.label(*v), |v: &f64| yp.label(*v));
    chart
        .configure_mesh()
        .light_line_style(style::GRID_MINOR)
        .bold_line_style(style::GRID)
        .x_desc(&c.x_label)
        .y_desc(&c.y_label)
        .axis_desc_style((FONT, style::AXIS_DESC_SIZE))
        .label_style((FONT, style::LABEL_SIZE))
        .x_label_formatter(&fmt_x)
        .y_label_formatter(&fmt_y)
        .draw()
        .map_err(|x| e(&x))?;

    let mut labelled = false;
    for s in &c.series {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|&p| c.usable(p) && c.on_log_axes(p, ranges))
            .map(|p| c.clipped(p, ranges))
            .collect();
        let st = ShapeStyle::from(&s.color).stroke_width(s.width);
        if let Some(err) = &s.error {
            let bars = s
                .points
                .iter()
                .zip(err)
                .filter(|(p, e)| c.usable(**p) && c.on_log_axes(**p, ranges) && e.is_finite())
                .map(|(&p, &e)| {
                    let (lo, hi) = c.bar_ends(p.1, e);
                    let (px, py) = c.clipped(p, ranges);
                    let clip = |v| axis::clip(v, ranges.1, c.y_log, 4.0);
                    ErrorBar::new_vertical(px, clip(lo), py, clip(hi), st, 8)
                });
            chart.draw_series(bars).map_err(|x| e(&x))?;
        }
        let anno = match s.mark {
            Mark::Line => chart.draw_series(LineSeries::new(pts.clone(), st)),
            Mark::Dashed => chart.draw_series(DashedLineSeries::new(pts.clone(), 10, 6, st)),
            Mark::Points => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, st.filled()))),
            Mark::Hollow => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 6, st))),
            Mark::LinePoints => {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, st.filled())))
                    .map_err(|x| e(&x))?;
                chart.draw_series(LineSeries::new(pts.clone(), st))
            }
        }
        .map_err(|x| e(&x))?;
        if let Some(label) = &s.label {
            labelled = true;
            let (color, mark, width) = (s.color, s.mark, s.width);
            anno.label(label)
                .legend(move |(lx, ly)| -> DynElement<'static, DB, (i32, i32)> {
                    let st = ShapeStyle::from(&color).stroke_width(width.max(2));
                    match mark {
                        Mark::Points => Circle::new((lx + 10, ly), 4, st.filled()).into_dyn(),
                        Mark::Hollow => Circle::new((lx + 10, ly), 6, st).into_dyn(),
                        Mark::Dashed => plotters::element::DashedPathElement::new(
                            vec![(lx, ly), (lx + 22, ly)],
                            7,
                            4,
                            st,
                        )
                        .into_dyn(),
                        _ => PathElement::new(vec![(lx, ly), (lx + 20, ly)], st).into_dyn(),
                    }
                });
        }
    }
    let pos = match c.legend {
        Legend::UpperRight => SeriesLabelPosition::UpperRight,
        Legend::UpperLeft => SeriesLabelPosition::UpperLeft,
        Legend::LowerLeft => SeriesLabelPosition::LowerLeft,
        Legend::LowerRight => SeriesLabelPosition::LowerRight,
        Legend::Outside | Legend::None => return Ok(()),
    };
    if labelled {
        chart
            .configure_series_labels()
            .position(pos)
            .label_font((FONT, style::LEGEND_SIZE))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(|x| e(&x))?;
    }
    Ok(())
}
