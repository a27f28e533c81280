//! The scalar types the engine runs in, and the GEMM each uses per layout.

use candle_core::{DType, Device, Tensor};
use gradscope_nets::{BnMode, Net};
use num_traits::{Float, FromPrimitive, ToPrimitive};

use crate::dual::Dual;
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

/// (pointer to the value or tangent part, row stride, column stride) of a
/// matrix of duals, read as a matrix of F: the parts interleave, so each
/// stride doubles.
fn part<F>(m: (*const Dual<F>, isize, isize), tangent: bool) -> (*const F, isize, isize) {
    let p = m.0.cast::<F>();
    // SAFETY (for the caller's use): Dual is repr(C) of two F, so the
    // tangent of element 0 is the F after its value.
    let p = if tangent { p.wrapping_add(1) } else { p };
    (p, 2 * m.1, 2 * m.2)
}

fn part_mut<F>(c: (*mut Dual<F>, isize, isize), tangent: bool) -> (*mut F, isize, isize) {
    let (p, rs, cs) = part((c.0.cast_const(), c.1, c.2), tangent);
    (p.cast_mut(), rs, cs)
}

/// Dual numbers over f32 or f64: each product C = A·B is three products of
/// F on the interleaved parts, C.v = A.v·B.v and C.t = A.t·B.v + A.v·B.t.
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
        let (av, at, bv, bt) = (part(a, false), part(a, true), part(b, false), part(b, true));
        // SAFETY: the parts lie inside the caller's matrices; C's parts
        // are disjoint from A's and B's as C is from A and B.
        unsafe {
            F::gemm_strided(m, n, k, part_mut(c, false), av, bv, accumulate);
            F::gemm_strided(m, n, k, part_mut(c, true), at, bv, accumulate);
            F::gemm_strided(m, n, k, part_mut(c, true), av, bt, true);
        }
    }
}
