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

/// Per-example cross-entropy −log softmax(zᵢ)\[yᵢ\] (in f64) and its gradient
/// softmax(zᵢ) − e_{yᵢ} (in place of the logits), both computed stably.
pub fn cross_entropy_gradient<T: num_traits::Float + candle_core::WithDType>(
    logits: &mut ndarray::Array2<T>,
    labels: &[u32],
) -> Vec<f64> {
    logits
        .axis_iter_mut(ndarray::Axis(0))
        .zip(labels)
        .map(|(mut z, &y)| {
            let max = z.fold(T::neg_infinity(), |a, &b| num_traits::Float::max(a, b));
            z.mapv_inplace(|v| (v - max).exp());
            let sum = z.sum();
            let p_y = z[y as usize] / sum;
            z.mapv_inplace(|v| v / sum);
            z[y as usize] -= T::one();
            -<T as candle_core::WithDType>::to_f64(p_y).ln()
        })
        .collect()
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
}
