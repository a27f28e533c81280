//! The engine's kernels: products on the GEMM of [`Real::gemm_into`], row
//! loops split between the product threads ([`crate::pool`]), and
//! reductions accumulated in f64 lanes. Every op is written on these.
//!
//! The elementwise loops assume row-major arrays: each keeps its rows in
//! one slice, so the loop vectorises and a row block goes to one thread.

use ndarray::{Array1, Array2, ArrayView2, Zip};

use crate::Real;
use crate::pool::{self, product_threads};

/// a·b into a new row-major array, with [`Real::gemm_into`]'s kernels; any
/// strides. With more than one product thread the rows of a (and c) are
/// split between them.
pub(crate) fn matmul<T: Real>(a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    matmul_on(a, b, None, product_threads())
}

/// [`matmul`] on at most `threads` threads, plus a bias row added to each
/// row block while it is still in cache.
pub(crate) fn matmul_on<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    bias: Option<&[T]>,
    threads: usize,
) -> Array2<T> {
    let ((m, k), n) = (a.dim(), b.ncols());
    assert_eq!(k, b.nrows(), "inner dimensions agree");
    let mut c = Array2::<T>::uninit((m, n));
    let chunk = if threads > 1 && m >= 64 * threads {
        m.div_ceil(threads)
    } else {
        m.max(1)
    };
    let c_ptr = c.as_mut_ptr() as usize;
    let rows = |lo: usize| {
        let hi = (lo + chunk).min(m);
        // SAFETY: rows lo..hi of a and c; the pointers and strides describe
        // a (m×k), b (k×n) and c (m×n, row-major), the row ranges are
        // disjoint, and gemm_into writes every element of its rows of c
        // without reading them.
        unsafe {
            T::gemm_into(
                hi - lo,
                n,
                k,
                (c_ptr as *mut T).add(lo * n),
                (
                    a.as_ptr().offset(lo as isize * a.strides()[0]),
                    a.strides()[0],
                    a.strides()[1],
                ),
                (b.as_ptr(), b.strides()[0], b.strides()[1]),
            );
        }
        if let Some(bias) = bias {
            // SAFETY: rows lo..hi of c, written above and touched by no other block.
            let block = unsafe {
                std::slice::from_raw_parts_mut((c_ptr as *mut T).add(lo * n), (hi - lo) * n)
            };
            for row in block.chunks_exact_mut(n.max(1)) {
                row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
            }
        }
    };
    if chunk < m {
        pool::run(m.div_ceil(chunk), &|i| rows(i * chunk));
    } else if m > 0 {
        rows(0);
    }
    // SAFETY: every row range was written above.
    unsafe { c.assume_init() }
}

/// Wᵀ in row-major order.
pub(crate) fn transposed<T: Real>(w: &Array2<T>) -> Array2<T> {
    w.t().as_standard_layout().into_owned()
}

/// x Wᵀ + b for the right factor `wt` = Wᵀ (a row-major copy or W's
/// transposed view).
pub(crate) fn affine<T: Real>(
    x: ArrayView2<T>,
    wt: ArrayView2<T>,
    b: Option<&Array1<T>>,
) -> Array2<T> {
    let b = b.map(|b| b.as_slice().expect("contiguous"));
    matmul_on(x, wt, b, product_threads())
}

/// Per-column mean of x (or of (x − c)² when centred on c), row by row
/// over contiguous memory in blocks of rows split between the product threads.
pub(crate) fn column_means<T: Real>(x: &Array2<T>, center: Option<&[T]>) -> Array1<T> {
    let (n, w) = x.dim();
    let parts = row_blocks(x, |xs, w| {
        let mut sum = vec![T::zero(); w];
        for row in xs.chunks_exact(w) {
            match center {
                None => sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v),
                Some(c) => {
                    for ((s, &v), &c) in sum.iter_mut().zip(row).zip(c) {
                        *s += (v - c) * (v - c);
                    }
                }
            }
        }
        sum
    });
    let mut total = vec![T::zero(); w];
    for p in parts {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    let nt = T::from_usize(n).expect("batch size");
    total.iter_mut().for_each(|t| *t /= nt);
    Array1::from_vec(total)
}

/// The rows of a row-major array as slices.
pub(crate) fn rows<T: Real>(x: &Array2<T>) -> std::slice::ChunksExact<'_, T> {
    let w = x.ncols().max(1);
    x.as_slice().expect("row-major").chunks_exact(w)
}

/// A row-major array's elements.
pub(crate) fn row_major<U>(x: &Array2<U>) -> &[U] {
    x.as_slice().expect("row-major")
}

/// Rows per block when an n × w array's row loop is split between the
/// product threads, or `None` when it runs whole (one thread, or too
/// small to be worth a split).
fn split_rows(n: usize, w: usize) -> Option<usize> {
    let threads = product_threads();
    (threads > 1 && n * w >= 16_384).then(|| n.div_ceil(threads))
}

/// (Σ a, Σ a·b) over two equal slices, each in eight lanes summed at the
/// end: a fixed order that vectorises, where one running sum does not.
pub(crate) fn sum_and_dot<T: Real>(a: &[T], b: &[T]) -> (T, T) {
    const LANES: usize = 8;
    let (mut s, mut d) = ([T::zero(); LANES], [T::zero(); LANES]);
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..LANES {
            s[l] += x[l];
            d[l] += x[l] * y[l];
        }
    }
    let (mut s_sum, mut d_sum) = (
        s.iter().fold(T::zero(), |t, &v| t + v),
        d.iter().fold(T::zero(), |t, &v| t + v),
    );
    for (&x, &y) in ar.iter().zip(br) {
        s_sum += x;
        d_sum += x * y;
    }
    (s_sum, d_sum)
}

/// `f` on row blocks of the row-major `x` (width from its shape), one
/// result per block in row order: the partial sums of a reduction.
pub(crate) fn row_blocks<T: Real, R: Send>(
    x: &Array2<T>,
    f: impl Fn(&[T], usize) -> R + Sync,
) -> Vec<R> {
    let w = x.ncols().max(1);
    let xs = row_major(x);
    match split_rows(x.nrows(), w) {
        Some(rows_per) => {
            let blocks: Vec<_> = xs.chunks(rows_per * w).collect();
            pool::map(blocks.len(), |i| f(blocks[i], w))
        }
        None => vec![f(xs, w)],
    }
}

/// Run `f` on row blocks of `x` (and the matching rows of `y`), split
/// between the product threads when there are several.
pub(crate) fn par_rows<X: Send, U: Sync>(
    x: &mut Array2<X>,
    y: Option<&[U]>,
    f: impl Fn(&mut [X], Option<&[U]>, usize) + Sync,
) {
    let w = x.ncols().max(1);
    let n = x.nrows();
    let xs = x.as_slice_mut().expect("row-major");
    if let Some(rows_per) = split_rows(n, w) {
        let chunks: Vec<_> = xs
            .chunks_mut(rows_per * w)
            .map(std::sync::Mutex::new)
            .collect();
        pool::run(chunks.len(), &|i| {
            let mut xc = chunks[i].lock().unwrap_or_else(|e| e.into_inner());
            let lo = i * rows_per * w;
            let yc = y.map(|y| &y[lo..lo + xc.len()]);
            f(&mut xc, yc, w);
        });
    } else {
        f(xs, y, w);
    }
}

/// y = x·scale + shift per feature, in place.
pub(crate) fn apply_affine<T: Real>(h: &mut Array2<T>, scale: &Array1<T>, shift: &Array1<T>) {
    map_affine(h, scale, shift, |v| v);
}

/// y = f(x·scale + shift) per feature, in place; generic in f so that each
/// activation gets its own vectorised loop.
pub(crate) fn map_affine<T: Real>(
    h: &mut Array2<T>,
    scale: &Array1<T>,
    shift: &Array1<T>,
    f: impl Fn(T) -> T + Sync,
) {
    let (s, b) = (
        scale.as_slice().expect("contiguous"),
        shift.as_slice().expect("contiguous"),
    );
    par_rows(h, None::<&[T]>, |xs, _, w| {
        for row in xs.chunks_exact_mut(w) {
            for ((v, &s), &b) in row.iter_mut().zip(s).zip(b) {
                *v = f(*v * s + b);
            }
        }
    });
}

/// x ← x·scale per feature, in place.
pub(crate) fn scale_rows<T: Real>(h: &mut Array2<T>, scale: &Array1<T>) {
    let s = scale.as_slice().expect("contiguous");
    par_rows(h, None::<&[T]>, |xs, _, w| {
        for row in xs.chunks_exact_mut(w) {
            for (v, &s) in row.iter_mut().zip(s) {
                *v *= s;
            }
        }
    });
}

/// x ← f(x) elementwise, in place, split between the product threads.
pub(crate) fn map_inplace<T: Real>(h: &mut Array2<T>, f: impl Fn(T) -> T + Sync) {
    par_rows(h, None::<&[T]>, |v, _, _| {
        v.iter_mut().for_each(|z| *z = f(*z))
    });
}

/// g ← f(g, y) (· s per feature), row by row; generic in f so that each
/// activation gets its own vectorised loop.
pub(crate) fn map_slope<T: Real, U: Copy + Sync>(
    g: &mut Array2<T>,
    y: &Array2<U>,
    s: Option<&Array1<T>>,
    f: impl Fn(T, U) -> T + Sync,
) {
    let s = s.map(|s| s.as_slice().expect("contiguous"));
    par_rows(g, Some(row_major(y)), |gs, ys, w| {
        let ys = ys.expect("paired rows");
        for (gr, yr) in gs.chunks_exact_mut(w).zip(ys.chunks_exact(w)) {
            match s {
                Some(s) => {
                    for ((g, &y), &s) in gr.iter_mut().zip(yr).zip(s) {
                        *g = f(*g, y) * s;
                    }
                }
                None => {
                    for (g, &y) in gr.iter_mut().zip(yr) {
                        *g = f(*g, y);
                    }
                }
            }
        }
    });
}

/// λ·h + α·f, written over f (h + α·f exactly when λ = 1: h·1 = h in
/// floating point, NaN and ∞ included).
pub(crate) fn add_skip<T: Real>(mut f: Array2<T>, h: &Array2<T>, alpha: T, lambda: T) -> Array2<T> {
    let Some(hs) = h.as_slice().filter(|_| f.is_standard_layout()) else {
        Zip::from(&mut f)
            .and(h)
            .for_each(|f, &h| *f = h * lambda + alpha * *f);
        return f;
    };
    par_rows(&mut f, Some(hs), |fs, hs, _| {
        let hs = hs.expect("paired rows");
        fs.iter_mut()
            .zip(hs)
            .for_each(|(f, &h)| *f = h * lambda + alpha * *f);
    });
    f
}

/// An array in f64 (exact).
pub fn to_f64<T: Real>(a: &Array2<T>) -> Array2<f64> {
    a.mapv(Real::f64)
}

/// ‖a‖_F, accumulated in f64.
pub fn frobenius<T: Real>(a: &Array2<T>) -> f64 {
    match a.as_slice() {
        Some(_) => row_blocks(a, |v, _| slice_squares(v))
            .into_iter()
            .sum::<f64>()
            .sqrt(),
        None => a.iter().map(square_f64).sum::<f64>().sqrt(),
    }
}

fn square_f64<T: Real>(x: &T) -> f64 {
    x.f64().powi(2)
}

/// ‖v‖₂ in f64, in eight running sums: one sum is a chain of dependent
/// additions, eight vectorise (this runs once per layer in every backward pass).
pub fn slice_norm<T: Real>(v: &[T]) -> f64 {
    slice_squares(v).sqrt()
}

/// Σ vᵢ² in f64, as [`slice_norm`] sums it.
pub fn slice_squares<T: Real>(v: &[T]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(square_f64).sum();
    for c in chunks {
        for (s, x) in acc.iter_mut().zip(c) {
            *s += square_f64(x);
        }
    }
    acc.iter().sum::<f64>() + tail
}
