//! Where a training study's examples come from: the [`DataSource`] named in
//! its parameters, loaded into examples.

use gradscope_nets::derive_seed;
pub use gradscope_spec::DataSource;
use gradscope_train::{Examples, epoch_batches};

use crate::{Result, StudyError};

/// Share of the digits held out for testing.
pub const DIGITS_TEST_SHARE: f64 = 0.2;

/// The (train, test) examples of `source`, as images (channels, height, width).
pub fn load(source: &DataSource) -> Result<(Examples, Examples)> {
    match source {
        DataSource::Digits => {
            let all = examples(
                gradscope_data::digits().map_err(|e| StudyError::config("data", e.to_string()))?,
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

/// At most `max_train` of the training examples `train`: the first
/// `max_train` of a shuffle seeded by the study's `seed` (the same subset at
/// every learning rate, arch and depth of a study), or all of them when
/// `max_train` is unset or not smaller; 0 is refused.
pub fn subset(train: Examples, max_train: Option<usize>, seed: u64) -> Result<Examples> {
    Ok(match max_train {
        Some(0) => return Err(StudyError::config("max_train", "must be at least 1")),
        Some(m) if m < train.len() => {
            let order = epoch_batches(train.len(), train.len(), derive_seed(seed, "subset"));
            train.select(&order[0][..m])
        }
        _ => train,
    })
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
