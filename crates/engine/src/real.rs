//! The float types the engine runs in, and the GEMM each uses per layout.

use num_traits::{Float, FromPrimitive, ToPrimitive};

/// The float types the engine runs in (f32, f64).
pub trait Real:
    ndarray::LinalgScalar
    + Float
    + FromPrimitive
    + candle_core::WithDType
    + Send
    + Sync
    + std::iter::Sum
    + num_traits::NumAssign
    + std::fmt::Debug
    + 'static
{
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
