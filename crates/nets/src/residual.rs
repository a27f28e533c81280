//! Residual block x_{l+1} = x_l + α·F(x_l) (He et al. 2016a, b).
//!
//! The identity shortcut gives ∂L/∂x_l = ∂L/∂x_{l+1}·(1 + α ∂F/∂x_l): a direct
//! term that cannot vanish. With a pre-activation branch F = BN → φ → Linear → …
//! (He 2016b, "Identity Mappings in Deep Residual Networks") the stream between
//! blocks is a pure sum of branch outputs.

use candle_core::{Tensor, Var};

use crate::{BnMode, Result, Sequential};

#[derive(Clone, Debug)]
/// A residual block y = x + α·F(x) (He et al. 2016b), F the branch.
pub struct Residual {
    branch: Sequential,
    alpha: f64,
}

impl Residual {
    /// A residual block of `branch` with branch scale `alpha`.
    pub fn new(branch: Sequential, alpha: f64) -> Self {
        Residual { branch, alpha }
    }

    /// The branch F.
    pub fn branch(&self) -> &Sequential {
        &self.branch
    }

    /// The branch scale α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// x + α·F(x).
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.add_shortcut(x, self.branch.forward(x, mode)?)
    }

    /// Forward pass that sets BN running statistics from this batch (calibration).
    pub fn calibrate(&self, x: &Tensor) -> Result<Tensor> {
        self.add_shortcut(x, self.branch.calibrate(x)?)
    }

    fn add_shortcut(&self, x: &Tensor, f: Tensor) -> Result<Tensor> {
        let f = if self.alpha == 1.0 {
            f
        } else {
            (f * self.alpha)?
        };
        Ok((x + f)?)
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        self.branch.visit_parameters(prefix, f)
    }

    pub(crate) fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        self.branch.visit_buffers(prefix, f)
    }
}
