//! The architecture of an MLP's blocks ([`Arch`]) and its validation.

use crate::{BranchInit, Norm, Order, Result, Skip, SpecError};

/// The kind of block a net stacks between its linear stem and linear head.
///
/// Written as a preset name with optional `key=value` options, e.g. `plain-bn`,
/// `resnet-bn:alpha=0.5`, `resnet:order=post,norm=bn`, `xskip-ln:lambda=0.5`
/// (the full list: `gradscope archs`, or [`Arch::PRESETS`]):
///
/// | preset | block |
/// |---|---|
/// | `plain` | Linear → φ |
/// | `plain-bn` | Linear → BN → φ |
/// | `looks-linear` | CReLU → Linear with mirrored weights [M, −M] (Balduzzi et al. 2017) |
/// | `resnet` | x + α·F(x), F = φ → Linear → φ → Linear |
/// | `resnet-bn` | x + α·F(x), F = BN → φ → Linear → BN → φ → Linear (pre-activation, He 2016b) |
/// | `resnet1` | x + α·F(x), F = φ → Linear |
/// | `resnet1-bn` | x + α·F(x), F = BN → φ → Linear |
/// | `highway` | H(x)·T(x) + x·(1 − T(x)), H = φ(Linear x), T = σ(Linear x), T's bias −2 |
/// | `xskip` | λx + F(x), F = Linear → φ → Linear (Liu et al. 2020) |
/// | `xskip-ln` | LN(λx + F(x)) |
/// | `rskip-ln` | y₁ = LN(x + F(x)), yᵢ = LN(x + yᵢ₋₁), i ≤ λ |
///
/// Options (the full list with their value forms: [`grammar_help`](crate::grammar_help)),
/// plain: `norm`, `init=standard|looks-linear`. Residual:
/// `norm=none|bn|ln|gn(g)|rms|wn`, `order=pre|post|postnorm`, `branch=1..8`,
/// `bottleneck=r` (inner width W/r), `alpha=<branch scale>`,
/// `skip=identity|scale(λ)|scale(learn(λ))|gate(b)|shortcut-gate(b)|proj|dropout(p)`,
/// `init=standard|fixup|skipinit|rezero`; `lambda` for the xskip and rskip
/// presets (`xskip-ln:lambda=learn(2)`: a trainable λ from 2, as Liu et al.
/// 2020 suggest). Highway: `bias=<gate bias>`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    /// Linear → (N) → φ per block; or CReLU → Linear → (N) with looks-linear weights.
    Plain {
        /// Normaliser after each linear layer.
        norm: Norm,
        /// Looks-linear init (Balduzzi et al. 2017): CReLU and mirrored weights,
        /// so the net is linear at initialisation.
        looks_linear: bool,
    },
    /// y = s(x) + α·F(x), F a branch of `branch` linear layers.
    Residual {
        /// Where the norm and activation sit.
        order: Order,
        /// Layers in the branch (1 to 8).
        branch: usize,
        /// Bottleneck ratio r: the branch's inner width is W/r (1: no bottleneck).
        bottleneck: usize,
        /// Normaliser of the branch (post-norm: after the sum).
        norm: Norm,
        /// Branch scale α.
        alpha: f64,
        /// The shortcut.
        skip: Skip,
        /// Branch initialisation (Fixup, SkipInit, ReZero).
        init: BranchInit,
        /// Post-norm recursions: y₁ = N(s(x) + F(x)), yᵢ = N(x + yᵢ₋₁) for
        /// i ≤ `repeat` (Liu et al. 2020's rSkip; 1: a plain post-norm block).
        repeat: usize,
    },
    /// Highway layer y = H(x)·T(x) + x·(1 − T(x)) (Srivastava et al. 2015),
    /// H = φ(W_H x + b_H), T = σ(W_T x + b_T).
    Highway {
        /// The initial gate bias b_T (negative: start by carrying x).
        gate_bias: f64,
    },
}

impl Arch {
    /// The normaliser the arch uses.
    pub fn norm(&self) -> Norm {
        match *self {
            Arch::Plain { norm, .. } | Arch::Residual { norm, .. } => norm,
            Arch::Highway { .. } => Norm::None,
        }
    }

    /// Whether blocks have a shortcut.
    pub fn is_residual(&self) -> bool {
        !matches!(self, Arch::Plain { .. })
    }

    /// Linear layers per block (not counting gates and projections).
    pub fn layers_per_block(&self) -> usize {
        match *self {
            Arch::Plain { .. } | Arch::Highway { .. } => 1,
            Arch::Residual { branch, .. } => branch,
        }
    }

    /// Validate what does not depend on the width.
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |reason: String| Err(SpecError::invalid("arch", reason));
        let norm = self.norm();
        if let Norm::Group(0) = norm {
            return bad("group norm needs at least 1 group".into());
        }
        match *self {
            Arch::Plain { .. } => {}
            Arch::Highway { gate_bias } => {
                if !gate_bias.is_finite() {
                    return bad(format!("gate bias must be finite, got {gate_bias}"));
                }
            }
            Arch::Residual {
                order,
                branch,
                bottleneck,
                alpha,
                skip,
                init,
                repeat,
                ..
            } => {
                if !(1..=8).contains(&branch) {
                    return bad(format!("branch must be 1..=8 layers, got {branch}"));
                }
                if bottleneck == 0 || (bottleneck > 1 && branch < 2) {
                    return bad(format!(
                        "bottleneck must be ≥ 1, and > 1 only with branch ≥ 2, got {bottleneck} with branch {branch}"
                    ));
                }
                if !alpha.is_finite() {
                    return bad(format!("alpha must be finite, got {alpha}"));
                }
                skip.check()?;
                if !(1..=64).contains(&repeat) {
                    return bad(format!(
                        "rskip lambda (recursions) must be a whole number 1..=64, got {repeat}"
                    ));
                }
                if repeat > 1 && !(order == Order::PostNorm && norm.is_layer()) {
                    return bad("recursions need the post-norm order and a norm layer".into());
                }
                if matches!(init, BranchInit::Fixup | BranchInit::ReZero) && norm != Norm::None {
                    return bad(format!(
                        "{init} replaces normalisation: use norm=none, not {norm}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Validate what depends on the width W: group counts and bottleneck ratios dividing it.
    pub(crate) fn check_width(&self, width: usize) -> Result<()> {
        let mut widths = vec![width];
        if let Arch::Residual { bottleneck, .. } = *self {
            if width % bottleneck != 0 {
                return Err(SpecError::invalid(
                    "arch",
                    format!("bottleneck {bottleneck} does not divide the width {width}"),
                ));
            }
            widths.push(width / bottleneck);
        }
        if let Norm::Group(g) = self.norm()
            && let Some(w) = widths.iter().find(|&&w| w % g != 0)
        {
            return Err(SpecError::invalid(
                "arch",
                format!("group norm's {g} groups do not divide the width {w}"),
            ));
        }
        Ok(())
    }
}
