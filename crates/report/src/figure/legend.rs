//! Legends drawn beside a plot, in a strip to its right, so that no entry
//! ever covers data; a grid of panels draws one strip for all its panels.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Mark;
use crate::style::{self, FONT};

/// One legend entry: how a series is drawn, and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    /// The label.
    pub label: String,
    /// Line and marker colour.
    pub color: RGBColor,
    /// How the series is drawn.
    pub mark: Mark,
    /// Line width in pixels.
    pub width: u32,
}

/// One legend for several panels: each entry once, in order of first
/// appearance, when a colour and mark mean the same label in every panel;
/// none where one look stands for different labels in different panels
/// (depth 1 with a slope fitted per panel), so each panel keeps its own.
pub fn shared(panels: impl IntoIterator<Item = Vec<LegendEntry>>) -> Option<Vec<LegendEntry>> {
    let looks = |a: &LegendEntry, b: &LegendEntry| a.color == b.color && a.mark == b.mark;
    let mut all: Vec<LegendEntry> = Vec::new();
    for e in panels.into_iter().flatten() {
        match all.iter().find(|o| looks(o, &e)) {
            Some(o) if o.label == e.label => {}
            Some(_) => return None,
            None => all.push(e),
        }
    }
    Some(all)
}

/// Pixels from the mark's left end to the label, and around the strip.
const MARK_WIDTH: i32 = 26;
const GAP: i32 = 8;
const PAD: i32 = 10;

/// The strip's width for `entries`: the widest label with its mark, at
/// most 40 % of `area` (longer labels run past the edge).
pub fn width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[LegendEntry]) -> u32 {
    let font = TextStyle::from((FONT, style::LEGEND_SIZE).into_font());
    let widest = entries
        .iter()
        .map(|e| {
            area.estimate_text_size(&e.label, &font)
                .map_or(0, |(w, _)| w)
        })
        .max()
        .unwrap_or(0) as i32;
    let (w, _) = area.dim_in_pixel();
    ((widest + MARK_WIDTH + GAP + 2 * PAD) as u32).min(w * 2 / 5)
}

/// Split `area` into the plot's part and the legend strip to its right.
pub fn split<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let (w, _) = area.dim_in_pixel();
    area.split_horizontally(w.saturating_sub(width(area, entries)))
}

/// Draw `entries` down the strip, the first `top` pixels below its top.
pub fn draw<DB: DrawingBackend>(
    strip: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
    top: i32,
) -> std::result::Result<(), String> {
    let text = TextStyle::from((FONT, style::LEGEND_SIZE).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center));
    let step = style::LEGEND_SIZE as i32 + 8;
    for (i, entry) in entries.iter().enumerate() {
        entry_at(strip, entry, top + step / 2 + i as i32 * step, &text)?;
    }
    Ok(())
}

/// One entry, its mark and label centred on row `y`.
fn entry_at<DB: DrawingBackend>(
    strip: &DrawingArea<DB, Shift>,
    entry: &LegendEntry,
    y: i32,
    text: &TextStyle,
) -> std::result::Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let st = ShapeStyle::from(&entry.color).stroke_width(entry.width.max(2));
    let (l, r) = (PAD, PAD + MARK_WIDTH - 4);
    match entry.mark {
        Mark::Points => strip.draw(&Circle::new(((l + r) / 2, y), 4, st.filled())),
        Mark::Hollow => strip.draw(&Circle::new(((l + r) / 2, y), 6, st)),
        Mark::Dashed => strip.draw(&DashedPathElement::new(vec![(l, y), (r, y)], 7, 4, st)),
        Mark::LinePoints => {
            strip
                .draw(&Circle::new(((l + r) / 2, y), 4, st.filled()))
                .map_err(e)?;
            strip.draw(&PathElement::new(vec![(l, y), (r, y)], st))
        }
        Mark::Line => strip.draw(&PathElement::new(vec![(l, y), (r, y)], st)),
    }
    .map_err(e)?;
    strip
        .draw(&Text::new(
            entry.label.clone(),
            (PAD + MARK_WIDTH + GAP, y),
            text.clone(),
        ))
        .map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, color: RGBColor) -> LegendEntry {
        LegendEntry {
            label: label.into(),
            color,
            mark: Mark::Line,
            width: 2,
        }
    }

    #[test]
    fn panels_share_a_legend_only_where_each_look_means_one_label() {
        let (a, b) = (RGBColor(1, 2, 3), RGBColor(4, 5, 6));
        // The same series in two panels: listed once.
        let same = shared([
            vec![entry("plain", a), entry("resnet", b)],
            vec![entry("plain", a), entry("resnet", b)],
        ]);
        assert_eq!(same, Some(vec![entry("plain", a), entry("resnet", b)]));
        // Different series per panel: their union, in order.
        let union = shared([vec![entry("plain", a)], vec![entry("resnet", b)]]);
        assert_eq!(union, Some(vec![entry("plain", a), entry("resnet", b)]));
        // One colour for a slope fitted per panel: no shared legend.
        let per_panel = shared([
            vec![entry("depth 1 (slope -2.83)", a)],
            vec![entry("depth 1 (slope -2.80)", a)],
        ]);
        assert_eq!(per_panel, None);
        // A dashed line of the same colour is another look.
        let dashed = LegendEntry {
            mark: Mark::Dashed,
            ..entry("plain intact", a)
        };
        assert!(shared([vec![entry("plain", a)], vec![dashed]]).is_some());
    }
}
