//! The loss around a point θ along directions: 1-D curves L(θ + a·d),
//! 2-D surfaces L(θ + a·d₁ + b·d₂) (Li et al. 2018, §5–6), the curvature
//! dᵀHd along a direction, and the ratio |λ_min/λ_max| of the Hessian's
//! extreme eigenvalues over the same plane (Li et al. 2018, §7).
//!
//! The Hessian enters through a Hessian-vector product closure (the seam
//! for exact products on the engine); [`fd_hvp`] supplies one from central
//! differences of gradients, Hv ≈ (∇L(θ + εv) − ∇L(θ − εv)) / 2ε.

use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use super::objective::{Objective, displaced, dot, norm};
use crate::{Result, StudyError};

/// L(θ + a·d) for each a of `alphas`.
pub fn curve(
    obj: &mut dyn Objective,
    theta: &[f64],
    d: &[f64],
    alphas: &[f64],
) -> Result<Vec<f64>> {
    alphas
        .iter()
        .map(|&a| obj.loss(&displaced(theta, &[(a, d)])))
        .collect()
}

/// L(θ + a·d₁ + b·d₂) on the grid `alphas` × `betas` (row i: a = alphasᵢ).
pub fn surface(
    obj: &mut dyn Objective,
    theta: &[f64],
    (d1, d2): (&[f64], &[f64]),
    alphas: &[f64],
    betas: &[f64],
) -> Result<Array2<f64>> {
    let mut out = Array2::zeros((alphas.len(), betas.len()));
    for (i, &a) in alphas.iter().enumerate() {
        for (j, &b) in betas.iter().enumerate() {
            out[(i, j)] = obj.loss(&displaced(theta, &[(a, d1), (b, d2)]))?;
        }
    }
    Ok(out)
}

/// `n` evenly spaced points on [−extent, extent] (0 among them when n is odd).
pub fn symmetric_grid(n: usize, extent: f64) -> Vec<f64> {
    if n < 2 {
        return vec![0.0; n];
    }
    let half = (n - 1) as f64 / 2.0;
    (0..n)
        .map(|i| {
            // Exact zero at the centre of an odd grid.
            let k = i as f64 - half;
            if k == 0.0 { 0.0 } else { extent * k / half }
        })
        .collect()
}

/// The second difference (L(θ + h·d) − 2L(θ) + L(θ − h·d)) / h², which
/// tends to dᵀHd as h → 0 (with error O(h²) where L is smooth).
pub fn second_difference(obj: &mut dyn Objective, theta: &[f64], d: &[f64], h: f64) -> Result<f64> {
    let plus = obj.loss(&displaced(theta, &[(h, d)]))?;
    let centre = obj.loss(theta)?;
    let minus = obj.loss(&displaced(theta, &[(-h, d)]))?;
    Ok((plus - 2.0 * centre + minus) / (h * h))
}

/// Hv from central differences of gradients at θ, with the step ε scaled to
/// v (ε = `eps`/‖v‖): the Hessian-vector product used until exact ones
/// are available.
pub fn fd_hvp<'a>(
    obj: &'a mut dyn Objective,
    theta: &'a [f64],
    eps: f64,
) -> impl FnMut(&[f64]) -> Result<Vec<f64>> + 'a {
    move |v: &[f64]| {
        let n = norm(v);
        if n == 0.0 {
            return Ok(vec![0.0; v.len()]);
        }
        let e = eps / n;
        let (_, gp) = obj.loss_gradient(&displaced(theta, &[(e, v)]))?;
        let (_, gm) = obj.loss_gradient(&displaced(theta, &[(-e, v)]))?;
        Ok(gp
            .iter()
            .zip(&gm)
            .map(|(p, m)| (p - m) / (2.0 * e))
            .collect())
    }
}

/// dᵀHd from an HVP closure.
pub fn curvature_along(hvp: &mut dyn FnMut(&[f64]) -> Result<Vec<f64>>, d: &[f64]) -> Result<f64> {
    Ok(dot(d, &hvp(d)?))
}

/// The Hessian's extreme eigenvalues (smallest and largest, as signed
/// numbers) estimated from Hessian-vector products.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Extremes {
    /// λ_min.
    pub min: f64,
    /// λ_max.
    pub max: f64,
}

impl Extremes {
    /// |λ_min/λ_max| (Li et al. 2018's measure of non-convexity: near 0
    /// where the loss is locally convex or nearly so).
    pub fn ratio(&self) -> f64 {
        (self.min / self.max).abs()
    }
}

/// λ_min and λ_max of a symmetric operator given by `hvp` on ℝⁿ, by power
/// iteration (`iterations` products each, from a seeded Gaussian start):
/// first the eigenvalue of largest magnitude λ_a (Rayleigh quotient), then
/// the largest-magnitude eigenvalue μ of H − λ_a·I, whose eigenvalues all
/// have the sign opposite to λ_a's, so λ_a + μ is the other end of the
/// spectrum. Estimates: a Rayleigh quotient lies inside the spectrum, so
/// both ends are approached from within.
pub fn extreme_eigenvalues(
    hvp: &mut dyn FnMut(&[f64]) -> Result<Vec<f64>>,
    n: usize,
    iterations: usize,
    seed: u64,
) -> Result<Extremes> {
    if n == 0 || iterations == 0 {
        return Err(StudyError::config(
            "ratio_iterations",
            "power iteration needs a space and at least one product",
        ));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let start: Vec<f64> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    let a = power(hvp, &start, 0.0, iterations)?;
    let mu = power(hvp, &start, a, iterations)?;
    let other = a + mu;
    Ok(Extremes {
        min: a.min(other),
        max: a.max(other),
    })
}

/// The Rayleigh quotient after power iteration on H − shift·I.
fn power(
    hvp: &mut dyn FnMut(&[f64]) -> Result<Vec<f64>>,
    start: &[f64],
    shift: f64,
    iterations: usize,
) -> Result<f64> {
    let mut v = start.to_vec();
    let mut rayleigh = 0.0;
    for _ in 0..iterations {
        let n = norm(&v);
        if n == 0.0 || !n.is_finite() {
            break;
        }
        v.iter_mut().for_each(|x| *x /= n);
        let mut w = hvp(&v)?;
        for (wi, vi) in w.iter_mut().zip(&v) {
            *wi -= shift * vi;
        }
        rayleigh = dot(&v, &w);
        v = w;
    }
    Ok(rayleigh)
}

/// `f(θ, v)` = H(θ)·v: a Hessian-vector product at any point.
pub type HvpAt<'a> = dyn FnMut(&[f64], &[f64]) -> Result<Vec<f64>> + 'a;

/// |λ_min/λ_max| of the Hessian at θ + a·d₁ + b·d₂ on the grid `alphas` ×
/// `betas`, each from [`extreme_eigenvalues`] on the HVPs `hvp_at` gives
/// for a point: returns the extremes per grid point (row i: a = alphasᵢ).
pub fn eigen_grid(
    hvp_at: &mut HvpAt<'_>,
    theta: &[f64],
    (d1, d2): (&[f64], &[f64]),
    (alphas, betas): (&[f64], &[f64]),
    iterations: usize,
    seed: u64,
) -> Result<Array2<Extremes>> {
    let mut out = Array2::from_elem(
        (alphas.len(), betas.len()),
        Extremes {
            min: f64::NAN,
            max: f64::NAN,
        },
    );
    for (i, &a) in alphas.iter().enumerate() {
        for (j, &b) in betas.iter().enumerate() {
            let at = displaced(theta, &[(a, d1), (b, d2)]);
            let mut hvp = |v: &[f64]| hvp_at(&at, v);
            out[(i, j)] = extreme_eigenvalues(&mut hvp, theta.len(), iterations, seed)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// L(θ) = ½ θᵀ diag(a) θ + cᵀθ.
    pub(crate) struct Quadratic {
        pub a: Vec<f64>,
        pub c: Vec<f64>,
    }

    impl Objective for Quadratic {
        fn dim(&self) -> usize {
            self.a.len()
        }
        fn loss(&mut self, t: &[f64]) -> Result<f64> {
            Ok(t.iter()
                .zip(&self.a)
                .zip(&self.c)
                .map(|((x, a), c)| 0.5 * a * x * x + c * x)
                .sum())
        }
        fn loss_gradient(&mut self, t: &[f64]) -> Result<(f64, Vec<f64>)> {
            let g = t
                .iter()
                .zip(&self.a)
                .zip(&self.c)
                .map(|((x, a), c)| a * x + c)
                .collect();
            Ok((self.loss(t)?, g))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::Quadratic;
    use super::*;

    #[test]
    fn power_iteration_finds_both_ends_of_a_known_spectrum() {
        let a = vec![3.0, -0.5, 1.0, 0.25, -2.0, 0.1];
        let mut q = Quadratic {
            a: a.clone(),
            c: vec![0.3; 6],
        };
        let theta = vec![0.2; 6];
        let mut hvp = fd_hvp(&mut q, &theta, 1e-3);
        let e = extreme_eigenvalues(&mut hvp, 6, 200, 1).unwrap();
        assert!((e.max - 3.0).abs() < 1e-6, "{e:?}");
        assert!((e.min + 2.0).abs() < 1e-6, "{e:?}");
        assert!((e.ratio() - 2.0 / 3.0).abs() < 1e-6);
        // A positive definite spectrum: the ratio is λ_min/λ_max.
        let mut diag = |v: &[f64]| Ok(v.iter().zip([4.0, 1.0, 2.0]).map(|(x, a)| a * x).collect());
        let e = extreme_eigenvalues(&mut diag, 3, 300, 2).unwrap();
        assert!(
            (e.max - 4.0).abs() < 1e-9 && (e.min - 1.0).abs() < 1e-9,
            "{e:?}"
        );
    }

    #[test]
    fn the_second_difference_of_a_quadratic_is_its_curvature_and_the_grid_is_symmetric() {
        let mut q = Quadratic {
            a: vec![2.0, 5.0],
            c: vec![1.0, -1.0],
        };
        let d = [0.6, 0.8];
        let want = 2.0 * 0.36 + 5.0 * 0.64;
        let got = second_difference(&mut q, &[0.3, 0.1], &d, 0.5).unwrap();
        assert!((got - want).abs() < 1e-12, "{got}");
        {
            let mut hvp = fd_hvp(&mut q, &[0.3, 0.1], 1e-4);
            assert!((curvature_along(&mut hvp, &d).unwrap() - want).abs() < 1e-8);
        }
        let g = symmetric_grid(5, 2.0);
        assert_eq!(g, vec![-2.0, -1.0, 0.0, 1.0, 2.0]);
        let s = surface(&mut q, &[0.0, 0.0], (&[1.0, 0.0], &[0.0, 1.0]), &g, &g).unwrap();
        // L(a, b) = a² + a + 2.5b² − b.
        assert_eq!(s[(2, 2)], 0.0);
        assert_eq!(s[(4, 1)], 4.0 + 2.0 + 2.5 + 1.0);
    }
}
