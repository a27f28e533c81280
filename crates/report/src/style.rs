//! One look for every figure: fonts, palette, sizes.

use std::sync::Once;

use plotters::style::{FontStyle, RGBColor};

/// Family name every text style uses; registered from the embedded DejaVu Sans.
pub const FONT: &str = "sans-serif";

/// Default figure size in pixels (PNG; the SVG has the same geometry).
pub const SIZE: (u32, u32) = (1200, 750);

/// Font size of figure titles.
pub const TITLE_SIZE: u32 = 28;
/// Font size of panel titles.
pub const PANEL_TITLE_SIZE: u32 = 21;
/// Font size of axis descriptions.
pub const AXIS_DESC_SIZE: u32 = 20;
/// Font size of tick labels.
pub const LABEL_SIZE: u32 = 16;
/// Font size of legend entries.
pub const LEGEND_SIZE: u32 = 16;

/// Okabe–Ito colours, distinguishable with colour-vision deficiencies.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(0, 0, 0),
];

/// Colour of grid lines at labelled ticks.
pub const GRID: RGBColor = RGBColor(225, 225, 225);
/// Colour of the finer grid between them (a log axis's unlabelled powers
/// and multiples).
pub const GRID_MINOR: RGBColor = RGBColor(242, 242, 242);
/// Colour of theory curves.
pub const THEORY: RGBColor = RGBColor(60, 60, 60);

/// The i-th palette colour (cycling).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A colour along a sequential ramp (t in 0..=1), light to dark blue-purple,
/// for families of curves (e.g. one per depth).
pub fn ramp(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let stops = [
        (253.0, 187.0, 132.0),
        (227.0, 74.0, 51.0),
        (122.0, 1.0, 119.0),
        (37.0, 52.0, 148.0),
    ];
    let x = t * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let lerp = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// Diverging map for correlations in [−1, 1]: blue → white → red; NaN is grey.
pub fn diverging(v: f64) -> RGBColor {
    if !v.is_finite() {
        return RGBColor(160, 160, 160);
    }
    let t = v.clamp(-1.0, 1.0);
    let (lo, mid, hi) = (
        (33.0, 102.0, 172.0),
        (247.0, 247.0, 247.0),
        (178.0, 24.0, 43.0),
    );
    let (a, b, f) = if t < 0.0 { (mid, lo, -t) } else { (mid, hi, t) };
    let lerp = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

static FONTS: Once = Once::new();

/// Register the embedded fonts once per process (no system fonts needed).
pub fn register_fonts() {
    FONTS.call_once(|| {
        // The bytes are a valid font shipped by the dejavu crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diverging_map_ends_and_middle() {
        assert_eq!(diverging(0.0), RGBColor(247, 247, 247));
        assert_eq!(diverging(1.0), RGBColor(178, 24, 43));
        assert_eq!(diverging(-1.0), RGBColor(33, 102, 172));
        assert_eq!(diverging(f64::NAN), RGBColor(160, 160, 160));
    }
}
