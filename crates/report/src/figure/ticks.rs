//! Where an axis's labelled ticks go: the same rule for every chart.
//!
//! plotters puts a log axis's labels on powers of the base only, so an axis
//! spanning about one decade shows one label, or none. Here a log axis gets
//! the sparsest of these sets that has at least [`MIN_LOG`] labels: powers
//! of the base (every k-th power when they would crowd), 1 and 3 × 10ᵏ,
//! 1, 2 and 5 × 10ᵏ, 1, 2, 3 and 5 × 10ᵏ, and last evenly spaced values
//! (a range inside one decade); a base-2 axis keeps powers of 2 while two of
//! them fit. A linear axis gets steps of 1, 2 or 5 × 10ᵏ. A set is used only
//! when its labels, as wide or tall as the backend draws them, do not
//! overlap along the axis; the unlabelled powers and multiples of a log axis
//! become a lighter grid.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

use crate::format;

/// Fewest labels a base-10 log axis aims for.
pub const MIN_LOG: usize = 4;
/// Fewest labels a linear axis aims for.
pub const MIN_LINEAR: usize = 4;
/// Most labels on any axis.
pub const MAX_LABELS: usize = 10;

/// The scale of an axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    /// Evenly spaced values.
    Linear,
    /// Logarithmic, labelled at powers of this base (10 or 2).
    Log(f64),
}

/// One axis: its range, scale, whether it counts (whole numbers only), and
/// the room its labels have.
#[derive(Clone, Copy, Debug)]
pub struct Axis {
    /// Lower end (positive on a log axis).
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Linear or log.
    pub scale: Scale,
    /// Only whole numbers are labelled (block index, depth, epoch).
    pub integer: bool,
    /// Length of the axis in pixels.
    pub px: f64,
    /// Pixels a label may reach past either end of the axis (beyond, it
    /// would be cut off or run into the next panel).
    pub overhang: f64,
}

/// The ticks of an axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticks {
    /// Labelled values, ascending, inside the range.
    pub labels: Vec<f64>,
    /// Unlabelled grid values (log axes), inside the range.
    pub minor: Vec<f64>,
    /// How the labels print.
    pub print: Print,
}

/// How an axis prints its labels: all as exponents when any would be one
/// (1e-4, 1e-2, 1e0, 1e2 rather than 1e-4, 0.01, 1, 100), otherwise in
/// fixed point with the decimals that print each exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Print {
    /// Every label as m × 10^e ([`format::tick_exponent`]).
    pub exponents: bool,
    /// Decimals of fixed-point labels ([`format::tick_with`]).
    pub decimals: usize,
}

impl Print {
    /// How the labels `vs` print together.
    pub fn of(vs: &[f64]) -> Self {
        Print {
            exponents: !vs.iter().all(|&v| format::tick_fixed(v)),
            decimals: decimals_of(vs),
        }
    }

    /// The label of `v`.
    pub fn label(&self, v: f64) -> String {
        if self.exponents && v != 0.0 {
            format::tick_exponent(v)
        } else {
            format::tick_with(v, self.decimals)
        }
    }
}

impl Axis {
    /// Where `v` sits along the axis, 0 at `lo` and 1 at `hi`.
    fn fraction(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => (v - self.lo) / (self.hi - self.lo),
            Scale::Log(_) => (v / self.lo).ln() / (self.hi / self.lo).ln(),
        }
    }

    fn inside(&self, v: f64) -> bool {
        v >= self.lo && v <= self.hi && (!self.integer || v.fract() == 0.0)
    }

    /// Labels at `vs` as they can be drawn: without an end label that
    /// would reach more than [`Axis::overhang`] past its end, if the rest
    /// clear each other and are at most [`MAX_LABELS`]; `extent(label)` is
    /// a label's size along the axis in pixels (its width on x, height on y).
    fn fit(&self, mut vs: Vec<f64>, extent: &dyn Fn(&str) -> f64) -> Option<Vec<f64>> {
        let print = Print::of(&vs);
        let size = |v: f64| extent(&print.label(v));
        let at = |v: f64| self.fraction(v) * self.px;
        if vs
            .first()
            .is_some_and(|&v| at(v) - 0.5 * size(v) < -self.overhang)
        {
            vs.remove(0);
        }
        if vs
            .last()
            .is_some_and(|&v| at(v) + 0.5 * size(v) > self.px + self.overhang)
        {
            vs.pop();
        }
        let clear = vs
            .windows(2)
            .all(|w| at(w[1]) - at(w[0]) >= 0.5 * (size(w[0]) + size(w[1])));
        (clear && vs.len() <= MAX_LABELS).then_some(vs)
    }

    /// `m × base^k` for every k and m in `mantissas` (ascending), inside the
    /// range, with exponents a multiple of `stride`.
    fn multiples(&self, base: f64, mantissas: &[f64], stride: i32) -> Vec<f64> {
        let (k0, k1) = (
            (self.lo.ln() / base.ln()).floor() as i32 - 1,
            (self.hi.ln() / base.ln()).ceil() as i32 + 1,
        );
        let mut out = Vec::new();
        for k in k0..=k1 {
            if k.rem_euclid(stride) != 0 {
                continue;
            }
            for &m in mantissas {
                let v = power(base, m, k);
                if self.inside(v) {
                    out.push(v);
                }
            }
        }
        out
    }

    /// Multiples of `step` = n × 10^k inside the range (none when there
    /// would be more than a few dozen).
    fn steps(&self, n: f64, k: i32) -> Vec<f64> {
        let step = power(10.0, n, k);
        // A little slack: 6e-4 / 1e-4 is 5.999…; `inside` decides exactly.
        let (i0, i1) = (
            (self.lo / step - 1e-9).ceil(),
            (self.hi / step + 1e-9).floor(),
        );
        if !(i1 - i0).is_finite() || i1 - i0 > 50.0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut i = i0;
        while i <= i1 {
            // + 0.0: the tick at zero is 0, not −0.
            let v = power(10.0, i * n, k) + 0.0;
            if self.inside(v) {
                out.push(v);
            }
            i += 1.0;
        }
        out
    }

    /// Evenly spaced labels: the coarsest step of 1, 2 or 5 × 10ᵏ with at
    /// least `min` labels that clear each other, otherwise the step that
    /// clears with the most.
    fn linear_labels(&self, min: usize, extent: &dyn Fn(&str) -> f64) -> Vec<f64> {
        let width = self.hi - self.lo;
        let top = width.log10().ceil() as i32;
        let mut best: Vec<f64> = Vec::new();
        for k in (top - 3..=top).rev() {
            if self.integer && k < 0 {
                break;
            }
            for n in [5.0, 2.0, 1.0] {
                let Some(vs) = self.fit(self.steps(n, k), extent) else {
                    continue;
                };
                if vs.len() >= min {
                    return vs;
                }
                if vs.len() > best.len() {
                    best = vs;
                }
            }
        }
        best
    }

    /// The ticks of this axis, `extent(label)` being a label's size along
    /// it in pixels.
    pub fn ticks(&self, extent: &dyn Fn(&str) -> f64) -> Ticks {
        let (labels, minor) = match self.scale {
            Scale::Linear => (self.linear_labels(MIN_LINEAR, extent), Vec::new()),
            Scale::Log(base) => self.log_ticks(base, extent),
        };
        let print = Print::of(&labels);
        Ticks {
            labels,
            minor,
            print,
        }
    }

    /// Labels and the lighter grid of a log axis.
    fn log_ticks(&self, base: f64, extent: &dyn Fn(&str) -> f64) -> (Vec<f64>, Vec<f64>) {
        // The span in powers of the base (decades, or octaves on base 2).
        let span = (self.hi / self.lo).ln() / base.ln();
        // Powers of the base: every one if they fit, else every 2nd, 5th, 10th, …
        let powers = [1, 2, 5, 10, 20, 50, 100]
            .into_iter()
            .find_map(|s| self.fit(self.multiples(base, &[1.0], s), extent));
        let every_power = self.multiples(base, &[1.0], 1);
        let mut sets: Vec<Vec<f64>> = powers.into_iter().collect();
        let min = if base == 10.0 {
            for m in [&[1.0, 3.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 5.0]] {
                sets.extend(self.fit(self.multiples(10.0, m, 1), extent));
            }
            MIN_LOG
        } else {
            2
        };
        let labels = match sets.iter().find(|vs| vs.len() >= min) {
            Some(vs) => vs.clone(),
            None => {
                let linear = self.linear_labels(min, extent);
                let most = sets.into_iter().max_by_key(|vs| vs.len());
                match most {
                    Some(vs) if vs.len() >= linear.len() => vs,
                    _ => linear,
                }
            }
        };
        // The lighter grid: the powers left unlabelled, and where a decade
        // has room for them (60 px), the whole multiples between them.
        let grid = if base == 10.0 && self.px >= 60.0 * span {
            self.multiples(10.0, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], 1)
        } else if span <= 60.0 {
            every_power
        } else {
            Vec::new()
        };
        let minor = grid
            .into_iter()
            .filter(|v| !labels.iter().any(|l| close(*l, *v)))
            .collect();
        (labels, minor)
    }
}

/// `m × base^k`, exact for the decimal values it stands for (0.03 is the
/// double nearest 3/100, not 3 × 0.01).
fn power(base: f64, m: f64, k: i32) -> f64 {
    if k >= 0 {
        m * base.powi(k)
    } else {
        m / base.powi(-k)
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// The fewest decimals (at least 0, at most 15) that print every value of
/// `vs` exactly in [`format::tick_with`]'s fixed-point range.
pub fn decimals_of(vs: &[f64]) -> usize {
    (0..=15)
        .find(|&d| {
            let scale = 10f64.powi(d as i32);
            vs.iter()
                .filter(|v| (1e-3..1e5).contains(&v.abs()))
                .all(|&v| close((v * scale).round() / scale, v))
        })
        .unwrap_or(15)
}

/// An axis of plotters' with the ticks given here: `labels` drawn with
/// labels and the grid, `minor` as the lighter grid.
pub struct Ticked<R> {
    inner: R,
    ticks: Ticks,
}

impl<R> Ticked<R> {
    /// `inner`'s mapping with `ticks`.
    pub fn new(inner: R, ticks: Ticks) -> Self {
        Ticked { inner, ticks }
    }
}

impl<R: Ranged<ValueType = f64>> Ranged for Ticked<R> {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.ticks.minor.clone()
        } else {
            self.ticks.labels.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }

    fn axis_pixel_range(&self, limit: (i32, i32)) -> Range<i32> {
        self.inner.axis_pixel_range(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A roomy axis: labels 16 px tall, 400 px long.
    fn roomy(lo: f64, hi: f64, scale: Scale, integer: bool) -> Ticks {
        Axis {
            lo,
            hi,
            scale,
            integer,
            px: 400.0,
            overhang: 12.0,
        }
        .ticks(&|_| 16.0)
    }

    fn labels(t: &Ticks) -> Vec<String> {
        t.labels.iter().map(|&v| t.print.label(v)).collect()
    }

    fn assert_inside(t: &Ticks, lo: f64, hi: f64) {
        for v in t.labels.iter().chain(&t.minor) {
            assert!(*v >= lo && *v <= hi, "{v} outside [{lo}, {hi}]");
        }
        assert!(t.labels.windows(2).all(|w| w[0] < w[1]), "{:?}", t.labels);
    }

    #[test]
    fn a_log_axis_of_one_decade_gets_one_two_five() {
        let t = roomy(0.03, 0.4, Scale::Log(10.0), false);
        assert_inside(&t, 0.03, 0.4);
        assert_eq!(labels(&t), ["0.03", "0.05", "0.1", "0.2", "0.3"]);
        let t = roomy(0.1, 1.0, Scale::Log(10.0), false);
        assert_eq!(labels(&t), ["0.1", "0.2", "0.5", "1"]);
        // The lighter grid at the other tenths.
        let tenths: Vec<String> = t.minor.iter().map(|&v| format::tick(v)).collect();
        assert_eq!(tenths, ["0.3", "0.4", "0.6", "0.7", "0.8", "0.9"]);
    }

    #[test]
    fn a_wide_log_axis_gets_powers_of_ten() {
        let t = roomy(1e-6, 1e2, Scale::Log(10.0), false);
        assert_inside(&t, 1e-6, 1e2);
        assert_eq!(
            labels(&t),
            [
                "1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1", "1e0", "1e1", "1e2"
            ]
        );
        // Thirty decades: every 5th power, and no finer grid than powers.
        let t = roomy(1e-20, 1e10, Scale::Log(10.0), false);
        assert_eq!(t.labels.len(), 7, "{:?}", labels(&t));
        assert!(t.labels.iter().all(|v| v.log10().round() % 5.0 == 0.0));
        assert_eq!(t.minor.len(), 31 - 7);
        assert_inside(&t, 1e-20, 1e10);
    }

    #[test]
    fn two_to_four_decades_get_one_and_three() {
        let t = roomy(0.02, 1.6, Scale::Log(10.0), false);
        assert_eq!(labels(&t), ["0.03", "0.1", "0.3", "1"]);
        assert_inside(&t, 0.02, 1.6);
    }

    #[test]
    fn every_range_within_a_decade_gets_three_labels_or_more() {
        // Ranges of 0.05 to 1 decade, at many offsets.
        for lo_exp in [-7.3, -3.0, -1.77, -0.5, 0.0, 0.42, 2.9, 6.1] {
            for width in [0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.99] {
                let (lo, hi) = (10f64.powf(lo_exp), 10f64.powf(lo_exp + width));
                let t = roomy(lo, hi, Scale::Log(10.0), false);
                assert!(t.labels.len() >= 3, "[{lo}, {hi}]: {:?}", labels(&t));
                assert_inside(&t, lo, hi);
                // The labels read as different numbers.
                let mut l = labels(&t);
                l.dedup();
                assert_eq!(l.len(), t.labels.len(), "{l:?}");
            }
        }
    }

    #[test]
    fn labels_print_without_float_noise() {
        let t = roomy(2e-4, 6e-4, Scale::Log(10.0), false);
        assert_eq!(labels(&t), ["2e-4", "3e-4", "4e-4", "5e-4", "6e-4"]);
        let t = roomy(0.3, 0.9, Scale::Linear, false);
        assert_eq!(
            labels(&t),
            ["0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
        );
    }

    #[test]
    fn ticks_of_a_narrow_linear_axis_differ() {
        // 0.4889 … 0.4910: three decimals would repeat 0.489.
        let t = roomy(0.4889, 0.4910, Scale::Linear, false);
        assert!(t.labels.len() >= MIN_LINEAR, "{:?}", t.labels);
        assert_inside(&t, 0.4889, 0.4910);
        let mut l = labels(&t);
        l.dedup();
        assert_eq!(l.len(), t.labels.len(), "{l:?}");
    }

    #[test]
    fn an_integer_axis_gets_whole_numbers() {
        let t = roomy(-0.4, 8.4, Scale::Linear, true);
        assert_eq!(t.labels, [0.0, 2.0, 4.0, 6.0, 8.0]);
        let t = roomy(-0.15, 3.15, Scale::Linear, true);
        assert_eq!(t.labels, [0.0, 1.0, 2.0, 3.0]);
        // One depth, padded: the one whole number inside.
        // Whole numbers print whole: 10 and 20, not 1 and 2.
        let t = roomy(0.05, 20.95, Scale::Linear, true);
        assert_eq!(labels(&t), ["5", "10", "15", "20"]);
        let t = roomy(7.6, 8.4, Scale::Linear, true);
        assert_eq!(t.labels, [8.0]);
        assert_inside(&t, 7.6, 8.4);
        // Two layers: 0 and 1 only; without the flag, fifths between.
        let t = roomy(-0.05, 1.05, Scale::Linear, true);
        assert_eq!(t.labels, [0.0, 1.0]);
        let t = roomy(-0.05, 1.05, Scale::Linear, false);
        assert_eq!(t.labels, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    }

    #[test]
    fn a_base_two_axis_keeps_powers_of_two() {
        let t = roomy(1.8, 70.0, Scale::Log(2.0), true);
        assert_eq!(t.labels, [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]);
        // Too many for the room: every second power.
        let t = Axis {
            lo: 0.9,
            hi: 600.0,
            scale: Scale::Log(2.0),
            integer: true,
            px: 200.0,
            overhang: 12.0,
        }
        .ticks(&|_| 30.0);
        assert_eq!(t.labels, [1.0, 4.0, 16.0, 64.0, 256.0]);
        assert_eq!(t.minor, [2.0, 8.0, 32.0, 128.0, 512.0]);
    }

    #[test]
    fn labels_do_not_overlap_on_a_short_axis() {
        // 120 px for a decade and a half of 16 px labels.
        let axis = Axis {
            lo: 0.03,
            hi: 1.0,
            scale: Scale::Log(10.0),
            integer: false,
            px: 120.0,
            overhang: 4.0,
        };
        let t = axis.ticks(&|_| 24.0);
        assert!(!t.labels.is_empty());
        let at = |v: f64| axis.fraction(v) * axis.px;
        for w in t.labels.windows(2) {
            assert!(at(w[1]) - at(w[0]) >= 24.0, "{:?}", t.labels);
        }
        // No label reaches more than 4 px past the ends.
        assert!(at(t.labels[0]) >= 8.0, "{:?}", t.labels);
        assert!(
            at(*t.labels.last().unwrap()) <= 120.0 - 8.0,
            "{:?}",
            t.labels
        );
        assert!(t.labels.len() >= 2, "{:?}", t.labels);
    }

    #[test]
    fn decimals_cover_every_label() {
        assert_eq!(decimals_of(&[0.05, 0.1, 0.2]), 2);
        assert_eq!(decimals_of(&[1.0, 10.0, 100.0]), 0);
        assert_eq!(decimals_of(&[0.3 * 3.0]), 1);
        // Values printed as exponents need no decimals.
        assert_eq!(decimals_of(&[2e-5, 1e6]), 0);
    }
}
