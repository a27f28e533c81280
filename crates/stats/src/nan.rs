//! JSON has no NaN or infinity: serde_json writes them as `null`. These
//! helpers read `null` back as NaN, so a summary with excluded values
//! round-trips. A binary format (`is_human_readable()` false, as the stored
//! cells' postcard) keeps every value as it is, ±inf and NaN bits included.

use serde::{Deserialize, Deserializer, Serializer};

/// Write a non-finite value as `null`.
pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() || !s.is_human_readable() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

/// Read `null` as NaN.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    if !d.is_human_readable() {
        return f64::deserialize(d);
    }
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The same for `Vec<f64>`.
pub mod vec {
    use super::*;

    /// Write non-finite values as `null`.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.collect_seq(v);
        }
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    /// Read `null`s as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        if !d.is_human_readable() {
            return Vec::<f64>::deserialize(d);
        }
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}
