//! Spectra of a symmetric operator H seen only through its products H·v
//! (a Hessian of a net's loss): Lanczos with full reorthogonalisation for
//! the top eigenvalues, Hutchinson's trace estimator, and stochastic
//! Lanczos quadrature for the spectral density (Ghorbani, Krishnan and Xiao
//! 2019; Yao, Gholami, Keutzer and Mahoney 2020, PyHessian).
//!
//! Every function takes the product as a closure `hvp(v) -> Result<H·v, E>`
//! for any error type E that a [`StatsError`] converts into, so the caller's
//! failures pass through unchanged.

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::StatsError;
use crate::eigen::symmetric_eigen;

/// One Lanczos iteration's top Ritz values and their residual bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct RitzStep {
    /// Lanczos steps taken (the tridiagonal's size).
    pub iteration: usize,
    /// The largest Ritz values, descending (at most k).
    pub values: Vec<f64>,
    /// ‖H y − θ y‖ = β_m |s_m| for each Ritz pair (θ, y = Q s).
    pub residuals: Vec<f64>,
}

/// The top eigenvalues of H from Lanczos, with how they converged.
#[derive(Clone, Debug, PartialEq)]
pub struct Lanczos {
    /// The k largest Ritz values, descending: H's top eigenvalues once
    /// converged.
    pub eigenvalues: Vec<f64>,
    /// Each one's residual ‖H y − θ y‖ (y of unit norm): θ is within it of
    /// an eigenvalue of H.
    pub residuals: Vec<f64>,
    /// Products H·v taken.
    pub iterations: usize,
    /// Whether every residual fell below `tol`·max(|θ|) (else the step
    /// budget ran out).
    pub converged: bool,
    /// The top Ritz values after each step.
    pub history: Vec<RitzStep>,
}

/// The Lanczos tridiagonal T = QᵀHQ from a start vector: (α, β), with
/// every new vector orthogonalised against all earlier ones (full
/// reorthogonalisation, so no spurious copies of converged values). Stops
/// early where the Krylov space is invariant (the next β is 0).
/// `each(α, β, β_next)` sees the tridiagonal after every step with the
/// norm of the step's remainder, and returns whether to stop.
///
/// Each step takes w = Hqⱼ − αⱼqⱼ − βⱼ₋₁qⱼ₋₁ (the three-term recurrence,
/// which removes w's large components) and then one classical Gram–Schmidt
/// pass against every qᵢ, which removes what rounding left; a second pass
/// runs only when the first shrank w below 1/√2 of its norm, the
/// Kahan–Parlett test (Parlett 1998, §6.9; Daniel, Gragg, Kaufman and
/// Stewart 1976), since only then can cancellation have left w short of
/// orthogonal to rounding ("twice is enough": Giraud et al. 2005).
fn tridiagonal<E: From<StatsError>>(
    start: &[f64],
    steps: usize,
    hvp: &mut impl FnMut(&[f64]) -> Result<Vec<f64>, E>,
    mut each: impl FnMut(&[f64], &[f64], f64) -> Result<bool, E>,
) -> Result<(Vec<f64>, Vec<f64>), E> {
    let n = start.len();
    let norm = dot(start, start).sqrt();
    if n == 0 || norm == 0.0 || !norm.is_finite() {
        return Err(
            StatsError::Shape("Lanczos needs a finite non-zero start vector".into()).into(),
        );
    }
    let mut basis: Vec<Vec<f64>> = vec![start.iter().map(|v| v / norm).collect()];
    let (mut alpha, mut beta) = (Vec::new(), Vec::new());
    for j in 0..steps.min(n) {
        let mut w = hvp(&basis[j])?;
        if w.len() != n {
            return Err(StatsError::Shape(format!(
                "a product of {} elements for vectors of {n}",
                w.len()
            ))
            .into());
        }
        if w.iter().any(|v| !v.is_finite()) {
            return Err(StatsError::Shape("a product H·v that is not finite".into()).into());
        }
        let a = dot(&basis[j], &w);
        alpha.push(a);
        let previous = j.checked_sub(1).map(|i| (beta[i], basis[i].as_slice()));
        let before = recurrence(&mut w, a, &basis[j], previous);
        let mut b = orthogonalise(&mut w, &basis);
        if b < before * std::f64::consts::FRAC_1_SQRT_2 {
            b = orthogonalise(&mut w, &basis);
        }
        let scale = alpha
            .iter()
            .chain(&beta)
            .fold(0.0f64, |m, v| m.max(v.abs()));
        // Below this the remainder is rounding: the Krylov space is invariant.
        let invariant = b <= 1e-10 * scale.max(f64::MIN_POSITIVE);
        let stop = each(&alpha, &beta, if invariant { 0.0 } else { b })?;
        if stop || invariant {
            break;
        }
        beta.push(b);
        basis.push(w.iter().map(|v| v / b).collect());
    }
    if beta.len() == alpha.len() {
        beta.pop();
    }
    Ok((alpha, beta))
}

/// The Ritz values (ascending), and the first and last components of the
/// tridiagonal's unit eigenvectors.
struct Ritz {
    values: Vec<f64>,
    first: Vec<f64>,
    last: Vec<f64>,
}

/// [`Ritz`] of the tridiagonal (α, β).
fn ritz(alpha: &[f64], beta: &[f64]) -> Result<Ritz, StatsError> {
    let m = alpha.len();
    let t = Array2::from_shape_fn((m, m), |(i, j)| {
        if i == j {
            alpha[i]
        } else if i + 1 == j {
            beta[i]
        } else if j + 1 == i {
            beta[j]
        } else {
            0.0
        }
    });
    let e = symmetric_eigen(&t)?;
    let first = (0..m).map(|i| e.vectors[[0, i]]).collect();
    let last = (0..m).map(|i| e.vectors[[m - 1, i]]).collect();
    Ok(Ritz {
        values: e.values,
        first,
        last,
    })
}

/// The `k` largest eigenvalues of the symmetric operator `hvp` on vectors
/// of `start.len()` elements, by Lanczos from `start` with full
/// reorthogonalisation in at most `max_steps` products; stops once each of
/// the k Ritz pairs (θ, y) has residual ‖Hy − θy‖ = β_m|s_m| ≤
/// `tol`·max |θ| (Parlett 1998, §13.2).
pub fn lanczos_top<E: From<StatsError>>(
    start: &[f64],
    k: usize,
    max_steps: usize,
    tol: f64,
    mut hvp: impl FnMut(&[f64]) -> Result<Vec<f64>, E>,
) -> Result<Lanczos, E> {
    if k == 0 || max_steps < k || tol.is_nan() || tol <= 0.0 {
        return Err(StatsError::Parameter {
            name: "Lanczos k (steps ≥ k, tolerance > 0)",
            value: k as f64,
            expected: "1 ≤ k ≤ max_steps and tol > 0",
        }
        .into());
    }
    let mut history: Vec<RitzStep> = Vec::new();
    let mut converged = false;
    tridiagonal(start, max_steps, &mut hvp, |alpha, beta, b_next| {
        let Ritz { values, last, .. } = ritz(alpha, beta)?;
        let step = RitzStep {
            iteration: alpha.len(),
            values: values.iter().rev().take(k).copied().collect(),
            residuals: last
                .iter()
                .rev()
                .take(k)
                .map(|s| b_next * s.abs())
                .collect(),
        };
        let scale = step.values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        converged = step.values.len() == k.min(start.len())
            && step
                .residuals
                .iter()
                .all(|r| *r <= tol * scale.max(f64::MIN_POSITIVE));
        history.push(step);
        Ok(converged)
    })?;
    let last = history.last().cloned().expect("one step at least");
    Ok(Lanczos {
        eigenvalues: last.values,
        residuals: last.residuals,
        iterations: last.iteration,
        converged,
        history,
    })
}

/// Hutchinson's estimate of tr H: the mean of vᵀHv over `probes`
/// Rademacher vectors v (entries ±1, so E\[vᵀHv\] = tr H exactly), with its
/// standard error s/√n (Hutchinson 1989; Avron and Toledo 2011).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceEstimate {
    /// The mean of vᵀHv.
    pub mean: f64,
    /// The standard error of the mean (NaN for one probe).
    pub std_error: f64,
    /// vᵀHv per probe.
    pub samples: Vec<f64>,
}

/// [`TraceEstimate`] of the operator `hvp` on vectors of `dim` elements,
/// probes drawn from `StdRng::seed_from_u64(seed)`.
pub fn hutchinson_trace<E: From<StatsError>>(
    dim: usize,
    probes: usize,
    seed: u64,
    mut hvp: impl FnMut(&[f64]) -> Result<Vec<f64>, E>,
) -> Result<TraceEstimate, E> {
    if probes == 0 || dim == 0 {
        return Err(StatsError::TooShort {
            what: "Hutchinson's trace (probes, dimension)",
            need: 1,
            got: 0,
        }
        .into());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut samples = Vec::with_capacity(probes);
    for _ in 0..probes {
        let v = rademacher(dim, &mut rng);
        let hv = hvp(&v)?;
        if hv.len() != dim {
            return Err(StatsError::Shape(format!(
                "a product of {} elements for vectors of {dim}",
                hv.len()
            ))
            .into());
        }
        samples.push(dot(&v, &hv));
    }
    let (mean, std_error) = mean_and_error(&samples);
    Ok(TraceEstimate {
        mean,
        std_error,
        samples,
    })
}

fn rademacher(dim: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..dim)
        .map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 })
        .collect()
}

/// A spectral density from stochastic Lanczos quadrature: per probe v
/// (a normalised Rademacher vector), the m-point Gauss quadrature of the
/// measure Σᵢ (vᵀuᵢ)² δ(t − λᵢ), whose nodes are the Ritz values θⱼ of m
/// Lanczos steps from v and whose weights τⱼ are the squared first
/// components of T's eigenvectors (Golub and Meurant 2010; Lin, Saad and
/// Yang 2016). Averaged over probes it estimates the density
/// φ(t) = (1/n) Σᵢ δ(t − λᵢ) of H's n eigenvalues; smoothed by a Gaussian
/// of width σ for display (Ghorbani et al. 2019; Yao et al. 2020).
#[derive(Clone, Debug, PartialEq)]
pub struct SpectralDensity {
    /// The dimension n of H.
    pub dim: usize,
    /// Quadrature nodes θⱼ, per probe.
    pub nodes: Vec<Vec<f64>>,
    /// Quadrature weights τⱼ (summing to 1), per probe.
    pub weights: Vec<Vec<f64>>,
}

impl SpectralDensity {
    /// The density smoothed by a Gaussian of width `sigma`, at `grid`:
    /// (1/probes) Σ_v Σⱼ τⱼ N(t; θⱼ, σ²). Integrates to 1.
    pub fn smoothed(&self, grid: &[f64], sigma: f64) -> Vec<f64> {
        let nodes: Vec<f64> = self.nodes.iter().flatten().copied().collect();
        let weights: Vec<f64> = self
            .weights
            .iter()
            .flatten()
            .map(|w| w / self.nodes.len() as f64)
            .collect();
        broadened_density(&nodes, &weights, grid, sigma)
    }

    /// The estimate of tr H = n·E[Σⱼ τⱼ θⱼ], and its standard error over
    /// probes.
    pub fn trace(&self) -> (f64, f64) {
        let per: Vec<f64> = self
            .nodes
            .iter()
            .zip(&self.weights)
            .map(|(x, w)| self.dim as f64 * dot(x, w))
            .collect();
        mean_and_error(&per)
    }

    /// The share of H's absolute spectral mass that is negative,
    /// Σ_{λ<0} |λ| / Σ |λ| = tr(H₋)/tr|H| (0 for a positive semi-definite
    /// H), from the quadrature: insensitive to the many eigenvalues near 0,
    /// whose signs rounding decides.
    pub fn negative_mass(&self) -> f64 {
        let (mut neg, mut all) = (0.0, 0.0);
        for (x, w) in self.nodes.iter().zip(&self.weights) {
            for (x, w) in x.iter().zip(w) {
                all += w * x.abs();
                if *x < 0.0 {
                    neg += w * x.abs();
                }
            }
        }
        if all > 0.0 { neg / all } else { 0.0 }
    }

    /// The smallest and largest node over all probes.
    pub fn range(&self) -> (f64, f64) {
        self.nodes
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            })
    }
}

/// Σⱼ wⱼ N(t; xⱼ, σ²) at each t of `grid`.
pub fn broadened_density(nodes: &[f64], weights: &[f64], grid: &[f64], sigma: f64) -> Vec<f64> {
    let c = 1.0 / (sigma * (2.0 * std::f64::consts::PI).sqrt());
    grid.iter()
        .map(|t| {
            nodes
                .iter()
                .zip(weights)
                .map(|(x, w)| w * c * (-0.5 * ((t - x) / sigma).powi(2)).exp())
                .sum()
        })
        .collect()
}

/// The share of absolute spectral mass that is negative of eigenvalues
/// `values`: Σ_{λ<0} |λ| / Σ |λ| (as [`SpectralDensity::negative_mass`]).
pub fn negative_mass(values: &[f64]) -> f64 {
    let all: f64 = values.iter().map(|v| v.abs()).sum();
    let neg: f64 = values.iter().filter(|v| **v < 0.0).map(|v| v.abs()).sum();
    if all > 0.0 { neg / all } else { 0.0 }
}

/// [`SpectralDensity`] of the operator `hvp` on vectors of `dim` elements:
/// `probes` normalised Rademacher probes from `StdRng::seed_from_u64(seed)`,
/// `steps` Lanczos steps each (fewer where the Krylov space closes).
pub fn spectral_density<E: From<StatsError>>(
    dim: usize,
    probes: usize,
    steps: usize,
    seed: u64,
    mut hvp: impl FnMut(&[f64]) -> Result<Vec<f64>, E>,
) -> Result<SpectralDensity, E> {
    if probes == 0 || steps == 0 || dim == 0 {
        return Err(StatsError::TooShort {
            what: "stochastic Lanczos quadrature (probes, steps, dimension)",
            need: 1,
            got: 0,
        }
        .into());
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut nodes, mut weights) = (Vec::new(), Vec::new());
    for _ in 0..probes {
        let v = rademacher(dim, &mut rng);
        let (alpha, beta) = tridiagonal(&v, steps, &mut hvp, |_, _, _| Ok(false))?;
        let Ritz {
            values: theta,
            first,
            ..
        } = ritz(&alpha, &beta)?;
        nodes.push(theta);
        weights.push(first.iter().map(|s| s * s).collect());
    }
    Ok(SpectralDensity {
        dim,
        nodes,
        weights,
    })
}

fn mean_and_error(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    if x.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// w ← w − αq − βp for the three-term recurrence (p = qⱼ₋₁ with its β,
/// absent at the first step); returns ‖w‖ after.
fn recurrence(w: &mut [f64], alpha: f64, q: &[f64], previous: Option<(f64, &[f64])>) -> f64 {
    match previous {
        Some((beta, p)) => w
            .iter_mut()
            .zip(q)
            .zip(p)
            .for_each(|((w, q), p)| *w -= alpha * q + beta * p),
        None => w.iter_mut().zip(q).for_each(|(w, q)| *w -= alpha * q),
    }
    dot(w, w).sqrt()
}

/// One classical Gram–Schmidt pass, w ← w − Q(Qᵀw), in blocks of w that
/// stay in cache while every basis vector streams past: each vector is read
/// twice per pass, not twice per basis vector as in the modified form.
/// Returns ‖w‖ after, summed over the blocks while they are in cache.
fn orthogonalise(w: &mut [f64], basis: &[Vec<f64>]) -> f64 {
    const BLOCK: usize = 2048;
    let mut c = vec![0.0; basis.len()];
    for (start, wb) in w.chunks(BLOCK).enumerate() {
        let at = start * BLOCK;
        for (c, q) in c.iter_mut().zip(basis) {
            *c += dot(&q[at..at + wb.len()], wb);
        }
    }
    let mut norm2 = 0.0;
    for (start, wb) in w.chunks_mut(BLOCK).enumerate() {
        let (at, len) = (start * BLOCK, wb.len());
        for (c, q) in c.iter().zip(basis) {
            wb.iter_mut()
                .zip(&q[at..at + len])
                .for_each(|(w, q)| *w -= c * q);
        }
        norm2 += dot(wb, wb);
    }
    norm2.sqrt()
}

/// aᵀb with four running sums (independent, so the loop vectorises; the
/// order of the sums is fixed, so the result is reproducible).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (x, y) in a4.zip(b4) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Result;

    /// H = Q diag(λ) Qᵀ, n = 60, with a rotation Q (Householder) so H is dense:
    /// a cluster of small eigenvalues, a few negative, a gap to the top.
    fn quadratic() -> (Array2<f64>, Vec<f64>) {
        let n = 60;
        let lambda: Vec<f64> = (0..n)
            .map(|i| match i {
                0 => 9.0,
                1 => 6.5,
                2 => 5.0,
                3..=6 => -0.8 * i as f64 / 6.0,
                _ => 0.02 * ((i * 7) % 13) as f64,
            })
            .collect();
        let u: Vec<f64> = (0..n).map(|i| ((i * 5 + 3) % 11) as f64 - 5.0).collect();
        let uu = dot(&u, &u);
        let q = Array2::from_shape_fn((n, n), |(i, j)| {
            f64::from(u8::from(i == j)) - 2.0 * u[i] * u[j] / uu
        });
        let h = q
            .dot(&Array2::from_diag(&ndarray::Array1::from(lambda.clone())))
            .dot(&q.t());
        (h, lambda)
    }

    fn product(h: &Array2<f64>) -> impl FnMut(&[f64]) -> Result<Vec<f64>> + '_ {
        |v| Ok(h.dot(&ndarray::ArrayView1::from(v)).to_vec())
    }

    #[test]
    fn lanczos_finds_the_top_eigenvalues_and_records_their_convergence() {
        let (h, mut lambda) = quadratic();
        lambda.sort_by(|a, b| b.total_cmp(a));
        let start: Vec<f64> = (0..60).map(|i| 1.0 + (i % 3) as f64).collect();
        let l = lanczos_top(&start, 3, 60, 1e-10, product(&h)).unwrap();
        assert!(l.converged, "{l:?}");
        for (got, want) in l.eigenvalues.iter().zip(&lambda) {
            assert!((got - want).abs() < 1e-9, "{got} against {want}");
        }
        assert!(l.iterations < 60 && l.history.len() == l.iterations);
        // Ritz values grow towards λ_max (interlacing), residuals end below tol.
        let tops: Vec<f64> = l.history.iter().map(|s| s.values[0]).collect();
        assert!(tops.windows(2).all(|w| w[1] >= w[0] - 1e-12));
        assert!(l.residuals.iter().all(|r| *r <= 1e-10 * 9.0));
        assert!(l.history[0].residuals[0] > 1e-3);
        // Against the dense decomposition, too.
        let dense = symmetric_eigen(&h).unwrap().values;
        assert!((dense[59] - l.eigenvalues[0]).abs() < 1e-9);
    }

    #[test]
    fn lanczos_run_past_the_krylov_dimension_finds_each_distinct_eigenvalue_once() {
        // H has 20 distinct eigenvalues, so the Krylov space closes after 20
        // steps; a basis that lost orthogonality would run on and repeat
        // converged values (ghosts) instead.
        let (h, lambda) = quadratic();
        let mut distinct = lambda.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup_by(|a, b| (*a - *b).abs() < 1e-12);
        assert_eq!(distinct.len(), 20);
        let start: Vec<f64> = (0..60).map(|i| 1.0 + (i % 3) as f64).collect();
        let (alpha, beta) = tridiagonal(&start, 60, &mut product(&h), |_, _, _| Ok(false)).unwrap();
        assert_eq!(alpha.len(), distinct.len());
        let values = ritz(&alpha, &beta).unwrap().values;
        for (got, want) in values.iter().zip(&distinct) {
            assert!((got - want).abs() < 1e-9, "{got} against {want}");
        }
    }

    #[test]
    fn hutchinson_lies_within_three_standard_errors_of_the_trace() {
        let (h, lambda) = quadratic();
        let exact: f64 = lambda.iter().sum();
        let t = hutchinson_trace(60, 200, 7, product(&h)).unwrap();
        assert!(t.std_error > 0.0 && t.samples.len() == 200);
        assert!(
            (t.mean - exact).abs() <= 3.0 * t.std_error,
            "{} ± {} against {exact}",
            t.mean,
            t.std_error
        );
        // A diagonal H has a Rademacher estimate without variance.
        let d = Array2::from_diag(&ndarray::Array1::from(lambda.clone()));
        let t = hutchinson_trace(60, 5, 1, product(&d)).unwrap();
        assert!((t.mean - exact).abs() < 1e-12 && t.std_error < 1e-12);
    }

    #[test]
    fn the_quadrature_density_integrates_to_one_and_matches_the_eigenvalue_histogram() {
        let (h, lambda) = quadratic();
        let slq = spectral_density(60, 20, 30, 3, product(&h)).unwrap();
        for w in &slq.weights {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        let sigma = 0.3;
        let grid: Vec<f64> = (0..=2400).map(|i| -3.0 + i as f64 * 0.01).collect();
        let got = slq.smoothed(&grid, sigma);
        let integral: f64 = got.iter().sum::<f64>() * 0.01;
        assert!((integral - 1.0).abs() < 1e-3, "∫φ = {integral}");
        // The exact histogram, broadened the same way: L1 distance ≤ 0.1.
        let exact = broadened_density(&lambda, &vec![1.0 / 60.0; 60], &grid, sigma);
        let l1: f64 = got
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            * 0.01;
        assert!(l1 < 0.1, "L1 distance {l1}");
        // Trace and negative mass against the exact ones.
        let (tr, se) = slq.trace();
        let exact_tr: f64 = lambda.iter().sum();
        assert!(
            (tr - exact_tr).abs() <= 3.0 * se,
            "{tr} ± {se} against {exact_tr}"
        );
        let (neg, exact_neg) = (slq.negative_mass(), negative_mass(&lambda));
        assert!(
            exact_neg > 0.05 && (neg - exact_neg).abs() < 0.05,
            "{neg} against {exact_neg}"
        );
        let (lo, hi) = slq.range();
        assert!(lo >= -0.8 - 1e-9 && hi <= 9.0 + 1e-9);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let (h, _) = quadratic();
        assert!(lanczos_top(&[0.0; 60], 1, 10, 1e-8, product(&h)).is_err());
        assert!(lanczos_top(&[1.0; 60], 3, 2, 1e-8, product(&h)).is_err());
        assert!(hutchinson_trace(60, 0, 1, product(&h)).is_err());
        assert!(spectral_density(60, 1, 0, 1, product(&h)).is_err());
        // A product of the wrong length.
        let wrong = |_: &[f64]| Ok::<_, StatsError>(vec![1.0; 60]);
        assert!(hutchinson_trace(3, 1, 1, wrong).is_err());
        assert!(spectral_density(3, 1, 2, 1, wrong).is_err());
    }
}
