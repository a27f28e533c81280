//! The candle element type of a [`Precision`].

use candle_core::DType;

use crate::Precision;

/// The candle dtype of a [`Precision`] (a description type of the spec crate).
pub trait PrecisionExt {
    /// `F32` or `F64`.
    fn dtype(self) -> DType;
}

impl PrecisionExt for Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
}
