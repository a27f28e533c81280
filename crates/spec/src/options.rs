//! The options of a net's blocks: the normaliser ([`Norm`]), where it sits
//! ([`Order`]), the shortcut ([`Skip`]) and the branch initialisation
//! ([`BranchInit`]); and the float precision of its tensors ([`Precision`]).
//! Each prints back in the form it parses from; `FORMS` lists those forms,
//! for error messages and the grammar's help.

use std::fmt;
use std::str::FromStr;

use crate::parse::{finite, no_arg, serde_via_str, split_call};
use crate::{FeatureNormKind, Result, SpecError};

/// The normaliser placed inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Norm {
    #[default]
    /// No normalisation.
    None,
    /// Batch normalisation over the batch axis (Ioffe & Szegedy 2015).
    Batch,
    /// Layer normalisation over the features of each sample (Ba et al. 2016).
    Layer,
    /// Group normalisation: layer norm within each of g groups of features (Wu & He 2018).
    Group(usize),
    /// RMS normalisation: x/√(mean x² + ε)·γ (Zhang & Sennrich 2019).
    Rms,
    /// Weight normalisation of every linear layer of the blocks, W = g·v/‖v‖
    /// (Salimans & Kingma 2016): a reparametrisation, no layer of its own.
    Weight,
}

impl Norm {
    /// Every norm as the grammar writes it.
    pub const FORMS: [&'static str; 6] = ["none", "bn", "ln", "gn(<groups>)", "rms", "wn"];

    /// The per-sample normaliser, for LN, GN and RMS norm.
    pub fn feature_kind(self) -> Option<FeatureNormKind> {
        match self {
            Norm::Layer => Some(FeatureNormKind::Layer),
            Norm::Group(g) => Some(FeatureNormKind::Group(g)),
            Norm::Rms => Some(FeatureNormKind::Rms),
            _ => None,
        }
    }

    /// Whether the norm is a layer of its own (BN, LN, GN, RMS norm).
    pub fn is_layer(self) -> bool {
        !matches!(self, Norm::None | Norm::Weight)
    }

    /// Trainable parameters of one norm layer over `width` features.
    pub(crate) fn parameters(self, width: u64) -> u64 {
        match self {
            Norm::Batch | Norm::Layer | Norm::Group(_) => 2 * width,
            Norm::Rms => width,
            Norm::None | Norm::Weight => 0,
        }
    }

    /// The short name a layer of this norm has in the state dict (`bn1`, `ln2` …).
    pub fn tag(self) -> &'static str {
        match self {
            Norm::Batch => "bn",
            Norm::Layer => "ln",
            Norm::Group(_) => "gn",
            Norm::Rms => "rms",
            Norm::None | Norm::Weight => "norm",
        }
    }
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Norm::None => f.write_str("none"),
            Norm::Batch => f.write_str("bn"),
            Norm::Layer => f.write_str("ln"),
            Norm::Group(g) => write!(f, "gn({g})"),
            Norm::Rms => f.write_str("rms"),
            Norm::Weight => f.write_str("wn"),
        }
    }
}

impl FromStr for Norm {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        let (name, arg) = split_call("norm", s)?;
        let norm = match name {
            "none" => Norm::None,
            "bn" | "batch" => Norm::Batch,
            "ln" | "layer" => Norm::Layer,
            "rms" => Norm::Rms,
            "wn" | "weight" => Norm::Weight,
            "gn" | "group" => {
                let g = arg
                    .and_then(|a| a.parse::<usize>().ok())
                    .filter(|&g| g >= 1)
                    .ok_or_else(|| {
                        SpecError::parse(
                            "norm",
                            s,
                            "group norm needs a whole number of groups ≥ 1, e.g. gn(4)",
                        )
                    })?;
                return Ok(Norm::Group(g));
            }
            _ => {
                return Err(SpecError::parse(
                    "norm",
                    s,
                    format!("unknown norm (known: {})", Norm::FORMS.join(", ")),
                ));
            }
        };
        no_arg("norm", s, arg)?;
        Ok(norm)
    }
}

/// Where a residual block puts its normaliser and activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// Pre-activation (He et al. 2016b): F = k × (N → φ → Linear), y = s(x) + F(x).
    #[default]
    Pre,
    /// Post-activation, the original ResNet (He et al. 2016a):
    /// F = Linear → N → φ → … → Linear → N, y = φ(s(x) + F(x)).
    Post,
    /// Post-norm, the original Transformer's placement:
    /// F = Linear → φ → … → Linear, y = N(s(x) + F(x)).
    PostNorm,
}

impl Order {
    /// Every order as the grammar writes it.
    pub const FORMS: [&'static str; 3] = ["pre", "post", "postnorm"];
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::Pre => "pre",
            Order::Post => "post",
            Order::PostNorm => "postnorm",
        })
    }
}

impl FromStr for Order {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "pre" => Ok(Order::Pre),
            "post" => Ok(Order::Post),
            "postnorm" | "post-norm" => Ok(Order::PostNorm),
            _ => Err(SpecError::parse(
                "order",
                s,
                format!("known: {}", Order::FORMS.join(", ")),
            )),
        }
    }
}

/// The shortcut of a residual block (He et al. 2016b, §3 and Table 1).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Skip {
    /// s(x) = x.
    #[default]
    Identity,
    /// s(x) = λx, constant scaling.
    Scale(f64),
    /// s(x) = λx with λ a trainable scalar starting at the given value
    /// (Liu et al. 2020: "the skip connection's scale can be learned").
    LearnedScale(f64),
    /// Exclusive gating: y = g⊙F(x) + (1 − g)⊙x, g = σ(W_g x + b_g), b_g
    /// initialised to the given value.
    Gate(f64),
    /// Shortcut-only gating: y = F(x) + (1 − g)⊙x.
    ShortcutGate(f64),
    /// A learnt projection s(x) = W_s x.
    Projection,
    /// Dropout on the shortcut with drop probability p.
    Dropout(f64),
}

impl Skip {
    /// Every shortcut as the grammar writes it.
    pub const FORMS: [&'static str; 7] = [
        "identity",
        "scale(λ)",
        "scale(learn(λ))",
        "gate(b)",
        "shortcut-gate(b)",
        "proj",
        "dropout(p)",
    ];
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Identity => f.write_str("identity"),
            Skip::Scale(v) => write!(f, "scale({v})"),
            Skip::LearnedScale(v) => write!(f, "scale(learn({v}))"),
            Skip::Gate(b) => write!(f, "gate({b})"),
            Skip::ShortcutGate(b) => write!(f, "shortcut-gate({b})"),
            Skip::Projection => f.write_str("proj"),
            Skip::Dropout(p) => write!(f, "dropout({p})"),
        }
    }
}

impl FromStr for Skip {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "skip";
        let (name, arg) = split_call(WHAT, s)?;
        let value = |default: f64| match arg {
            Some(a) => finite(WHAT, s, a),
            None => Ok(default),
        };
        let skip = match name {
            "identity" => {
                no_arg(WHAT, s, arg)?;
                Skip::Identity
            }
            "proj" | "projection" => {
                no_arg(WHAT, s, arg)?;
                Skip::Projection
            }
            "scale" => match arg {
                Some(a) => Skip::scale(WHAT, s, a)?,
                None => {
                    return Err(SpecError::parse(
                        WHAT,
                        s,
                        "scale needs λ, e.g. scale(0.5) or scale(learn(0.5))",
                    ));
                }
            },
            "gate" => Skip::Gate(value(GATE_BIAS)?),
            "shortcut-gate" => Skip::ShortcutGate(value(GATE_BIAS)?),
            "dropout" => Skip::Dropout(value(0.5)?),
            _ => {
                return Err(SpecError::parse(
                    WHAT,
                    s,
                    format!("known: {}", Skip::FORMS.join(", ")),
                ));
            }
        };
        Ok(skip.normalised())
    }
}

impl Skip {
    /// The scaled shortcut of `value`, `λ` (a constant) or `learn(λ)` (a
    /// trainable λ starting there): the argument of `scale(…)` and the value
    /// of the xskip presets' `lambda`; `input` is the whole string, for errors.
    pub(crate) fn scale(what: &'static str, input: &str, value: &str) -> Result<Skip> {
        let (name, arg) = split_call(what, value)?;
        match (name, arg) {
            ("learn", Some(a)) => Ok(Skip::LearnedScale(finite(what, input, a)?)),
            ("learn", None) => Err(SpecError::parse(
                what,
                input,
                "learn needs the initial λ, e.g. learn(0.5)",
            )),
            (_, None) => Ok(Skip::Scale(finite(what, input, value)?).normalised()),
            (_, Some(_)) => Err(SpecError::parse(
                what,
                input,
                format!("`{value}` is neither λ nor learn(λ)"),
            )),
        }
    }

    /// Whether λ is a parameter of the net (trained).
    pub fn learns_scale(self) -> bool {
        matches!(self, Skip::LearnedScale(_))
    }

    /// scale(1) is the identity: one value for one net.
    pub(crate) fn normalised(self) -> Skip {
        match self {
            Skip::Scale(1.0) => Skip::Identity,
            s => s,
        }
    }

    pub(crate) fn check(self) -> Result<()> {
        match self {
            Skip::Dropout(p) if !(0.0..1.0).contains(&p) => Err(SpecError::invalid(
                "arch",
                format!("shortcut dropout p must be in [0, 1), got {p}"),
            )),
            Skip::Scale(v) | Skip::LearnedScale(v) | Skip::Gate(v) | Skip::ShortcutGate(v)
                if !v.is_finite() =>
            {
                Err(SpecError::invalid(
                    "arch",
                    format!("skip value must be finite, got {v}"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Default gate bias of highway layers and gated shortcuts: σ(−2) ≈ 0.12, so
/// the block starts close to carrying its input (Srivastava et al. 2015).
pub const GATE_BIAS: f64 = -2.0;

/// How a residual branch is initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BranchInit {
    /// Every layer from the weight init.
    #[default]
    Standard,
    /// Fixup (Zhang et al. 2019): no norm; the inner layers of each branch
    /// scaled by L^(−1/(2k−2)) (k layers per branch, L blocks), the last layer
    /// zero, and a trainable scalar multiplier c = 1 on the branch. (Fixup's
    /// scalar biases are the linear layers' own biases here.)
    Fixup,
    /// SkipInit (De & Smith 2020): a trainable scalar multiplier c = 0 on the
    /// branch, so every block starts as its shortcut; norms are kept.
    SkipInit,
    /// ReZero (Bachlechner et al. 2020): the same multiplier c = 0, without norms.
    ReZero,
}

impl BranchInit {
    /// Every branch initialisation as the grammar writes it.
    pub const FORMS: [&'static str; 4] = ["standard", "fixup", "skipinit", "rezero"];

    /// The trainable branch multiplier's initial value, if the init adds one.
    pub fn gain(self) -> Option<f64> {
        match self {
            BranchInit::Standard => None,
            BranchInit::Fixup => Some(1.0),
            BranchInit::SkipInit | BranchInit::ReZero => Some(0.0),
        }
    }
}

impl fmt::Display for BranchInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BranchInit::Standard => "standard",
            BranchInit::Fixup => "fixup",
            BranchInit::SkipInit => "skipinit",
            BranchInit::ReZero => "rezero",
        })
    }
}

impl FromStr for BranchInit {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "standard" => Ok(BranchInit::Standard),
            "fixup" => Ok(BranchInit::Fixup),
            "skipinit" => Ok(BranchInit::SkipInit),
            "rezero" => Ok(BranchInit::ReZero),
            _ => Err(SpecError::parse(
                "init",
                s,
                format!("known for residual nets: {}", BranchInit::FORMS.join(", ")),
            )),
        }
    }
}

/// Floating-point precision of a net's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    /// 32-bit floats.
    F32,
    /// 64-bit floats (finite-difference checks, long chains).
    F64,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        })
    }
}

impl FromStr for Precision {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "f32" | "float32" => Ok(Precision::F32),
            "f64" | "float64" => Ok(Precision::F64),
            _ => Err(SpecError::parse("dtype", s, "known: f32, f64")),
        }
    }
}

serde_via_str!(Precision);
