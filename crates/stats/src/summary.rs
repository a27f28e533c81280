//! Summaries over seeds that leave non-finite values out explicitly.

use serde::{Deserialize, Serialize};

/// Mean, sample standard deviation and spread of the finite values of a set;
/// `excluded` counts the NaN/inf values left out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    #[serde(with = "crate::nan")]
    /// Mean of the finite values.
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single value.
    #[serde(with = "crate::nan")]
    pub std: f64,
    #[serde(with = "crate::nan")]
    /// Smallest finite value.
    pub min: f64,
    #[serde(with = "crate::nan")]
    /// Largest finite value.
    pub max: f64,
    /// Finite values summarised.
    pub n: usize,
    /// NaN/inf values left out.
    pub excluded: usize,
}

impl MeanStd {
    /// Summary of the finite values; mean and std are NaN when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> MeanStd {
        let mut finite = Vec::new();
        let mut excluded = 0;
        for v in values {
            if v.is_finite() {
                finite.push(v);
            } else {
                excluded += 1;
            }
        }
        let n = finite.len();
        if n == 0 {
            return MeanStd {
                mean: f64::NAN,
                std: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                n,
                excluded,
            };
        }
        let mean = finite.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        let (min, max) = finite
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        MeanStd {
            mean,
            std: var.sqrt(),
            min,
            max,
            n,
            excluded,
        }
    }

    /// Standard error of the mean.
    pub fn sem(&self) -> f64 {
        self.std / (self.n as f64).sqrt()
    }
}

/// The q-quantile (0 ≤ q ≤ 1) of the finite values, linear interpolation between order statistics.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_leaves_out_non_finite_values() {
        let s = MeanStd::of([1.0, 2.0, 3.0, f64::NAN, f64::INFINITY]);
        assert_eq!((s.mean, s.std, s.n, s.excluded), (2.0, 1.0, 3, 2));
        assert_eq!((s.min, s.max), (1.0, 3.0));
        let none = MeanStd::of([f64::NAN]);
        assert!(none.mean.is_nan() && none.excluded == 1);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [4.0, 1.0, 3.0, 2.0, f64::NAN];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(quantile(&v, 0.5), 2.5);
    }
}
