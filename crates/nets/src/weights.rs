//! Weights as safetensors, named like PyTorch's `state_dict` (see [`Mlp`]), so a
//! net built in PyTorch can be evaluated here on identical weights and back.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use gradscope_spec::{ConvNetParams, NetParams};
use serde::{Deserialize, Serialize};

use crate::{ConvNet, Mlp, Model, Net, NetError, Result};

/// PyTorch writes this counter beside BN's running statistics; it is not used here.
const IGNORED_SUFFIX: &str = ".num_batches_tracked";

/// Metadata key holding the net's spec as JSON ([`WeightsSpec`]).
pub const SPEC_METADATA_KEY: &str = "gradscope.spec";

/// The net a weights file holds, stored as JSON under [`SPEC_METADATA_KEY`]:
/// `{"kind": "mlp", "params": {"arch": "resnet-bn", "depth": 8, "width": 200, …}}`
/// or `{"kind": "conv", "params": {…}}`, so a reader (this crate, or Python's
/// `safetensors.safe_open(f, "np").metadata()`) can rebuild it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "params", rename_all = "lowercase")]
pub enum WeightsSpec {
    /// An MLP of the shattered-gradients families.
    Mlp(NetParams),
    /// A convolutional net of He et al. 2016a.
    Conv(ConvNetParams),
}

impl WeightsSpec {
    /// The spec of `net`; None for a custom model or a transformer (not yet
    /// in weights files).
    pub fn of(net: &Net) -> Option<WeightsSpec> {
        match net {
            Net::Mlp(m) => Some(WeightsSpec::Mlp(m.spec().params().clone())),
            Net::Conv(c) => Some(WeightsSpec::Conv((**c.spec()).clone())),
            Net::Transformer(_) | Net::Custom { .. } => None,
        }
    }

    /// The JSON stored in the metadata.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec serialises")
    }

    /// The arch as a spec string (`resnet-bn`, `conv-resnet`).
    pub fn arch(&self) -> String {
        match self {
            WeightsSpec::Mlp(p) => p.arch.to_string(),
            WeightsSpec::Conv(p) => p.arch.to_string(),
        }
    }

    /// Blocks (MLP) or weighted layers (conv).
    pub fn depth(&self) -> usize {
        match self {
            WeightsSpec::Mlp(p) => p.depth,
            WeightsSpec::Conv(p) => p.depth,
        }
    }

    /// The MLP's hidden width (None for a conv net).
    pub fn width(&self) -> Option<usize> {
        match self {
            WeightsSpec::Mlp(p) => Some(p.width),
            WeightsSpec::Conv(_) => None,
        }
    }
}

/// The JSON spec of `net` for a weights file (its description for a custom model).
pub fn spec_json(net: &Net) -> String {
    WeightsSpec::of(net).map_or_else(|| net.describe(), |s| s.to_json())
}

/// The metadata of safetensors `bytes` (the JSON header's `__metadata__`).
fn metadata(bytes: &[u8]) -> Option<HashMap<String, String>> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    serde_json::from_value(header.get("__metadata__")?.clone()).ok()
}

/// The spec in safetensors `bytes`; None without one, or with the free-text
/// form of earlier versions.
pub fn spec_of_bytes(bytes: &[u8]) -> Option<WeightsSpec> {
    serde_json::from_str(metadata(bytes)?.get(SPEC_METADATA_KEY)?).ok()
}

/// The spec a weights file carries (see [`spec_of_bytes`]).
pub fn read_spec(path: &Path) -> Result<Option<WeightsSpec>> {
    let bytes = std::fs::read(path).map_err(|e| NetError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(spec_of_bytes(&bytes))
}

impl Mlp {
    /// The weights file's bytes: every parameter and buffer, in the net's
    /// dtype, and the spec as JSON ([`WeightsSpec`]).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        to_safetensors(
            self,
            WeightsSpec::Mlp(self.spec().params().clone()).to_json(),
        )
    }

    /// Load every parameter and buffer from a safetensors file (see [`load_safetensors`]).
    pub fn load_safetensors(&self, path: &Path) -> Result<()> {
        load_safetensors(self, path)
    }
}

impl ConvNet {
    /// The weights file's bytes: every parameter and buffer, in the net's
    /// dtype, and the spec as JSON ([`WeightsSpec`]).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        to_safetensors(self, WeightsSpec::Conv((**self.spec()).clone()).to_json())
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
    let spec = spec_of_bytes(&bytes);
    // Which flag would build the file's net: its depth when tensors are
    // missing or extra, its width when a matrix has another shape.
    let depth_hint = || {
        spec.as_ref().map_or(String::new(), |s| {
            format!(
                "; the file holds {} of depth {}: use --depth {} (--depths in shattered)",
                s.arch(),
                s.depth(),
                s.depth()
            )
        })
    };
    let mut updates = Vec::new();
    for (name, var) in model.state_dict() {
        let Some(t) = file.remove(&name) else {
            return Err(err(format!("tensor `{name}` is missing{}", depth_hint())));
        };
        if t.dims() != var.dims() {
            let width = match (&spec, t.dims()) {
                (Some(s), _) => s.width(),
                // A file without a spec: an MLP's stem is (width, inputs).
                (None, [w, _]) if name == "stem.weight" => Some(*w),
                _ => None,
            };
            let hint = match width {
                Some(w) if t.rank() == var.rank() => format!(": use --width {w}"),
                _ => String::new(),
            };
            return Err(err(format!(
                "tensor `{name}` has shape {:?}, the net needs {:?}{hint}",
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
        let hint = match spec {
            Some(_) => depth_hint(),
            None => " (wrong architecture or depth?)".into(),
        };
        return Err(err(format!(
            "tensor(s) the net does not have: {}{more}{hint}",
            extra.join(", ")
        )));
    }
    for (var, t) in updates {
        var.set(&t)?;
    }
    Ok(())
}
