//! Net specifications: unchecked [`NetParams`] come in from the command line or
//! a TOML file, [`NetParams::check`] turns them into a [`NetSpec`], and only a
//! `NetSpec` can build a net.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use candle_core::DType;
use serde::{Deserialize, Serialize};

use crate::parse::{finite, serde_via_str};
use crate::{Activation, BiasInit, NetError, Result, WeightInit};

/// The normaliser placed inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Norm {
    #[default]
    /// No normalisation.
    None,
    /// Batch normalisation over the batch axis (Ioffe & Szegedy 2015).
    Batch,
}

impl fmt::Display for Norm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Norm::None => "none",
            Norm::Batch => "bn",
        })
    }
}

impl FromStr for Norm {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "none" => Ok(Norm::None),
            "bn" | "batch" => Ok(Norm::Batch),
            _ => Err(NetError::parse("norm", s, "unknown norm (known: none, bn)")),
        }
    }
}

/// The kind of block a net stacks between its linear stem and linear head.
///
/// Written as a preset name with optional `key=value` options, e.g. `plain-bn`,
/// `resnet-bn`, `resnet-bn:alpha=0.5`, `resnet:branch=1,norm=bn`:
///
/// | preset | block |
/// |---|---|
/// | `plain` | Linear → φ |
/// | `plain-bn` | Linear → BN → φ |
/// | `resnet` | x + α·F(x), F = φ → Linear → φ → Linear |
/// | `resnet-bn` | x + α·F(x), F = BN → φ → Linear → BN → φ → Linear (pre-activation, He 2016b) |
/// | `resnet1` | x + α·F(x), F = φ → Linear |
/// | `resnet1-bn` | x + α·F(x), F = BN → φ → Linear |
///
/// Options: `norm=none|bn`, `branch=<layers in F, 1..=8>` (residual only),
/// `alpha=<branch scale α>` (residual only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arch {
    /// Linear → (BN) → ReLU per block.
    Plain {
        /// Normaliser after each linear layer.
        norm: Norm,
    },
    /// x + α·F(x), F a pre-activation branch of `branch` layers.
    Residual {
        /// Layers in the branch (1 or 2).
        branch: usize,
        /// Normaliser before each activation of the branch.
        norm: Norm,
        /// Branch scale α.
        alpha: f64,
    },
}

const PRESETS: &str = "plain, plain-bn, resnet, resnet-bn, resnet1, resnet1-bn";

impl Arch {
    /// `plain`: Linear → ReLU.
    pub const PLAIN: Arch = Arch::Plain { norm: Norm::None };
    /// `plain-bn`: Linear → BN → ReLU.
    pub const PLAIN_BN: Arch = Arch::Plain { norm: Norm::Batch };
    /// `resnet`: x + F(x), F = ReLU → Linear → ReLU → Linear.
    pub const RESNET: Arch = Arch::residual(2, Norm::None);
    /// `resnet-bn`: F = BN → ReLU → Linear → BN → ReLU → Linear.
    pub const RESNET_BN: Arch = Arch::residual(2, Norm::Batch);
    /// `resnet1-bn`: F = BN → ReLU → Linear.
    pub const RESNET1_BN: Arch = Arch::residual(1, Norm::Batch);

    const fn residual(branch: usize, norm: Norm) -> Arch {
        Arch::Residual {
            branch,
            norm,
            alpha: 1.0,
        }
    }

    /// The five architectures of the shattered-gradients study.
    pub fn shattered_defaults() -> Vec<Arch> {
        vec![
            Self::PLAIN,
            Self::PLAIN_BN,
            Self::RESNET,
            Self::RESNET_BN,
            Self::RESNET1_BN,
        ]
    }

    /// The normaliser the arch uses.
    pub fn norm(&self) -> Norm {
        match *self {
            Arch::Plain { norm } | Arch::Residual { norm, .. } => norm,
        }
    }

    /// Whether blocks have an identity shortcut.
    pub fn is_residual(&self) -> bool {
        matches!(self, Arch::Residual { .. })
    }

    /// Linear layers per block.
    pub fn layers_per_block(&self) -> usize {
        match *self {
            Arch::Plain { .. } => 1,
            Arch::Residual { branch, .. } => branch,
        }
    }

    fn preset_name(&self) -> (&'static str, bool) {
        match *self {
            Arch::Plain { norm: Norm::None } => ("plain", true),
            Arch::Plain { norm: Norm::Batch } => ("plain-bn", true),
            Arch::Residual { branch, norm, .. } => match (branch, norm) {
                (2, Norm::None) => ("resnet", true),
                (2, Norm::Batch) => ("resnet-bn", true),
                (1, Norm::None) => ("resnet1", true),
                (1, Norm::Batch) => ("resnet1-bn", true),
                _ => ("resnet", false),
            },
        }
    }

    fn check(&self) -> Result<()> {
        if let Arch::Residual { branch, alpha, .. } = *self {
            if !(1..=8).contains(&branch) {
                return Err(NetError::invalid(
                    "arch",
                    format!("branch must be 1..=8 layers, got {branch}"),
                ));
            }
            if !alpha.is_finite() {
                return Err(NetError::invalid(
                    "arch",
                    format!("alpha must be finite, got {alpha}"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, exact) = self.preset_name();
        f.write_str(name)?;
        let mut opts = Vec::new();
        if let Arch::Residual {
            branch,
            norm,
            alpha,
        } = *self
        {
            if !exact {
                opts.push(format!("branch={branch}"));
                opts.push(format!("norm={norm}"));
            }
            if alpha != 1.0 {
                opts.push(format!("alpha={alpha}"));
            }
        }
        if !opts.is_empty() {
            write!(f, ":{}", opts.join(","))?;
        }
        Ok(())
    }
}

impl FromStr for Arch {
    type Err = NetError;
    fn from_str(input: &str) -> Result<Self> {
        const WHAT: &str = "architecture";
        let (name, opts) = match input.trim().split_once(':') {
            Some((n, o)) => (n.trim(), Some(o)),
            None => (input.trim(), None),
        };
        let mut arch = match name {
            "plain" => Self::PLAIN,
            "plain-bn" => Self::PLAIN_BN,
            "resnet" => Self::RESNET,
            "resnet-bn" => Self::RESNET_BN,
            "resnet1" => Self::residual(1, Norm::None),
            "resnet1-bn" => Self::RESNET1_BN,
            _ => {
                return Err(NetError::parse(
                    WHAT,
                    input,
                    format!("unknown name (known: {PRESETS})"),
                ));
            }
        };
        for opt in opts.into_iter().flat_map(|o| o.split(',')) {
            let Some((key, value)) = opt.split_once('=') else {
                return Err(NetError::parse(
                    WHAT,
                    input,
                    format!("option `{opt}` is not key=value"),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            match (&mut arch, key) {
                (Arch::Plain { norm } | Arch::Residual { norm, .. }, "norm") => {
                    *norm = value.parse()?
                }
                (Arch::Residual { branch, .. }, "branch") => {
                    *branch = value.parse().map_err(|_| {
                        NetError::parse(
                            WHAT,
                            input,
                            format!("branch `{value}` is not a whole number"),
                        )
                    })?;
                }
                (Arch::Residual { alpha, .. }, "alpha") => *alpha = finite(WHAT, input, value)?,
                _ => {
                    return Err(NetError::parse(
                        WHAT,
                        input,
                        format!(
                            "unknown option `{key}` for {name} (known: norm{})",
                            if arch.is_residual() {
                                ", branch, alpha"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
        }
        arch.check()?;
        Ok(arch)
    }
}

serde_via_str!(Arch);

/// Floating-point precision of a net's tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    /// 32-bit floats.
    F32,
    /// 64-bit floats (finite-difference checks, long chains).
    F64,
}

impl Precision {
    /// The candle dtype.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
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
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "f32" | "float32" => Ok(Precision::F32),
            "f64" | "float64" => Ok(Precision::F64),
            _ => Err(NetError::parse("dtype", s, "known: f32, f64")),
        }
    }
}

serde_via_str!(Precision);

/// Largest net gradscope builds: 2^30 parameters, 4 GiB of f32 weights before
/// any activation or gradient is stored.
pub const MAX_PARAMETERS: u64 = 1 << 30;
/// Largest depth accepted.
pub const MAX_DEPTH: usize = 10_000;
/// Largest width (and input/output dimension) accepted.
pub const MAX_WIDTH: usize = 1 << 16;

/// Unchecked parameters of an MLP: a linear stem (input_dim → width), `depth`
/// blocks of kind `arch`, and a linear head (width → output_dim).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetParams {
    /// Architecture family and options.
    pub arch: Arch,
    /// Number of blocks L.
    pub depth: usize,
    /// Hidden width W.
    pub width: usize,
    /// Input dimension (1: a scalar on a grid).
    pub input_dim: usize,
    /// Output dimension.
    pub output_dim: usize,
    /// Hidden activation φ.
    pub activation: Activation,
    /// Weight initialisation.
    pub weight_init: WeightInit,
    /// Bias initialisation.
    pub bias_init: BiasInit,
    #[serde(rename = "dtype")]
    /// f32 or f64.
    pub precision: Precision,
    /// Seed of every weight draw (per tensor name).
    pub seed: u64,
}

impl Default for NetParams {
    fn default() -> Self {
        NetParams {
            arch: Arch::RESNET_BN,
            depth: 8,
            width: 200,
            input_dim: 1,
            output_dim: 1,
            activation: Activation::Relu,
            weight_init: WeightInit::He,
            bias_init: BiasInit::Torch,
            precision: Precision::F32,
            seed: 0,
        }
    }
}

impl NetParams {
    /// Defaults for `arch`.
    pub fn new(arch: Arch) -> Self {
        NetParams {
            arch,
            ..Default::default()
        }
    }

    /// Number of trainable parameters (weights, biases, norm scales and shifts),
    /// counted from the same layout [`Mlp::new`](crate::Mlp::new) builds.
    pub fn parameter_count(&self) -> u64 {
        let (w, i, o) = (
            self.width as u64,
            self.input_dim as u64,
            self.output_dim as u64,
        );
        let bn = u64::from(self.arch.norm() == Norm::Batch);
        // A linear layer followed by BN has no bias: BN's shift replaces it.
        let per_block = match self.arch {
            Arch::Plain { .. } => w * w + (1 - bn) * w + bn * 2 * w,
            Arch::Residual { branch, .. } => {
                let k = branch as u64;
                let fc_biases = if bn == 1 { 1 } else { k };
                k * w * w + fc_biases * w + bn * k * 2 * w
            }
        };
        let stem_bias = u64::from(self.arch != Arch::PLAIN_BN);
        (i + stem_bias) * w + self.depth as u64 * per_block + (w + 1) * o
    }

    /// Validate every field; the only way to a [`NetSpec`].
    pub fn check(&self) -> Result<NetSpec> {
        let range = |field: &'static str, v: usize, max: usize| {
            if v == 0 {
                Err(NetError::invalid(field, "must be at least 1, got 0"))
            } else if v > max {
                Err(NetError::invalid(
                    field,
                    format!("must be at most {max}, got {v}"),
                ))
            } else {
                Ok(())
            }
        };
        range("depth", self.depth, MAX_DEPTH)?;
        range("width", self.width, MAX_WIDTH)?;
        range("input_dim", self.input_dim, MAX_WIDTH)?;
        range("output_dim", self.output_dim, MAX_WIDTH)?;
        self.arch.check()?;
        self.weight_init.check()?;
        self.bias_init.check()?;
        let n = self.parameter_count();
        if n > MAX_PARAMETERS {
            return Err(NetError::invalid(
                "size",
                format!(
                    "{} × width {} has {n} parameters ({:.1} GiB in {}), above the limit of {MAX_PARAMETERS}",
                    self.depth,
                    self.width,
                    n as f64
                        * if self.precision == Precision::F32 {
                            4.0
                        } else {
                            8.0
                        }
                        / (1u64 << 30) as f64,
                    self.precision
                ),
            ));
        }
        Ok(NetSpec(self.clone()))
    }
}

/// Validated net parameters. Read its fields through `Deref` to [`NetParams`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct NetSpec(NetParams);

impl Deref for NetSpec {
    type Target = NetParams;
    fn deref(&self) -> &NetParams {
        &self.0
    }
}

impl NetSpec {
    /// The same net cut to its first `depth` blocks (same seed, so the same
    /// weights for the blocks it keeps, and the same stem and head).
    pub fn with_depth(&self, depth: usize) -> Result<NetSpec> {
        NetParams {
            depth,
            ..self.0.clone()
        }
        .check()
    }

    /// The same spec with another seed.
    pub fn with_seed(&self, seed: u64) -> NetSpec {
        NetSpec(NetParams {
            seed,
            ..self.0.clone()
        })
    }

    /// The validated parameters.
    pub fn params(&self) -> &NetParams {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_strings_round_trip() {
        for s in [
            "plain",
            "plain-bn",
            "resnet",
            "resnet-bn",
            "resnet1",
            "resnet1-bn",
            "resnet-bn:alpha=0.5",
            "resnet:branch=3,norm=bn",
        ] {
            assert_eq!(s.parse::<Arch>().unwrap().to_string(), s);
        }
        assert_eq!(
            "resnet:branch=1,norm=bn".parse::<Arch>().unwrap(),
            Arch::RESNET1_BN
        );
        assert_eq!("plain:norm=bn".parse::<Arch>().unwrap(), Arch::PLAIN_BN);
    }

    #[test]
    fn bad_arch_strings_are_errors() {
        for s in [
            "",
            "mlp",
            "plain:alpha=2",
            "resnet:branch=0",
            "resnet:branch=x",
            "resnet:alpha=nan",
            "resnet:alpha",
            "resnet:norm=gn",
            "resnet:depth=3",
        ] {
            let err = s.parse::<Arch>().unwrap_err().to_string();
            assert!(!err.is_empty() && !err.contains('\n'), "{s}: {err}");
        }
    }

    #[test]
    fn check_rejects_out_of_range_sizes() {
        let ok = NetParams::default();
        assert!(ok.check().is_ok());
        for bad in [
            NetParams {
                depth: 0,
                ..ok.clone()
            },
            NetParams {
                width: 0,
                ..ok.clone()
            },
            NetParams {
                input_dim: 0,
                ..ok.clone()
            },
            NetParams {
                depth: MAX_DEPTH + 1,
                ..ok.clone()
            },
            NetParams {
                width: 40_000,
                depth: 1000,
                ..ok.clone()
            },
            NetParams {
                weight_init: WeightInit::Normal { sigma_w2: -1.0 },
                ..ok.clone()
            },
            NetParams {
                bias_init: BiasInit::Normal { std: f64::NAN },
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.check(), Err(NetError::InvalidParam { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parameter_count_matches_the_formula() {
        // resnet-bn, width 4, depth 2, 1 → 1: stem 4+4; per block two 4×4
        // weights, two BNs of 4+4, one bias of 4 (fc2): 52; head 4+1.
        let p = NetParams {
            width: 4,
            depth: 2,
            ..Default::default()
        };
        assert_eq!(p.parameter_count(), 8 + 2 * 52 + 5);
    }
}
