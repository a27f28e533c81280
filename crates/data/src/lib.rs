#![warn(missing_docs)]
//! Data sets for training studies: the embedded 8×8 digits, and readers for
//! the user's own copies of MNIST (IDX files) and CIFAR-10 (binary batches).
//! Nothing is downloaded.

use std::io::Read;
use std::path::{Path, PathBuf};

mod files;

pub use files::{cifar10, mnist};

/// Errors reading a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The data is there but not in the expected format.
    #[error("{name}: {reason}")]
    Corrupt {
        /// Which data set or file.
        name: String,
        /// What is wrong, in one line.
        reason: String,
    },
    /// A file of the data set could not be read.
    #[error("{}: {reason}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's reason (e.g. no such file).
        reason: String,
    },
}

impl DataError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }
}

/// Result with a [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// A train and a test set.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The training examples.
    pub train: LabelledImages,
    /// The held-out examples.
    pub test: LabelledImages,
}

/// Labelled images: `images` is row-major (n, channels, height, width) in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledImages {
    /// Pixels, (n, channels, height, width) row-major, in [0, 1].
    pub images: Vec<f32>,
    /// Class of each image, in 0..classes.
    pub labels: Vec<u32>,
    /// Colour channels (1 or 3).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
}

const DIGITS_GZ: &[u8] = include_bytes!("../digits/digits.csv.gz");

/// scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes; pixel
/// values 0–16 scaled to [0, 1]); see `digits/README.md` for origin and licence.
pub fn digits() -> Result<LabelledImages> {
    let bad = |reason: String| DataError::Corrupt {
        name: "embedded digits".into(),
        reason,
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ)
        .read_to_string(&mut text)
        .map_err(|e| bad(e.to_string()))?;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Vec<f32> = line
            .split(',')
            .map(|s| s.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if v.len() != 65 {
            return Err(bad(format!(
                "line {}: {} values, expected 65",
                i + 1,
                v.len()
            )));
        }
        images.extend(v[..64].iter().map(|p| p / 16.0));
        labels.push(v[64] as u32);
    }
    Ok(LabelledImages {
        images,
        labels,
        channels: 1,
        height: 8,
        width: 8,
        classes: 10,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn digits_are_the_known_set() {
        let d = super::digits().unwrap();
        assert_eq!(d.labels.len(), 1797);
        assert_eq!(d.images.len(), 1797 * 64);
        assert!(d.images.iter().all(|p| (0.0..=1.0).contains(p)));
        let mut counts = [0usize; 10];
        for &l in &d.labels {
            counts[l as usize] += 1;
        }
        // Class sizes of the UCI test set as shipped by scikit-learn.
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    }
}
