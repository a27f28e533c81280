//! The correlation of gradients across independently initialised nets,
//! against the distance of the inputs, and its decay with depth: the
//! quantity Balduzzi et al. 2017 ("The Shattered Gradients Problem", ICML)
//! state their laws for.
//!
//! For gradients g_s(xᵢ) of nets s = 1…S at points xᵢ, the correlation of a
//! pair over nets is
//!
//!   r_ij = Σₛ (g_s(xᵢ) − ḡ(xᵢ))(g_s(xⱼ) − ḡ(xⱼ)) / √(Σₛ (g_s(xᵢ) − ḡ(xᵢ))² · Σₛ (g_s(xⱼ) − ḡ(xⱼ))²),
//!
//! each point centred on its own mean over nets. Balduzzi et al. show that
//! r decays with depth L as 2^−L in feedforward ReLU nets and as 1/√L in
//! resnets with BN, for inputs whose activation patterns have decoupled;
//! [`pair_correlation_by_distance`] averages r_ij over the pairs of each
//! distance bin, and [`correlation_decay`] fits a law to one bin across depths.

use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use crate::{
    Confidence, DecayLaw, DecayRateFit, ExclusionRule, FitInput, Result, StatsError, Weighting,
};

/// The mean correlation over nets of the pairs of points in one distance bin.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistanceBinCorrelation {
    /// Lower edge of the bin (included).
    pub lo: f64,
    /// Upper edge of the bin (excluded, except in the last bin).
    pub hi: f64,
    /// Mean distance of the pairs averaged (NaN when there are none).
    #[serde(with = "crate::nan")]
    pub mean_distance: f64,
    /// Pairs averaged.
    pub pairs: usize,
    /// Pairs of the bin left out: their correlation, or one of its
    /// leave-one-net-out versions, is undefined (a point constant over nets,
    /// or with a NaN/inf gradient).
    pub excluded_pairs: usize,
    /// Mean of r_ij over the pairs (NaN when there are none).
    #[serde(with = "crate::nan")]
    pub mean: f64,
    /// Jackknife standard error of `mean` over nets.
    #[serde(with = "crate::nan")]
    pub se: f64,
}

/// r_ij averaged over the pairs i < j of each distance bin, with a jackknife
/// standard error over nets.
///
/// `gradients` is nets × points, `coords` points × dimensions (Euclidean
/// distance), `edges` the increasing bin edges e₀ < e₁ < … (bin k holds
/// e_k ≤ d < e_{k+1}, the last bin also d = e_last; pairs outside are not used).
///
/// The pairs of a bin share points and nets, so their r_ij are far from
/// independent and the spread over pairs says little about the uncertainty
/// of their mean. The nets are the independent replicates: the standard
/// error is the delete-one-net jackknife (Efron and Tibshirani 1993, ch. 11),
/// se² = (S − 1)/S · Σₛ (θ₋ₛ − θ̄)², θ₋ₛ the bin mean with net s left out.
/// With deviations dₛᵢ from the mean over all nets and Qᵢⱼ = Σₛ dₛᵢdₛⱼ,
/// leaving net s out gives Qᵢⱼ − S/(S − 1)·dₛᵢdₛⱼ, so each θ₋ₛ costs one pass.
/// Needs three nets; costs O(S·N²) for N points.
pub fn pair_correlation_by_distance(
    gradients: ArrayView2<f64>,
    coords: ArrayView2<f64>,
    edges: &[f64],
) -> Result<Vec<DistanceBinCorrelation>> {
    let (nets, points) = gradients.dim();
    check(nets, points, coords, edges)?;
    // Points × nets, each row centred over nets: one contiguous row per point.
    let mean = gradients.mean_axis(Axis(0)).expect("nets ≥ 3");
    let dev: Array2<f64> = (&gradients - &mean)
        .reversed_axes()
        .as_standard_layout()
        .to_owned();
    let q_diag: Vec<f64> = dev.rows().into_iter().map(|r| r.dot(&r)).collect();
    let k = nets as f64 / (nets - 1) as f64;
    let bins = edges.len() - 1;
    let mut acc = Accumulator::new(bins, nets);
    let mut loo = vec![0.0; nets];
    for i in 0..points {
        for j in i + 1..points {
            let d = distance(coords, i, j);
            let Some(bin) = bin_of(edges, d) else {
                continue;
            };
            let (a, b) = (dev.row(i), dev.row(j));
            let q = a.dot(&b);
            let r = q / (q_diag[i] * q_diag[j]).sqrt();
            let mut defined = r.is_finite();
            for s in 0..nets {
                let (x, y) = (a[s], b[s]);
                let var = (q_diag[i] - k * x * x) * (q_diag[j] - k * y * y);
                loo[s] = (q - k * x * y) / var.sqrt();
                defined &= var > 0.0 && loo[s].is_finite();
            }
            acc.add(bin, d, defined.then_some((r, loo.as_slice())));
        }
    }
    Ok(acc.finish(edges))
}

fn check(nets: usize, points: usize, coords: ArrayView2<f64>, edges: &[f64]) -> Result<()> {
    if nets < 3 {
        return Err(StatsError::TooShort {
            what: "pair correlation over nets (jackknife)",
            need: 3,
            got: nets,
        });
    }
    if coords.nrows() != points {
        return Err(StatsError::Shape(format!(
            "{points} points of gradients, {} rows of coordinates",
            coords.nrows()
        )));
    }
    let increasing = edges.windows(2).all(|w| w[0] < w[1]);
    if edges.len() < 2 || !increasing || edges.iter().any(|e| !e.is_finite()) {
        return Err(StatsError::Shape(format!(
            "distance bin edges must be finite and increasing, at least two: {edges:?}"
        )));
    }
    Ok(())
}

fn distance(coords: ArrayView2<f64>, i: usize, j: usize) -> f64 {
    let (a, b) = (coords.row(i), coords.row(j));
    a.iter()
        .zip(b.iter())
        .map(|(u, v)| (u - v) * (u - v))
        .sum::<f64>()
        .sqrt()
}

fn bin_of(edges: &[f64], d: f64) -> Option<usize> {
    let last = edges.len() - 1;
    if d.is_nan() || d < edges[0] || d > edges[last] {
        return None;
    }
    // The first edge above d ends d's bin; d = e_last falls in the last bin.
    Some(edges.partition_point(|&e| e <= d).clamp(1, last) - 1)
}

/// Sums per bin: of r, of each leave-one-out r, of distances, and counts.
struct Accumulator {
    nets: usize,
    sum: Vec<f64>,
    loo: Vec<f64>,
    distance: Vec<f64>,
    pairs: Vec<usize>,
    excluded: Vec<usize>,
}

impl Accumulator {
    fn new(bins: usize, nets: usize) -> Accumulator {
        Accumulator {
            nets,
            sum: vec![0.0; bins],
            loo: vec![0.0; bins * nets],
            distance: vec![0.0; bins],
            pairs: vec![0; bins],
            excluded: vec![0; bins],
        }
    }

    fn add(&mut self, bin: usize, d: f64, pair: Option<(f64, &[f64])>) {
        let Some((r, loo)) = pair else {
            self.excluded[bin] += 1;
            return;
        };
        self.sum[bin] += r;
        self.distance[bin] += d;
        self.pairs[bin] += 1;
        let row = &mut self.loo[bin * self.nets..(bin + 1) * self.nets];
        row.iter_mut().zip(loo).for_each(|(acc, v)| *acc += v);
    }

    fn finish(self, edges: &[f64]) -> Vec<DistanceBinCorrelation> {
        let s = self.nets as f64;
        (0..self.sum.len())
            .map(|bin| {
                let n = self.pairs[bin] as f64;
                let thetas: Vec<f64> = self.loo[bin * self.nets..(bin + 1) * self.nets]
                    .iter()
                    .map(|v| v / n)
                    .collect();
                let centre = thetas.iter().sum::<f64>() / s;
                let spread: f64 = thetas.iter().map(|t| (t - centre).powi(2)).sum();
                DistanceBinCorrelation {
                    lo: edges[bin],
                    hi: edges[bin + 1],
                    mean_distance: self.distance[bin] / n,
                    pairs: self.pairs[bin],
                    excluded_pairs: self.excluded[bin],
                    mean: self.sum[bin] / n,
                    se: ((s - 1.0) / s * spread).sqrt(),
                }
            })
            .collect()
    }
}

/// Fit `law` to one distance bin's mean correlation across depths:
/// y(L) = a·b^L (Balduzzi et al.: b = ½ for feedforward ReLU nets) or
/// y(L) = a·L^−q (q = ½ for resnets with BN), with intervals on a and the
/// rate. `bins[k]` is the bin at `depths[k]`; its jackknife se is the
/// point's standard error, so `rule.floor_in_se = Some(2.0)` leaves out
/// depths where the correlation is within two standard errors of zero, and
/// [`Weighting::InverseVariance`] weights each depth by (y/se)² in log space.
/// Every depth left out is listed with its reason.
pub fn correlation_decay(
    depths: &[f64],
    bins: &[DistanceBinCorrelation],
    law: DecayLaw,
    rule: ExclusionRule,
    weighting: Weighting,
    confidence: Confidence,
) -> Result<DecayRateFit> {
    if depths.len() != bins.len() {
        return Err(StatsError::Shape(format!(
            "{} depths, {} distance bins",
            depths.len(),
            bins.len()
        )));
    }
    let y: Vec<f64> = bins.iter().map(|b| b.mean).collect();
    let se: Vec<f64> = bins.iter().map(|b| b.se).collect();
    FitInput {
        x: depths,
        y: &y,
        se: Some(&se),
        rule,
        weighting,
    }
    .fit_decay(law, confidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExclusionReason, MeanStd, correlation_matrix};
    use ndarray::{Array2, s};
    use rand::Rng;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand_distr::StandardNormal;

    /// g_s(xᵢ) = √ρ·z_s + √(1 − ρ)·e_si: every pair has correlation ρ over nets.
    fn mixture(rho: f64, nets: usize, points: usize, rng: &mut StdRng) -> Array2<f64> {
        let mut g = Array2::zeros((nets, points));
        for mut row in g.rows_mut() {
            let shared: f64 = rng.sample(StandardNormal);
            for v in row.iter_mut() {
                let own: f64 = rng.sample(StandardNormal);
                *v = rho.sqrt() * shared + (1.0 - rho).sqrt() * own;
            }
        }
        g
    }

    fn line(points: usize) -> Array2<f64> {
        Array2::from_shape_fn((points, 1), |(i, _)| i as f64)
    }

    /// Bin means of r_ij from `correlation_matrix`: pairs at distance 1, and 2–4.
    fn brute_force_means(g: ArrayView2<f64>) -> [f64; 2] {
        let r = correlation_matrix(g).unwrap();
        let n = g.ncols();
        let mut sums = [(0.0, 0.0); 2];
        for i in 0..n {
            for j in i + 1..n {
                let b = usize::from(j - i > 1);
                sums[b].0 += r[[i, j]];
                sums[b].1 += 1.0;
            }
        }
        sums.map(|(s, k)| s / k)
    }

    #[test]
    fn bin_means_and_jackknife_match_a_brute_force_computation() {
        let mut rng = StdRng::seed_from_u64(1);
        let g = mixture(0.4, 6, 5, &mut rng);
        let bins =
            pair_correlation_by_distance(g.view(), line(5).view(), &[0.5, 1.5, 4.0]).unwrap();
        let want = brute_force_means(g.view());
        assert_eq!((bins[0].pairs, bins[1].pairs), (4, 6));
        assert_eq!(
            (bins[0].mean_distance, bins[1].mean_distance),
            (1.0, 16.0 / 6.0)
        );
        // Leave each net out, recompute from scratch.
        let thetas: Vec<[f64; 2]> = (0..6)
            .map(|s| {
                let kept: Vec<usize> = (0..6).filter(|&t| t != s).collect();
                brute_force_means(g.select(Axis(0), &kept).view())
            })
            .collect();
        for b in 0..2 {
            assert!((bins[b].mean - want[b]).abs() < 1e-14);
            let t: Vec<f64> = thetas.iter().map(|t| t[b]).collect();
            let centre = t.iter().sum::<f64>() / 6.0;
            let se = (5.0 / 6.0 * t.iter().map(|v| (v - centre).powi(2)).sum::<f64>()).sqrt();
            assert!((bins[b].se - se).abs() < 1e-13, "{} vs {se}", bins[b].se);
        }
    }

    #[test]
    fn constant_points_are_left_out_and_counted() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut g = mixture(0.5, 8, 4, &mut rng);
        g.column_mut(2).fill(0.3);
        let bins = pair_correlation_by_distance(g.view(), line(4).view(), &[0.0, 10.0]).unwrap();
        assert_eq!((bins[0].pairs, bins[0].excluded_pairs), (3, 3));
        assert!(bins[0].mean.is_finite() && bins[0].se.is_finite());
        // A NaN gradient leaves out every pair of its point too: only (0, 3) is left.
        g[[5, 1]] = f64::NAN;
        let bins = pair_correlation_by_distance(g.view(), line(4).view(), &[0.0, 10.0]).unwrap();
        assert_eq!((bins[0].pairs, bins[0].excluded_pairs), (1, 5));
        assert_eq!(bins[0].mean_distance, 3.0);
        // A bin no pair falls in has no mean.
        let empty = pair_correlation_by_distance(g.view(), line(4).view(), &[10.0, 20.0]).unwrap();
        assert!(empty[0].mean.is_nan() && empty[0].pairs == 0);
    }

    #[test]
    fn distances_in_the_plane_and_bin_edges() {
        // A 3 × 3 grid: 12 pairs at distance 1, 8 at √2, 6 at 2, 8 at √5, 2 at √8.
        let coords = Array2::from_shape_fn((9, 2), |(i, k)| {
            if k == 0 {
                (i / 3) as f64
            } else {
                (i % 3) as f64
            }
        });
        let mut rng = StdRng::seed_from_u64(3);
        let g = mixture(0.2, 5, 9, &mut rng);
        let edges = [1.0, 1.2, 2.0, 8f64.sqrt()];
        let bins = pair_correlation_by_distance(g.view(), coords.view(), &edges).unwrap();
        let pairs: Vec<usize> = bins.iter().map(|b| b.pairs).collect();
        assert_eq!(pairs, vec![12, 8, 16]);
        assert!((bins[1].mean_distance - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(bin_of(&edges, 8f64.sqrt()), Some(2));
        assert_eq!((bin_of(&edges, 0.5), bin_of(&edges, 3.0)), (None, None));
        assert!(pair_correlation_by_distance(g.view(), coords.view(), &[1.0, 1.0]).is_err());
        assert!(pair_correlation_by_distance(g.slice(s![..2, ..]), coords.view(), &edges).is_err());
        assert!(pair_correlation_by_distance(g.view(), line(4).view(), &edges).is_err());
    }

    #[test]
    fn the_jackknife_error_matches_the_spread_over_replicates() {
        // 400 independent sets of 20 nets: the jackknife se should be the sd
        // of the bin mean over sets (±7 % from 400 sets).
        let mut rng = StdRng::seed_from_u64(4);
        let (mut means, mut ses) = (Vec::new(), Vec::new());
        for _ in 0..400 {
            let g = mixture(0.3, 20, 10, &mut rng);
            let b = pair_correlation_by_distance(g.view(), line(10).view(), &[0.0, 10.0]).unwrap();
            means.push(b[0].mean);
            ses.push(b[0].se);
        }
        let (spread, se) = (MeanStd::of(means), MeanStd::of(ses));
        assert!(
            (spread.mean - 0.3).abs() < 3.0 * spread.sem(),
            "mean {}",
            spread.mean
        );
        let ratio = se.mean / spread.std;
        assert!(
            (0.85..=1.15).contains(&ratio),
            "jackknife se / sd over sets = {ratio}"
        );
    }

    /// Bin means at depths 1…`depths` of a process whose pair correlation is `law(L)`.
    fn synthetic_decay(
        law: impl Fn(f64) -> f64,
        depths: usize,
        seed: u64,
    ) -> Vec<DistanceBinCorrelation> {
        let mut rng = StdRng::seed_from_u64(seed);
        (1..=depths)
            .map(|l| {
                let g = mixture(law(l as f64), 1000, 24, &mut rng);
                pair_correlation_by_distance(g.view(), line(24).view(), &[0.0, 24.0]).unwrap()[0]
            })
            .collect()
    }

    #[test]
    fn the_decay_of_a_two_to_the_minus_l_process_recovers_base_two() {
        // 1,000 nets, 24 points: the bin mean has se ≈ 0.002, so the
        // correlation 2^−L sinks into the noise from L ≈ 8 on, where the
        // fit must leave the depths out and say so.
        let depths: Vec<f64> = (1..=10).map(f64::from).collect();
        let rule = ExclusionRule {
            floor_in_se: Some(2.0),
            ..ExclusionRule::default()
        };
        let mut covered = 0;
        for seed in 0..20 {
            let bins = synthetic_decay(|l| 2f64.powf(-l), 10, 100 + seed);
            let f = correlation_decay(
                &depths,
                &bins,
                DecayLaw::Exponential,
                rule,
                Weighting::InverseVariance,
                Confidence::P95,
            )
            .unwrap();
            assert!((f.rate - 0.5).abs() < 0.05, "base {}", f.rate);
            assert!(f.excluded.len() >= 2);
            for e in &f.excluded {
                assert!(e.index >= 7, "depth {} left out", e.x);
                assert!(matches!(e.reason, ExclusionReason::BelowNoiseFloor { .. }));
            }
            covered += usize::from(f.rate_consistent_with(0.5));
        }
        assert!(covered >= 17, "2^−L within the interval in {covered} of 20");
    }

    #[test]
    fn the_decay_of_a_one_over_root_l_process_recovers_exponent_one_half() {
        let depths: Vec<f64> = (1..=6).map(|k| f64::from(1 << k)).collect();
        let bins: Vec<DistanceBinCorrelation> = {
            let mut rng = StdRng::seed_from_u64(7);
            depths
                .iter()
                .map(|&l| {
                    let g = mixture(l.powf(-0.5), 1000, 24, &mut rng);
                    pair_correlation_by_distance(g.view(), line(24).view(), &[0.0, 24.0]).unwrap()
                        [0]
                })
                .collect()
        };
        let f = correlation_decay(
            &depths,
            &bins,
            DecayLaw::PowerLaw,
            ExclusionRule::default(),
            Weighting::InverseVariance,
            Confidence::P95,
        )
        .unwrap();
        assert!(
            f.rate_consistent_with(0.5),
            "q = {} [{}, {}]",
            f.rate,
            f.rate_lo,
            f.rate_hi
        );
        assert!(!f.rate_consistent_with(1.0) && f.excluded.is_empty());
        assert!(
            correlation_decay(
                &depths[..2],
                &bins,
                DecayLaw::PowerLaw,
                ExclusionRule::default(),
                Weighting::Equal,
                Confidence::P95
            )
            .is_err()
        );
    }
}
