//! Weights as safetensors, named like PyTorch's `state_dict` (see [`Mlp`]), so a
//! net built in PyTorch can be evaluated here on identical weights and back.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::{ConvNet, Mlp, Model, NetError, Result};

/// PyTorch writes this counter beside BN's running statistics; it is not used here.
const IGNORED_SUFFIX: &str = ".num_batches_tracked";

/// Metadata key holding the net's spec as JSON-like text, for provenance.
pub const SPEC_METADATA_KEY: &str = "gradscope.spec";

impl Mlp {
    /// The weights file's bytes: every parameter and buffer, in the net's dtype.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        to_safetensors(self, format!("{:?}", self.spec().params()))
    }

    /// Load every parameter and buffer from a safetensors file (see [`load_safetensors`]).
    pub fn load_safetensors(&self, path: &Path) -> Result<()> {
        load_safetensors(self, path)
    }
}

impl ConvNet {
    /// The weights file's bytes: every parameter and buffer, in the net's dtype.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        to_safetensors(self, format!("{:?}", **self.spec()))
    }

    /// Load every parameter and buffer from a safetensors file (see [`load_safetensors`]).
    pub fn load_safetensors(&self, path: &Path) -> Result<()> {
        load_safetensors(self, path)
    }
}

/// A model's weights as safetensors bytes, with `spec` in the metadata.
pub fn to_safetensors(model: &dyn Model, spec: String) -> Result<Vec<u8>> {
    let tensors: Vec<(String, Tensor)> = model
        .state_dict()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let meta = HashMap::from([(SPEC_METADATA_KEY.to_string(), spec)]);
    safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta)).map_err(|e| {
        NetError::Weights {
            path: "<memory>".into(),
            reason: e.to_string(),
        }
    })
}

/// Load every parameter and buffer of `model` from a safetensors file. Each
/// name of the model must be present with the same shape (any float dtype,
/// converted); a name the model does not have is an error, except PyTorch's
/// `num_batches_tracked`. Everything is checked before anything is set, so a
/// bad file leaves the model as it was.
pub fn load_safetensors(model: &dyn Model, path: &Path) -> Result<()> {
    let err = |reason: String| NetError::Weights {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut file = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| err(format!("not a valid safetensors file ({e})")))?;
    let mut updates = Vec::new();
    for (name, var) in model.state_dict() {
        let Some(t) = file.remove(&name) else {
            return Err(err(format!("tensor `{name}` is missing")));
        };
        if t.dims() != var.dims() {
            return Err(err(format!(
                "tensor `{name}` has shape {:?}, the net needs {:?}",
                t.dims(),
                var.dims()
            )));
        }
        if !t.dtype().is_float() {
            return Err(err(format!(
                "tensor `{name}` has dtype {:?}, expected a float",
                t.dtype()
            )));
        }
        let t = t.to_dtype(var.dtype())?;
        updates.push((var, t));
    }
    let mut extra: Vec<String> = file
        .into_keys()
        .filter(|k| !k.ends_with(IGNORED_SUFFIX))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let more = if extra.len() > 3 {
            format!(" and {} more", extra.len() - 3)
        } else {
            String::new()
        };
        extra.truncate(3);
        return Err(err(format!(
            "tensor(s) the net does not have: {}{more} (wrong architecture or depth?)",
            extra.join(", ")
        )));
    }
    for (var, t) in updates {
        var.set(&t)?;
    }
    Ok(())
}
