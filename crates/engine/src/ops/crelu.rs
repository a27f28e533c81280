//! CReLU(x) = [max(x, 0), max(−x, 0)] along the features, doubling the
//! width (Shang et al. 2016); with mirrored weights [M, −M] after it the
//! pair is M·x exactly: the looks-linear nets of Balduzzi et al. 2017.

use ndarray::{Array2, ArrayView2, Axis, Zip};

use crate::Real;

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
            }
        });
    (y, sign)
}

/// ∂/∂x of [relu(x), relu(−x)] applied to g = ∂L/∂y: the first half where
/// x > 0, minus the second where x < 0.
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
                _ => T::zero(),
            }
        });
    gx
}

/// Forward mode: (h, t) ↦ (CReLU(h), [t where h > 0, −t where h < 0]).
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
            _ => {}
        });
    (y, ty)
}
