//! A table drawn as coloured cells with named rows and columns and each
//! cell's value written in it: variant × depth maps, where the names are
//! the point and a colour alone would not say the number.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::*;

/// Named rows × named columns of values, coloured on one scale.
#[derive(Clone, Debug)]
pub struct TableMap {
    /// Title over the table.
    pub title: String,
    /// Row names, top to bottom.
    pub rows: Vec<String>,
    /// Column names, left to right.
    pub cols: Vec<String>,
    /// Header over the column names (e.g. "depth (blocks)").
    pub col_header: String,
    /// Row-major values; NaN cells are grey.
    pub values: Vec<f64>,
    /// The text written in each cell (same layout as `values`).
    pub texts: Vec<String>,
    /// Values at the light and dark ends of the colour scale.
    pub value_range: (f64, f64),
    /// Colour of a position t in [0, 1] of the value range.
    pub color: fn(f64) -> RGBColor,
}

impl Plot for TableMap {
    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let (w, h) = area.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        let title = (FONT, style::TITLE_SIZE).into_text_style(area);
        area.draw(&Text::new(self.title.clone(), (20, 12), title))
            .map_err(|x| e(&x))?;
        let label = (FONT, style::LABEL_SIZE + 2).into_text_style(area);
        let name_width = self
            .rows
            .iter()
            .map(|r| area.estimate_text_size(r, &label).map_or(0, |s| s.0 as i32))
            .max()
            .unwrap_or(0)
            + 30;
        let (top, bottom) = (100, 20);
        let cell_w = (w - name_width - 20) / self.cols.len().max(1) as i32;
        let cell_h = (h - top - bottom) / self.rows.len().max(1) as i32;
        let header = (FONT, style::AXIS_DESC_SIZE).into_text_style(area);
        area.draw(&Text::new(
            self.col_header.clone(),
            (name_width, 52),
            header,
        ))
        .map_err(|x| e(&x))?;
        for (c, name) in self.cols.iter().enumerate() {
            let x = name_width + c as i32 * cell_w + cell_w / 2 - 8 * name.len() as i32 / 2;
            area.draw(&Text::new(name.clone(), (x, top - 26), label.clone()))
                .map_err(|x| e(&x))?;
        }
        let (lo, hi) = self.value_range;
        for (r, name) in self.rows.iter().enumerate() {
            let y = top + r as i32 * cell_h;
            area.draw(&Text::new(
                name.clone(),
                (10, y + cell_h / 2 - 9),
                label.clone(),
            ))
            .map_err(|x| e(&x))?;
            for c in 0..self.cols.len() {
                let k = r * self.cols.len() + c;
                let v = self.values[k];
                let t = if hi > lo {
                    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
                } else {
                    0.5
                };
                let fill = if v.is_finite() && t.is_finite() {
                    (self.color)(t)
                } else {
                    RGBColor(190, 190, 190)
                };
                let x = name_width + c as i32 * cell_w;
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell_w - 2, y + cell_h - 2)],
                    fill.filled(),
                ))
                .map_err(|x| e(&x))?;
                // Dark cells get white text.
                let RGBColor(cr, cg, cb) = fill;
                let light = 0.299 * cr as f64 + 0.587 * cg as f64 + 0.114 * cb as f64 > 140.0;
                let ink = if light { BLACK } else { WHITE };
                let text = &self.texts[k];
                let style = (FONT, style::LABEL_SIZE + 2)
                    .into_text_style(area)
                    .color(&ink);
                let tw = area
                    .estimate_text_size(text, &style)
                    .map_or(0, |s| s.0 as i32);
                area.draw(&Text::new(
                    text.clone(),
                    (x + (cell_w - tw) / 2, y + cell_h / 2 - 9),
                    style,
                ))
                .map_err(|x| e(&x))?;
            }
        }
        Ok(())
    }
}
