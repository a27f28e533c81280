//! Numbers as the pages and figures print them, each format defined once:
//! fixed decimals with a marker for a missing value, percentages, exponents
//! with a true minus sign, mean ± sd, and tick labels.
//!
//! A value that is NaN or infinite prints as a marker. Two markers are in
//! use: `n/a` in sentences ([`na`]) and `—` in the norms and skips tables
//! ([`dash`]); a page picks its module once in its imports.

use gradscope_stats::{Confidence, MeanInterval, MeanStd};

/// The marker [`na`] prints for a missing value.
pub const NA: &str = "n/a";
/// The marker [`dash`] prints for a missing value.
pub const DASH: &str = "—";

/// `v` with `places` decimals, or `missing` when it is NaN or infinite.
pub fn fixed(v: f64, places: usize, missing: &str) -> String {
    if v.is_finite() {
        format!("{v:.places$}")
    } else {
        missing.to_string()
    }
}

/// `v` with `places` decimals as Rust prints it, NaN and inf included
/// (`NaN`, `inf`): for numbers that are finite by construction.
pub fn decimals(v: f64, places: usize) -> String {
    format!("{v:.places$}")
}

/// Fixed decimals that print `n/a` for a missing value.
pub mod na {
    use super::{NA, fixed};

    /// Two decimals: `0.71`.
    pub fn f2(v: f64) -> String {
        fixed(v, 2, NA)
    }

    /// Three decimals: `0.716`.
    pub fn f3(v: f64) -> String {
        fixed(v, 3, NA)
    }
}

/// Fixed decimals that print `—` for a missing value.
pub mod dash {
    use super::{DASH, fixed};

    /// Two decimals: `0.71`.
    pub fn f2(v: f64) -> String {
        fixed(v, 2, DASH)
    }

    /// Three decimals: `0.716`.
    pub fn f3(v: f64) -> String {
        fixed(v, 3, DASH)
    }
}

/// A fraction as a percentage with one decimal, `12.5 %`; `n/a` when missing.
pub fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        NA.into()
    }
}

/// Three decimals with a true minus sign, for exponents: `−0.716`, `1.437`.
pub fn signed(v: f64) -> String {
    let s = na::f3(v);
    match s.strip_prefix('-') {
        Some(rest) => format!("−{rest}"),
        None => s,
    }
}

/// `mean ± se [lo, hi]` of a summary over independent seeds, all printed by
/// `f`: the standard error s/√n and Student's t 95 % interval
/// x̄ ± t_{0.975, n−1}·s/√n (`0.716 ± 0.007 [0.699, 0.733]`); a single value
/// has no spread to estimate and prints as `0.716 (n = 1)`.
pub fn mean_ci(m: &MeanStd, f: fn(f64) -> String) -> String {
    let i = MeanInterval::from_summary(m, Confidence::P95);
    if i.n < 2 {
        return format!("{} (n = {})", f(m.mean), i.n);
    }
    format!("{} ± {} [{}, {}]", f(i.mean), f(i.se), f(i.lo), f(i.hi))
}

/// The sentence under a table of [`mean_ci`] cells.
pub const CI_NOTE: &str = "Means over seeds as mean ± standard error [95 % Student-t interval, t_{0.975, n−1}·s/√n]; \
    with few seeds the interval is wide (t_{0.975, 1} = 12.7 for two).";

/// Half the width of the 95 % t interval of a summary's mean (NaN below two
/// values): the error bar of a mean over seeds.
pub fn ci_half_width(m: &MeanStd) -> f64 {
    MeanInterval::from_summary(m, Confidence::P95).half_width()
}

/// `mean ± sd` of a summary, both printed by `f`: `0.716 ± 0.021`; for a
/// spread (over layers, or over lesion draws) rather than an uncertainty.
pub fn mean_sd(m: &MeanStd, f: fn(f64) -> String) -> String {
    format!("{} ± {}", f(m.mean), f(m.std))
}

/// `mean ± se`, both printed by `f` (`6.197 ± 0.041`; `6.197 (± 0.041)`
/// with `bracket`, inside a sentence), or the mean alone when there is no
/// standard error (one seed).
pub fn mean_se(mean: f64, se: f64, f: fn(f64) -> String, bracket: bool) -> String {
    match (se.is_finite(), bracket) {
        (false, _) => f(mean),
        (true, false) => format!("{} ± {}", f(mean), f(se)),
        (true, true) => format!("{} (± {})", f(mean), f(se)),
    }
}

/// Tick label: plain decimals in a readable range, otherwise 1e-5 style.
pub fn tick(v: f64) -> String {
    tick_with(v, 3)
}

/// Decimals a linear axis over `range` needs so that its (about eight)
/// ticks read as different numbers: 3, or more on a range narrower than
/// a few thousandths. Log axes keep 3.
pub fn tick_decimals((lo, hi): (f64, f64), log: bool) -> usize {
    let step = (hi - lo).abs() / 8.0;
    if log || !step.is_finite() || step <= 0.0 {
        return 3;
    }
    (-step.log10()).ceil().clamp(3.0, 12.0) as usize
}

/// [`tick`] with `decimals` in the fixed-point range.
pub fn tick_with(v: f64, decimals: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        let e = a.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        if (m.abs() - 1.0).abs() < 1e-9 {
            return format!("{}1e{e}", if v < 0.0 { "-" } else { "" });
        }
        return format!("{m:.1}e{e}");
    }
    let s = format!("{v:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_of_a_narrow_axis_differ() {
        // 0.4889 … 0.4910 in eight steps: three decimals would repeat 0.489.
        let d = tick_decimals((0.4889, 0.4910), false);
        let labels: Vec<String> = (0..=8)
            .map(|i| tick_with(0.4889 + i as f64 * 0.0021 / 8.0, d))
            .collect();
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(unique, labels, "{labels:?}");
        // A wide axis keeps three decimals, as before.
        assert_eq!(tick_decimals((0.0, 1.0), false), 3);
        assert_eq!(
            tick_with(0.25, tick_decimals((0.0, 1.0), false)),
            tick(0.25)
        );
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(1e6), "1e6");
        assert_eq!(tick(1e-5), "1e-5");
        assert_eq!(tick(2.5e7), "2.5e7");
        assert_eq!(tick(-0.25), "-0.25");
    }

    #[test]
    fn missing_values_print_their_marker() {
        assert_eq!(na::f2(0.715), "0.71");
        assert_eq!(na::f3(f64::NAN), "n/a");
        assert_eq!(dash::f2(f64::INFINITY), "—");
        assert_eq!(dash::f3(-1.0), "-1.000");
        assert_eq!(decimals(f64::NAN, 2), "NaN");
        assert_eq!(decimals(1.0 / 3.0, 4), "0.3333");
    }

    #[test]
    fn percentages_and_signed_exponents() {
        assert_eq!(pct(0.125), "12.5 %");
        assert_eq!(pct(f64::NAN), "n/a");
        assert_eq!(signed(-0.7163), "−0.716");
        assert_eq!(signed(1.4371), "1.437");
        assert_eq!(signed(f64::NAN), "n/a");
    }

    #[test]
    fn mean_and_sd_share_one_format() {
        let m = MeanStd::of([1.0, 2.0, 3.0]);
        assert_eq!(mean_sd(&m, na::f3), "2.000 ± 1.000");
        assert_eq!(mean_sd(&m, dash::f2), "2.00 ± 1.00");
        // n = 4, s = 1: se = 0.5, t_{0.975, 3} = 3.182446.
        let m4 = MeanStd::of([1.0, 2.0, 3.0, 2.0].map(|v| v + 0.0));
        let s = m4.std;
        let se = s / 2.0;
        assert_eq!(
            mean_ci(&m4, na::f3),
            format!(
                "2.000 ± {:.3} [{:.3}, {:.3}]",
                se,
                2.0 - 3.182446 * se,
                2.0 + 3.182446 * se
            )
        );
        assert!((ci_half_width(&m4) - 3.182446 * se).abs() < 1e-5);
        assert_eq!(mean_ci(&MeanStd::of([0.5]), na::f2), "0.50 (n = 1)");
    }
}
