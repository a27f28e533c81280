//! The spread of the squared singular values of a deep linear net's
//! input–output Jacobian at finite width (dynamical isometry: Saxe et al.
//! 2014; Pennington, Schoenholz and Ganguli 2017, 2018).
//!
//! For J = W_L ⋯ W_1 with N × N matrices of independent N(0, 1/N) entries
//! (the critical Gaussian initialisation of a linear net), let λ be the
//! squared singular values of J, the eigenvalues of M = JJᵀ. In the
//! large-width limit their law is the free multiplicative convolution of L
//! Marchenko–Pastur laws, with E\[λ\] = 1 and Var\[λ\] = L (Pennington et al.
//! 2017): the spread grows with depth, and orthogonal weights (λ ≡ 1) avoid
//! it. At finite N the moments follow exactly from two numbers per layer.
//! With A = J_{l−1}J_{l−1}ᵀ and B = W_lᵀW_l, M_l = W_l A W_lᵀ and, for the
//! Wishart matrix B, E[B_ij B_kl] = δ_ij δ_kl + (δ_ik δ_jl + δ_il δ_jk)/N, so
//!
//!   a_l = E tr(M_l²) = (1 + 1/N)·a_{l−1} + b_{l−1}/N,
//!   b_l = E (tr M_l)² = b_{l−1} + 2·a_{l−1}/N,   a_0 = N, b_0 = N²,
//!
//! E\[λ\] = E tr(M_L)/N = 1 exactly, E\[λ²\] = a_L/N. To first order in 1/N,
//! Var\[λ\] = L + L(L + 1)/(2N): the correction grows as L²/N, so the
//! large-width law needs L ≪ N.

use serde::{Deserialize, Serialize};

use crate::{Result, StatsError};

/// Moments of the squared singular values λ of a product of L Gaussian
/// N × N matrices with N(0, 1/N) entries, exact at finite N.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductSpectrumMoments {
    /// Width N.
    pub width: usize,
    /// Depth L, the number of factors.
    pub depth: usize,
    /// E\[λ\] over the N values and the ensemble: 1.
    pub mean: f64,
    /// E\[λ²\] = E tr(M²)/N.
    pub second_moment: f64,
    /// E\[λ²\] − E\[λ\]², the variance of λ pooled over the ensemble.
    pub variance: f64,
    /// E[(1/N)Σλ² − ((1/N)Σλ)²], the mean spread within one matrix:
    /// smaller than `variance` by the variance of the mean of λ over matrices.
    pub within_variance: f64,
}

/// The exact moments of [`ProductSpectrumMoments`] from the recursion of the
/// module documentation. Needs N ≥ 1.
pub fn gaussian_product_moments(width: usize, depth: usize) -> Result<ProductSpectrumMoments> {
    if width == 0 {
        return Err(StatsError::TooShort {
            what: "product of Gaussian matrices (width)",
            need: 1,
            got: 0,
        });
    }
    let n = width as f64;
    // a/N and b/N², which stay O(1) whatever N.
    let (mut a, mut b) = (1.0, 1.0);
    for _ in 0..depth {
        (a, b) = ((1.0 + 1.0 / n) * a + b, b + 2.0 * a / (n * n));
    }
    Ok(ProductSpectrumMoments {
        width,
        depth,
        mean: 1.0,
        second_moment: a,
        variance: a - 1.0,
        within_variance: a - b,
    })
}

/// Var\[λ\] to first order in 1/N: L + L(L + 1)/(2N) (L at infinite width).
pub fn gaussian_product_variance_first_order(width: usize, depth: usize) -> f64 {
    let (n, l) = (width as f64, depth as f64);
    l + l * (l + 1.0) / (2.0 * n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MeanStd;
    use ndarray::Array2;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    #[test]
    fn closed_forms_at_depth_zero_one_and_infinite_width() {
        let identity = gaussian_product_moments(8, 0).unwrap();
        assert_eq!((identity.variance, identity.within_variance), (0.0, 0.0));
        // One Wishart factor: E tr(B²)/N = 2 + 1/N, E (tr B)²/N² = 1 + 2/N².
        let one = gaussian_product_moments(10, 1).unwrap();
        assert!((one.second_moment - 2.1).abs() < 1e-15);
        assert!((one.within_variance - (1.1 - 0.02)).abs() < 1e-15);
        for depth in [1, 5, 20] {
            let wide = gaussian_product_moments(1_000_000, depth).unwrap();
            assert!((wide.variance - depth as f64).abs() < 1e-3, "L = {depth}");
            let first = gaussian_product_variance_first_order(2000, depth);
            let exact = gaussian_product_moments(2000, depth).unwrap().variance;
            // The next term is O(L³/N²).
            let l = depth as f64;
            assert!(
                (exact - first).abs() < l.powi(3) / 2000f64.powi(2),
                "L = {depth}"
            );
        }
        assert!(gaussian_product_moments(0, 3).is_err());
    }

    #[test]
    fn monte_carlo_of_seeded_products_matches_the_finite_width_moments() {
        // N = 16, L = 4: exact E[λ²] = 5.7485, against 5 at infinite width
        // and 5.625 to first order. 16,000 seeded products: λ² is heavy
        // tailed, the Monte Carlo mean of E[λ²] has a standard error of
        // about 0.04 (0.7 %); the test allows 4 of them.
        let (n, depth, draws) = (16, 4, 16_000);
        let mut rng = StdRng::seed_from_u64(29);
        let sd = 1.0 / (n as f64).sqrt();
        let (mut first, mut second, mut within) = (vec![], vec![], vec![]);
        for _ in 0..draws {
            let mut j = Array2::<f64>::eye(n);
            for _ in 0..depth {
                let w = Array2::from_shape_simple_fn((n, n), || {
                    sd * rng.sample::<f64, _>(StandardNormal)
                });
                j = w.dot(&j);
            }
            let m = j.dot(&j.t());
            let mean = m.diag().sum() / n as f64;
            let mean_square = m.iter().map(|v| v * v).sum::<f64>() / n as f64;
            first.push(mean);
            second.push(mean_square);
            within.push(mean_square - mean * mean);
        }
        let want = gaussian_product_moments(n, depth).unwrap();
        for (what, got, exact) in [
            ("E[λ]", MeanStd::of(first), want.mean),
            (
                "E[λ²]",
                MeanStd::of(second.iter().copied()),
                want.second_moment,
            ),
            ("within", MeanStd::of(within), want.within_variance),
        ] {
            assert!(
                (got.mean - exact).abs() < 4.0 * got.sem(),
                "{what}: {} ± {} vs {exact}",
                got.mean,
                got.sem()
            );
        }
        // The finite-width correction (0.75) is resolved: far from the limit L.
        let sampled = MeanStd::of(second.iter().copied());
        assert!((sampled.mean - 1.0 - depth as f64) > 10.0 * sampled.sem());
    }
}
