//! A net of either family, as the studies build it and the engine reads it.

use std::sync::Arc;

use candle_core::{DType, Tensor, Var};

use crate::{BlockNet, BnMode, ConvNet, Mlp, Model, NetError, Result, Transformer};

/// An MLP, a convolutional net, or a model of your own.
#[derive(Clone)]
pub enum Net {
    /// Linear stem, blocks of the [`Arch`](crate::Arch) grammar, linear head.
    Mlp(Mlp),
    /// A CIFAR-style ResNet or plain conv net (He et al. 2016a).
    Conv(ConvNet),
    /// A transformer encoder: embeddings, attention blocks, a per-token head.
    Transformer(Transformer),
    /// Any candle model, seen as one block-free map from input to output.
    Custom {
        /// The model, as a net without blocks.
        model: Arc<dyn BlockNet>,
        /// The shape of one input example.
        input_dims: Vec<usize>,
    },
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Net::Mlp(m) => m.fmt(f),
            Net::Conv(c) => c.fmt(f),
            Net::Transformer(t) => t.fmt(f),
            Net::Custom { input_dims, .. } => write!(f, "Custom {{ input_dims: {input_dims:?} }}"),
        }
    }
}

impl Net {
    /// A model of your own taking examples of shape `input_dims` (trained and
    /// probed through candle's autograd, as one map without blocks).
    pub fn custom(model: impl Model + 'static, input_dims: Vec<usize>) -> Net {
        Net::Custom {
            model: Arc::new(Whole(model)),
            input_dims,
        }
    }

    /// The shape of one input example: `[input_dim]`, `[channels, size,
    /// size]`, or `[seq_len]` token ids.
    pub fn input_dims(&self) -> Vec<usize> {
        match self {
            Net::Mlp(m) => vec![m.spec().input_dim],
            Net::Conv(c) => {
                let s = c.spec();
                vec![s.in_channels, s.image_size, s.image_size]
            }
            Net::Transformer(t) => vec![t.spec().seq_len],
            Net::Custom { input_dims, .. } => input_dims.clone(),
        }
    }

    /// A short description: the arch string and the depth.
    pub fn describe(&self) -> String {
        match self {
            Net::Mlp(m) => format!("{} depth {}", m.spec().arch, m.depth()),
            Net::Conv(c) => format!("{} depth {}", c.spec().arch, c.spec().depth),
            Net::Transformer(t) => format!("{} depth {}", t.spec().arch, t.spec().depth),
            Net::Custom { .. } => "a custom model".into(),
        }
    }

    fn inner(&self) -> &dyn BlockNet {
        match self {
            Net::Mlp(m) => m,
            Net::Conv(c) => c,
            Net::Transformer(t) => t,
            Net::Custom { model, .. } => model.as_ref(),
        }
    }
}

/// A model as a net without blocks: the stem is the whole model, the head
/// the identity.
struct Whole<M>(M);

impl<M: Model> Model for Whole<M> {
    fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.0.forward(x, mode)
    }
    fn parameters(&self) -> Vec<(String, Var)> {
        self.0.parameters()
    }
    fn buffers(&self) -> Vec<(String, Var)> {
        self.0.buffers()
    }
    fn dtype(&self) -> DType {
        self.0.dtype()
    }
}

impl<M: Model> BlockNet for Whole<M> {
    fn num_blocks(&self) -> usize {
        0
    }
    fn stem_forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.0.forward(x, mode)
    }
    fn block_forward(&self, b: usize, _h: &Tensor, _mode: BnMode) -> Result<Tensor> {
        Err(NetError::invalid(
            "block",
            format!("a custom model has no block {b}"),
        ))
    }
    fn keeps_shape(&self, _b: usize) -> bool {
        false
    }
    fn head_forward(&self, h: &Tensor, _mode: BnMode) -> Result<Tensor> {
        Ok(h.clone())
    }
}

impl From<Mlp> for Net {
    fn from(m: Mlp) -> Self {
        Net::Mlp(m)
    }
}

impl From<ConvNet> for Net {
    fn from(c: ConvNet) -> Self {
        Net::Conv(c)
    }
}

impl From<Transformer> for Net {
    fn from(t: Transformer) -> Self {
        Net::Transformer(t)
    }
}

impl Model for Net {
    fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.inner().forward(x, mode)
    }
    fn parameters(&self) -> Vec<(String, Var)> {
        self.inner().parameters()
    }
    fn buffers(&self) -> Vec<(String, Var)> {
        self.inner().buffers()
    }
    fn dtype(&self) -> DType {
        self.inner().dtype()
    }
}

impl BlockNet for Net {
    fn num_blocks(&self) -> usize {
        self.inner().num_blocks()
    }
    fn stem_forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.inner().stem_forward(x, mode)
    }
    fn block_forward(&self, b: usize, h: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.inner().block_forward(b, h, mode)
    }
    fn block_parts(&self, b: usize, h: &Tensor, mode: BnMode) -> Result<Option<(Tensor, Tensor)>> {
        self.inner().block_parts(b, h, mode)
    }
    fn block_post(&self, b: usize, pre: &Tensor) -> Result<Tensor> {
        self.inner().block_post(b, pre)
    }
    fn keeps_shape(&self, b: usize) -> bool {
        self.inner().keeps_shape(b)
    }
    fn block_group(&self, b: usize) -> usize {
        self.inner().block_group(b)
    }
    fn head_forward(&self, h: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.inner().head_forward(h, mode)
    }
}
