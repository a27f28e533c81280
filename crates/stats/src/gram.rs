//! Statistics of per-example gradients from their Gram matrix G_ij = ⟨g_i, g_j⟩,
//! so B gradients never need to be held at once (for a dense layer,
//! G_ij = (a_i·a_j)(δ_i·δ_j); see `gradscope_probe::dense`).

use ndarray::{Array2, ArrayView2};

use crate::{Result, StatsError};

fn square(g: ArrayView2<f64>) -> Result<usize> {
    let (n, m) = g.dim();
    if n != m || n < 2 {
        return Err(StatsError::Shape(format!(
            "a Gram matrix must be square with at least 2 rows, got {n} × {m}"
        )));
    }
    Ok(n)
}

/// Cosine similarity C_ij = G_ij / √(G_ii G_jj): symmetric, unit diagonal
/// (NaN where a gradient is zero).
pub fn cosine_from_gram(g: ArrayView2<f64>) -> Result<Array2<f64>> {
    let n = square(g)?;
    Ok(Array2::from_shape_fn((n, n), |(i, j)| {
        if i == j && g[[i, i]] > 0.0 {
            1.0
        } else {
            g[[i, j]] / (g[[i, i]] * g[[j, j]]).sqrt()
        }
    }))
}

/// Mean of the off-diagonal entries of a square matrix (finite ones).
pub fn mean_off_diagonal(c: ArrayView2<f64>) -> Result<f64> {
    let n = square(c)?;
    let (sum, count) = c
        .indexed_iter()
        .filter(|((i, j), v)| i != j && v.is_finite())
        .fold((0.0, 0usize), |(s, k), (_, v)| (s + v, k + 1));
    Ok(if count == 0 || n < 2 {
        f64::NAN
    } else {
        sum / count as f64
    })
}

/// Gradient coherence ‖ḡ‖² / mean‖g_i‖² = (Σ_ij G_ij / B²) / (Σ_i G_ii / B),
/// in [0, 1]: 1 when every example pulls the same way, ≈ 1/B when the
/// gradients are orthogonal (Chatterjee 2020, "Coherent gradients").
pub fn coherence(g: ArrayView2<f64>) -> Result<f64> {
    let n = square(g)? as f64;
    let mean_sq = g.sum() / (n * n);
    let mean_norm_sq = g.diag().sum() / n;
    Ok(mean_sq / mean_norm_sq)
}

/// Signal-to-noise ratio of the mean gradient of a batch of B: ‖ḡ‖² over the
/// variance of the mean, tr Σ / B with tr Σ = mean‖g_i − ḡ‖² = mean‖g_i‖² − ‖ḡ‖².
pub fn gradient_snr(g: ArrayView2<f64>) -> Result<f64> {
    let n = square(g)? as f64;
    let mean_sq = g.sum() / (n * n);
    let trace_cov = g.diag().sum() / n - mean_sq;
    Ok(mean_sq / (trace_cov / n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cosine_is_symmetric_with_unit_diagonal_and_matches_vectors() {
        let v = [[1.0, 0.0, 2.0], [0.5, 1.0, 0.0], [-1.0, 0.0, -2.0]];
        let g = Array2::from_shape_fn((3, 3), |(i, j)| (0..3).map(|k| v[i][k] * v[j][k]).sum());
        let c = cosine_from_gram(g.view()).unwrap();
        for i in 0..3 {
            assert_eq!(c[[i, i]], 1.0);
            for j in 0..3 {
                assert_eq!(c[[i, j]], c[[j, i]]);
            }
        }
        assert!((c[[0, 2]] + 1.0).abs() < 1e-12);
        assert!((c[[0, 1]] - 0.5 / (5f64.sqrt() * 1.25f64.sqrt())).abs() < 1e-12);
    }

    #[test]
    fn coherence_and_snr_have_their_limits() {
        // Identical gradients: coherence 1, no noise.
        let same = Array2::from_elem((4, 4), 2.0);
        assert!((coherence(same.view()).unwrap() - 1.0).abs() < 1e-12);
        // Orthonormal gradients: coherence 1/B, mean off-diagonal cosine 0.
        let eye = Array2::<f64>::eye(4);
        assert!((coherence(eye.view()).unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(
            mean_off_diagonal(cosine_from_gram(eye.view()).unwrap().view()).unwrap(),
            0.0
        );
        // ‖ḡ‖² = 1/4, tr Σ = 1 − 1/4, SNR = (1/4) / ((3/4)/4) = 4/3.
        assert!((gradient_snr(eye.view()).unwrap() - 4.0 / 3.0).abs() < 1e-12);
        let g = array![[1.0, 2.0], [2.0, 5.0]];
        assert!(coherence(g.view()).unwrap() <= 1.0);
        assert!(cosine_from_gram(array![[1.0, 2.0, 3.0]].view()).is_err());
    }
}
