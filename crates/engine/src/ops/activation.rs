//! Pointwise activations y = φ(z): forward, φ' for the reverse and forward
//! modes, and the ReLU mask kept in place of y.
//!
//! φ'(z) is read from the output y wherever y determines it (ReLU:
//! 1[y > 0]; tanh: 1 − y²; sigmoid: y(1 − y); ELU, SELU and softplus from
//! their inverse branches), so an activation keeps only y, which is also the
//! next op's input. GELU and leaky ReLU (whose slope may be ≤ 0) keep z.
//!
//! NaN propagates through every φ and φ' (φ(NaN) = φ'(NaN) = NaN), so a
//! fault shows at the layer where it appears: `max(z, 0)` would map NaN to 0.

use gradscope_nets::{Activation, GELU_C, SELU_ALPHA, SELU_LAMBDA};
use ndarray::Array2;
use num_traits::Float;

use crate::Real;
use crate::kernels::{map_affine, map_inplace, map_slope, par_rows, row_major};

/// The cubic coefficient of GELU's tanh approximation.
const GELU_CUBIC: f64 = 0.044_715;

/// Calls `$body` with `$phi` bound to φ and `$slope` to φ' as closures of
/// their own types, so that each activation gets its own vectorised loop.
/// `$slope` takes (g, y) and returns g·φ'(z) read from y = φ(z) (z for
/// GELU, see [`keeps_input`]).
macro_rules! with_activation {
    ($a:expr, $t:ty, |$phi:ident, $slope:ident| $body:expr) => {{
        let (zero, one) = (<$t>::zero(), <$t>::one());
        match $a {
            Activation::Relu => {
                // A select, not `max` (which maps NaN to 0): the same bits for
                // every other z (−0 included, to +0), and it vectorises.
                let $phi = move |z: $t| if z <= zero { zero } else { z };
                let $slope = move |g: $t, y: $t| {
                    if y > zero {
                        g
                    } else if y.is_nan() {
                        y
                    } else {
                        zero
                    }
                };
                $body
            }
            Activation::Tanh => {
                let $phi = |z: $t| z.tanh();
                let $slope = move |g: $t, y: $t| g * (one - y * y);
                $body
            }
            Activation::Sigmoid => {
                let $phi = move |z: $t| one / (one + (-z).exp());
                let $slope = move |g: $t, y: $t| g * (y * (one - y));
                $body
            }
            Activation::Identity => {
                let $phi = |z: $t| z;
                let $slope = |g: $t, _y: $t| g;
                $body
            }
            Activation::LeakyRelu { slope } => {
                let a = <$t as Real>::of(slope);
                let $phi = move |z: $t| if z > zero { z } else { a * z };
                // From z itself: for a ≤ 0 the output does not tell z's sign.
                let $slope = move |g: $t, z: $t| {
                    if z > zero {
                        g
                    } else if z.is_nan() {
                        z
                    } else {
                        g * a
                    }
                };
                $body
            }
            Activation::Elu => {
                let $phi = move |z: $t| if z > zero { z } else { z.exp_m1() };
                // z ≤ 0: y = eᶻ − 1, φ' = eᶻ = y + 1.
                let $slope = move |g: $t, y: $t| if y > zero { g } else { g * (y + one) };
                $body
            }
            Activation::Selu => {
                let (l, la) = (
                    <$t as Real>::of(SELU_LAMBDA),
                    <$t as Real>::of(SELU_LAMBDA * SELU_ALPHA),
                );
                let $phi = move |z: $t| if z > zero { l * z } else { la * z.exp_m1() };
                // z ≤ 0: y = λα(eᶻ − 1), φ' = λαeᶻ = y + λα.
                let $slope = move |g: $t, y: $t| if y > zero { g * l } else { g * (y + la) };
                $body
            }
            Activation::Softplus => {
                // ln(1 + eᶻ) = max(z, 0) + ln(1 + e^{−|z|}), which never overflows.
                let $phi = move |z: $t| Float::max(z, zero) + (-z.abs()).exp().ln_1p();
                // φ' = σ(z) = 1 − e^{−y}, accurately as −expm1(−y).
                let $slope = move |g: $t, y: $t| g * -(-y).exp_m1();
                $body
            }
            Activation::Gelu => {
                let (c, k, half) = (
                    <$t as Real>::of(GELU_C),
                    <$t as Real>::of(GELU_CUBIC),
                    <$t as Real>::of(0.5),
                );
                let three = <$t as Real>::of(3.0);
                let $phi = move |z: $t| half * z * (one + (c * (z + k * z * z * z)).tanh());
                // From z itself (GELU keeps its input).
                let $slope = move |g: $t, z: $t| {
                    let t = (c * (z + k * z * z * z)).tanh();
                    g * (half * (one + t)
                        + half * z * (one - t * t) * c * (one + three * k * z * z))
                };
                $body
            }
        }
    }};
}

/// Whether φ' needs the input z kept (GELU, leaky ReLU) rather than the output y.
pub(crate) fn keeps_input(a: Activation) -> bool {
    matches!(a, Activation::Gelu | Activation::LeakyRelu { .. })
}

/// φ applied in place.
pub(crate) fn apply<T: Real>(a: Activation, h: &mut Array2<T>) {
    with_activation!(a, T, |phi, _slope| map_inplace(h, phi))
}

/// y = φ(x·scale + shift) per feature (φ = identity when `None`), in place:
/// a BN followed by φ in one pass over h.
pub(crate) fn apply_affine<T: Real>(
    a: Option<Activation>,
    h: &mut Array2<T>,
    scale: &ndarray::Array1<T>,
    shift: &ndarray::Array1<T>,
) {
    match a {
        Some(a) => with_activation!(a, T, |phi, _slope| map_affine(h, scale, shift, phi)),
        None => map_affine(h, scale, shift, |v| v),
    }
}

/// g ← g ⊙ φ'(z) (⊙ s per feature when a BN's γ/σ is given, the BN before
/// φ), with φ' read from `kept`: y = φ(z), or z itself where
/// [`keeps_input`].
pub(crate) fn mul_slope<T: Real>(
    a: Activation,
    g: &mut Array2<T>,
    kept: &Array2<T>,
    s: Option<&ndarray::Array1<T>>,
) {
    with_activation!(a, T, |_phi, slope| map_slope(g, kept, s, slope))
}

/// The ReLU mask's mark of a NaN output (0: y = 0, 1: y > 0).
const MASK_NAN: u8 = 2;

/// g ← g ⊙ 1[y > 0] (⊙ s per feature when a BN's γ/σ is given), from
/// where the ReLU output y was positive; NaN where y was NaN.
pub(crate) fn mul_relu_mask<T: Real>(
    g: &mut Array2<T>,
    positive: &Array2<u8>,
    s: Option<&ndarray::Array1<T>>,
) {
    // A product with the 0/1 mask, not a branch on the random signs: it
    // vectorises, and NaN/∞ in g propagate as in candle's backward. The NaN
    // mark is a select, taken only when the mask holds one (a byte search,
    // a fraction of the product's time).
    let marked = match positive.as_slice() {
        Some(p) => p.contains(&MASK_NAN),
        None => positive.iter().any(|&p| p == MASK_NAN),
    };
    if !marked {
        map_slope(g, positive, s, |g, p| g * <T as Real>::of(f64::from(p)));
        return;
    }
    let nan = T::nan();
    map_slope(g, positive, s, move |g, p| {
        if p == MASK_NAN {
            nan
        } else {
            g * <T as Real>::of(f64::from(p))
        }
    });
}

/// Where the ReLU output y is positive (1), zero (0) or NaN
/// ([`MASK_NAN`]), as bytes: a quarter of the bytes of y in f32 (an eighth
/// in f64), so the backward pass reads less and y is freed or kept as the
/// next op's input instead of copied.
pub(crate) fn relu_mask<T: Real>(post: &Array2<T>) -> Array2<u8> {
    let zero = T::zero();
    let mut positive = Array2::<u8>::zeros(post.dim());
    par_rows(&mut positive, Some(row_major(post)), |ps, ys, _| {
        let ys = ys.expect("paired rows");
        ps.iter_mut()
            .zip(ys)
            .for_each(|(p, &y)| *p = u8::from(y > zero) | (u8::from(y.is_nan()) << 1));
    });
    positive
}

/// Forward mode: (h, t) ↦ (φ(h), φ'(h)·t), in place.
pub(crate) fn jvp<T: Real>(a: Activation, h: &mut Array2<T>, t: &mut Array2<T>) {
    if keeps_input(a) {
        mul_slope(a, t, h, None);
        apply(a, h);
    } else {
        apply(a, h);
        mul_slope(a, t, h, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Activation; 9] = [
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.1 },
        Activation::LeakyRelu { slope: -0.5 },
        Activation::Elu,
        Activation::Selu,
        Activation::Softplus,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Gelu,
    ];

    fn row<T: Real>(v: &[f64]) -> Array2<T> {
        Array2::from_shape_vec((1, v.len()), v.iter().map(|&x| T::of(x)).collect()).unwrap()
    }

    fn nan_propagates<T: Real>() {
        // 40 values, so the vectorised body and the scalar tail both run.
        let mut z: Vec<f64> = (0..40).map(|i| (i as f64 - 20.0) * 0.37).collect();
        z[3] = f64::NAN;
        z[37] = f64::NAN;
        z[5] = -0.0;
        for a in ALL {
            let mut h = row::<T>(&z);
            apply(a, &mut h);
            for (i, y) in h.iter().enumerate() {
                assert_eq!(y.is_nan(), z[i].is_nan(), "{a:?}({}) = {y:?}", z[i]);
            }
            // φ' from what the activation keeps: NaN exactly where z was.
            let kept = if keeps_input(a) {
                row::<T>(&z)
            } else {
                h.clone()
            };
            let mut g = row::<T>(&vec![1.5; z.len()]);
            mul_slope(a, &mut g, &kept, None);
            for (i, d) in g.iter().enumerate() {
                assert_eq!(d.is_nan(), z[i].is_nan(), "{a:?}'({}) = {d:?}", z[i]);
            }
        }
    }

    #[test]
    fn nan_propagates_through_every_activation_and_slope() {
        nan_propagates::<f32>();
        nan_propagates::<f64>();
    }

    #[test]
    fn relu_keeps_the_bits_of_max_on_every_other_value() {
        let z: Vec<f32> = [
            -0.0f32,
            0.0,
            -1.0,
            2.5,
            1e-40,
            -1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]
        .into_iter()
        .chain((0..33).map(|i| (i as f32 - 16.0) * 0.3))
        .collect();
        let mut h = Array2::from_shape_vec((1, z.len()), z.clone()).unwrap();
        apply(Activation::Relu, &mut h);
        for (&x, y) in z.iter().zip(h.iter()) {
            // max(z, 0) maps −0 to +0, as the select does.
            let want = if x > 0.0 { x } else { 0.0 };
            assert_eq!(y.to_bits(), want.to_bits(), "relu({x})");
        }
    }

    fn mask_marks_nan<T: Real>() {
        let y = row::<T>(&[0.0, 2.0, f64::NAN, 0.0, 3.0, f64::NAN, f64::INFINITY]);
        let mask = relu_mask(&y);
        assert_eq!(
            mask.as_slice().unwrap(),
            &[0, 1, MASK_NAN, 0, 1, MASK_NAN, 1]
        );
        let mut g = row::<T>(&[-1.0, -2.0, 3.0, f64::NAN, 5.0, 0.0, 7.0]);
        mul_relu_mask(&mut g, &mask, None);
        let got: Vec<f64> = g.iter().map(|v| v.f64()).collect();
        assert_eq!(got[0].to_bits(), (-0.0f64).to_bits(), "g·0 keeps g's sign");
        assert_eq!(got[1], -2.0);
        assert!(got[2].is_nan() && got[3].is_nan() && got[5].is_nan());
        assert_eq!((got[4], got[6]), (5.0, 7.0));
    }

    #[test]
    fn the_relu_mask_marks_nan_and_its_product_is_nan_there() {
        mask_marks_nan::<f32>();
        mask_marks_nan::<f64>();
    }
}
