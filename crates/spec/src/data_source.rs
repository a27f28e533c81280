//! Where a training run's examples come from (loading them is the studies
//! crate's).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_sources_round_trip_and_bad_ones_list_the_known_forms() {
        for s in [
            "digits",
            "mnist:/data/mnist",
            "cifar10:cifar-10-batches-bin",
        ] {
            assert_eq!(s.parse::<DataSource>().unwrap().to_string(), s);
        }
        assert_eq!(
            " mnist:dir ".parse::<DataSource>().unwrap(),
            DataSource::Mnist("dir".into())
        );
        for bad in ["mnist:", "imagenet", "cifar100:dir", ""] {
            let err = bad.parse::<DataSource>().unwrap_err();
            assert!(
                err.ends_with("(known: digits, mnist:DIR, cifar10:DIR)"),
                "{err}"
            );
        }
    }
}
