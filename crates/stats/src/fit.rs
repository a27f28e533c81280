//! Least-squares line fits and the decay laws of correlation against depth.

use serde::{Deserialize, Serialize};

use crate::{Result, StatsError};

/// y ≈ intercept + slope·x, with the coefficient of determination R².
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineFit {
    #[serde(with = "crate::nan")]
    /// Slope of the least-squares line.
    pub slope: f64,
    #[serde(with = "crate::nan")]
    /// Intercept of the least-squares line.
    pub intercept: f64,
    /// 1 − SS_res/SS_tot (1 for a perfect fit; NaN when y is constant).
    #[serde(with = "crate::nan")]
    pub r2: f64,
    /// Points used.
    pub n: usize,
}

/// Ordinary least squares of y on x.
pub fn linear_fit(x: &[f64], y: &[f64]) -> Result<LineFit> {
    let n = x.len().min(y.len());
    if n < 2 {
        return Err(StatsError::TooShort {
            what: "line fit",
            need: 2,
            got: n,
        });
    }
    let mx = x.iter().sum::<f64>() / n as f64;
    let my = y.iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 {
        return Err(StatsError::Shape("line fit: all x are equal".into()));
    }
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_res: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (b - intercept - slope * a).powi(2))
        .sum();
    Ok(LineFit {
        slope,
        intercept,
        r2: 1.0 - ss_res / syy,
        n,
    })
}

/// A decay law y(L) fitted in log space, where points with y ≤ 0 (or not
/// finite) cannot enter and are counted in `excluded`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecayFit {
    /// Prefactor a.
    #[serde(with = "crate::nan")]
    pub a: f64,
    /// Exponential: base b of y = a·b^L. Power law: exponent p of y = a·L^−p.
    #[serde(with = "crate::nan")]
    pub rate: f64,
    /// R² of the fit of ln y (comparable between the two laws: same data, same scale).
    #[serde(with = "crate::nan")]
    pub r2: f64,
    /// Points used in the fit.
    pub used: usize,
    /// Points left out (y ≤ 0 or not finite: ln y undefined).
    pub excluded: usize,
}

impl DecayFit {
    /// The fitted exponential law a·b^L at `depth`.
    pub fn exponential(&self, depth: f64) -> f64 {
        self.a * self.rate.powf(depth)
    }

    /// The fitted power law a·L^−p at `depth`.
    pub fn power_law(&self, depth: f64) -> f64 {
        self.a * depth.powf(-self.rate)
    }
}

fn positive_log_points(depths: &[f64], values: &[f64]) -> (Vec<f64>, Vec<f64>, usize) {
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    let mut excluded = 0;
    for (&l, &v) in depths.iter().zip(values) {
        if v > 0.0 && v.is_finite() && l > 0.0 {
            xs.push(l);
            ys.push(v.ln());
        } else {
            excluded += 1;
        }
    }
    (xs, ys, excluded)
}

/// y = a·b^L, fitted as ln y = ln a + L·ln b.
pub fn fit_exponential(depths: &[f64], values: &[f64]) -> Result<DecayFit> {
    let (xs, ys, excluded) = positive_log_points(depths, values);
    let f = linear_fit(&xs, &ys)?;
    Ok(DecayFit {
        a: f.intercept.exp(),
        rate: f.slope.exp(),
        r2: f.r2,
        used: f.n,
        excluded,
    })
}

/// y = a·L^−p, fitted as ln y = ln a − p·ln L.
pub fn fit_power_law(depths: &[f64], values: &[f64]) -> Result<DecayFit> {
    let (xs, ys, excluded) = positive_log_points(depths, values);
    let lx: Vec<f64> = xs.iter().map(|l| l.ln()).collect();
    let f = linear_fit(&lx, &ys)?;
    Ok(DecayFit {
        a: f.intercept.exp(),
        rate: -f.slope,
        r2: f.r2,
        used: f.n,
        excluded,
    })
}

/// Which law describes a decay better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayLaw {
    /// y = a·b^L.
    Exponential,
    /// y = a·L^−p.
    PowerLaw,
}

/// Both fits of one decay and the verdict (higher R² of ln y).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecayComparison {
    /// Fit of y = a·b^L.
    pub exponential: DecayFit,
    /// Fit of y = a·L^−p.
    pub power_law: DecayFit,
    /// The law with the higher R² of ln y.
    pub better: DecayLaw,
}

/// Fit y against depth with both laws. Needs at least two positive points.
pub fn compare_decay(depths: &[f64], values: &[f64]) -> Result<DecayComparison> {
    let exponential = fit_exponential(depths, values)?;
    let power_law = fit_power_law(depths, values)?;
    let better = if power_law.r2 > exponential.r2 {
        DecayLaw::PowerLaw
    } else {
        DecayLaw::Exponential
    };
    Ok(DecayComparison {
        exponential,
        power_law,
        better,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_laws_are_recovered_and_told_apart() {
        let depths: Vec<f64> = [1, 2, 4, 8, 16, 24, 32, 50]
            .iter()
            .map(|&l| l as f64)
            .collect();
        let exp: Vec<f64> = depths.iter().map(|l| 0.9 * 0.95f64.powf(*l)).collect();
        let pow: Vec<f64> = depths.iter().map(|l| 1.2 * l.powf(-0.5)).collect();
        let e = compare_decay(&depths, &exp).unwrap();
        assert!((e.exponential.a - 0.9).abs() < 1e-12 && (e.exponential.rate - 0.95).abs() < 1e-12);
        assert!((e.exponential.r2 - 1.0).abs() < 1e-12);
        assert_eq!(e.better, DecayLaw::Exponential);
        let p = compare_decay(&depths, &pow).unwrap();
        assert!((p.power_law.a - 1.2).abs() < 1e-12 && (p.power_law.rate - 0.5).abs() < 1e-12);
        assert_eq!(p.better, DecayLaw::PowerLaw);
        assert!((p.power_law.power_law(4.0) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn nonpositive_points_are_excluded_and_counted() {
        let depths = [1.0, 2.0, 4.0, 8.0];
        let values = [0.5, 0.25, -0.01, f64::NAN];
        let f = fit_exponential(&depths, &values).unwrap();
        assert_eq!((f.used, f.excluded), (2, 2));
        assert!((f.rate - 0.5).abs() < 1e-12);
        assert!(fit_exponential(&[1.0], &[0.5]).is_err());
    }

    #[test]
    fn line_fit_r2_of_noisy_data_is_below_one() {
        let x = [0.0, 1.0, 2.0, 3.0];
        let y = [0.0, 1.1, 1.9, 3.2];
        let f = linear_fit(&x, &y).unwrap();
        assert!(f.r2 < 1.0 && f.r2 > 0.95);
        assert!(linear_fit(&[1.0, 1.0], &[0.0, 1.0]).is_err());
    }
}
