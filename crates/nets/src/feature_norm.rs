//! Per-sample normalisers over the feature axis of (batch, features): layer
//! norm (Ba et al. 2016), group norm (Wu & He 2018) and RMS norm (Zhang &
//! Sennrich 2019).
//!
//! Built from basic tensor ops: candle-nn's fused `layer_norm`/`rms_norm`
//! record no backward op and would silently cut the gradient.

use candle_core::{Tensor, Var};

use crate::{FeatureNormKind, NORM_EPS, Result};

#[derive(Clone, Debug)]
/// A per-sample normaliser over the features of (batch, features); see [`FeatureNormKind`].
pub struct FeatureNorm {
    kind: FeatureNormKind,
    weight: Var,
    bias: Option<Var>,
    eps: f64,
}

impl FeatureNorm {
    /// A normaliser of `kind` with scale γ and (for LN and GN) shift β.
    pub fn new(kind: FeatureNormKind, weight: Var, bias: Option<Var>) -> Self {
        FeatureNorm {
            kind,
            weight,
            bias,
            eps: NORM_EPS,
        }
    }

    /// The kind of statistics.
    pub fn kind(&self) -> FeatureNormKind {
        self.kind
    }

    /// γ, (features).
    pub fn weight(&self) -> &Var {
        &self.weight
    }

    /// β, (features), for LN and GN.
    pub fn bias(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    /// ε under the square root.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Normalise each sample of `x` (batch, features) over its features.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, w) = x.dims2()?;
        let g = self.kind.groups();
        let xg = x.reshape((b, g, w / g))?;
        let xhat = match self.kind {
            FeatureNormKind::Rms => {
                let ms = xg.sqr()?.mean_keepdim(2)?;
                xg.broadcast_div(&(ms + self.eps)?.sqrt()?)?
            }
            _ => {
                let centred = xg.broadcast_sub(&xg.mean_keepdim(2)?)?;
                let var = centred.sqr()?.mean_keepdim(2)?;
                centred.broadcast_div(&(var + self.eps)?.sqrt()?)?
            }
        };
        let y = xhat
            .reshape((b, w))?
            .broadcast_mul(self.weight.as_tensor())?;
        Ok(match &self.bias {
            Some(beta) => y.broadcast_add(beta.as_tensor())?,
            None => y,
        })
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        f(format!("{prefix}.weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(format!("{prefix}.bias"), b);
        }
    }
}
