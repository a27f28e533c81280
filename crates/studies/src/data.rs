//! Where a training study's examples come from.

use std::fmt;
use std::str::FromStr;

use gradscope_nets::derive_seed;
use gradscope_train::{Examples, epoch_batches};

use crate::{Result, StudyError};

/// A data set with a train/test split.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum DataSource {
    /// The embedded 8×8 digits, split 80/20 with a fixed seed.
    #[default]
    Digits,
}

/// Share of the digits held out for testing.
pub const DIGITS_TEST_SHARE: f64 = 0.2;

impl DataSource {
    /// (train, test) examples as images (channels, height, width).
    pub fn load(&self) -> Result<(Examples, Examples)> {
        match self {
            DataSource::Digits => {
                let d = gradscope_data::digits()
                    .map_err(|e| StudyError::config("data", e.to_string()))?;
                let all = Examples::new(
                    d.images,
                    vec![d.channels, d.height, d.width],
                    d.labels,
                    d.classes,
                )
                .map_err(|e| StudyError::config("data", e.to_string()))?;
                let order =
                    epoch_batches(all.len(), all.len(), derive_seed(0, "digits-split"))[0].clone();
                let n_test = (all.len() as f64 * DIGITS_TEST_SHARE).round() as usize;
                Ok((all.select(&order[n_test..]), all.select(&order[..n_test])))
            }
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Digits => f.write_str("digits"),
        }
    }
}

impl FromStr for DataSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "digits" => Ok(DataSource::Digits),
            other => Err(format!("unknown data source `{other}` (known: digits)")),
        }
    }
}

impl serde::Serialize for DataSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DataSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
