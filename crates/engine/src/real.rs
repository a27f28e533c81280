//! The scalar types the engine runs in, and the GEMM each uses per layout.

use candle_core::{DType, Device, Tensor};
use gradscope_nets::{BnMode, Net};
use num_traits::{Float, FromPrimitive, ToPrimitive};

use crate::dual::Dual;
use crate::memo;
use crate::{Engine, EngineError};

/// The scalar types the engine runs in: f32, f64, and dual numbers over
/// them ([`Dual`], for Hessian-vector products). candle's own element
/// trait is required only where candle runs (the oracle path): a type reads
/// and writes a net's tensors through [`from_tensor`](Self::from_tensor)
/// and [`to_tensor`](Self::to_tensor).
pub trait Real:
    ndarray::LinalgScalar
    + Float
    + FromPrimitive
    + Send
    + Sync
    + std::iter::Sum
    + num_traits::NumAssign
    + std::fmt::Debug
    + 'static
{
    /// The dtype of the nets this type runs (a dual's value's).
    const STORED: DType;

    /// A tensor's elements (row-major) in this type: its values converted
    /// to [`STORED`](Self::STORED) first; a dual's tangents are 0.
    fn from_tensor(t: &Tensor) -> candle_core::Result<Vec<Self>>;

    /// A tensor of dtype [`STORED`](Self::STORED) and shape `shape` holding
    /// `data`'s values (a dual's tangents dropped).
    fn to_tensor(data: &[Self], shape: &[usize], device: &Device) -> candle_core::Result<Tensor>;

    /// `net` on candle's autograd in this type, `why` saying why; an error
    /// for a type candle does not run (dual numbers).
    fn candle(net: &Net, mode: BnMode, why: String) -> crate::Result<Box<dyn Engine<Self>>>;

    /// C = A·B for C (m×n, row-major) and A (m×k), B (k×n) given by row and
    /// column strides, on the calling thread. C is written, never read.
    ///
    /// # Safety
    /// The pointers and strides describe valid matrices of those shapes, and
    /// C aliases neither A nor B.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_into(
        m: usize,
        n: usize,
        k: usize,
        c: *mut Self,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
    );

    /// C += A·B for C (m×n, row-major) and A (m×k), B (k×n) given by row
    /// and column strides, on the calling thread.
    ///
    /// # Safety
    /// As [`gemm_into`](Self::gemm_into); C is read as well as written.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_add(
        m: usize,
        n: usize,
        k: usize,
        c: *mut Self,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
    );

    /// C = A·B (or C += A·B when `accumulate`) with gemm's kernels for C
    /// (m×n) given by row and column strides too, on the calling thread.
    /// gemm runs fastest when C's contiguous side is the long one and its
    /// other side small (its tiles are 16 (f32) or 8 (f64) rows of C's
    /// contiguous side by 6): the convolutions pick their layouts for it.
    ///
    /// # Safety
    /// As [`gemm_into`](Self::gemm_into); C is read when `accumulate`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_strided(
        m: usize,
        n: usize,
        k: usize,
        c: (*mut Self, isize, isize),
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        accumulate: bool,
    );

    /// `v` in this type (rounded to nearest for f32).
    fn of(v: f64) -> Self {
        <Self as FromPrimitive>::from_f64(v).expect("every f64 converts")
    }

    /// This value as an f64 (exact).
    fn f64(self) -> f64 {
        ToPrimitive::to_f64(&self).unwrap_or(f64::NAN)
    }
}

// Which GEMM per layout is measured (a side-by-side microbenchmark of the
// layouts at 64–512 rows and columns, gemm with its AVX-512 kernels):
// matrixmultiply's kernels are as fast or up to 5 % faster when A is a
// transpose (the weight gradient δᵀh), gemm's 1–15 % faster otherwise, in
// f32 and f64 alike.
macro_rules! impl_real {
    ($t:ty, $matrixmultiply:path) => {
        impl Real for $t {
            const STORED: DType = <$t as candle_core::WithDType>::DTYPE;

            fn from_tensor(t: &Tensor) -> candle_core::Result<Vec<$t>> {
                t.to_dtype(Self::STORED)?.flatten_all()?.to_vec1::<$t>()
            }

            fn to_tensor(
                data: &[$t],
                shape: &[usize],
                device: &Device,
            ) -> candle_core::Result<Tensor> {
                Tensor::from_slice(data, shape, device)
            }

            fn candle(net: &Net, mode: BnMode, why: String) -> crate::Result<Box<dyn Engine<$t>>> {
                Ok(Box::new(crate::candle::CandleNet::<$t>::new(
                    net, mode, why,
                )?))
            }

            unsafe fn gemm_into(
                m: usize,
                n: usize,
                k: usize,
                c: *mut $t,
                (a, a_rs, a_cs): (*const $t, isize, isize),
                (b, b_rs, b_cs): (*const $t, isize, isize),
            ) {
                // SAFETY: the caller's contract; with β = 0 C is not read.
                unsafe {
                    if a_rs == 1 && a_cs != 1 {
                        $matrixmultiply(
                            m, k, n, 1.0, a, a_rs, a_cs, b, b_rs, b_cs, 0.0, c, n as isize, 1,
                        );
                    } else {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            c,
                            1,
                            n as isize,
                            false,
                            a,
                            a_cs,
                            a_rs,
                            b,
                            b_cs,
                            b_rs,
                            0.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            }

            unsafe fn gemm_strided(
                m: usize,
                n: usize,
                k: usize,
                (c, c_rs, c_cs): (*mut $t, isize, isize),
                (a, a_rs, a_cs): (*const $t, isize, isize),
                (b, b_rs, b_cs): (*const $t, isize, isize),
                accumulate: bool,
            ) {
                // SAFETY: the caller's contract.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c,
                        c_cs,
                        c_rs,
                        accumulate,
                        a,
                        a_cs,
                        a_rs,
                        b,
                        b_cs,
                        b_rs,
                        if accumulate { 1.0 } else { 0.0 },
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }

            unsafe fn gemm_add(
                m: usize,
                n: usize,
                k: usize,
                c: *mut $t,
                (a, a_rs, a_cs): (*const $t, isize, isize),
                (b, b_rs, b_cs): (*const $t, isize, isize),
            ) {
                // SAFETY: the caller's contract; C := 1·C + 1·A·B.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c,
                        1,
                        n as isize,
                        true,
                        a,
                        a_cs,
                        a_rs,
                        b,
                        b_cs,
                        b_rs,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        }
    };
}

impl_real!(f32, matrixmultiply::sgemm);
impl_real!(f64, matrixmultiply::dgemm);

thread_local! {
    /// Scratch for the dual products' planes, kept between products so
    /// each is not a fresh allocation (and fresh pages); taken out while in
    /// use, so a nested product finds it empty and allocates its own.
    static PLANES: std::cell::Cell<Vec<u64>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Splits the dual matrix `src` (rows × cols, strides counted in duals)
/// into its value and tangent planes, row-major, reading `src` along its
/// shorter stride.
///
/// # Safety
/// `src` describes a valid matrix; `value` and `tangent` each hold
/// rows·cols elements and overlap nothing else.
unsafe fn split<F: Copy>(
    rows: usize,
    cols: usize,
    (p, rs, cs): (*const Dual<F>, isize, isize),
    value: *mut F,
    tangent: *mut F,
) {
    let at = |i: usize, j: usize| {
        // SAFETY: (i, j) lies inside the caller's matrices.
        unsafe {
            let d = *p.offset(i as isize * rs + j as isize * cs);
            *value.add(i * cols + j) = d.value;
            *tangent.add(i * cols + j) = d.tangent;
        }
    };
    if cs.unsigned_abs() <= rs.unsigned_abs() {
        (0..rows).for_each(|i| (0..cols).for_each(|j| at(i, j)));
    } else {
        (0..cols).for_each(|j| (0..rows).for_each(|i| at(i, j)));
    }
}

/// Writes (or adds, when `accumulate`) the row-major planes `value` and
/// `tangent` (rows × cols) into the dual matrix `dst`.
///
/// # Safety
/// As [`split`], with `dst` written.
unsafe fn merge<F: Float>(
    rows: usize,
    cols: usize,
    value: *const F,
    tangent: *const F,
    (p, rs, cs): (*mut Dual<F>, isize, isize),
    accumulate: bool,
) {
    let at = |i: usize, j: usize| {
        // SAFETY: (i, j) lies inside the caller's matrices.
        unsafe {
            let d = &mut *p.offset(i as isize * rs + j as isize * cs);
            let (v, t) = (*value.add(i * cols + j), *tangent.add(i * cols + j));
            *d = if accumulate {
                Dual::new(d.value + v, d.tangent + t)
            } else {
                Dual::new(v, t)
            };
        }
    };
    if cs.unsigned_abs() <= rs.unsigned_abs() {
        (0..rows).for_each(|i| (0..cols).for_each(|j| at(i, j)));
    } else {
        (0..cols).for_each(|j| (0..rows).for_each(|i| at(i, j)));
    }
}

/// Dual numbers over f32 or f64: each product C = A·B is three products of
/// F, C.v = A.v·B.v and C.t = A.t·B.v + A.v·B.t, run on contiguous
/// copies of the parts: GEMM on the interleaved parts through strides (C's
/// above all) took 3.0× the time of one product for the three, on
/// contiguous planes 1.8× (256-wide f32, one thread), and the copies are
/// O(mk + kn + mn) beside the products' O(mkn). Inside a store of value
/// products (`memo.rs`) a product whose C.v is kept forms only C.t.
impl<F: Real> Real for Dual<F> {
    const STORED: DType = F::STORED;

    fn from_tensor(t: &Tensor) -> candle_core::Result<Vec<Self>> {
        Ok(F::from_tensor(t)?.into_iter().map(Dual::constant).collect())
    }

    fn to_tensor(data: &[Self], shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let values: Vec<F> = data.iter().map(|d| d.value).collect();
        F::to_tensor(&values, shape, device)
    }

    fn candle(_net: &Net, _mode: BnMode, why: String) -> crate::Result<Box<dyn Engine<Self>>> {
        Err(EngineError::Input(format!(
            "candle's autograd does not run on dual numbers ({why}): Hessian-vector products need the engine's kernels"
        )))
    }

    unsafe fn gemm_into(
        m: usize,
        n: usize,
        k: usize,
        c: *mut Self,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
    ) {
        // SAFETY: the caller's contract, C row-major m×n.
        unsafe { Self::gemm_strided(m, n, k, (c, n as isize, 1), a, b, false) }
    }

    unsafe fn gemm_add(
        m: usize,
        n: usize,
        k: usize,
        c: *mut Self,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
    ) {
        // SAFETY: the caller's contract, C row-major m×n.
        unsafe { Self::gemm_strided(m, n, k, (c, n as isize, 1), a, b, true) }
    }

    unsafe fn gemm_strided(
        m: usize,
        n: usize,
        k: usize,
        c: (*mut Self, isize, isize),
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        accumulate: bool,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        // The planes, row-major: A's value over its tangent ([A.v; A.t],
        // 2m × k), B.v, B.t (k × n), and C's the same way (2m × n).
        let (mk, kn, mn) = (m * k, k * n, m * n);
        let len = 2 * (mk + kn + mn);
        debug_assert!(std::mem::align_of::<F>() <= std::mem::align_of::<u64>());
        let store = memo::current();
        let mut planes = PLANES.take();
        let words = (len * std::mem::size_of::<F>()).div_ceil(8);
        if planes.len() < words {
            planes.resize(words, 0);
        }
        let base = planes.as_mut_ptr().cast::<F>();
        // SAFETY: the planes are disjoint ranges of `planes` (len F's, F
        // being floats, any bits of which are a value, aligned as u64); A,
        // B and C are the caller's valid matrices, C aliasing neither.
        unsafe {
            let (a_planes, bv, bt, c_planes) = (
                base,
                base.add(2 * mk),
                base.add(2 * mk + kn),
                base.add(2 * mk + 2 * kn),
            );
            split(m, k, a, a_planes, a_planes.add(mk));
            split(k, n, b, bv, bt);
            let a_rows = (a_planes.cast_const(), k as isize, 1);
            let dims = [m, n, k];
            let (av, bv_bytes) = (memo::bytes(a_planes, mk), memo::bytes(bv, kn));
            if store
                .as_ref()
                .is_some_and(|s| s.recall(dims, av, bv_bytes, memo::bytes_mut(c_planes, mn)))
            {
                // C.v kept from an earlier pass at this point: C.t = A.t·B.v.
                let a_tangent = (a_planes.add(mk).cast_const(), k as isize, 1);
                F::gemm_into(m, n, k, c_planes.add(mn), a_tangent, (bv, n as isize, 1));
            } else {
                // [C.v; C.t] = [A.v; A.t]·B.v in one product of twice the rows.
                F::gemm_into(2 * m, n, k, c_planes, a_rows, (bv, n as isize, 1));
                if let Some(s) = &store {
                    s.keep(dims, av, bv_bytes, memo::bytes(c_planes, mn));
                }
            }
            // C.t += A.v·B.t.
            F::gemm_add(m, n, k, c_planes.add(mn), a_rows, (bt, n as isize, 1));
            merge(m, n, c_planes, c_planes.add(mn), c, accumulate);
        }
        PLANES.set(planes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ArrayView2, ShapeBuilder};

    fn duals(rows: usize, cols: usize, seed: usize, column_major: bool) -> Array2<Dual<f64>> {
        let f = |i: usize| ((i * 37 + seed * 11) % 23) as f64 / 7.0 - 1.5;
        let shape = (rows, cols).set_f(column_major);
        Array2::from_shape_fn(shape, |(i, j)| {
            let at = i * cols + j;
            Dual::new(f(2 * at), f(2 * at + 1))
        })
    }

    fn naive(a: ArrayView2<Dual<f64>>, b: ArrayView2<Dual<f64>>) -> Array2<Dual<f64>> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).fold(Dual::constant(0.0), |s, l| s + a[[i, l]] * b[[l, j]])
        })
    }

    fn view(m: &ArrayView2<Dual<f64>>) -> (*const Dual<f64>, isize, isize) {
        (m.as_ptr(), m.strides()[0], m.strides()[1])
    }

    #[test]
    fn dual_products_on_split_planes_equal_the_dual_arithmetic_in_every_layout() {
        let (m, n, k) = (5, 7, 3);
        for (a_f, b_f, c_f) in [
            (false, false, false),
            (true, true, false),
            (false, true, true),
        ] {
            let (a, b) = (duals(m, k, 1, a_f), duals(k, n, 2, b_f));
            let want = naive(a.view(), b.view());
            let mut c = duals(m, n, 3, c_f);
            let before = c.clone();
            for accumulate in [true, false] {
                let cm = c.view_mut();
                let cp = (cm.as_ptr().cast_mut(), cm.strides()[0], cm.strides()[1]);
                // SAFETY: valid m×k, k×n and m×n matrices, C apart from A and B.
                unsafe {
                    Dual::<f64>::gemm_strided(
                        m,
                        n,
                        k,
                        cp,
                        view(&a.view()),
                        view(&b.view()),
                        accumulate,
                    )
                };
                let base = if accumulate {
                    before.clone()
                } else {
                    Array2::zeros((m, n))
                };
                for ((got, w), c0) in c.iter().zip(&want).zip(&base) {
                    let w = *w + *c0;
                    assert!((got.value - w.value).abs() < 1e-12, "{got:?} against {w:?}");
                    assert!(
                        (got.tangent - w.tangent).abs() < 1e-12,
                        "{got:?} against {w:?}"
                    );
                }
            }
        }
    }
}
