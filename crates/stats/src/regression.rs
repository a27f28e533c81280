//! Least-squares lines with the standard errors and t intervals of their
//! slope and intercept.

use serde::{Deserialize, Serialize};

use crate::{Confidence, Result, StatsError};

/// y ≈ intercept + slope·x by (weighted) least squares, with uncertainties.
///
/// With weights wᵢ (relative inverse variances; all 1 for ordinary least
/// squares), x̄ = Σwx/Σw, ȳ = Σwy/Σw, Sxx = Σw(x − x̄)², slope = Σw(x − x̄)(y − ȳ)/Sxx,
/// intercept = ȳ − slope·x̄, residual variance s² = Σw·r²/(n − 2), and
///
///   se(slope) = s/√Sxx,  se(intercept) = s·√(1/Σw + x̄²/Sxx),
///
/// each with the interval estimate ± t_{1−α/2, n−2}·se. The intervals cover
/// the true coefficients with probability 1 − α when the deviations from the
/// line are independent and normal with variances ∝ 1/wᵢ (e.g. Draper and
/// Smith, "Applied Regression Analysis", ch. 1 and 9). s is estimated from
/// the residuals, so weights need only be right up to a common factor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineFitInterval {
    /// Slope of the line.
    #[serde(with = "crate::nan")]
    pub slope: f64,
    /// Standard error of the slope.
    #[serde(with = "crate::nan")]
    pub slope_se: f64,
    /// Lower end of the slope's interval.
    #[serde(with = "crate::nan")]
    pub slope_lo: f64,
    /// Upper end of the slope's interval.
    #[serde(with = "crate::nan")]
    pub slope_hi: f64,
    /// Intercept, the line at x = 0.
    #[serde(with = "crate::nan")]
    pub intercept: f64,
    /// Standard error of the intercept.
    #[serde(with = "crate::nan")]
    pub intercept_se: f64,
    /// Lower end of the intercept's interval.
    #[serde(with = "crate::nan")]
    pub intercept_lo: f64,
    /// Upper end of the intercept's interval.
    #[serde(with = "crate::nan")]
    pub intercept_hi: f64,
    /// 1 − SS_res/SS_tot, weighted as the fit (NaN when y is constant).
    #[serde(with = "crate::nan")]
    pub r2: f64,
    /// s, the residual standard deviation at unit weight.
    #[serde(with = "crate::nan")]
    pub residual_sd: f64,
    /// Points used.
    pub n: usize,
    /// The level 1 − α of the intervals (n − 2 degrees of freedom).
    pub confidence: f64,
}

impl LineFitInterval {
    /// The line at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }

    /// Whether `slope` lies in the slope's interval.
    pub fn slope_consistent_with(&self, slope: f64) -> bool {
        self.slope_lo <= slope && slope <= self.slope_hi
    }
}

/// Ordinary least squares of y on x with intervals: see [`LineFitInterval`].
/// Needs at least three points (one residual degree of freedom), x not all
/// equal, every value finite.
pub fn least_squares_line(x: &[f64], y: &[f64], confidence: Confidence) -> Result<LineFitInterval> {
    fit(x, y, None, confidence)
}

/// Weighted least squares of y on x with intervals, weights wᵢ > 0 ∝ 1/Var(yᵢ):
/// see [`LineFitInterval`].
pub fn weighted_least_squares_line(
    x: &[f64],
    y: &[f64],
    weights: &[f64],
    confidence: Confidence,
) -> Result<LineFitInterval> {
    fit(x, y, Some(weights), confidence)
}

fn check(x: &[f64], y: &[f64], weights: Option<&[f64]>) -> Result<()> {
    let n = x.len();
    if y.len() != n || weights.is_some_and(|w| w.len() != n) {
        return Err(StatsError::Shape(format!(
            "line fit: {n} x, {} y, {} weights",
            y.len(),
            weights.map_or(n, <[f64]>::len)
        )));
    }
    if n < 3 {
        return Err(StatsError::TooShort {
            what: "line fit with intervals",
            need: 3,
            got: n,
        });
    }
    if let Some(&v) = x.iter().chain(y).find(|v| !v.is_finite()) {
        return Err(StatsError::Parameter {
            name: "point of a line fit",
            value: v,
            expected: "finite (leave points out with FitInput)",
        });
    }
    if let Some(&w) = weights.and_then(|w| w.iter().find(|w| !(w.is_finite() && **w > 0.0))) {
        return Err(StatsError::Parameter {
            name: "weight",
            value: w,
            expected: "finite and > 0",
        });
    }
    Ok(())
}

fn fit(
    x: &[f64],
    y: &[f64],
    weights: Option<&[f64]>,
    confidence: Confidence,
) -> Result<LineFitInterval> {
    check(x, y, weights)?;
    let n = x.len();
    let w = |i: usize| weights.map_or(1.0, |w| w[i]);
    let sw: f64 = (0..n).map(w).sum();
    let mx = (0..n).map(|i| w(i) * x[i]).sum::<f64>() / sw;
    let my = (0..n).map(|i| w(i) * y[i]).sum::<f64>() / sw;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxx += w(i) * dx * dx;
        sxy += w(i) * dx * dy;
        syy += w(i) * dy * dy;
    }
    if sxx == 0.0 {
        return Err(StatsError::Shape("line fit: all x are equal".into()));
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = (0..n)
        .map(|i| w(i) * (y[i] - intercept - slope * x[i]).powi(2))
        .sum();
    let s = (ss_res / (n - 2) as f64).sqrt();
    let slope_se = s / sxx.sqrt();
    let intercept_se = s * (1.0 / sw + mx * mx / sxx).sqrt();
    let t = confidence.t_critical((n - 2) as f64);
    Ok(LineFitInterval {
        slope,
        slope_se,
        slope_lo: slope - t * slope_se,
        slope_hi: slope + t * slope_se,
        intercept,
        intercept_se,
        intercept_lo: intercept - t * intercept_se,
        intercept_hi: intercept + t * intercept_se,
        r2: 1.0 - ss_res / syy,
        residual_sd: s,
        n,
        confidence: confidence.level(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear_fit;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn hand_example() {
        // Slope 1.04, intercept −0.01, SS_res = 21/500, t_{0.975,2} = 4.302652729749464.
        let (x, y) = ([0.0, 1.0, 2.0, 3.0], [0.0, 1.1, 1.9, 3.2]);
        let f = least_squares_line(&x, &y, Confidence::P95).unwrap();
        let near = |a: f64, b: f64| (a - b).abs() < 1e-13;
        assert!(near(f.slope, 1.04) && near(f.intercept, -0.01));
        assert!(near(f.slope_se, 0.064_807_406_984_078_6));
        assert!(near(f.intercept_se, 0.121_243_556_529_821_4));
        assert!(near(f.slope_lo, 0.761_156_233_431_969_7));
        assert!(near(f.slope_hi, 1.318_843_766_568_030_3));
        assert!(near(f.intercept_lo, -0.531_668_919_467_569_5));
        assert!(near(f.intercept_hi, 0.511_668_919_467_569_5));
        assert!(near(f.residual_sd, 0.144_913_767_461_894_4));
        assert!(near(f.r2, 0.992_293_577_981_651_4));
        // The point estimates are those of `linear_fit`.
        let plain = linear_fit(&x, &y).unwrap();
        assert!(near(plain.slope, f.slope) && near(plain.r2, f.r2));
        assert!(near(f.at(2.0), 2.07) && f.slope_consistent_with(1.0));
    }

    #[test]
    fn bad_input_is_refused() {
        let c = Confidence::P95;
        assert!(least_squares_line(&[1.0, 2.0], &[1.0, 2.0], c).is_err());
        assert!(least_squares_line(&[1.0, 2.0, 3.0], &[1.0, 2.0], c).is_err());
        assert!(least_squares_line(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], c).is_err());
        assert!(least_squares_line(&[1.0, 2.0, 3.0], &[1.0, f64::NAN, 3.0], c).is_err());
        let w = [1.0, 0.0, 1.0];
        assert!(weighted_least_squares_line(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0], &w, c).is_err());
    }

    #[test]
    fn weights_act_as_repeated_points() {
        // Weight 2 on a point gives the point estimates of listing it twice.
        let (x, y) = ([0.0, 1.0, 2.0, 3.0], [0.3, 0.9, 2.4, 2.8]);
        let w =
            weighted_least_squares_line(&x, &y, &[1.0, 2.0, 1.0, 1.0], Confidence::P95).unwrap();
        let twice = least_squares_line(
            &[0.0, 1.0, 1.0, 2.0, 3.0],
            &[0.3, 0.9, 0.9, 2.4, 2.8],
            Confidence::P95,
        )
        .unwrap();
        assert!((w.slope - twice.slope).abs() < 1e-14);
        assert!((w.intercept - twice.intercept).abs() < 1e-14);
        // Scaling every weight changes nothing.
        let w10 = weighted_least_squares_line(&x, &y, &[10.0, 20.0, 10.0, 10.0], Confidence::P95)
            .unwrap();
        assert!((w10.slope_se - w.slope_se).abs() < 1e-14);
        assert!((w10.intercept_hi - w.intercept_hi).abs() < 1e-14);
    }

    #[test]
    fn slope_intervals_cover_the_true_slope_at_their_level() {
        // y = 1 + 0.7x + N(0, 0.5²) at x = 0..9: 2,000 seeded replicates,
        // binomial sd of the coverage 0.49 %.
        let mut rng = StdRng::seed_from_u64(21);
        let noise = Normal::new(0.0, 0.5).unwrap();
        let x: Vec<f64> = (0..10).map(f64::from).collect();
        let (mut slope_in, mut intercept_in) = (0, 0);
        for _ in 0..2000 {
            let y: Vec<f64> = x
                .iter()
                .map(|v| 1.0 + 0.7 * v + noise.sample(&mut rng))
                .collect();
            let f = least_squares_line(&x, &y, Confidence::P95).unwrap();
            slope_in += usize::from(f.slope_consistent_with(0.7));
            intercept_in += usize::from(f.intercept_lo <= 1.0 && 1.0 <= f.intercept_hi);
        }
        for (what, k) in [("slope", slope_in), ("intercept", intercept_in)] {
            let share = k as f64 / 2000.0;
            assert!((0.935..=0.965).contains(&share), "{what} coverage {share}");
        }
    }

    #[test]
    fn weighted_intervals_cover_under_unequal_noise() {
        // sd ∝ (1 + x): ordinary least squares' intervals assume equal
        // variances, weights 1/(1 + x)² restore the level.
        let mut rng = StdRng::seed_from_u64(22);
        let unit = Normal::new(0.0, 1.0).unwrap();
        let x: Vec<f64> = (0..12).map(f64::from).collect();
        let w: Vec<f64> = x.iter().map(|v| 1.0 / (1.0 + v).powi(2)).collect();
        let mut covered = 0;
        for _ in 0..2000 {
            let y: Vec<f64> = x
                .iter()
                .map(|v| 2.0 - 0.3 * v + 0.2 * (1.0 + v) * unit.sample(&mut rng))
                .collect();
            let f = weighted_least_squares_line(&x, &y, &w, Confidence::P95).unwrap();
            covered += usize::from(f.slope_consistent_with(-0.3));
        }
        let share = covered as f64 / 2000.0;
        assert!(
            (0.935..=0.965).contains(&share),
            "weighted coverage {share}"
        );
    }
}
