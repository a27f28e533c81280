//! The standard normal and Student's t distribution: tails, densities and
//! quantiles, the critical values of [`crate::MeanInterval`] and
//! [`crate::LineFitInterval`].
//!
//! The t tail is P(T > t) = ½·I_{ν/(ν+t²)}(ν/2, ½) (Abramowitz and Stegun
//! 26.7.1 with 26.5.27), the normal tail P(Z > z) = ½·Q(½, z²/2). A quantile is
//! the root of ln P(T > t) = ln q found by Newton steps kept inside a
//! bisection bracket; from ν = 10⁴ on it is the Cornish–Fisher expansion to
//! ν⁻⁵ (Abramowitz and Stegun 26.7.5), whose first omitted term is below
//! 10⁻¹⁵ relative there (the continued fraction of the root search needs
//! O(√ν) terms and gathers rounding: 6·10⁻¹² relative at ν = 10⁶).
//! Accurate to about 10⁻¹³ relative for 10⁻¹⁵ ≤ q ≤ ½.

use crate::special::{incomplete_beta_split, ln_beta, upper_incomplete_gamma};

/// Degrees of freedom above which the t quantile is the Cornish–Fisher expansion.
const CORNISH_FISHER_DF: f64 = 1e4;

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let half_z2 = 0.5 * z * z;
    let tail = 0.5 * upper_incomplete_gamma(0.5, half_z2);
    if z >= 0.0 { tail } else { 1.0 - tail }
}

/// P(Z ≤ z) for a standard normal Z.
pub fn normal_cdf(z: f64) -> f64 {
    normal_sf(-z)
}

/// The density e^{−z²/2}/√(2π).
pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The p-quantile z_p of the standard normal, P(Z ≤ z_p) = p (±∞ at 0 and 1,
/// NaN outside [0, 1]); z_0.975 = 1.959963984540054.
pub fn normal_quantile(p: f64) -> f64 {
    symmetric_quantile(p, |q| {
        // Abramowitz and Stegun 26.2.23 (error < 4.5·10⁻⁴) starts the root search.
        let s = (-2.0 * q.ln()).sqrt();
        let start = s
            - (2.515_517 + s * (0.802_853 + s * 0.010_328))
                / (1.0 + s * (1.432_788 + s * (0.189_269 + s * 0.001_308)));
        upper_tail_root(q, start, normal_sf, normal_pdf)
    })
}

/// P(T > t) for Student's t with `df` > 0 degrees of freedom (the normal tail at df = ∞).
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if df == f64::INFINITY {
        return normal_sf(t);
    }
    if t < 0.0 {
        return 1.0 - student_t_sf(-t, df);
    }
    if t == f64::INFINITY {
        return 0.0;
    }
    // x = ν/(ν + t²) = 1/(1 + s²) and y = 1 − x = s²/(1 + s²) with s = t/√ν,
    // each from s so that neither loses digits to 1 − x.
    let s = t / df.sqrt();
    let (ln_x, ln_y) = if s > 1e100 {
        (-2.0 * s.ln(), 0.0)
    } else {
        let l = (s * s).ln_1p();
        (-l, 2.0 * s.ln() - l)
    };
    0.5 * incomplete_beta_split(0.5 * df, 0.5, ln_x.exp(), ln_y.exp(), ln_x, ln_y)
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    student_t_sf(-t, df)
}

/// The t density Γ((ν+1)/2)/(√(νπ)·Γ(ν/2))·(1 + t²/ν)^{−(ν+1)/2} = (1 + t²/ν)^{−(ν+1)/2}/(√ν·B(ν/2, ½)).
pub fn student_t_pdf(t: f64, df: f64) -> f64 {
    if df == f64::INFINITY {
        return normal_pdf(t);
    }
    let s2 = t * t / df;
    (-(0.5 * (df + 1.0)) * s2.ln_1p() - ln_beta(0.5 * df, 0.5)).exp() / df.sqrt()
}

/// The p-quantile t_{p,ν} of Student's t with ν = `df` degrees of freedom
/// (ν > 0, not necessarily whole; ν = ∞ gives the normal quantile):
/// t_{0.975,1} = 12.7062047361747, t_{0.975,5} = 2.5705818356363,
/// t_{0.975,30} = 2.0422724563012. NaN for ν ≤ 0 or p outside [0, 1].
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    if df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if df == f64::INFINITY {
        return normal_quantile(p);
    }
    symmetric_quantile(p, |q| {
        if df == 1.0 {
            // Cauchy: t = cot(πq).
            return 1.0 / (std::f64::consts::PI * q).tan();
        }
        if df == 2.0 {
            return (1.0 - 2.0 * q) / (2.0 * q * (1.0 - q)).sqrt();
        }
        let z = normal_quantile(1.0 - q);
        let z = if z.is_finite() {
            z
        } else {
            (-2.0 * q.ln()).sqrt()
        };
        let expansion = cornish_fisher(z, df);
        if df >= CORNISH_FISHER_DF {
            return expansion;
        }
        upper_tail_root(
            q,
            expansion.max(f64::MIN_POSITIVE),
            |t| student_t_sf(t, df),
            |t| student_t_pdf(t, df),
        )
    })
}

/// t_{p,ν} ≈ z + g₁/ν + g₂/ν² + g₃/ν³ + g₄/ν⁴ + g₅/ν⁵ with z = z_p (Abramowitz and Stegun 26.7.5).
fn cornish_fisher(z: f64, df: f64) -> f64 {
    let z2 = z * z;
    let g1 = z * (z2 + 1.0) / 4.0;
    let g2 = z * (3.0 + z2 * (16.0 + z2 * 5.0)) / 96.0;
    let g3 = z * (-15.0 + z2 * (17.0 + z2 * (19.0 + z2 * 3.0))) / 384.0;
    let g4 = z * (-945.0 + z2 * (-1920.0 + z2 * (1482.0 + z2 * (776.0 + z2 * 79.0)))) / 92_160.0;
    let g5 = z
        * (17_955.0 + z2 * (-765.0 + z2 * (-1782.0 + z2 * (930.0 + z2 * (339.0 + z2 * 27.0)))))
        / 368_640.0;
    z + (g1 + (g2 + (g3 + (g4 + g5 / df) / df) / df) / df) / df
}

/// Quantile of a distribution symmetric about 0, from `upper(q)`, the point
/// with upper tail q ∈ (0, ½). 1 − p is exact for p ≥ ½ (Sterbenz), so the tail
/// of p = 0.975 is 0.025 to the last bit that p carries.
fn symmetric_quantile(p: f64, upper: impl Fn(f64) -> f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p == 0.0 || p == 1.0 {
        return if p == 1.0 {
            f64::INFINITY
        } else {
            f64::NEG_INFINITY
        };
    }
    if p > 0.5 { upper(1.0 - p) } else { -upper(p) }
}

/// The t > 0 where sf(t) = q (0 < q < ½), for a decreasing tail `sf` with
/// density `pdf`: Newton steps on ln sf(t) − ln q, which is close to linear in
/// the far tail, bisection whenever a step would leave the bracket.
fn upper_tail_root(q: f64, start: f64, sf: impl Fn(f64) -> f64, pdf: impl Fn(f64) -> f64) -> f64 {
    let target = q.ln();
    let (mut lo, mut hi) = (0.0, start.max(1.0));
    while sf(hi) > q {
        lo = hi;
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    let mut t = start.clamp(lo, hi);
    for _ in 0..200 {
        let tail = sf(t);
        let gap = tail.ln() - target;
        if gap > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let newton = t + gap * tail / pdf(t);
        let next = if newton > lo && newton < hi && newton.is_finite() {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - t).abs() <= 2.0 * f64::EPSILON * t || hi - lo <= 2.0 * f64::EPSILON * hi {
            return next;
        }
        t = next;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_rel(got: f64, want: f64, rel: f64, what: &str) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "{what}: {got} vs {want} (rel {:.1e})",
            (got - want).abs() / want.abs()
        );
    }

    #[test]
    fn t_quantiles_match_the_table() {
        // Upper 2.5 % and 0.5 % points (30-digit references).
        let table = [
            (1.0, 12.706_204_736_174_705, 63.656_741_162_871_58),
            (2.0, 4.302_652_729_749_464, 9.924_843_200_918_293),
            (3.0, 3.182_446_305_283_709_6, 5.840_909_309_733_357),
            (5.0, 2.570_581_835_636_315_5, 4.032_142_983_557_228),
            (10.0, 2.228_138_851_986_275, 3.169_272_672_616_951),
            (30.0, 2.042_272_456_301_238, 2.749_995_653_567_225),
            (100.0, 1.983_971_518_523_552, 2.625_890_521_438_018),
            (1000.0, 1.962_339_080_826_408, 2.580_754_698_065_951),
            (1e5, 1.959_987_707_534_609_6, 2.575_878_469_908_375),
            (1e6, 1.959_966_356_814_107, 2.575_834_220_105_334),
        ];
        for (df, t975, t995) in table {
            assert_rel(student_t_quantile(0.975, df), t975, 1e-12, "t 0.975");
            assert_rel(student_t_quantile(0.995, df), t995, 1e-12, "t 0.995");
            assert_rel(student_t_quantile(0.025, df), -t975, 1e-12, "t 0.025");
        }
        // The four values the intervals lean on, to 10⁻¹⁰ absolute.
        for (df, want) in [
            (1.0, 12.706_204_736_2),
            (2.0, 4.302_652_729_75),
            (30.0, 2.042_272_456_30),
        ] {
            assert!((student_t_quantile(0.975, df) - want).abs() < 1e-10);
        }
        assert!((student_t_quantile(0.975, f64::INFINITY) - 1.959_963_984_54).abs() < 1e-10);
    }

    #[test]
    fn t_quantiles_hold_off_the_table() {
        // Fractional df, the far tail of the Cauchy, the switch to the expansion.
        assert_rel(
            student_t_quantile(0.7, 2.5),
            0.597_307_738_252_317_5,
            1e-12,
            "df 2.5",
        );
        assert_rel(
            student_t_quantile(0.999, 4.5),
            6.421_242_884_295_792,
            1e-12,
            "df 4.5",
        );
        // 1 − 10⁻⁹ rounds to a p whose tail is 9.999999717180685e-10: t = cot(π·that).
        assert_rel(
            student_t_quantile(1.0 - 1e-9, 1.0),
            318_309_895.186_209_3,
            1e-12,
            "cauchy",
        );
        // At the switch the root search and the expansion agree.
        let df = CORNISH_FISHER_DF;
        for p in [0.975, 1.0 - 1e-9] {
            let root = upper_tail_root(
                1.0 - p,
                1.0,
                |t| student_t_sf(t, df),
                |t| student_t_pdf(t, df),
            );
            assert_rel(student_t_quantile(p, df), root, 1e-13, "switch");
        }
        assert_eq!(student_t_quantile(0.5, 7.0), 0.0);
        assert_eq!(student_t_quantile(1.0, 7.0), f64::INFINITY);
        assert!(student_t_quantile(0.9, 0.0).is_nan() && student_t_quantile(1.1, 3.0).is_nan());
    }

    #[test]
    fn t_tail_inverts_the_quantile_and_has_closed_forms() {
        for df in [1.0, 3.0, 7.5, 40.0, 5e4] {
            for p in [0.6, 0.9, 0.99, 0.999_99] {
                let t = student_t_quantile(p, df);
                assert_rel(student_t_cdf(t, df), p, 1e-13, "cdf(quantile)");
            }
        }
        // ν = 1: atan(1/t)/π; ν = 2: ½ − t/(2√(2 + t²)) = 1/((r + t)·r) with r = √(2 + t²).
        for t in [0.1, 1.0, 7.0, 300.0] {
            let pi = std::f64::consts::PI;
            assert_rel(
                student_t_sf(t, 1.0),
                (1.0 / t).atan() / pi,
                1e-13,
                "cauchy sf",
            );
            let r = (2.0 + t * t).sqrt();
            assert_rel(student_t_sf(t, 2.0), 1.0 / ((r + t) * r), 1e-13, "t2 sf");
        }
        assert_rel(
            student_t_pdf(0.0, 1.0),
            1.0 / std::f64::consts::PI,
            1e-14,
            "pdf",
        );
    }

    #[test]
    fn normal_quantiles_and_tails() {
        assert_rel(
            normal_quantile(0.975),
            1.959_963_984_540_054,
            1e-14,
            "z 0.975",
        );
        assert_rel(
            normal_quantile(0.5 + 1e-3),
            2.506_630_899_571_766e-3,
            1e-9,
            "z near ½",
        );
        assert_rel(
            normal_quantile(1e-12),
            -7.034_483_825_301_132,
            1e-12,
            "z 1e-12",
        );
        assert_rel(normal_sf(1.0), 0.158_655_253_931_457_05, 1e-14, "sf 1");
        assert_rel(normal_sf(-2.0), 0.977_249_868_051_820_8, 1e-14, "sf −2");
        assert_rel(normal_cdf(-8.0), 6.220_960_574_271_784e-16, 1e-13, "cdf −8");
    }
}
