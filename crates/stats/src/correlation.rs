//! Correlation of a gradient signal g(x₁), …, g(x_N) along an input grid, and
//! across independent realisations (seeds).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::{Result, StatsError};

/// Lag-1 adjacent correlation r₁: the Pearson correlation of (g₁, …, g_{N−1})
/// with (g₂, …, g_N).
///
/// r₁ ≈ 1 for a smooth signal (brown noise: ≈ 0.97 at N = 256), r₁ ≈ 0 for
/// white noise. Balduzzi et al. 2017 ("The Shattered Gradients Problem", ICML)
/// show that r₁ of df/dx over a fine input grid decays with depth in
/// feedforward nets, far more slowly in residual nets with BN.
///
/// A non-zero constant signal (df/dx of a net that is linear at
/// initialisation, such as looks-linear, Fixup or SkipInit) has no variance to
/// correlate; it is taken as perfectly smooth, r₁ = 1, the value r₁ of every
/// differentiable signal approaches as the grid is refined. A signal that is
/// zero everywhere (a gradient that vanished or died) has no r₁: NaN.
pub fn adjacent_correlation(g: ArrayView1<f64>) -> Result<f64> {
    let n = g.len();
    if n < 3 {
        return Err(StatsError::TooShort {
            what: "adjacent correlation",
            need: 3,
            got: n,
        });
    }
    if is_constant(g) && g[0] != 0.0 {
        return Ok(1.0);
    }
    Ok(pearson(
        g.slice(ndarray::s![..n - 1]),
        g.slice(ndarray::s![1..]),
    ))
}

/// Whether every value equals the first. Tested on the values, not on the
/// centred sum of squares: the mean of equal values is itself rounded, and
/// deviations from it of one ulp would give a constant a correlation of ±1.
fn is_constant(g: ArrayView1<f64>) -> bool {
    g.first().is_some_and(|&v| g.iter().all(|&x| x == v))
}

/// Pearson correlation of two equally long signals (NaN when either is constant).
pub fn pearson(a: ArrayView1<f64>, b: ArrayView1<f64>) -> f64 {
    if is_constant(a) || is_constant(b) {
        return f64::NAN;
    }
    let (ma, mb) = (a.mean().unwrap_or(f64::NAN), b.mean().unwrap_or(f64::NAN));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b.iter()) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Sample autocorrelation function ρ(k) for k = 0 … `max_lag`:
///
/// ρ(k) = Σᵢ (gᵢ − ḡ)(g_{i+k} − ḡ) / Σᵢ (gᵢ − ḡ)²,
///
/// the standard (biased, positive semi-definite) estimator, so ρ(0) = 1 and
/// |ρ(k)| ≤ 1. `max_lag` is capped at N − 1. A constant signal has no
/// variance to normalise by: every ρ(k) is NaN.
pub fn autocorrelation(g: ArrayView1<f64>, max_lag: usize) -> Result<Array1<f64>> {
    let n = g.len();
    if n < 2 {
        return Err(StatsError::TooShort {
            what: "autocorrelation",
            need: 2,
            got: n,
        });
    }
    let mean = g.mean().unwrap_or(0.0);
    let d: Vec<f64> = g.iter().map(|v| v - mean).collect();
    let c0: f64 = d.iter().map(|v| v * v).sum();
    let max_lag = max_lag.min(n - 1);
    let undefined = c0 == 0.0 || is_constant(g);
    Ok(Array1::from_shape_fn(max_lag + 1, |k| {
        if undefined {
            return f64::NAN;
        }
        d[..n - k]
            .iter()
            .zip(&d[k..])
            .map(|(a, b)| a * b)
            .sum::<f64>()
            / c0
    }))
}

/// Covariance across realisations: `samples` is (S realisations × N points);
/// C[i, j] = Σₛ (g_s(xᵢ) − ḡ(xᵢ))(g_s(xⱼ) − ḡ(xⱼ)) / (S − 1).
pub fn covariance_matrix(samples: ArrayView2<f64>) -> Result<Array2<f64>> {
    let s = samples.nrows();
    if s < 2 {
        return Err(StatsError::TooShort {
            what: "covariance across realisations",
            need: 2,
            got: s,
        });
    }
    let mean = samples.mean_axis(Axis(0)).expect("at least two rows");
    let centred = &samples - &mean;
    Ok(centred.t().dot(&centred) / (s - 1) as f64)
}

/// Correlation across realisations: R[i, j] = C[i, j] / √(C[i, i] C[j, j]).
/// Entries of a point with zero variance are NaN.
pub fn correlation_matrix(samples: ArrayView2<f64>) -> Result<Array2<f64>> {
    let mut c = covariance_matrix(samples)?;
    let sd: Array1<f64> = c.diag().mapv(f64::sqrt);
    // In place: one N × N matrix at a time, not two (N = 65 536 is 32 GiB each).
    c.indexed_iter_mut()
        .for_each(|((i, j), v)| *v /= sd[i] * sd[j]);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, array};

    #[test]
    fn r1_of_a_line_is_one_and_of_an_alternating_signal_minus_one() {
        let line = Array1::from_shape_fn(50, |i| i as f64);
        assert!((adjacent_correlation(line.view()).unwrap() - 1.0).abs() < 1e-12);
        let alt = Array1::from_shape_fn(50, |i| if i % 2 == 0 { 1.0 } else { -1.0 });
        assert!((adjacent_correlation(alt.view()).unwrap() + 1.0).abs() < 1e-12);
        assert!(adjacent_correlation(array![1.0, 2.0].view()).is_err());
    }

    #[test]
    fn a_constant_has_r1_one_whatever_its_mean_rounds_to_and_zero_has_none() {
        // 0.1 and 29.541079260208072 repeated 256 times have a rounded mean
        // off the value, 0.5 an exact one: the centred deviations used to give
        // ±1 for the first two and NaN for the third.
        for (c, mean_exact) in [(0.1, false), (29.541079260208072, false), (0.5, true)] {
            let g = Array1::from_elem(256, c);
            assert_eq!(g.mean().unwrap() == c, mean_exact, "{c}");
            assert_eq!(adjacent_correlation(g.view()).unwrap(), 1.0, "{c}");
            assert!(pearson(g.view(), g.view()).is_nan(), "{c}");
            assert!(
                autocorrelation(g.view(), 8)
                    .unwrap()
                    .iter()
                    .all(|r| r.is_nan())
            );
        }
        let zero = Array1::zeros(256);
        assert!(adjacent_correlation(zero.view()).unwrap().is_nan());
    }

    #[test]
    fn acf_of_a_cosine_follows_the_closed_form() {
        // For g_i = cos(2π f i) over whole periods, ρ(k) = (N−k)/N · cos(2π f k)
        // up to an O(1/N) edge term.
        let n = 400;
        let f = 1.0 / 20.0;
        let g = Array1::from_shape_fn(n, |i| (2.0 * std::f64::consts::PI * f * i as f64).cos());
        let acf = autocorrelation(g.view(), 40).unwrap();
        assert_eq!(acf[0], 1.0);
        for k in [5, 10, 20, 40] {
            let want =
                (n - k) as f64 / n as f64 * (2.0 * std::f64::consts::PI * f * k as f64).cos();
            assert!((acf[k] - want).abs() < 0.02, "k={k}: {} vs {want}", acf[k]);
        }
    }

    #[test]
    fn covariance_matches_the_hand_computation() {
        let s = array![[1.0, 2.0, 0.0], [3.0, 2.0, 1.0], [5.0, 2.0, 5.0]];
        let c = covariance_matrix(s.view()).unwrap();
        // column 0: 1,3,5 (var 4); column 2: 0,1,5 (var 7); cov(0,2) = ((-2)(-2) + 0 + 2·3)/2 = 5.
        assert_eq!(c[[0, 0]], 4.0);
        assert_eq!(c[[2, 2]], 7.0);
        assert_eq!(c[[0, 2]], 5.0);
        assert_eq!(c[[0, 2]], c[[2, 0]]);
        assert_eq!(c[[1, 1]], 0.0);
        let r = correlation_matrix(s.view()).unwrap();
        assert!((r[[0, 2]] - 5.0 / (4.0f64 * 7.0).sqrt()).abs() < 1e-15);
        assert!((r[[0, 0]] - 1.0).abs() < 1e-15);
        assert!(r[[1, 1]].is_nan());
    }
}
