//! CReLU(x) = [max(x, 0), max(−x, 0)] along the features, doubling the
//! width (Shang et al. 2016); with mirrored weights [M, −M] after it the
//! pair is M·x exactly: the looks-linear nets of Balduzzi et al. 2017.
//! A NaN input gives NaN in both halves, and NaN in the backward and
//! forward-mode passes (as candle's CReLU does on NaN-propagating ReLUs).

use ndarray::{Array2, ArrayView2, Axis, Zip};

use crate::Real;

/// sign(x)'s mark of a NaN input (1: x > 0, −1: x < 0, 0: x = 0).
const SIGN_NAN: i8 = 2;

/// [relu(x), relu(−x)] and sign(x), which the backward pass needs.
pub(crate) fn forward<T: Real>(x: ArrayView2<T>) -> (Array2<T>, Array2<i8>) {
    let (n, w) = x.dim();
    let zero = T::zero();
    let mut y = Array2::zeros((n, 2 * w));
    let mut sign = Array2::zeros((n, w));
    let (mut pos, mut neg) = y.view_mut().split_at(Axis(1), w);
    Zip::from(&mut pos)
        .and(&mut neg)
        .and(&mut sign)
        .and(x)
        .for_each(|p, q, s, &v| {
            if v > zero {
                (*p, *s) = (v, 1);
            } else if v < zero {
                (*q, *s) = (zero - v, -1);
            } else if v.is_nan() {
                (*p, *q, *s) = (v, v, SIGN_NAN);
            }
        });
    (y, sign)
}

/// ∂/∂x of [relu(x), relu(−x)] applied to g = ∂L/∂y: the first half where
/// x > 0, minus the second where x < 0 (NaN where x was NaN).
pub(crate) fn vjp<T: Real>(sign: &Array2<i8>, g: ArrayView2<T>) -> Array2<T> {
    let w = sign.ncols();
    let (pos, neg) = g.split_at(Axis(1), w);
    let mut gx = Array2::zeros(sign.raw_dim());
    Zip::from(&mut gx)
        .and(sign)
        .and(pos)
        .and(neg)
        .for_each(|d, &s, &p, &n| {
            *d = match s {
                1 => p,
                -1 => T::zero() - n,
                SIGN_NAN => T::nan(),
                _ => T::zero(),
            }
        });
    gx
}

/// Forward mode: (h, t) ↦ (CReLU(h), [t where h > 0, −t where h < 0]),
/// NaN in both halves where h is NaN.
pub(crate) fn jvp<T: Real>(h: Array2<T>, t: Array2<T>) -> (Array2<T>, Array2<T>) {
    let (y, sign) = forward(h.view());
    let w = sign.ncols();
    let mut ty = Array2::zeros(y.raw_dim());
    let (mut pos, mut neg) = ty.view_mut().split_at(Axis(1), w);
    Zip::from(&mut pos)
        .and(&mut neg)
        .and(&sign)
        .and(&t)
        .for_each(|p, q, &s, &v| match s {
            1 => *p = v,
            -1 => *q = T::zero() - v,
            SIGN_NAN => (*p, *q) = (T::nan(), T::nan()),
            _ => {}
        });
    (y, ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn nan_gives_nan_in_both_halves_and_in_both_modes() {
        let x = array![[1.0f64, f64::NAN, -2.0, 0.0]];
        let (y, sign) = forward(x.view());
        assert_eq!(y.row(0).slice(ndarray::s![..1]).to_vec(), vec![1.0]);
        assert!(y[[0, 1]].is_nan() && y[[0, 5]].is_nan());
        assert_eq!((y[[0, 2]], y[[0, 6]]), (0.0, 2.0));
        assert_eq!((y[[0, 3]], y[[0, 7]]), (0.0, 0.0));
        let g = array![[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]];
        let gx = vjp(&sign, g.view());
        assert_eq!((gx[[0, 0]], gx[[0, 2]], gx[[0, 3]]), (1.0, -7.0, 0.0));
        assert!(gx[[0, 1]].is_nan());
        let (_, t) = jvp(x.clone(), array![[1.0, 1.0, 1.0, 1.0]]);
        assert!(t[[0, 1]].is_nan() && t[[0, 5]].is_nan());
        assert_eq!((t[[0, 0]], t[[0, 6]], t[[0, 3]]), (1.0, -1.0, 0.0));
    }
}
