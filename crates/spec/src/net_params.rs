//! Net specifications: unchecked [`NetParams`] come in from the command line or
//! a TOML file, [`NetParams::check`] turns them into a [`NetSpec`], and only a
//! `NetSpec` can build a net.

use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::{
    Activation, Arch, BiasInit, Norm, Order, Precision, Result, Skip, SpecError, Step, WeightInit,
};

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
    /// counted from the same layout ([`Arch::block_steps`]) the nets crate builds.
    pub fn parameter_count(&self) -> u64 {
        let (w, i, o) = (
            self.width as u64,
            self.input_dim as u64,
            self.output_dim as u64,
        );
        let norm = self.arch.norm();
        let wn = u64::from(norm == Norm::Weight);
        let steps: u64 = self
            .arch
            .block_steps(self.width)
            .iter()
            .map(|s| match *s {
                Step::Fc {
                    fan_in,
                    fan_out,
                    bias,
                    ..
                } => {
                    let (fi, fo) = (fan_in as u64, fan_out as u64);
                    fi * fo + u64::from(bias) * fo + wn * fo
                }
                Step::Norm { width, .. } => norm.parameters(width as u64),
                Step::Act { .. } | Step::CRelu => 0,
            })
            .sum();
        let extra = match self.arch {
            Arch::Plain { .. } => 0,
            Arch::Highway { .. } => w * w + w,
            Arch::Residual {
                order,
                skip,
                init,
                repeat,
                ..
            } => {
                let shortcut = match skip {
                    Skip::Gate(_) | Skip::ShortcutGate(_) => w * w + w,
                    Skip::Projection => w * w,
                    Skip::LearnedScale(_) => 1,
                    _ => 0,
                };
                let post = if order == Order::PostNorm {
                    repeat as u64 * norm.parameters(w)
                } else {
                    0
                };
                shortcut + post + u64::from(init.gain().is_some())
            }
        };
        let stem_bias = u64::from(self.arch.stem_bias());
        (i + stem_bias) * w + self.depth as u64 * (steps + extra) + (w + 1) * o
    }

    /// Validate every field; the only way to a [`NetSpec`].
    pub fn check(&self) -> Result<NetSpec> {
        let range = |field: &'static str, v: usize, max: usize| {
            if v == 0 {
                Err(SpecError::invalid(field, "must be at least 1, got 0"))
            } else if v > max {
                Err(SpecError::invalid(
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
        self.arch.check_width(self.width)?;
        self.weight_init.check()?;
        self.bias_init.check()?;
        let n = self.parameter_count();
        if n > MAX_PARAMETERS {
            return Err(SpecError::invalid(
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
            NetParams {
                arch: "resnet:norm=gn(3)".parse().unwrap(),
                width: 8,
                ..ok.clone()
            },
            NetParams {
                arch: "resnet:norm=gn(4),bottleneck=4".parse().unwrap(),
                width: 8,
                ..ok.clone()
            },
            NetParams {
                arch: "resnet-bn:bottleneck=3".parse().unwrap(),
                width: 8,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.check(), Err(SpecError::InvalidParam { .. })),
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
