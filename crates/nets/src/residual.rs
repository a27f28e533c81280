//! Residual blocks y = s(x) + α·F(x) and their variants (He et al. 2016a, b;
//! Srivastava et al. 2015; Liu et al. 2020).
//!
//! The identity shortcut gives ∂L/∂x_l = ∂L/∂x_{l+1}·(1 + α ∂F/∂x_l): a direct
//! term that cannot vanish. With a pre-activation branch F = BN → φ → Linear → …
//! (He 2016b, "Identity Mappings in Deep Residual Networks") the stream between
//! blocks is a pure sum of branch outputs. The other shortcuts of that paper
//! (constant scaling, gating, projection, dropout) multiply the direct term by
//! something other than 1, and over L blocks the product vanishes or explodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Tensor, Var};
use rand::Rng;

use crate::{Activation, ActivationExt, BnMode, Linear, Result, Sequential, tensor_rng};

/// The shortcut s(x) of a residual block.
#[derive(Clone, Debug)]
pub enum ResidualShortcut {
    /// s(x) = x.
    Identity,
    /// s(x) = λx (constant scaling; Liu et al. 2020's xSkip).
    Scale(f64),
    /// s(x) = λx with λ trainable, a (1)-shaped `Var` named `skip.lambda`
    /// (Liu et al. 2020 suggest learning λ).
    LearnedScale(Var),
    /// g = σ(W_g x + b_g); exclusive gating y = g⊙F(x) + (1 − g)⊙x (a highway
    /// layer, Srivastava et al. 2015), or shortcut-only gating y = F(x) + (1 − g)⊙x.
    Gate {
        /// The gate's linear layer.
        gate: Linear,
        /// Whether the branch is scaled by g as well (exclusive gating).
        exclusive: bool,
    },
    /// s(x) = W_s x (a 1×1 projection).
    Projection(Linear),
    /// s(x) = m⊙x with a Bernoulli(1 − p) mask m; (1 − p)·x in eval mode.
    Dropout(ShortcutDropout),
}

#[derive(Clone, Debug)]
/// Dropout on the shortcut (He 2016b, Table 1), without rescaling, so the
/// eval-mode shortcut (1 − p)·x is its expectation.
///
/// The mask is a function of the seed: fixed in every analysis mode (so
/// gradients are those of one sampled net, and finite differences see the
/// same net), drawn afresh at every forward pass in [`BnMode::Train`].
pub struct ShortcutDropout {
    p: f64,
    seed: u64,
    step: Arc<AtomicU64>,
}

impl ShortcutDropout {
    /// Dropout with drop probability `p`, masks seeded by `seed`.
    pub fn new(p: f64, seed: u64) -> Self {
        ShortcutDropout {
            p,
            seed,
            step: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The drop probability p.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The shortcut's multiplier for `len` values in `mode`: a Bernoulli(1 − p)
    /// keep mask of 0s and 1s, drawn afresh at every call in
    /// [`BnMode::Train`] and fixed (the seed's first draw) in the analysis
    /// modes; `None` in [`BnMode::Eval`], where the shortcut is (1 − p)·x.
    pub fn mask(&self, len: usize, mode: BnMode) -> Option<Vec<f64>> {
        if mode == BnMode::Eval {
            return None;
        }
        let step = match mode {
            BnMode::Train => 1 + self.step.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        let mut rng = tensor_rng(self.seed, &format!("mask{step}"));
        Some(
            (0..len)
                .map(|_| f64::from(u8::from(rng.random::<f64>() >= self.p)))
                .collect(),
        )
    }

    fn apply(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        let Some(keep) = self.mask(x.elem_count(), mode) else {
            return Ok((x * (1.0 - self.p))?);
        };
        let mask = Tensor::from_vec(keep, x.dims(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

#[derive(Clone, Debug)]
/// A residual block y = s(x) + α·c·F(x), then `after` (post-activation φ, or a
/// post-norm N), then y ← N_i(x + y) for each recursion (rSkip).
///
/// c is an optional trainable scalar (SkipInit, ReZero, Fixup's multiplier).
pub struct Residual {
    branch: Sequential,
    alpha: f64,
    gain: Option<Var>,
    shortcut: ResidualShortcut,
    after: Sequential,
    recursions: Vec<Sequential>,
}

impl Residual {
    /// A residual block x + α·F(x) of `branch` with branch scale `alpha`.
    pub fn new(branch: Sequential, alpha: f64) -> Self {
        Residual {
            branch,
            alpha,
            gain: None,
            shortcut: ResidualShortcut::Identity,
            after: Sequential::new(),
            recursions: Vec::new(),
        }
    }

    /// The same block with a trainable branch multiplier c, a (1)-shaped `Var`.
    pub fn with_gain(mut self, gain: Var) -> Self {
        self.gain = Some(gain);
        self
    }

    /// The same block with another shortcut.
    pub fn with_shortcut(mut self, shortcut: ResidualShortcut) -> Self {
        self.shortcut = shortcut;
        self
    }

    /// The same block with `after` applied to the sum.
    pub fn with_after(mut self, after: Sequential) -> Self {
        self.after = after;
        self
    }

    /// The same block with recursions y ← N(x + y), one per entry (Liu et al. 2020's rSkip).
    pub fn with_recursions(mut self, recursions: Vec<Sequential>) -> Self {
        self.recursions = recursions;
        self
    }

    /// The branch F.
    pub fn branch(&self) -> &Sequential {
        &self.branch
    }

    /// The branch scale α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The shortcut.
    pub fn shortcut(&self) -> &ResidualShortcut {
        &self.shortcut
    }

    /// The trainable branch multiplier (SkipInit, ReZero), if any.
    pub fn gain(&self) -> Option<&Var> {
        self.gain.as_ref()
    }

    /// The layers after the sum (post-norm and post-activation blocks).
    pub fn after(&self) -> &Sequential {
        &self.after
    }

    /// The post-norm recursions yᵢ = N(x + yᵢ₋₁) after the first sum.
    pub fn recursions(&self) -> &[Sequential] {
        &self.recursions
    }

    /// Whether the block is exactly x + α·F(x): identity shortcut, no
    /// trainable multiplier, nothing after the sum.
    pub fn is_plain_sum(&self) -> bool {
        matches!(self.shortcut, ResidualShortcut::Identity)
            && self.gain.is_none()
            && self.after.layers().is_empty()
            && self.recursions.is_empty()
    }

    /// The block's output for input `x`.
    pub fn forward(&self, x: &Tensor, mode: BnMode) -> Result<Tensor> {
        self.run(x, mode, &|s, h| s.forward(h, mode))
    }

    /// Forward pass that sets BN running statistics from this batch (calibration).
    pub fn calibrate(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, BnMode::PerSample, &|s, h| s.calibrate(h))
    }

    fn run(
        &self,
        x: &Tensor,
        mode: BnMode,
        step: &dyn Fn(&Sequential, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut f = step(&self.branch, x)?;
        if self.alpha != 1.0 {
            f = (f * self.alpha)?;
        }
        if let Some(c) = &self.gain {
            f = f.broadcast_mul(c.as_tensor())?;
        }
        let sum = match &self.shortcut {
            ResidualShortcut::Identity => (x + f)?,
            ResidualShortcut::Scale(lambda) => ((x * *lambda)? + f)?,
            ResidualShortcut::LearnedScale(lambda) => (x.broadcast_mul(lambda.as_tensor())? + f)?,
            ResidualShortcut::Gate { gate, exclusive } => {
                let g = Activation::Sigmoid.forward(&gate.forward(x)?)?;
                let carry = (g.affine(-1.0, 1.0)? * x)?;
                let f = if *exclusive { (f * g)? } else { f };
                (f + carry)?
            }
            ResidualShortcut::Projection(p) => (p.forward(x)? + f)?,
            ResidualShortcut::Dropout(d) => (d.apply(x, mode)? + f)?,
        };
        let mut y = step(&self.after, &sum)?;
        for n in &self.recursions {
            y = step(n, &(x + y)?)?;
        }
        Ok(y)
    }

    pub(crate) fn visit_parameters(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        self.branch.visit_parameters(prefix, f);
        match &self.shortcut {
            ResidualShortcut::Gate { gate, .. } => {
                gate.visit_parameters(&format!("{prefix}.gate"), f)
            }
            ResidualShortcut::Projection(p) => p.visit_parameters(&format!("{prefix}.proj"), f),
            ResidualShortcut::LearnedScale(lambda) => f(format!("{prefix}.skip.lambda"), lambda),
            _ => {}
        }
        if let Some(c) = &self.gain {
            f(format!("{prefix}.gain"), c);
        }
        self.after.visit_parameters(prefix, f);
        for n in &self.recursions {
            n.visit_parameters(prefix, f);
        }
    }

    pub(crate) fn visit_buffers(&self, prefix: &str, f: &mut dyn FnMut(String, &Var)) {
        self.branch.visit_buffers(prefix, f);
        self.after.visit_buffers(prefix, f);
        for n in &self.recursions {
            n.visit_buffers(prefix, f);
        }
    }
}
