//! Nets on images, as the studies that take them draw them: a conv net of He
//! et al. 2016a (depth 6n + 2, BN) or an MLP of the grammar on the flattened
//! image; and the check of a study's image archs and depths.

use gradscope_nets::{
    Activation, BiasInit, ConvNet, ConvNetParams, Mlp, Net, NetParams, Precision, WeightInit,
};
use gradscope_spec::{DataSource, ModelArch};

use crate::{Result, StudyError};
use gradscope_train::Examples;

/// What an image net is drawn with beside its arch and depth.
pub(crate) struct ImageNet<'a> {
    /// One image's (channels, height, width).
    pub shape: &'a [usize],
    /// Outputs of the head.
    pub outputs: usize,
    /// Hidden width of an MLP.
    pub width: usize,
    /// An MLP's activation (conv nets use ReLU).
    pub activation: Activation,
    pub weight_init: WeightInit,
    pub bias_init: BiasInit,
    pub precision: Precision,
    pub seed: u64,
}

impl ImageNet<'_> {
    /// The net of `arch` at `depth`.
    pub(crate) fn build(&self, arch: ModelArch, depth: usize) -> Result<Net> {
        let shape = self.shape;
        let bad = |e: gradscope_spec::SpecError| {
            StudyError::config("image_depths", format!("{arch} at depth {depth}: {e}"))
        };
        Ok(match arch {
            ModelArch::Conv(c) => {
                if shape[1] != shape[2] {
                    return Err(StudyError::config(
                        "image_data",
                        format!("{arch} needs square images; the data's are {shape:?}"),
                    ));
                }
                let spec = ConvNetParams {
                    arch: c,
                    depth,
                    in_channels: shape[0],
                    image_size: shape[1],
                    classes: self.outputs,
                    weight_init: self.weight_init,
                    precision: self.precision,
                    seed: self.seed,
                    ..Default::default()
                }
                .check()
                .map_err(bad)?;
                Net::Conv(ConvNet::new(&spec)?)
            }
            ModelArch::Mlp(a) => {
                let spec = NetParams {
                    arch: a,
                    depth,
                    width: self.width,
                    input_dim: shape.iter().product(),
                    output_dim: self.outputs,
                    activation: self.activation,
                    weight_init: self.weight_init,
                    bias_init: self.bias_init,
                    precision: self.precision,
                    seed: self.seed,
                }
                .check()
                .map_err(bad)?;
                Net::Mlp(Mlp::new(&spec)?)
            }
        })
    }
}

/// Checks an image part's archs and depths (sorted and deduplicated in
/// place); false when it has no archs, i.e. is not run.
pub(crate) fn check_image_part(archs: &[ModelArch], depths: &mut Vec<usize>) -> Result<bool> {
    if archs.is_empty() {
        return Ok(false);
    }
    crate::validate::check_archs(archs, true)
        .map_err(|e| StudyError::config("image_archs", e.to_string()))?;
    if depths.is_empty() {
        return Err(StudyError::config(
            "image_depths",
            "list at least one depth",
        ));
    }
    depths.sort_unstable();
    depths.dedup();
    Ok(true)
}

/// The training images of `data` from which a batch of `batch` images is
/// drawn (2 ≤ batch ≤ `max_batch` and the set's size), and one image's
/// shape (channels, height, width); bad settings name `image_batch` or
/// `image_data`.
pub(crate) fn training_images(
    data: &DataSource,
    batch: usize,
    max_batch: usize,
) -> Result<(Examples, Vec<usize>)> {
    if !(2..=max_batch).contains(&batch) {
        return Err(StudyError::config(
            "image_batch",
            format!("must be 2..={max_batch}, got {batch}"),
        ));
    }
    let (train, _) = crate::data::load(data).map_err(|e| match e {
        StudyError::Config { reason, .. } => StudyError::config("image_data", reason),
        e => e,
    })?;
    if batch > train.len() {
        return Err(StudyError::config(
            "image_batch",
            format!(
                "{batch} images asked for, the training set of {data} has {}",
                train.len()
            ),
        ));
    }
    let shape = train.shape().to_vec();
    if shape.len() != 3 {
        return Err(StudyError::config(
            "image_data",
            format!("needs images (channels, height, width), got shape {shape:?}"),
        ));
    }
    Ok((train, shape))
}
