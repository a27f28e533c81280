//! Where a training study's examples come from.

use std::fmt;
use std::path::PathBuf;
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
    /// MNIST's IDX files in this folder (its own train/test split).
    Mnist(PathBuf),
    /// CIFAR-10's binary batches in this folder (its own train/test split).
    Cifar10(PathBuf),
}

/// Share of the digits held out for testing.
pub const DIGITS_TEST_SHARE: f64 = 0.2;

impl DataSource {
    /// (train, test) examples as images (channels, height, width).
    pub fn load(&self) -> Result<(Examples, Examples)> {
        match self {
            DataSource::Digits => {
                let all = examples(
                    gradscope_data::digits()
                        .map_err(|e| StudyError::config("data", e.to_string()))?,
                )?;
                let order =
                    epoch_batches(all.len(), all.len(), derive_seed(0, "digits-split"))[0].clone();
                let n_test = (all.len() as f64 * DIGITS_TEST_SHARE).round() as usize;
                Ok((all.select(&order[n_test..]), all.select(&order[..n_test])))
            }
            DataSource::Mnist(dir) => split(gradscope_data::mnist(dir)),
            DataSource::Cifar10(dir) => split(gradscope_data::cifar10(dir)),
        }
    }
}

fn examples(d: gradscope_data::LabelledImages) -> Result<Examples> {
    Examples::new(
        d.images,
        vec![d.channels, d.height, d.width],
        d.labels,
        d.classes,
    )
    .map_err(|e| StudyError::config("data", e.to_string()))
}

fn split(s: gradscope_data::Result<gradscope_data::Split>) -> Result<(Examples, Examples)> {
    let s = s.map_err(|e| StudyError::config("data", e.to_string()))?;
    Ok((examples(s.train)?, examples(s.test)?))
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Digits => f.write_str("digits"),
            DataSource::Mnist(dir) => write!(f, "mnist:{}", dir.display()),
            DataSource::Cifar10(dir) => write!(f, "cifar10:{}", dir.display()),
        }
    }
}

impl FromStr for DataSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "digits" => Ok(DataSource::Digits),
            other => match other.split_once(':') {
                Some(("mnist", dir)) if !dir.is_empty() => Ok(DataSource::Mnist(dir.into())),
                Some(("cifar10", dir)) if !dir.is_empty() => Ok(DataSource::Cifar10(dir.into())),
                _ => Err(format!(
                    "unknown data source `{other}` (known: digits, mnist:DIR, cifar10:DIR)"
                )),
            },
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
