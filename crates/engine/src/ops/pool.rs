//! Global average pooling over the pixels of each channel (NCHW rows of
//! C·P values → C values): the mean is linear, so its VJP spreads g/P over
//! the pixels and its JVP is itself.

use ndarray::{Array2, ArrayView2};

use crate::Real;

/// The mean over each channel's `pixels` consecutive values.
pub(crate) fn forward<T: Real>(x: ArrayView2<T>, channels: usize) -> Array2<T> {
    let pixels = x.ncols() / channels.max(1);
    let p = T::from_usize(pixels).expect("pixels");
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("row-major");
    Array2::from_shape_fn((x.nrows(), channels), |(i, c)| {
        let start = (i * channels + c) * pixels;
        xs[start..start + pixels].iter().copied().sum::<T>() / p
    })
}

/// ∂L/∂x = g/P on every pixel of its channel.
pub(crate) fn vjp<T: Real>(g: ArrayView2<T>, pixels: usize) -> Array2<T> {
    let p = T::from_usize(pixels).expect("pixels");
    let (n, channels) = g.dim();
    let mut dx = Array2::zeros((n, channels * pixels));
    for (gr, mut dr) in g.rows().into_iter().zip(dx.rows_mut()) {
        let dr = dr.as_slice_mut().expect("row-major");
        for (&v, dst) in gr.iter().zip(dr.chunks_exact_mut(pixels)) {
            dst.fill(v / p);
        }
    }
    dx
}
