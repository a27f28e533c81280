//! Least-squares line fits, and the two decay laws of a quantity against depth
//! (fitted with intervals and screening in [`crate::FitInput`]).

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

/// Which law describes a decay better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayLaw {
    /// y = a·b^L.
    Exponential,
    /// y = a·L^−p.
    PowerLaw,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_fit_r2_of_noisy_data_is_below_one() {
        let x = [0.0, 1.0, 2.0, 3.0];
        let y = [0.0, 1.1, 1.9, 3.2];
        let f = linear_fit(&x, &y).unwrap();
        assert!(f.r2 < 1.0 && f.r2 > 0.95);
        assert!(linear_fit(&[1.0, 1.0], &[0.0, 1.0]).is_err());
    }
}
