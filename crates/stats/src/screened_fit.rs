//! Line fits that say which points they left out and why, and the decay laws
//! y = a·b^L and y = a·L^−q fitted that way with intervals on a, b and q.
//!
//! A log-space fit cannot take y ≤ 0; a measurement at the noise floor or
//! saturated at its ceiling bends the fit. Leaving such points out silently
//! changes what a fit means, so every point left out is listed with its
//! reason, and the rule is part of the input.

use serde::{Deserialize, Serialize};

use crate::{
    Confidence, DecayLaw, LineFitInterval, Result, StatsError, least_squares_line,
    weighted_least_squares_line,
};

/// The axes a line is fitted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitScale {
    /// y against x.
    Linear,
    /// ln y against x: y = a·b^x has ln y = ln a + x·ln b.
    LogY,
    /// ln y against ln x: y = a·x^−q has ln y = ln a − q·ln x.
    LogLog,
}

/// Why a point was left out of a fit; the first reason in this order that applies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExclusionReason {
    /// x or y is NaN or infinite.
    NonFinite,
    /// y is below the noise floor (the rule's, or k standard errors of the point).
    BelowNoiseFloor {
        /// The floor it fell below.
        floor: f64,
    },
    /// y is above the ceiling where the measurement saturates.
    AboveCeiling {
        /// The ceiling it exceeded.
        ceiling: f64,
    },
    /// y ≤ 0 (or x ≤ 0 on log-log axes) where a logarithm is taken.
    NonPositiveUnderLog,
    /// Inverse-variance weights were asked for and the point has no standard
    /// error (NaN, infinite or ≤ 0).
    NoStandardError,
}

/// A point left out of a fit, with its reason.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExcludedPoint {
    /// Its index in the input.
    pub index: usize,
    /// Its x.
    #[serde(with = "crate::nan")]
    pub x: f64,
    /// Its y.
    #[serde(with = "crate::nan")]
    pub y: f64,
    /// Why it was left out.
    pub reason: ExclusionReason,
}

/// Which points a fit leaves out beyond those it cannot take (non-finite, or
/// non-positive under a log). Bounds are kept: y = floor and y = ceiling stay in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExclusionRule {
    /// Leave out y < floor: indistinguishable from the noise.
    pub noise_floor: Option<f64>,
    /// Leave out y < k·se(y): less than k standard errors above zero (needs
    /// standard errors). k = 2 leaves out points not different from 0 at about 95 %.
    pub floor_in_se: Option<f64>,
    /// Leave out y > ceiling: saturated.
    pub ceiling: Option<f64>,
    /// Leave out y within k standard errors of the value where it saturates
    /// (needs standard errors): the roughness 1 − r₁ is saturated at 1 once
    /// r₁ is not k standard errors above 0.
    pub saturation: Option<Saturation>,
}

/// The value a measurement saturates at, and how many of its standard errors
/// from it count as saturated: y > limit − k·se(y) is left out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Saturation {
    /// The value y cannot exceed.
    pub limit: f64,
    /// Standard errors from the limit still taken as saturated.
    pub k: f64,
}

/// How the points of a fit are weighted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// Ordinary least squares.
    #[default]
    Equal,
    /// Weights 1/se², the se taken to the fitted scale: se(ln y) ≈ se(y)/y
    /// (the delta method, fine while se ≪ y). Needs standard errors.
    InverseVariance,
}

/// The points of a fit, their standard errors if known, the exclusion rule
/// and the weighting; checked when a fit is made.
#[derive(Clone, Copy, Debug)]
pub struct FitInput<'a> {
    /// Abscissae (depths for a decay).
    pub x: &'a [f64],
    /// Ordinates.
    pub y: &'a [f64],
    /// Standard errors of y, one per point.
    pub se: Option<&'a [f64]>,
    /// Points to leave out beyond those the scale cannot take.
    pub rule: ExclusionRule,
    /// Equal or inverse-variance weights.
    pub weighting: Weighting,
}

/// The points a fit keeps and those it leaves out.
#[derive(Clone, Debug, PartialEq)]
pub struct Screening {
    /// Indices of the points kept.
    pub used: Vec<usize>,
    /// The points left out, in input order.
    pub excluded: Vec<ExcludedPoint>,
}

/// A line fitted to the kept points, and the points left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScreenedLine {
    /// The axes of the fit.
    pub scale: FitScale,
    /// The fit on those axes.
    pub line: LineFitInterval,
    /// The points left out, in input order.
    pub excluded: Vec<ExcludedPoint>,
}

/// A decay law fitted in log space with intervals (from those of the line,
/// mapped through exp, so the level carries over exactly):
/// exponential y = a·b^L, rate b = e^slope of ln y on L;
/// power law y = a·L^−q, rate q = −slope of ln y on ln L.
/// a = e^intercept is the geometric mean of y at L = 0 (exponential) or
/// L = 1 (power law) under log-normal scatter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecayRateFit {
    /// The law fitted.
    pub law: DecayLaw,
    /// Prefactor a.
    #[serde(with = "crate::nan")]
    pub a: f64,
    /// Lower end of a's interval.
    #[serde(with = "crate::nan")]
    pub a_lo: f64,
    /// Upper end of a's interval.
    #[serde(with = "crate::nan")]
    pub a_hi: f64,
    /// Base b (exponential) or exponent q (power law).
    #[serde(with = "crate::nan")]
    pub rate: f64,
    /// Lower end of the rate's interval.
    #[serde(with = "crate::nan")]
    pub rate_lo: f64,
    /// Upper end of the rate's interval.
    #[serde(with = "crate::nan")]
    pub rate_hi: f64,
    /// The line in log space behind it.
    pub line: LineFitInterval,
    /// The points left out, in input order.
    pub excluded: Vec<ExcludedPoint>,
}

/// Both decay laws fitted to one quantity, and the one whose line fits ln y
/// better (the higher R²; both are fits of ln y, to the points each keeps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecayComparison {
    /// y = a·b^L.
    pub exponential: DecayRateFit,
    /// y = a·L^−q.
    pub power_law: DecayRateFit,
    /// The law with the higher R² of ln y.
    pub better: DecayLaw,
}

impl DecayComparison {
    /// The fit of the better law.
    pub fn best(&self) -> &DecayRateFit {
        match self.better {
            DecayLaw::Exponential => &self.exponential,
            DecayLaw::PowerLaw => &self.power_law,
        }
    }
}

impl DecayRateFit {
    /// The fitted law at `depth`.
    pub fn at(&self, depth: f64) -> f64 {
        match self.law {
            DecayLaw::Exponential => self.a * self.rate.powf(depth),
            DecayLaw::PowerLaw => self.a * depth.powf(-self.rate),
        }
    }

    /// Whether `rate` lies in the rate's interval: the law with that rate is
    /// not rejected at level α.
    pub fn rate_consistent_with(&self, rate: f64) -> bool {
        self.rate_lo <= rate && rate <= self.rate_hi
    }
}

impl<'a> FitInput<'a> {
    /// Points (x, y) with no standard errors, no rule beyond the scale's and equal weights.
    pub fn new(x: &'a [f64], y: &'a [f64]) -> FitInput<'a> {
        FitInput {
            x,
            y,
            se: None,
            rule: ExclusionRule::default(),
            weighting: Weighting::Equal,
        }
    }

    fn check(&self) -> Result<()> {
        let n = self.x.len();
        if self.y.len() != n || self.se.is_some_and(|s| s.len() != n) {
            return Err(StatsError::Shape(format!(
                "fit input: {n} x, {} y, {} standard errors",
                self.y.len(),
                self.se.map_or(n, <[f64]>::len)
            )));
        }
        let bound = |name, v: Option<f64>, ok: bool, expected| match v {
            Some(value) if !ok => Err(StatsError::Parameter {
                name,
                value,
                expected,
            }),
            _ => Ok(()),
        };
        let r = self.rule;
        bound(
            "noise floor",
            r.noise_floor,
            r.noise_floor.is_some_and(f64::is_finite),
            "finite",
        )?;
        bound(
            "ceiling",
            r.ceiling,
            r.ceiling
                .is_some_and(|c| c.is_finite() && c > r.noise_floor.unwrap_or(f64::MIN)),
            "finite and above the noise floor",
        )?;
        bound(
            "floor in standard errors",
            r.floor_in_se,
            r.floor_in_se.is_some_and(|k| k.is_finite() && k >= 0.0),
            "finite and ≥ 0",
        )?;
        bound(
            "saturation",
            r.saturation.map(|s| s.limit),
            r.saturation
                .is_some_and(|s| s.limit.is_finite() && s.k.is_finite() && s.k >= 0.0),
            "a finite limit and k finite and ≥ 0",
        )?;
        let needs_se = r.floor_in_se.is_some()
            || r.saturation.is_some()
            || self.weighting == Weighting::InverseVariance;
        if needs_se && self.se.is_none() {
            return Err(StatsError::Shape(
                "a floor in standard errors or inverse-variance weights need standard errors"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The points kept on `scale` and those left out with their reasons.
    pub fn screen(&self, scale: FitScale) -> Result<Screening> {
        self.check()?;
        let mut used = Vec::new();
        let mut excluded = Vec::new();
        for (index, (&x, &y)) in self.x.iter().zip(self.y).enumerate() {
            let se = self.se.map_or(f64::NAN, |s| s[index]);
            match self.reason(scale, x, y, se) {
                None => used.push(index),
                Some(reason) => excluded.push(ExcludedPoint {
                    index,
                    x,
                    y,
                    reason,
                }),
            }
        }
        Ok(Screening { used, excluded })
    }

    fn reason(&self, scale: FitScale, x: f64, y: f64, se: f64) -> Option<ExclusionReason> {
        if !(x.is_finite() && y.is_finite()) {
            return Some(ExclusionReason::NonFinite);
        }
        let r = self.rule;
        let se_floor = r.floor_in_se.map(|k| k * se).filter(|f| f.is_finite());
        if let Some(floor) = [r.noise_floor, se_floor]
            .into_iter()
            .flatten()
            .find(|&f| y < f)
        {
            return Some(ExclusionReason::BelowNoiseFloor { floor });
        }
        let se_ceiling = r
            .saturation
            .map(|s| s.limit - s.k * se)
            .filter(|c| c.is_finite());
        if let Some(ceiling) = [r.ceiling, se_ceiling]
            .into_iter()
            .flatten()
            .find(|&c| y > c)
        {
            return Some(ExclusionReason::AboveCeiling { ceiling });
        }
        let log_y = scale != FitScale::Linear;
        if (log_y && y <= 0.0) || (scale == FitScale::LogLog && x <= 0.0) {
            return Some(ExclusionReason::NonPositiveUnderLog);
        }
        let has_se = se.is_finite() && se > 0.0;
        let se_needed = self.weighting == Weighting::InverseVariance
            || r.floor_in_se.is_some()
            || r.saturation.is_some();
        (se_needed && !has_se).then_some(ExclusionReason::NoStandardError)
    }

    /// Fit a line on `scale` to the kept points (at least three), with intervals.
    pub fn fit_line(&self, scale: FitScale, confidence: Confidence) -> Result<ScreenedLine> {
        let Screening { used, excluded } = self.screen(scale)?;
        let tx = |x: f64| if scale == FitScale::LogLog { x.ln() } else { x };
        let ty = |y: f64| if scale == FitScale::Linear { y } else { y.ln() };
        let xs: Vec<f64> = used.iter().map(|&i| tx(self.x[i])).collect();
        let ys: Vec<f64> = used.iter().map(|&i| ty(self.y[i])).collect();
        let line = match (self.weighting, self.se) {
            (Weighting::InverseVariance, Some(se)) => {
                let w: Vec<f64> = used
                    .iter()
                    .map(|&i| {
                        let s = if scale == FitScale::Linear {
                            se[i]
                        } else {
                            se[i] / self.y[i]
                        };
                        1.0 / (s * s)
                    })
                    .collect();
                weighted_least_squares_line(&xs, &ys, &w, confidence)?
            }
            _ => least_squares_line(&xs, &ys, confidence)?,
        };
        Ok(ScreenedLine {
            scale,
            line,
            excluded,
        })
    }

    /// Fit `law` to the kept points (ln y on depth, or on ln depth), with
    /// intervals on a and the rate: see [`DecayRateFit`].
    pub fn fit_decay(&self, law: DecayLaw, confidence: Confidence) -> Result<DecayRateFit> {
        let scale = match law {
            DecayLaw::Exponential => FitScale::LogY,
            DecayLaw::PowerLaw => FitScale::LogLog,
        };
        let ScreenedLine { line, excluded, .. } = self.fit_line(scale, confidence)?;
        let (rate, rate_lo, rate_hi) = match law {
            DecayLaw::Exponential => (line.slope.exp(), line.slope_lo.exp(), line.slope_hi.exp()),
            DecayLaw::PowerLaw => (-line.slope, -line.slope_hi, -line.slope_lo),
        };
        Ok(DecayRateFit {
            law,
            a: line.intercept.exp(),
            a_lo: line.intercept_lo.exp(),
            a_hi: line.intercept_hi.exp(),
            rate,
            rate_lo,
            rate_hi,
            line,
            excluded,
        })
    }
}

impl FitInput<'_> {
    /// Both laws fitted with intervals, see [`DecayComparison`].
    pub fn compare_decays(&self, confidence: Confidence) -> Result<DecayComparison> {
        let exponential = self.fit_decay(DecayLaw::Exponential, confidence)?;
        let power_law = self.fit_decay(DecayLaw::PowerLaw, confidence)?;
        let better = if power_law.line.r2 > exponential.line.r2 {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::{Distribution, Normal};

    const X: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];

    #[test]
    fn exclusions_are_listed_with_their_reasons() {
        let y = [0.5, f64::NAN, 0.2, -0.1, 1e-4, 0.05, 2.0, 0.01];
        let mut input = FitInput::new(&X, &y);
        input.rule = ExclusionRule {
            noise_floor: Some(1e-3),
            ceiling: Some(1.5),
            ..ExclusionRule::default()
        };
        let s = input.screen(FitScale::LogY).unwrap();
        assert_eq!(s.used, vec![0, 2, 5, 7]);
        let reasons: Vec<(usize, ExclusionReason)> =
            s.excluded.iter().map(|e| (e.index, e.reason)).collect();
        let floor = ExclusionReason::BelowNoiseFloor { floor: 1e-3 };
        assert_eq!(
            reasons,
            vec![
                (1, ExclusionReason::NonFinite),
                (3, floor),
                (4, floor),
                (6, ExclusionReason::AboveCeiling { ceiling: 1.5 }),
            ]
        );
        // The fit is the fit of the kept points.
        let f = input
            .fit_decay(DecayLaw::Exponential, Confidence::P95)
            .unwrap();
        let (kx, ky) = ([1.0, 3.0, 6.0, 8.0], [0.5, 0.2, 0.05, 0.01]);
        let ln_y: Vec<f64> = ky.iter().map(|v: &f64| v.ln()).collect();
        let direct = least_squares_line(&kx, &ln_y, Confidence::P95).unwrap();
        assert_eq!(f.line, direct);
        assert_eq!(f.excluded.len(), 4);
        // Without a rule only the log's domain and NaN leave points out.
        let plain = FitInput::new(&X, &y).screen(FitScale::LogY).unwrap();
        let left: Vec<_> = plain.excluded.iter().map(|e| (e.index, e.reason)).collect();
        assert_eq!(
            left,
            vec![
                (1, ExclusionReason::NonFinite),
                (3, ExclusionReason::NonPositiveUnderLog)
            ]
        );
        assert_eq!(
            FitInput::new(&X, &y)
                .screen(FitScale::Linear)
                .unwrap()
                .used
                .len(),
            7
        );
    }

    #[test]
    fn exact_laws_are_recovered_and_told_apart() {
        let depths = [1.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 50.0];
        let exp: Vec<f64> = depths
            .iter()
            .map(|l: &f64| 0.9 * 0.95f64.powf(*l))
            .collect();
        let pow: Vec<f64> = depths.iter().map(|l: &f64| 1.2 * l.powf(-0.5)).collect();
        let e = FitInput::new(&depths, &exp)
            .compare_decays(Confidence::P95)
            .unwrap();
        assert!((e.exponential.a - 0.9).abs() < 1e-12 && (e.exponential.rate - 0.95).abs() < 1e-12);
        assert!((e.exponential.line.r2 - 1.0).abs() < 1e-12);
        assert_eq!(e.better, DecayLaw::Exponential);
        // An exact law has a zero-width interval.
        assert!((e.exponential.rate_hi - e.exponential.rate_lo).abs() < 1e-12);
        let p = FitInput::new(&depths, &pow)
            .compare_decays(Confidence::P95)
            .unwrap();
        assert!((p.power_law.a - 1.2).abs() < 1e-12 && (p.power_law.rate - 0.5).abs() < 1e-12);
        assert_eq!(p.better, DecayLaw::PowerLaw);
        assert!((p.best().at(4.0) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn saturated_points_within_k_standard_errors_of_the_limit_are_left_out() {
        // The roughness 1 − r₁ with r₁ = 0.5, 0.2, 0.05, 0.01 (se 0.01 each):
        // r₁ ≥ 2 se keeps 1 − r₁ ≤ 0.98, so 0.99 (r₁ = 0.01) is saturated
        // and 0.95 is not; exactly at the ceiling stays in.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [0.5, 0.8, 0.95, 0.98, 0.99];
        let se = [0.01; 5];
        let mut input = FitInput::new(&x, &y);
        input.se = Some(&se);
        input.rule.saturation = Some(Saturation { limit: 1.0, k: 2.0 });
        let s = input.screen(FitScale::LogLog).unwrap();
        assert_eq!(s.used, vec![0, 1, 2, 3]);
        assert_eq!(s.excluded.len(), 1);
        assert_eq!(s.excluded[0].index, 4);
        assert!(matches!(
            s.excluded[0].reason,
            ExclusionReason::AboveCeiling { ceiling } if (ceiling - 0.98).abs() < 1e-15
        ));
        // Saturation needs standard errors, and a finite limit.
        assert!(
            FitInput { se: None, ..input }
                .screen(FitScale::LogY)
                .is_err()
        );
        let mut bad = input;
        bad.rule.saturation = Some(Saturation {
            limit: f64::NAN,
            k: 2.0,
        });
        assert!(bad.screen(FitScale::LogY).is_err());
    }

    #[test]
    fn log_log_leaves_out_depth_zero_and_floors_in_se_use_each_point() {
        let x = [0.0, 1.0, 2.0, 4.0, 8.0];
        let y = [1.0, 0.9, 0.6, 0.45, 0.1];
        let se = [0.01, 0.05, 0.05, 0.05, 0.06];
        let mut input = FitInput::new(&x, &y);
        input.se = Some(&se);
        input.rule.floor_in_se = Some(2.0);
        let s = input.screen(FitScale::LogLog).unwrap();
        assert_eq!(s.used, vec![1, 2, 3]);
        assert_eq!(s.excluded[0].reason, ExclusionReason::NonPositiveUnderLog);
        assert_eq!(
            s.excluded[1].reason,
            ExclusionReason::BelowNoiseFloor { floor: 0.12 }
        );
        // A floor in standard errors without them is refused, as is a bad bound.
        let mut bare = FitInput::new(&x, &y);
        bare.rule.floor_in_se = Some(2.0);
        assert!(bare.screen(FitScale::LogY).is_err());
        let mut bad = FitInput::new(&x, &y);
        bad.rule.ceiling = Some(f64::NAN);
        assert!(bad.screen(FitScale::LogY).is_err());
        assert!(FitInput::new(&x, &y[..3]).screen(FitScale::LogY).is_err());
    }

    #[test]
    fn inverse_variance_weights_are_taken_to_the_log_scale() {
        let y = [0.9, 0.8, 0.75, 0.62, 0.6, 0.5, 0.48, 0.4];
        let se = [0.01, 0.02, 0.01, 0.03, 0.02, 0.02, 0.05, 0.01];
        let mut input = FitInput::new(&X, &y);
        input.se = Some(&se);
        input.weighting = Weighting::InverseVariance;
        let f = input.fit_line(FitScale::LogY, Confidence::P95).unwrap();
        let ln_y: Vec<f64> = y.iter().map(|v| v.ln()).collect();
        let w: Vec<f64> = y.iter().zip(&se).map(|(v, s)| (v / s).powi(2)).collect();
        let direct = weighted_least_squares_line(&X, &ln_y, &w, Confidence::P95).unwrap();
        same_line(&f.line, &direct);
        let lin = input.fit_line(FitScale::Linear, Confidence::P95).unwrap();
        let w: Vec<f64> = se.iter().map(|s| 1.0 / (s * s)).collect();
        same_line(
            &lin.line,
            &weighted_least_squares_line(&X, &y, &w, Confidence::P95).unwrap(),
        );
        // The weights matter: equal weights give another slope.
        input.weighting = Weighting::Equal;
        let equal = input.fit_line(FitScale::LogY, Confidence::P95).unwrap();
        assert!((equal.line.slope - f.line.slope).abs() > 5e-4);
    }

    /// Equal up to the rounding of weights computed in another order.
    fn same_line(a: &LineFitInterval, b: &LineFitInterval) {
        let pairs = [
            (a.slope, b.slope),
            (a.slope_se, b.slope_se),
            (a.intercept, b.intercept),
            (a.intercept_se, b.intercept_se),
            (a.residual_sd, b.residual_sd),
        ];
        for (u, v) in pairs {
            assert!((u - v).abs() <= 1e-12 * v.abs(), "{u} vs {v}");
        }
        assert_eq!(a.n, b.n);
    }

    fn coverage(law: DecayLaw, truth: f64, make: impl Fn(f64, f64) -> f64) -> f64 {
        let mut rng = StdRng::seed_from_u64(31);
        let noise = Normal::new(0.0, 0.1).unwrap();
        let depths: Vec<f64> = (1..=12).map(f64::from).collect();
        let mut covered = 0;
        for _ in 0..2000 {
            let y: Vec<f64> = depths
                .iter()
                .map(|&l| make(l, noise.sample(&mut rng)))
                .collect();
            let f = FitInput::new(&depths, &y)
                .fit_decay(law, Confidence::P95)
                .unwrap();
            covered += usize::from(f.rate_consistent_with(truth));
        }
        covered as f64 / 2000.0
    }

    #[test]
    fn decay_rates_are_recovered_with_intervals_at_their_level() {
        // Log-normal scatter of 10 % about y = 2·0.8^L and y = 1.5·L^−0.5.
        let exp = coverage(DecayLaw::Exponential, 0.8, |l, e| {
            2.0 * 0.8f64.powf(l) * e.exp()
        });
        assert!((0.935..=0.965).contains(&exp), "base coverage {exp}");
        let pow = coverage(DecayLaw::PowerLaw, 0.5, |l, e| 1.5 * l.powf(-0.5) * e.exp());
        assert!((0.935..=0.965).contains(&pow), "exponent coverage {pow}");
        // Exact data give the law back with a zero-width interval.
        let y: Vec<f64> = X.iter().map(|l| 0.7 * 0.5f64.powf(*l)).collect();
        let f = FitInput::new(&X, &y)
            .fit_decay(DecayLaw::Exponential, Confidence::P95)
            .unwrap();
        assert!((f.rate - 0.5).abs() < 1e-12 && (f.a - 0.7).abs() < 1e-12);
        assert!((f.rate_hi - f.rate_lo).abs() < 1e-10 && (f.at(3.0) - 0.0875).abs() < 1e-12);
    }

    #[test]
    fn exclusions_serialise_with_their_reason() {
        let e = ExcludedPoint {
            index: 3,
            x: 4.0,
            y: f64::NAN,
            reason: ExclusionReason::AboveCeiling { ceiling: 0.99 },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"index":3,"x":4.0,"y":null,"reason":{"kind":"above_ceiling","ceiling":0.99}}"#
        );
        let back: ExcludedPoint = serde_json::from_str(&json).unwrap();
        assert_eq!((back.index, back.reason), (3, e.reason));
    }
}
