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

/// Whether [`tick_with`] prints `v` in fixed point (0 and magnitudes in
/// [0.001, 100000)) rather than as an exponent.
pub fn tick_fixed(v: f64) -> bool {
    v == 0.0 || (1e-3..1e5).contains(&v.abs())
}

/// [`tick`] with `decimals` in the fixed-point range.
pub fn tick_with(v: f64, decimals: usize) -> String {
    if !tick_fixed(v) {
        return tick_exponent(v);
    }
    if v == 0.0 {
        return "0".into();
    }
    let s = format!("{v:.decimals$}");
    if !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `v` as m × 10^e, `me` + `e`, with at most three decimals in m and its
/// trailing zeros dropped: `5e-4`, `2.5e7`, `1e0` (not `5.0e-4`); `0` for 0.
pub fn tick_exponent(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return tick_with(v, 0);
    }
    let mut e = v.abs().log10().floor() as i32;
    let mut m = v / 10f64.powi(e);
    // 9.9996e-5 would print as 10e-5.
    if m.abs() >= 9.9995 {
        (m, e) = (m / 10.0, e + 1);
    }
    let s = format!("{m:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}e{e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(1e6), "1e6");
        assert_eq!(tick(1e-5), "1e-5");
        assert_eq!(tick(2.5e7), "2.5e7");
        assert_eq!(tick(-0.25), "-0.25");
        assert_eq!(tick(5e-4), "5e-4");
        // No decimals: the zeros of a whole number stay.
        assert_eq!(tick_with(20.0, 0), "20");
        assert_eq!(tick_with(100.0, 0), "100");
        assert_eq!(tick(3e-4), "3e-4");
        assert_eq!(tick(-1.5e-7), "-1.5e-7");
        assert_eq!(tick(9.9999999999999e-5), "1e-4");
        assert_eq!(tick(1.25e9), "1.25e9");
        assert_eq!(tick_exponent(1.0), "1e0");
        assert_eq!(tick_exponent(0.02), "2e-2");
        assert_eq!(tick_exponent(-300.0), "-3e2");
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
