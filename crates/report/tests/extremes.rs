//! Figures of extreme data finish and say what they left out: NaN, ±inf
//! and values up to the f64 range on linear and log axes, fixed ranges far
//! from the data, and heat maps and colour bars with infinite ranges. Each
//! figure is drawn on a thread that must finish within a bound: plotters'
//! log-axis tick search never ended on such ranges.

use std::sync::mpsc;
use std::time::Duration;

use gradscope_report::figure::{
    ColorBar, Heatmap, HeatmapGrid, LineChart, Plot, Raster, Series, save,
};
use gradscope_report::style;

/// Saves `plot` on a thread; fails when it takes more than a minute.
fn saved_in_time<P: Plot + Send + 'static>(plot: P, name: &'static str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = save(&plot, &path, name, (500, 360))
            .map(|f| std::fs::read_to_string(path.join(f.svg)).expect("the SVG is written"));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{name}: {e}")),
        Err(_) => panic!("{name}: drawing did not finish in 60 s"),
    }
}

fn extreme_points() -> Vec<(f64, f64)> {
    vec![
        (1.0, 1.0),
        (2.0, 1e300),
        (3.0, f64::MAX),
        (4.0, f64::INFINITY),
        (5.0, f64::NAN),
        (6.0, 1e-300),
        (7.0, f64::MIN_POSITIVE),
        (8.0, 5e-324),
        (9.0, -1e300),
        (10.0, 0.0),
    ]
}

#[test]
fn line_charts_of_extreme_values_finish_and_count_what_they_leave_out() {
    for (log_x, log_y) in [(false, false), (false, true), (true, true), (true, false)] {
        let mut c = LineChart::new("extremes", "x", "y");
        c.x_log = log_x;
        c.y_log = log_y;
        c.push(
            Series::line("data", extreme_points(), style::color(0)).errors(vec![
                1e308,
                f64::MAX,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
            ]),
        );
        // Counted: MAX, inf and NaN; on a log y axis also MIN_POSITIVE and
        // 5e-324 (below 1e-300), and 1 and 1e-300, below the upper 300
        // decades the axis keeps of the 600 the data span.
        let excluded = if log_y { 7 } else { 3 };
        assert_eq!(c.excluded(), excluded, "log x {log_x}, log y {log_y}");
        let svg = saved_in_time(c, "extremes");
        assert!(
            svg.contains(&format!("{excluded} points not drawn")),
            "the figure says what it left out"
        );
    }
    // x itself extreme.
    let mut c = LineChart::new("x extremes", "x", "y");
    c.push(Series::line(
        "x",
        vec![
            (0.0, 1.0),
            (1e300, 2.0),
            (f64::NEG_INFINITY, 3.0),
            (f64::MAX, 4.0),
        ],
        style::color(1),
    ));
    assert_eq!(c.excluded(), 2);
    assert!(saved_in_time(c, "x").contains("2 points not drawn"));
}

#[test]
fn an_ordinary_chart_has_no_note() {
    let mut c = LineChart::new("ordinary", "x", "y").log_y();
    c.push(Series::line(
        "a",
        vec![(1.0, 1.0), (2.0, 10.0), (3.0, 0.0)],
        style::color(0),
    ));
    assert_eq!(c.excluded(), 0);
    assert!(!saved_in_time(c, "ordinary").contains("not drawn"));
}

#[test]
fn fixed_ranges_far_from_the_data_and_degenerate_ranges_finish() {
    let mut far = LineChart::new("far", "x", "y").y_range(-0.25, 1.08);
    far.push(Series::line(
        "a",
        vec![(0.0, 0.5), (1.0, 1e300), (2.0, -1e299), (3.0, 0.2)],
        style::color(0),
    ));
    saved_in_time(far, "far");
    let mut bad = LineChart::new("bad range", "x", "y")
        .log_y()
        .y_range(0.0, f64::INFINITY)
        .x_range(f64::NAN, f64::NAN);
    bad.push(Series::line("a", vec![(1.0, 1.0)], style::color(0)));
    saved_in_time(bad, "bad");
    let mut point = LineChart::new("one value", "x", "y").log_y();
    point.push(Series::line("a", vec![(1e300, 1e300)], style::color(0)));
    saved_in_time(point, "point");
}

#[test]
fn heat_maps_and_rasters_with_infinite_ranges_finish() {
    let grid = HeatmapGrid {
        title: "maps".into(),
        rows: 1,
        cols: 2,
        maps: vec![
            Raster {
                title: "raster".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                x_range: (f64::NEG_INFINITY, f64::INFINITY),
                rows: 2,
                cols: 2,
                values: vec![f64::NAN, 1e300, f64::INFINITY, -1e308],
                value_range: (f64::NEG_INFINITY, f64::INFINITY),
                color: style::ramp,
                hline: Some(1.0),
            },
            Raster {
                title: "raster".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                x_range: (1e300, 1e300),
                rows: 1,
                cols: 1,
                values: vec![1.0],
                value_range: (0.0, 2.0),
                color: style::ramp,
                hline: None,
            },
        ],
        bar: ColorBar::sequential("v", (f64::NAN, f64::INFINITY)),
    };
    saved_in_time(grid, "rasters");
    let maps = HeatmapGrid {
        title: "maps".into(),
        rows: 1,
        cols: 1,
        maps: vec![Heatmap {
            title: "heat".into(),
            values: vec![f64::NAN, 1.0, -1.0, f64::INFINITY],
            n: 2,
            axis_label: "x".into(),
            axis_range: (-f64::MAX, f64::MAX),
        }],
        bar: ColorBar::correlation("r"),
    };
    saved_in_time(maps, "heat");
}
