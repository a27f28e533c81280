//! Axis ranges plotters can always draw, and the values that fit on them.
//!
//! plotters' tick search steps a power of the base until it passes the
//! range's end: an end at ±∞, a zero start on a log axis or an infinite
//! width never ends (a net initialised at σ = 1e60 has gradient norms past
//! 1e300). Every range handed to plotters comes through here: finite,
//! ordered, of positive width, within ±[`AXIS_LIMIT`] (log axes within
//! [1/[`AXIS_LIMIT`], [`AXIS_LIMIT`]] and at most [`LOG_SPAN`] decades wide:
//! plotters divides the ends, and 10^±307 would overflow). Values beyond
//! ±[`DATA_LIMIT`], NaN and ±∞ are not drawn, nor values below a log axis
//! cut to its span; a chart counts them and says so.

/// The largest magnitude drawn (and, on log axes, 1/this the smallest):
/// a range within it stays finite after padding.
pub const DATA_LIMIT: f64 = 1e300;

/// The largest magnitude an axis range reaches (10^307: finite, and its
/// inverse a normal f64).
pub const AXIS_LIMIT: f64 = 1e307;

/// The most decades a log axis spans (the ratio of its ends stays finite).
pub const LOG_SPAN: f64 = 300.0;

/// Whether `v` can be placed on an axis: finite, within ±[`DATA_LIMIT`],
/// and at least 1/[`DATA_LIMIT`] when positive on a log axis (zero and
/// negative values have no place on a log axis and are left out apart).
pub fn fits(v: f64, log: bool) -> bool {
    v.is_finite() && v.abs() <= DATA_LIMIT && !(log && v > 0.0 && v < 1.0 / DATA_LIMIT)
}

/// `v` moved into [−[`DATA_LIMIT`], [`DATA_LIMIT`]] (an error bar's end).
pub fn clamp_to_limit(v: f64) -> f64 {
    v.clamp(-DATA_LIMIT, DATA_LIMIT)
}

/// A linear range plotters can draw: `(lo, hi)` unchanged when it already
/// is one (finite, lo < hi, within ±[`AXIS_LIMIT`], wide enough that its
/// ticks differ), otherwise the nearest such range (NaN ends become 0 and 1).
pub fn linear(lo: f64, hi: f64) -> (f64, f64) {
    let wide = |lo: f64, hi: f64| hi - lo >= 1e-12 * lo.abs().max(hi.abs());
    if lo.is_finite()
        && hi.is_finite()
        && lo < hi
        && lo.abs().max(hi.abs()) <= AXIS_LIMIT
        && wide(lo, hi)
    {
        return (lo, hi);
    }
    let bound = |v: f64, nan: f64| {
        if v.is_nan() {
            nan
        } else {
            v.clamp(-AXIS_LIMIT, AXIS_LIMIT)
        }
    };
    let (mut lo, mut hi) = (bound(lo, 0.0), bound(hi, 1.0));
    if lo > hi {
        std::mem::swap(&mut lo, &mut hi);
    }
    if !wide(lo, hi) || lo == hi {
        // A point: widen it by a relative margin, inside the limit.
        let d = (lo.abs() * 1e-6).max(1e-9);
        (lo, hi) = if hi + d > AXIS_LIMIT {
            (lo - 2.0 * d, hi)
        } else if lo - d < -AXIS_LIMIT {
            (lo, hi + 2.0 * d)
        } else {
            (lo - d, hi + d)
        };
    }
    (lo, hi)
}

/// A log range plotters can draw: `(lo, hi)` unchanged when it already is
/// one (1/[`AXIS_LIMIT`] ≤ lo < hi ≤ [`AXIS_LIMIT`], at most [`LOG_SPAN`]
/// decades), otherwise the nearest such range in decades (a non-positive or
/// NaN end becomes the limit; a wider span keeps its upper [`LOG_SPAN`]
/// decades, where large gradients are).
pub fn log(lo: f64, hi: f64) -> (f64, f64) {
    let floor = 1.0 / AXIS_LIMIT;
    if lo >= floor && hi <= AXIS_LIMIT && lo < hi && hi.log10() - lo.log10() <= LOG_SPAN {
        return (lo, hi);
    }
    let decades = |v: f64, nan: f64| {
        if v.is_nan() || v <= 0.0 {
            nan
        } else {
            v.log10().clamp(-307.0, 307.0)
        }
    };
    let (mut l, mut h) = (decades(lo, -307.0), decades(hi, 307.0));
    if l > h {
        std::mem::swap(&mut l, &mut h);
    }
    if h - l < 1e-6 {
        (l, h) = if h + 0.5 <= 307.0 {
            (l - 0.5, h + 0.5)
        } else {
            (l - 1.0, h)
        };
    }
    (10f64.powf(l.max(h - LOG_SPAN)), 10f64.powf(h))
}

/// `v` moved to within `span` range-widths outside `(lo, hi)` (in decades on
/// a log axis): points far off a fixed range map to pixels plotters
/// can still draw a line to in a few steps.
pub fn clip(v: f64, (lo, hi): (f64, f64), log: bool, span: f64) -> f64 {
    if log {
        let (l, h) = (lo.log10(), hi.log10());
        let w = span * (h - l);
        10f64.powf(v.log10().clamp((l - w).max(-307.0), (h + w).min(307.0)))
    } else {
        let w = span * (hi - lo);
        v.clamp(lo - w, hi + w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_ranges_pass_unchanged() {
        assert_eq!(linear(-0.25, 1.08), (-0.25, 1.08));
        assert_eq!(linear(-1e300, 1e300), (-1e300, 1e300));
        assert_eq!(log(1e-5, 3e4), (1e-5, 3e4));
    }

    #[test]
    fn extreme_ranges_become_finite_and_ordered() {
        for (lo, hi) in [
            (f64::NEG_INFINITY, f64::INFINITY),
            (f64::NAN, f64::NAN),
            (5.0, 5.0),
            (f64::MAX, f64::MAX),
            (-f64::MAX, -f64::MAX),
            (1e300, f64::INFINITY),
            (3.0, -2.0),
        ] {
            let (a, b) = linear(lo, hi);
            assert!(
                a.is_finite() && b.is_finite() && a < b,
                "{lo}..{hi} → {a}..{b}"
            );
            assert!(a.abs() <= AXIS_LIMIT && b.abs() <= AXIS_LIMIT);
            assert!((b - a).is_finite());
        }
        for (lo, hi) in [
            (0.0, 0.0),
            (0.0, 1.0),
            (-1.0, 5.0),
            (1e-320, 1e308),
            (1e290, f64::INFINITY),
            (f64::NAN, 1.0),
            (f64::MAX, f64::MAX),
            (7.0, 7.0),
        ] {
            let (a, b) = log(lo, hi);
            assert!(a > 0.0 && b.is_finite() && a < b, "{lo}..{hi} → {a}..{b}");
            assert!(a >= 1.0 / AXIS_LIMIT * 0.999 && b <= AXIS_LIMIT * 1.001);
            assert!((b / a).is_finite() && b.log10() - a.log10() <= LOG_SPAN + 1e-9);
        }
    }

    #[test]
    fn which_values_fit() {
        assert!(fits(1e300, false) && fits(-1e300, false) && fits(1e-300, true));
        assert!(!fits(1e301, false) && !fits(f64::NAN, false) && !fits(f64::INFINITY, true));
        assert!(!fits(1e-301, true) && fits(1e-301, false));
        // Zero and negatives on a log axis are not counted as extreme.
        assert!(fits(0.0, true) && fits(-3.0, true));
    }

    #[test]
    fn far_points_are_clipped_to_a_few_widths() {
        assert_eq!(clip(1e300, (0.0, 1.0), false, 4.0), 5.0);
        assert_eq!(clip(0.5, (0.0, 1.0), false, 4.0), 0.5);
        let v = clip(1e300, (1.0, 10.0), true, 4.0);
        assert!((v / 1e5 - 1.0).abs() < 1e-12, "{v}");
    }
}
