//! The uncertainty of a mean over seeds: the standard error, Student's t
//! interval and a percentile bootstrap interval.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::distribution::student_t_quantile;
use crate::{MeanStd, Result, StatsError, quantile};

/// A confidence level 1 − α, checked once to lie strictly between 0 and 1.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Confidence(f64);

impl Confidence {
    /// The 95 % level.
    pub const P95: Confidence = Confidence(0.95);

    /// The level 1 − α; an error unless 0 < level < 1.
    pub fn new(level: f64) -> Result<Confidence> {
        if level > 0.0 && level < 1.0 {
            Ok(Confidence(level))
        } else {
            Err(StatsError::Parameter {
                name: "confidence",
                value: level,
                expected: "0 < confidence < 1",
            })
        }
    }

    /// The level 1 − α.
    pub fn level(self) -> f64 {
        self.0
    }

    /// The critical value t_{1−α/2, ν} of a two-sided interval with ν = `df`
    /// degrees of freedom (z_{1−α/2} at ν = ∞).
    pub fn t_critical(self, df: f64) -> f64 {
        student_t_quantile(0.5 + 0.5 * self.0, df)
    }
}

impl TryFrom<f64> for Confidence {
    type Error = StatsError;
    fn try_from(level: f64) -> Result<Confidence> {
        Confidence::new(level)
    }
}

impl From<Confidence> for f64 {
    fn from(c: Confidence) -> f64 {
        c.0
    }
}

/// The mean of the finite values of a set with its standard error and
/// Student's t interval: x̄ ± t_{1−α/2, n−1}·s/√n, s the sample standard
/// deviation (n − 1). The interval covers the true mean with probability
/// 1 − α when the values are independent draws of a normal variable
/// (Student 1908), and approximately so for other laws as n grows.
/// `excluded` counts the NaN/inf values left out, as in [`MeanStd`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanInterval {
    /// Mean of the finite values (NaN when there are none).
    #[serde(with = "crate::nan")]
    pub mean: f64,
    /// Sample standard deviation (n − 1); NaN for fewer than two values.
    #[serde(with = "crate::nan")]
    pub sd: f64,
    /// Standard error of the mean, s/√n; NaN for fewer than two values.
    #[serde(with = "crate::nan")]
    pub se: f64,
    /// Finite values summarised.
    pub n: usize,
    /// NaN/inf values left out.
    pub excluded: usize,
    /// The level 1 − α of the interval.
    pub confidence: f64,
    /// Lower end, x̄ − t·se.
    #[serde(with = "crate::nan")]
    pub lo: f64,
    /// Upper end, x̄ + t·se.
    #[serde(with = "crate::nan")]
    pub hi: f64,
}

impl MeanInterval {
    /// The interval of the finite values of `values`.
    pub fn of(values: impl IntoIterator<Item = f64>, confidence: Confidence) -> MeanInterval {
        MeanInterval::from_summary(&MeanStd::of(values), confidence)
    }

    /// The interval from a summary already made. A [`MeanStd`] of one value
    /// has std 0 by its convention; one value has no spread to estimate, so
    /// its sd, se and interval are NaN here.
    pub fn from_summary(summary: &MeanStd, confidence: Confidence) -> MeanInterval {
        let n = summary.n;
        let (sd, se, t) = if n >= 2 {
            let se = summary.std / (n as f64).sqrt();
            (summary.std, se, confidence.t_critical((n - 1) as f64))
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
        MeanInterval {
            mean: summary.mean,
            sd,
            se,
            n,
            excluded: summary.excluded,
            confidence: confidence.level(),
            lo: summary.mean - t * se,
            hi: summary.mean + t * se,
        }
    }

    /// Half the width of the interval, t·se.
    pub fn half_width(&self) -> f64 {
        0.5 * (self.hi - self.lo)
    }

    /// Whether `value` lies in [lo, hi].
    pub fn contains(&self, value: f64) -> bool {
        self.lo <= value && value <= self.hi
    }
}

/// A percentile bootstrap interval of the mean (Efron and Tibshirani 1993,
/// ch. 13): `resamples` sets of n values drawn with replacement from the n
/// finite values, the mean of each, and the α/2 and 1 − α/2 quantiles of
/// those means (linear interpolation between order statistics, as
/// [`quantile`]). The draws come from `StdRng::seed_from_u64(seed)` of rand
/// 0.9 (ChaCha12), so an interval is reproduced from its seed on the same
/// rand version. It makes no normal assumption but covers less than 1 − α for
/// small n (it ignores the n − 1 of the sample variance): prefer the t
/// interval for a handful of seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapInterval {
    /// Mean of the finite values.
    #[serde(with = "crate::nan")]
    pub mean: f64,
    /// The α/2 quantile of the resampled means.
    #[serde(with = "crate::nan")]
    pub lo: f64,
    /// The 1 − α/2 quantile of the resampled means.
    #[serde(with = "crate::nan")]
    pub hi: f64,
    /// The level 1 − α.
    pub confidence: f64,
    /// Resampled sets drawn.
    pub resamples: usize,
    /// Seed of the generator that drew them.
    pub seed: u64,
    /// Finite values resampled.
    pub n: usize,
    /// NaN/inf values left out.
    pub excluded: usize,
}

/// The percentile bootstrap interval of the mean of the finite values of
/// `values`: see [`BootstrapInterval`]. Needs two finite values and at least
/// one resample.
pub fn bootstrap_mean_interval(
    values: &[f64],
    confidence: Confidence,
    resamples: usize,
    seed: u64,
) -> Result<BootstrapInterval> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = finite.len();
    if n < 2 {
        return Err(StatsError::TooShort {
            what: "bootstrap interval",
            need: 2,
            got: n,
        });
    }
    if resamples == 0 {
        return Err(StatsError::Parameter {
            name: "resamples",
            value: 0.0,
            expected: "at least 1",
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| finite[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    let alpha = 1.0 - confidence.level();
    Ok(BootstrapInterval {
        mean: finite.iter().sum::<f64>() / n as f64,
        lo: quantile(&means, 0.5 * alpha),
        hi: quantile(&means, 1.0 - 0.5 * alpha),
        confidence: confidence.level(),
        resamples,
        seed,
        n,
        excluded: values.len() - n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn normal_sample(n: usize, mean: f64, sd: f64, rng: &mut StdRng) -> Vec<f64> {
        let d = Normal::new(mean, sd).unwrap();
        (0..n).map(|_| d.sample(rng)).collect()
    }

    #[test]
    fn hand_examples() {
        // 1..5: x̄ = 3, s = √2.5, se = √0.5, t_{0.975,4} = 2.7764451051977944.
        let m = MeanInterval::of([1.0, 2.0, 3.0, 4.0, 5.0], Confidence::P95);
        assert_eq!((m.mean, m.n, m.excluded), (3.0, 5, 0));
        assert!((m.se - 0.5f64.sqrt()).abs() < 1e-15);
        assert!((m.lo - 1.036_756_838_522_442_3).abs() < 1e-13);
        assert!((m.hi - 4.963_243_161_477_558).abs() < 1e-13);
        // 2, 4, 9 at 90 % with a NaN left out: s = √13, t_{0.95,2} = 2.919985580353726.
        let c90 = Confidence::new(0.9).unwrap();
        let m = MeanInterval::of([2.0, f64::NAN, 4.0, 9.0], c90);
        assert_eq!((m.mean, m.n, m.excluded), (5.0, 3, 1));
        assert!((m.sd - 13f64.sqrt()).abs() < 1e-14);
        assert!((m.lo - -1.078_434_701_553_734).abs() < 1e-12);
        assert!((m.hi - 11.078_434_701_553_734).abs() < 1e-12);
        assert!((m.half_width() - 6.078_434_701_553_734).abs() < 1e-12);
        assert!(m.contains(0.0) && !m.contains(12.0));
    }

    #[test]
    fn one_value_has_no_interval_and_none_has_no_mean() {
        let one = MeanInterval::of([4.0, f64::INFINITY], Confidence::P95);
        assert_eq!((one.mean, one.n, one.excluded), (4.0, 1, 1));
        assert!(one.se.is_nan() && one.lo.is_nan() && one.hi.is_nan() && !one.contains(4.0));
        let none = MeanInterval::of([f64::NAN], Confidence::P95);
        assert!(none.mean.is_nan() && none.n == 0 && none.excluded == 1);
    }

    #[test]
    fn from_a_summary_equals_from_the_values() {
        let v = [0.3, -1.2, 2.5, 0.9, f64::NAN, 1.1];
        let s = MeanStd::of(v);
        assert_eq!(
            MeanInterval::from_summary(&s, Confidence::P95),
            MeanInterval::of(v, Confidence::P95)
        );
        assert_eq!(s.sem(), MeanInterval::of(v, Confidence::P95).se);
    }

    #[test]
    fn confidence_is_checked_and_round_trips() {
        assert!(Confidence::new(1.0).is_err() && Confidence::new(0.0).is_err());
        assert!(Confidence::new(f64::NAN).is_err());
        assert!((Confidence::P95.t_critical(f64::INFINITY) - 1.959_963_984_540_054).abs() < 1e-14);
        let json = serde_json::to_string(&Confidence::P95).unwrap();
        assert_eq!(json, "0.95");
        assert!(serde_json::from_str::<Confidence>("1.5").is_err());
        let m = MeanInterval::of([1.0, f64::NAN], Confidence::P95);
        let back: MeanInterval = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!((back.mean, back.n, back.excluded), (1.0, 1, 1));
        assert!(back.lo.is_nan());
    }

    #[test]
    fn the_t_interval_covers_the_true_mean_at_its_level() {
        // 2,000 seeded samples of n = 8 from N(3, 2²): binomial sd of the
        // coverage 0.49 %, so 93.5–96.5 % is ±3 sd about 95 %.
        let mut rng = StdRng::seed_from_u64(11);
        let covered = (0..2000)
            .filter(|_| {
                MeanInterval::of(normal_sample(8, 3.0, 2.0, &mut rng), Confidence::P95)
                    .contains(3.0)
            })
            .count();
        let share = covered as f64 / 2000.0;
        assert!((0.935..=0.965).contains(&share), "coverage {share}");
        // At 50 % the same samples' intervals cover about half the time.
        let mut rng = StdRng::seed_from_u64(12);
        let c50 = Confidence::new(0.5).unwrap();
        let covered = (0..2000)
            .filter(|_| MeanInterval::of(normal_sample(8, 3.0, 2.0, &mut rng), c50).contains(3.0))
            .count();
        let share = covered as f64 / 2000.0;
        assert!(
            (0.466..=0.534).contains(&share),
            "coverage at 50 %: {share}"
        );
    }

    #[test]
    fn standard_error_of_ten_thousand_draws() {
        // N(0, 4): σ/√n = 2/100 = 0.02; s has relative sd 1/√(2n) ≈ 0.7 %.
        let mut rng = StdRng::seed_from_u64(3);
        let m = MeanInterval::of(normal_sample(10_000, 0.0, 2.0, &mut rng), Confidence::P95);
        assert!((m.se / 0.02 - 1.0).abs() < 0.03, "se {}", m.se);
        assert!(m.contains(0.0));
    }

    #[test]
    fn bootstrap_is_seeded_and_agrees_with_t_for_large_n() {
        let mut rng = StdRng::seed_from_u64(5);
        let v = normal_sample(200, 1.0, 3.0, &mut rng);
        let b = bootstrap_mean_interval(&v, Confidence::P95, 2000, 42).unwrap();
        assert_eq!(
            b,
            bootstrap_mean_interval(&v, Confidence::P95, 2000, 42).unwrap()
        );
        assert_ne!(
            b.lo,
            bootstrap_mean_interval(&v, Confidence::P95, 2000, 43)
                .unwrap()
                .lo
        );
        let t = MeanInterval::of(v.iter().copied(), Confidence::P95);
        assert_eq!(b.mean, t.mean);
        let (bw, tw) = (0.5 * (b.hi - b.lo), t.half_width());
        assert!((bw / tw - 1.0).abs() < 0.1, "bootstrap {bw} vs t {tw}");
        assert!(b.lo < b.mean && b.mean < b.hi);
        assert!(bootstrap_mean_interval(&[1.0, f64::NAN], Confidence::P95, 100, 0).is_err());
        assert!(bootstrap_mean_interval(&[1.0, 2.0], Confidence::P95, 0, 0).is_err());
    }

    #[test]
    fn bootstrap_coverage_is_near_its_level() {
        // n = 20: the percentile interval covers a little under 95 %: about
        // P(|T₁₉| ≤ 1.96·√(19/20)) = 92.9 % (92.3 % over 4,000 trials);
        // 1,000 trials give a binomial sd of 0.8 %.
        let mut rng = StdRng::seed_from_u64(9);
        let covered = (0..1000u64)
            .filter(|&k| {
                let v = normal_sample(20, -2.0, 1.0, &mut rng);
                let b = bootstrap_mean_interval(&v, Confidence::P95, 1000, k).unwrap();
                b.lo <= -2.0 && -2.0 <= b.hi
            })
            .count();
        let share = covered as f64 / 1000.0;
        assert!((0.9..=0.95).contains(&share), "bootstrap coverage {share}");
    }
}
