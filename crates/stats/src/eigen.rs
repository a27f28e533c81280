//! Eigenvalues and eigenvectors of a symmetric matrix by cyclic Jacobi
//! rotations (Golub and Van Loan 2013, §8.5): accurate to rounding for the
//! small matrices the curvature statistics meet (Lanczos tridiagonals, the
//! dense Hessians of tiny nets the tests form), with no LAPACK.

use ndarray::Array2;

use crate::{Result, StatsError};

/// A symmetric matrix's eigenvalues in ascending order and its orthonormal
/// eigenvectors (column i belongs to eigenvalue i).
#[derive(Clone, Debug)]
pub struct SymmetricEigen {
    /// λ₁ ≤ … ≤ λₙ.
    pub values: Vec<f64>,
    /// Q with A = Q diag(λ) Qᵀ.
    pub vectors: Array2<f64>,
}

/// A = Q diag(λ) Qᵀ of symmetric `a` (its upper triangle is read as the
/// lower's mirror: an asymmetry of rounding is averaged away), by sweeps of
/// Jacobi rotations until the off-diagonal mass is below rounding.
pub fn symmetric_eigen(a: &Array2<f64>) -> Result<SymmetricEigen> {
    let n = a.nrows();
    if a.ncols() != n {
        return Err(StatsError::Shape(format!(
            "an eigendecomposition needs a square matrix, got {}×{}",
            n,
            a.ncols()
        )));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(StatsError::Shape(
            "an eigendecomposition needs finite entries".into(),
        ));
    }
    let mut m = Array2::from_shape_fn((n, n), |(i, j)| 0.5 * (a[[i, j]] + a[[j, i]]));
    let mut q = Array2::<f64>::eye(n);
    let scale: f64 = m.iter().map(|v| v * v).sum::<f64>().sqrt();
    // Converged when the off-diagonal part is at the rounding of the
    // rotations themselves (n·ε‖A‖), or a sweep no longer reduces it: a
    // stricter bound is never reached and only repeats sweeps.
    let mut last = f64::INFINITY;
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[[i, j]] * m[[i, j]])
            .sum::<f64>()
            .sqrt();
        if off <= n as f64 * f64::EPSILON * scale || off >= last {
            break;
        }
        last = off;
        for p in 0..n {
            for r in p + 1..n {
                let apr = m[[p, r]];
                if apr == 0.0 {
                    continue;
                }
                // The rotation that zeroes m[p, r] (the smaller angle).
                let theta = (m[[r, r]] - m[[p, p]]) / (2.0 * apr);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkr) = (m[[k, p]], m[[k, r]]);
                    m[[k, p]] = c * mkp - s * mkr;
                    m[[k, r]] = s * mkp + c * mkr;
                }
                for k in 0..n {
                    let (mpk, mrk) = (m[[p, k]], m[[r, k]]);
                    m[[p, k]] = c * mpk - s * mrk;
                    m[[r, k]] = s * mpk + c * mrk;
                }
                for k in 0..n {
                    let (qkp, qkr) = (q[[k, p]], q[[k, r]]);
                    q[[k, p]] = c * qkp - s * qkr;
                    q[[k, r]] = s * qkp + c * qkr;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[[i, i]].total_cmp(&m[[j, j]]));
    Ok(SymmetricEigen {
        values: order.iter().map(|&i| m[[i, i]]).collect(),
        vectors: Array2::from_shape_fn((n, n), |(k, i)| q[[k, order[i]]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconstructs_a_symmetric_matrix_with_orthonormal_vectors() {
        let n = 7;
        let a = Array2::from_shape_fn((n, n), |(i, j)| {
            ((i * 3 + j * 3 + i * j) % 11) as f64 / 5.0 - 1.0 + if i == j { 0.5 } else { 0.0 }
        });
        let e = symmetric_eigen(&a).unwrap();
        assert!(e.values.windows(2).all(|w| w[0] <= w[1]));
        let d = Array2::from_diag(&ndarray::Array1::from(e.values.clone()));
        let back = e.vectors.dot(&d).dot(&e.vectors.t());
        let qtq = e.vectors.t().dot(&e.vectors);
        for i in 0..n {
            for j in 0..n {
                assert!((back[[i, j]] - a[[i, j]]).abs() < 1e-12);
                let eye = if i == j { 1.0 } else { 0.0 };
                assert!((qtq[[i, j]] - eye).abs() < 1e-12);
            }
        }
        // The trace is the eigenvalues' sum.
        let tr: f64 = (0..n).map(|i| a[[i, i]]).sum();
        assert!((e.values.iter().sum::<f64>() - tr).abs() < 1e-12);
    }

    #[test]
    fn a_diagonal_matrix_has_its_diagonal_sorted() {
        let a = Array2::from_diag(&ndarray::arr1(&[3.0, -1.0, 2.0]));
        assert_eq!(symmetric_eigen(&a).unwrap().values, vec![-1.0, 2.0, 3.0]);
        assert!(symmetric_eigen(&Array2::zeros((2, 3))).is_err());
    }
}
