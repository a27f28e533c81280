//! Weight normalisation (Salimans & Kingma 2016): W = g·v/‖v‖ row by row, so
//! the length g of each unit's weight vector is a parameter of its own.

use candle_core::{Tensor, Var};

use crate::{Linear, Result};

/// ‖v_i‖ of every row of v (out, in), as (out, 1).
fn row_norms(v: &Tensor) -> Result<Tensor> {
    Ok(v.sqr()?.sum_keepdim(1)?.sqrt()?)
}

#[derive(Clone, Debug)]
/// y = x·Wᵀ + b with W_i = g_i·v_i/‖v_i‖ (Salimans & Kingma 2016); names as
/// PyTorch's `weight_norm`: `weight_g` (out, 1), `weight_v` (out, in).
pub struct WeightNormLinear {
    weight_g: Var,
    weight_v: Var,
    bias: Option<Var>,
}

impl WeightNormLinear {
    /// A layer from its direction v (out, in), length g (out, 1) and optional bias (out).
    pub fn new(weight_v: Var, weight_g: Var, bias: Option<Var>) -> Self {
        WeightNormLinear {
            weight_g,
            weight_v,
            bias,
        }
    }

    /// The same map as `l`, reparametrised: v = W and g = ‖W_i‖ row by row
    /// (PyTorch's `weight_norm` at creation).
    pub fn from_linear(l: &Linear) -> Result<Self> {
        let w = l.weight().as_tensor();
        Ok(WeightNormLinear::new(
            Var::from_tensor(w)?,
            Var::from_tensor(&row_norms(w)?)?,
            l.bias().cloned(),
        ))
    }

    /// The length g, (out, 1).
    pub fn weight_g(&self) -> &Var {
        &self.weight_g
    }

    /// The direction v, (out, in).
    pub fn weight_v(&self) -> &Var {
        &self.weight_v
    }

    /// The bias, (out).
    pub fn bias(&self) -> Option<&Var> {
        self.bias.as_ref()
    }

    /// The effective weight W = g·v/‖v‖, (out, in).
    pub fn weight(&self) -> Result<Tensor> {
        let v = self.weight_v.as_tensor();
        Ok(v.broadcast_mul(&self.weight_g.as_tensor().broadcast_div(&row_norms(v)?)?)?)
    }

    /// x: (batch, in) → (batch, out).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight()?.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b.as_tensor())?,
            None => y,
        })
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        if let Some(b) = &self.bias {
            f(format!("{prefix}.bias"), b);
        }
        f(format!("{prefix}.weight_g"), &self.weight_g);
        f(format!("{prefix}.weight_v"), &self.weight_v);
    }
}
