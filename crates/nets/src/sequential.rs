//! A named list of layers applied in order: the body of a plain block and the
//! branch F of a residual block.

use candle_core::{Tensor, Var};

use crate::activation::relu;
use crate::{
    Activation, ActivationExt, BatchNorm, BnMode, FeatureNorm, Linear, Result, WeightNormLinear,
};

/// One step of a [`Sequential`].
#[derive(Clone, Debug)]
pub enum Layer {
    /// A linear layer.
    Linear(Linear),
    /// A batch normalisation layer.
    BatchNorm(BatchNorm),
    /// An elementwise activation.
    Act(Activation),
    /// A per-sample normaliser (layer, group or RMS norm).
    Norm(FeatureNorm),
    /// A weight-normalised linear layer.
    WeightNorm(WeightNormLinear),
    /// CReLU(h) = [max(h, 0), max(−h, 0)], doubling the width (Shang et al.
    /// 2016); with mirrored weights [M, −M] after it, M·h exactly (looks-linear).
    CRelu,
}

impl Layer {
    /// The layer applied to `h`, BN layers through `norm`.
    pub(crate) fn apply(
        &self,
        h: &Tensor,
        norm: &dyn Fn(&BatchNorm, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        Ok(match self {
            Layer::Linear(l) => l.forward(h)?,
            Layer::BatchNorm(bn) => norm(bn, h)?,
            Layer::Act(a) => a.forward(h)?,
            Layer::Norm(n) => n.forward(h)?,
            Layer::WeightNorm(l) => l.forward(h)?,
            Layer::CRelu => Tensor::cat(&[relu(h)?, relu(&h.neg()?)?], 1)?,
        })
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        match self {
            Layer::Linear(l) => l.visit_parameters(prefix, f),
            Layer::BatchNorm(bn) => bn.visit_parameters(prefix, f),
            Layer::Norm(n) => n.visit_parameters(prefix, f),
            Layer::WeightNorm(l) => l.visit_parameters(prefix, f),
            Layer::Act(_) | Layer::CRelu => {}
        }
    }
}

#[derive(Clone, Debug, Default)]
/// Named layers applied in order.
pub struct Sequential {
    layers: Vec<(String, Layer)>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a layer; `name` is its state-dict name (`fc1`, `bn2`, …).
    pub fn push(&mut self, name: impl Into<String>, layer: Layer) {
        self.layers.push((name.into(), layer));
    }

    /// The layers with their names, in order.
    pub fn layers(&self) -> &[(String, Layer)] {
        &self.layers
    }

    /// The layers applied in order to `x`.
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.run(x, &|bn, h| bn.forward(h, mode))
    }

    /// Forward pass that sets every BN's running statistics to its batch's
    /// (see [`BatchNorm::calibrate`]).
    pub fn calibrate(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, &|bn, h| bn.calibrate(h))
    }

    pub(crate) fn run(
        &self,
        x: &Tensor,
        norm: &dyn Fn(&BatchNorm, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (_, layer) in &self.layers {
            h = layer.apply(&h, norm)?;
        }
        Ok(h)
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        for (name, layer) in &self.layers {
            layer.visit_parameters(&format!("{prefix}.{name}"), f);
        }
    }

    pub(crate) fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        for (name, layer) in &self.layers {
            if let Layer::BatchNorm(bn) = layer {
                bn.visit_buffers(&format!("{prefix}.{name}"), f);
            }
        }
    }
}
