//! Classification loss and error, from differentiable basic ops.

use candle_core::{D, DType, Tensor};

use crate::Result;

/// Labels as a (batch, 1) u32 index tensor.
fn label_index(labels: &[u32], device: &candle_core::Device) -> Result<Tensor> {
    Ok(Tensor::from_slice(labels, (labels.len(), 1), device)?)
}

/// Mean cross-entropy −(1/B) Σᵢ log softmax(zᵢ)\[yᵢ\] of logits z (batch, classes),
/// with log softmax(z) = z − log Σ exp z computed stably.
pub fn cross_entropy(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let log_probs = log_softmax(logits)?;
    let picked = log_probs.gather(&label_index(labels, logits.device())?, 1)?;
    Ok(picked.mean_all()?.neg()?)
}

/// Per-example cross-entropy (batch,).
pub fn cross_entropy_per_example(logits: &Tensor, labels: &[u32]) -> Result<Tensor> {
    let log_probs = log_softmax(logits)?;
    Ok(log_probs
        .gather(&label_index(labels, logits.device())?, 1)?
        .squeeze(1)?
        .neg()?)
}

/// log softmax along the last axis: z − max − log Σ exp(z − max).
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Share of examples whose arg-max logit is not their label.
pub fn error_rate(logits: &Tensor, labels: &[u32]) -> Result<f64> {
    let pred = logits
        .argmax(D::Minus1)?
        .to_dtype(DType::U32)?
        .to_vec1::<u32>()?;
    let wrong = pred.iter().zip(labels).filter(|(p, y)| p != y).count();
    Ok(wrong as f64 / labels.len().max(1) as f64)
}

/// Per-example cross-entropy −log softmax(zᵢ)\[yᵢ\] = log Σₖ exp(zᵢₖ − mᵢ) − (zᵢ_yᵢ − mᵢ),
/// mᵢ = maxₖ zᵢₖ (log-sum-exp, returned in f64), and its gradient
/// softmax(zᵢ) − e_{yᵢ} (in place of the logits).
///
/// The sum lies in \[1, classes\], so the loss is finite whenever the
/// logits are, whatever the gap zᵢ_yᵢ − mᵢ: taking −ln p_y of a p_y held
/// in f32 instead reads +inf once the gap passes about −103 (p_y underflows),
/// though the gradient is still finite.
pub fn cross_entropy_gradient<T: num_traits::Float>(
    logits: &mut ndarray::Array2<T>,
    labels: &[u32],
) -> Vec<f64> {
    logits
        .axis_iter_mut(ndarray::Axis(0))
        .zip(labels)
        .map(|(mut z, &y)| {
            let max = z.fold(T::neg_infinity(), |a, &b| num_traits::Float::max(a, b));
            let gap = f64_of(z[y as usize] - max);
            z.mapv_inplace(|v| (v - max).exp());
            let sum = z.sum();
            z.mapv_inplace(|v| v / sum);
            z[y as usize] = z[y as usize] - T::one();
            f64_of(sum).ln() - gap
        })
        .collect()
}

/// `v` as an f64 (exact from f32 and f64; a dual number's value).
fn f64_of<T: num_traits::Float>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

/// How many rows of `logits` (batch, classes) have their first arg-max
/// elsewhere than their label (as [`error_rate`], on a plain matrix).
pub fn misclassified<T: num_traits::Float>(logits: &ndarray::Array2<T>, labels: &[u32]) -> usize {
    logits
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(z, y)| {
            let best =
                z.iter().enumerate().fold(
                    (0, T::neg_infinity()),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            best.0 != **y as usize
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn cross_entropy_matches_the_closed_form_and_its_gradient() {
        let dev = Device::Cpu;
        let z = Var::from_tensor(
            &Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 0.5, 0.5, 0.5], (2, 3), &dev).unwrap(),
        )
        .unwrap();
        let loss = cross_entropy(z.as_tensor(), &[2, 0]).unwrap();
        // Example 0: −log(e³/(e + e² + e³)); example 1: −log(1/3).
        let e = |v: f64| v.exp();
        let want = (-(e(3.0) / (e(1.0) + e(2.0) + e(3.0))).ln() + 3f64.ln()) / 2.0;
        assert!((loss.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
        // ∂L/∂z = (softmax(z) − onehot(y)) / B.
        let g = loss
            .backward()
            .unwrap()
            .get(z.as_tensor())
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        let s = e(1.0) + e(2.0) + e(3.0);
        assert!((g[0][2] - (e(3.0) / s - 1.0) / 2.0).abs() < 1e-12);
        assert!((g[1][1] - (1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(error_rate(z.as_tensor(), &[2, 0]).unwrap(), 0.0);
        assert_eq!(error_rate(z.as_tensor(), &[0, 0]).unwrap(), 0.5);
    }

    #[test]
    fn log_softmax_is_stable_for_large_logits() {
        let z = Tensor::from_vec(vec![1000.0f32, 0.0], (1, 2), &Device::Cpu).unwrap();
        let l = log_softmax(&z).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(l[0][0], 0.0);
        assert_eq!(l[0][1], -1000.0);
    }

    /// The f64 cross-entropy of one row, from the f32 logits widened.
    fn reference(z: &[f32], y: usize) -> f64 {
        let z: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        z.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - (z[y] - max)
    }

    #[test]
    fn cross_entropy_is_finite_and_exact_to_f32_rounding_for_gaps_up_to_1e4() {
        // The true logit trails the largest by `gap`; other classes spread
        // around. −ln p_y in f32 read +inf from a gap of about 103 on.
        let mut gaps = vec![0.0f32, 1e-3, 0.5, 1.0, 20.0, 87.0, 103.0, 104.0, 200.0, 1e3];
        gaps.extend([3e3, 9999.5, 1e4]);
        for (i, &gap) in gaps.iter().enumerate() {
            let top = 3.25 * i as f32 - 7.0;
            let row = vec![top, top - gap, top - 0.75 * gap, top - 1.5, top - 2.0 * gap];
            let y = 1;
            let want = reference(&row, y);
            let mut z32 = ndarray::Array2::from_shape_vec((1, 5), row.clone()).unwrap();
            let got = cross_entropy_gradient(&mut z32, &[y as u32])[0];
            assert!(got.is_finite(), "gap {gap}: {got}");
            // f32 rounding: of the gap (relative) and of the sum in [1, 5].
            let bound = 4.0 * f32::EPSILON as f64 * (1.0 + want.abs());
            assert!((got - want).abs() <= bound, "gap {gap}: {got} vs {want}");
            let mut z64 = ndarray::Array2::from_shape_fn((1, 5), |(_, k)| row[k] as f64);
            let got64 = cross_entropy_gradient(&mut z64, &[y as u32])[0];
            assert!(
                (got64 - want).abs() <= 1e-12 * (1.0 + want.abs()),
                "gap {gap}"
            );
            // The gradient softmax − e_y sums to zero and is finite.
            for g in [z32.mapv(|v| v as f64), z64] {
                assert!(g.iter().all(|v| v.is_finite()));
                assert!(g.sum().abs() < 1e-6, "gap {gap}: {g:?}");
                assert!((g[(0, y)] - ((-want).exp() - 1.0)).abs() < 1e-6);
            }
        }
        // At a gap of 1e4 the loss is 1e4 to f32 precision, not inf.
        let mut z = ndarray::Array2::from_shape_vec((1, 2), vec![1e4f32, 0.0]).unwrap();
        assert_eq!(cross_entropy_gradient(&mut z, &[1])[0], 1e4);
    }

    #[test]
    fn cross_entropy_of_non_finite_logits_is_not_finite() {
        let mut z = ndarray::Array2::from_shape_vec((1, 2), vec![f32::NAN, 0.0]).unwrap();
        assert!(!cross_entropy_gradient(&mut z, &[1])[0].is_finite());
        let mut z = ndarray::Array2::from_shape_vec((1, 2), vec![f32::INFINITY, 0.0]).unwrap();
        assert!(!cross_entropy_gradient(&mut z, &[1])[0].is_finite());
    }
}
