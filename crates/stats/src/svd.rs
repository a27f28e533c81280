//! Singular values of a square matrix by one-sided Jacobi rotations, for
//! Jacobian spectra (dynamical isometry): accurate to rounding across many
//! decades, as the Jacobians of deep ReLU nets need, with no LAPACK.

use ndarray::Array2;

/// Singular values of a square matrix, descending: one-sided Jacobi
/// (Hestenes 1958) orthogonalises the columns; their norms are the values.
/// Preconditioned as in LAPACK's dgejsv (Drmač & Veselić 2008): A P = Q R
/// with column pivoting, then Jacobi on Rᵀ, whose rows are already nearly
/// orthogonal, so a few sweeps suffice where A itself needs tens.
pub fn singular_values(a: &Array2<f64>) -> Vec<f64> {
    let cols: Vec<Vec<f64>> = (0..a.ncols()).map(|j| a.column(j).to_vec()).collect();
    jacobi_singular_values(r_transposed(cols)).0
}

/// Rᵀ of the Householder QR with column pivoting of A (given by columns;
/// square): the same singular values. Each step moves the remaining column
/// of largest norm to the front.
fn r_transposed(mut cols: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
    let n = cols.len();
    for k in 0..n {
        let (p, tail2) = (k..n)
            .map(|i| (i, pair_products(&cols[i][k..], &cols[i][k..]).0))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("k < n");
        cols.swap(k, p);
        let norm = tail2.sqrt();
        if norm == 0.0 {
            break;
        }
        // Householder v = x − ρ e₁ with ρ = −sign(x₁)‖x‖ (no cancellation).
        let rho = if cols[k][k] >= 0.0 { -norm } else { norm };
        let mut v = cols[k][k..].to_vec();
        v[0] -= rho;
        let vv = pair_products(&v, &v).0;
        cols[k][k] = rho;
        cols[k][k + 1..].iter_mut().for_each(|x| *x = 0.0);
        for c in &mut cols[k + 1..] {
            let f = 2.0 * pair_products(&v, &c[k..]).2 / vv;
            c[k..].iter_mut().zip(&v).for_each(|(x, vi)| *x -= f * vi);
        }
    }
    // Row i of R is (R_ij)_j = cols[j][i], zero below the diagonal.
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| if j >= i { cols[j][i] } else { 0.0 })
                .collect()
        })
        .collect()
}

/// The values of the matrix with columns `cols`, and the number of sweeps that rotated.
fn jacobi_singular_values(mut cols: Vec<Vec<f64>>) -> (Vec<f64>, usize) {
    let n = cols.len();
    // Columns count as orthogonal at |x·y| ≤ √m·ε·‖x‖‖y‖ (LAPACK's dgesvj):
    // a tighter bound is below rounding and some matrices never meet it.
    let tol = (cols.first().map_or(1, Vec::len) as f64).sqrt() * f64::EPSILON;
    // Columns below ε·‖A‖_F are rounding noise (rank-deficient Jacobians of
    // deep ReLU nets decay to subnormals): rotating them never converges.
    let frob2: f64 = cols.iter().map(|c| pair_products(c, c).0).sum();
    let negligible = (f64::EPSILON * f64::EPSILON) * frob2;
    let mut sweeps = 0;
    while sweeps < 60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (alpha, beta, gamma) = pair_products(&cols[p], &cols[q]);
                if gamma == 0.0
                    || alpha.min(beta) <= negligible
                    || gamma.abs() <= tol * alpha.sqrt() * beta.sqrt()
                {
                    continue;
                }
                rotated = true;
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                let (left, right) = cols.split_at_mut(q);
                for (x, y) in left[p].iter_mut().zip(right[0].iter_mut()) {
                    let (u, v) = (*x, *y);
                    *x = c * u - s * v;
                    *y = s * u + c * v;
                }
            }
        }
        if !rotated {
            break;
        }
        sweeps += 1;
    }
    let mut sv: Vec<f64> = cols
        .iter()
        .map(|c| c.iter().map(|x| x * x).sum::<f64>().sqrt())
        .collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    (sv, sweeps)
}

/// (‖x‖², ‖y‖², x·y) in one pass, in four running sums each: one sum is a
/// chain of dependent additions, four vectorise (this is the inner loop of
/// every Jacobi rotation).
fn pair_products(x: &[f64], y: &[f64]) -> (f64, f64, f64) {
    let (mut a, mut b, mut g) = ([0.0f64; 4], [0.0f64; 4], [0.0f64; 4]);
    let (xs, ys) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .fold((0.0, 0.0, 0.0), |(a, b, g), (u, v)| {
            (a + u * u, b + v * v, g + u * v)
        });
    for (u, v) in xs.zip(ys) {
        for k in 0..4 {
            a[k] += u[k] * u[k];
            b[k] += v[k] * v[k];
            g[k] += u[k] * v[k];
        }
    }
    let total = |s: [f64; 4]| (s[0] + s[1]) + (s[2] + s[3]);
    (total(a) + tail.0, total(b) + tail.1, total(g) + tail.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rank 4 of 24 with the other columns near 1e-160 (their products subnormal), as in the
    /// Jacobian of a deep plain ReLU net: the rotations must stop.
    #[test]
    fn jacobi_stops_on_rank_deficient_matrices() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let n = 24;
        let a = Array2::from_shape_fn((n, n), |(_, j)| {
            let scale = if j < 4 { 1.0 } else { 1e-160 * (j as f64) };
            scale * uniform()
        });
        let cols = (0..n).map(|j| a.column(j).to_vec()).collect();
        let (sv, sweeps) = jacobi_singular_values(cols);
        assert!(sweeps < 20, "{sweeps} sweeps");
        assert!(sv[3] > 1e-3 && sv[4] < 1e-150, "{sv:?}");
    }

    /// I − 2vvᵀ/‖v‖², an orthogonal reflection.
    fn householder(v: &[f64]) -> ndarray::Array2<f64> {
        let n = v.len();
        let vv: f64 = v.iter().map(|x| x * x).sum();
        ndarray::Array2::from_shape_fn((n, n), |(i, j)| {
            f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv
        })
    }

    /// U·A·V with U, V fixed reflections of size n.
    fn rotated(a: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
        let n = a.nrows();
        let reflection =
            |f: fn(f64) -> f64| householder(&(0..n).map(|i| f(i as f64)).collect::<Vec<_>>());
        let u = reflection(|i| (i * 0.7).sin() + 0.3);
        let v = reflection(|i| (i * 1.3).cos() - 0.2);
        u.dot(a).dot(&v)
    }

    #[test]
    fn singular_values_of_u_diag_v_are_the_diagonal() {
        let check = |a: ndarray::Array2<f64>, s: &[f64]| {
            let got = singular_values(&rotated(&a));
            assert_eq!(got.len(), s.len());
            for (g, w) in got.iter().zip(s) {
                assert!((g - w).abs() <= 1e-12 * s[0], "n = {}: {g} vs {w}", s.len());
            }
        };
        // Sizes off and on the four-lane stride; values over thirteen decades.
        for n in [1, 2, 13, 32] {
            let s: Vec<f64> = (0..n)
                .map(|i| 1e3 * 10f64.powf(-13.0 * i as f64 / n.max(2) as f64))
                .collect();
            // Columns in scrambled order: the values come back sorted.
            let d = ndarray::Array2::from_shape_fn((n, n), |(i, j)| {
                if (i * 5 + 3) % n == j { s[i] } else { 0.0 }
            });
            check(d, &s);
        }
        // Rank 3 of 32, as the Jacobian of a deep ReLU net.
        let mut s = vec![0.0; 32];
        s[..3].copy_from_slice(&[5.0, 2.0, 1.0]);
        s[31] = 1e-310;
        check(
            ndarray::Array2::from_diag(&ndarray::Array1::from(s.clone())),
            &s,
        );
        // [[3, 0], [4, 5]]: σ² are the eigenvalues of AᵀA = [[25, 20], [20, 25]], 45 and 5.
        let a = ndarray::arr2(&[[3.0, 0.0], [4.0, 5.0]]);
        let got = singular_values(&a);
        assert!((got[0] - 45f64.sqrt()).abs() < 1e-14 && (got[1] - 5f64.sqrt()).abs() < 1e-14);
    }
}
