//! What several engine test binaries share.

use candle_core::{Tensor, Var};

/// Every rank-1 parameter (γ, β, biases, gains) set away from its initial
/// 1 or 0, in the variable's own dtype, so that an op that dropped or
/// misplaced one would show.
pub fn perturb_vectors(params: &[(String, Var)]) {
    for (k, (name, var)) in params.iter().enumerate() {
        let t = var.as_tensor();
        if t.rank() != 1 {
            continue;
        }
        let n = t.dims1().unwrap();
        let base = if name.ends_with(".weight") { 1.0 } else { 0.0 };
        let v: Vec<f64> = (0..n)
            .map(|i| base + 0.3 * ((k * 31 + i * 7) as f64).sin())
            .collect();
        let new = Tensor::from_vec(v, n, t.device())
            .unwrap()
            .to_dtype(t.dtype())
            .unwrap();
        var.set(&new).unwrap();
    }
}
