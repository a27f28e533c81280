//! Input grids.

use ndarray::Array2;

/// `n` evenly spaced scalar inputs on [lo, hi], as an (n, 1) batch:
/// xᵢ = lo + i·(hi − lo)/(n − 1). Balduzzi et al. 2017 use n = 256 on [−2, 2].
pub fn scalar_grid(n: usize, lo: f64, hi: f64) -> Array2<f64> {
    let step = if n > 1 {
        (hi - lo) / (n - 1) as f64
    } else {
        0.0
    };
    Array2::from_shape_fn((n, 1), |(i, _)| lo + step * i as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_spans_the_interval() {
        let g = scalar_grid(256, -2.0, 2.0);
        assert_eq!(g.dim(), (256, 1));
        assert_eq!(g[[0, 0]], -2.0);
        assert!((g[[255, 0]] - 2.0).abs() < 1e-15);
        assert!((g[[1, 0]] - g[[0, 0]] - 4.0 / 255.0).abs() < 1e-15);
    }
}
