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

/// r₁ of a vector signal g(t₁), …, g(t_N) ∈ Rᵈ (the rows of `g`, N × d),
/// pooled over its components j:
///
/// r₁ = Σⱼ Σᵢ (a_ij − ā_j)(b_ij − b̄_j) / √(Σⱼ Σᵢ (a_ij − ā_j)² · Σⱼ Σᵢ (b_ij − b̄_j)²),
///
/// a = rows 1 … N−1, b = rows 2 … N: the correlation of consecutive
/// gradients ∂f/∂x of an image net along a path of images, each pixel
/// centred on its own mean. With d = 1 it is [`adjacent_correlation`], and
/// like it a non-zero constant signal has r₁ = 1 and zero has none (NaN).
pub fn adjacent_correlation_pooled(g: ArrayView2<f64>) -> Result<f64> {
    let n = g.nrows();
    if n < 3 {
        return Err(StatsError::TooShort {
            what: "adjacent correlation",
            need: 3,
            got: n,
        });
    }
    let constant: Vec<bool> = g.columns().into_iter().map(is_constant).collect();
    if constant.iter().all(|&c| c) {
        return Ok(if g.iter().any(|&v| v != 0.0) {
            1.0
        } else {
            f64::NAN
        });
    }
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (col, &c) in g.columns().into_iter().zip(&constant) {
        if c {
            continue;
        }
        let (a, b) = (col.slice(ndarray::s![..n - 1]), col.slice(ndarray::s![1..]));
        let (ma, mb) = (a.mean().unwrap_or(0.0), b.mean().unwrap_or(0.0));
        for (x, y) in a.iter().zip(b.iter()) {
            let (dx, dy) = (x - ma, y - mb);
            sab += dx * dy;
            saa += dx * dx;
            sbb += dy * dy;
        }
    }
    if saa == 0.0 || sbb == 0.0 {
        return Ok(f64::NAN);
    }
    Ok(sab / (saa * sbb).sqrt())
}

/// The autocorrelation function of a vector signal (rows of `g`, N × d),
/// pooled over components, each centred on its own mean:
///
/// ρ(k) = Σⱼ Σᵢ (g_ij − ḡ_j)(g_{i+k,j} − ḡ_j) / Σⱼ Σᵢ (g_ij − ḡ_j)²;
///
/// with d = 1 it is [`autocorrelation`]. NaN everywhere when no component varies.
pub fn autocorrelation_pooled(g: ArrayView2<f64>, max_lag: usize) -> Result<Array1<f64>> {
    let n = g.nrows();
    if n < 2 {
        return Err(StatsError::TooShort {
            what: "autocorrelation",
            need: 2,
            got: n,
        });
    }
    let max_lag = max_lag.min(n - 1);
    let mut sums = Array1::<f64>::zeros(max_lag + 1);
    for col in g.columns() {
        if is_constant(col) {
            continue;
        }
        let mean = col.mean().unwrap_or(0.0);
        let d: Vec<f64> = col.iter().map(|v| v - mean).collect();
        for (k, s) in sums.iter_mut().enumerate() {
            *s += d[..n - k]
                .iter()
                .zip(&d[k..])
                .map(|(a, b)| a * b)
                .sum::<f64>();
        }
    }
    let c0 = sums[0];
    Ok(sums.mapv(|s| if c0 > 0.0 { s / c0 } else { f64::NAN }))
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
    fn pooled_statistics_of_one_component_are_the_scalar_ones_and_pool_by_sums() {
        let g = Array1::from_shape_fn(64, |i| ((i * i) as f64 * 0.37).sin() + 0.01 * i as f64);
        let col = g.view().insert_axis(Axis(1));
        let r1 = adjacent_correlation(g.view()).unwrap();
        assert!((adjacent_correlation_pooled(col).unwrap() - r1).abs() < 1e-14);
        let acf = autocorrelation(g.view(), 10).unwrap();
        let pooled = autocorrelation_pooled(col, 10).unwrap();
        assert!(acf.iter().zip(&pooled).all(|(a, b)| (a - b).abs() < 1e-14));
        // Two components: the same signal twice and a scaled copy keep r₁ and
        // the ACF (sums of equal shapes); a constant component adds nothing.
        let two = ndarray::stack![Axis(1), g.view(), g.mapv(|v| 3.0 * v - 1.0).view()];
        assert!((adjacent_correlation_pooled(two.view()).unwrap() - r1).abs() < 1e-14);
        let with_const = ndarray::stack![Axis(1), g.view(), Array1::from_elem(64, 2.0).view()];
        assert!((adjacent_correlation_pooled(with_const.view()).unwrap() - r1).abs() < 1e-14);
        // A smooth and an alternating component of equal variance cancel: r₁ ≈ 0.
        let line = Array1::from_shape_fn(64, |i| i as f64 - 31.5);
        let alt = Array1::from_shape_fn(64, |i| if i % 2 == 0 { 1.0 } else { -1.0 });
        let scale = (line.mapv(|v| v * v).sum() / 64.0).sqrt();
        let mix = ndarray::stack![Axis(1), line.view(), alt.mapv(|v| v * scale).view()];
        let r = adjacent_correlation_pooled(mix.view()).unwrap();
        assert!(r.abs() < 0.05, "{r}");
        assert!(
            adjacent_correlation_pooled(Array2::<f64>::zeros((8, 3)).view())
                .unwrap()
                .is_nan()
        );
        assert_eq!(
            adjacent_correlation_pooled(Array2::from_elem((8, 3), 0.5).view()).unwrap(),
            1.0
        );
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
