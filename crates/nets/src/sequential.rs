//! A named list of layers applied in order: the body of a plain block and the
//! branch F of a residual block.

use candle_core::{Tensor, Var};

use crate::{Activation, BatchNorm, BnMode, Linear, Result};

/// One step of a [`Sequential`].
#[derive(Clone, Debug)]
pub enum Layer {
    /// A linear layer.
    Linear(Linear),
    /// A batch normalisation layer.
    BatchNorm(BatchNorm),
    /// An elementwise activation.
    Act(Activation),
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

    fn run(
        &self,
        x: &Tensor,
        norm: &dyn Fn(&BatchNorm, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut h = x.clone();
        for (_, layer) in &self.layers {
            h = match layer {
                Layer::Linear(l) => l.forward(&h)?,
                Layer::BatchNorm(bn) => norm(bn, &h)?,
                Layer::Act(a) => a.forward(&h)?,
            };
        }
        Ok(h)
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        for (name, layer) in &self.layers {
            let p = format!("{prefix}.{name}");
            match layer {
                Layer::Linear(l) => l.visit_parameters(&p, f),
                Layer::BatchNorm(bn) => bn.visit_parameters(&p, f),
                Layer::Act(_) => {}
            }
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
