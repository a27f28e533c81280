//! Why the engine builds its norms and softmax from basic ops instead of
//! taking candle-nn's: its fused `layer_norm`, `rms_norm` and
//! `softmax_last_dim` record no backward op (huggingface/candle #2168,
//! #2977, #3011, #3569), so every parameter below them silently gets no
//! gradient, and the fused norms refuse f64. When an upgrade fixes them this
//! test fails, and the choice in docs/candle.md is worth revisiting.

use candle_core::{D, DType, Device, Tensor, Var};

fn input(dtype: DType) -> Var {
    let x = Tensor::from_vec(
        (0..24)
            .map(|i| ((i * 7 % 11) as f64 - 5.0) / 3.0)
            .collect::<Vec<_>>(),
        (4, 6),
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    Var::from_tensor(&x).unwrap()
}

/// Whether a gradient of Σ (y ⊙ w) reaches x through `f`.
fn reaches(x: &Var, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> bool {
    let y = f(x.as_tensor()).unwrap();
    let w = Tensor::arange(0.0, y.elem_count() as f64, &Device::Cpu)
        .unwrap()
        .to_dtype(y.dtype())
        .unwrap()
        .reshape(y.shape())
        .unwrap();
    let grads = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
    grads.get(x.as_tensor()).is_some()
}

#[test]
fn candle_nns_fused_norms_and_softmax_drop_the_gradient_and_refuse_f64() {
    let x = input(DType::F32);
    let ones = Tensor::ones(6, DType::F32, &Device::Cpu).unwrap();
    let zeros = Tensor::zeros(6, DType::F32, &Device::Cpu).unwrap();
    // The fused ops: no gradient reaches the input.
    assert!(!reaches(&x, |t| candle_nn::ops::layer_norm(
        t, &ones, &zeros, 1e-5
    )));
    assert!(!reaches(&x, |t| candle_nn::ops::rms_norm(t, &ones, 1e-5)));
    assert!(!reaches(&x, candle_nn::ops::softmax_last_dim));
    // LayerNorm's default module takes the fused path on a contiguous input.
    let ln = candle_nn::LayerNorm::new(ones.clone(), zeros.clone(), 1e-5);
    assert!(!reaches(&x, |t| candle_core::Module::forward(&ln, t)));
    // Their slow, composed twins do carry it, as the engine's ops do.
    assert!(reaches(&x, |t| candle_nn::ops::layer_norm_slow(
        t, &ones, &zeros, 1e-5
    )));
    assert!(reaches(&x, |t| candle_nn::ops::softmax(t, D::Minus1)));
    // And the fused norms refuse f64, the precision of every check here.
    let x64 = input(DType::F64);
    let ones64 = ones.to_dtype(DType::F64).unwrap();
    let zeros64 = zeros.to_dtype(DType::F64).unwrap();
    assert!(candle_nn::ops::layer_norm(x64.as_tensor(), &ones64, &zeros64, 1e-5).is_err());
    assert!(candle_nn::ops::rms_norm(x64.as_tensor(), &ones64, 1e-5).is_err());
}
