//! Descriptions of the convolutional nets for small images of He et al. 2016a
//! ("Deep Residual Learning for Image Recognition", CVPR, §4.2): plain or
//! residual, basic or bottleneck blocks, shortcut option A or B; depth 6n + 2
//! (9n + 2 with bottleneck blocks). The nets crate builds them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::parse::serde_via_str;
use crate::{Precision, Result, SpecError, WeightInit};

/// Shortcut when a block changes the shape (He 2016a, §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shortcut {
    /// Identity with stride-2 subsampling and zero-padded channels.
    #[default]
    A,
    /// 1×1 convolution and BN.
    B,
}

/// Residual block shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConvBlock {
    /// Two 3×3 convolutions.
    #[default]
    Basic,
    /// 1×1 (narrow) → 3×3 → 1×1 (4× wide).
    Bottleneck,
}

/// A convolutional architecture: `plain` or `resnet`, with options
/// `block=basic|bottleneck` and `shortcut=a|b`, e.g. `resnet:shortcut=b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvArch {
    /// Residual (ResNet-n) or plain (plain-n).
    pub residual: bool,
    /// Basic (two 3×3) or bottleneck (1×1, 3×3, 1×1) blocks.
    pub block: ConvBlock,
    /// Shortcut where the shape changes: A (zero-padded identity) or B (projection).
    pub shortcut: Shortcut,
}

impl ConvArch {
    /// plain-n of He et al. 2016a.
    pub const PLAIN: ConvArch = ConvArch {
        residual: false,
        block: ConvBlock::Basic,
        shortcut: Shortcut::A,
    };
    /// ResNet-n of He et al. 2016a (option A, basic blocks).
    pub const RESNET: ConvArch = ConvArch {
        residual: true,
        block: ConvBlock::Basic,
        shortcut: Shortcut::A,
    };

    /// Every conv preset by name, with a line saying what it is.
    pub const PRESETS: [(&'static str, ConvArch, &'static str); 2] = [
        (
            "plain",
            Self::PLAIN,
            "He 2016a CIFAR net without shortcuts: 3×3 stem, 3 stages (16/32/64), 6n+2 layers",
        ),
        (
            "resnet",
            Self::RESNET,
            "the same with shortcuts, post-activation blocks",
        ),
    ];

    /// Every option: its key, its values, and what it sets.
    pub const OPTIONS: [(&'static str, &'static [&'static str], &'static str); 2] = [
        (
            "block",
            &["basic", "bottleneck"],
            "two 3×3 convolutions, or 1×1 → 3×3 → 1×1 with 4× expansion (9n+2 layers)",
        ),
        (
            "shortcut",
            &["a", "b"],
            "where the shape changes: A zero-padded identity, B 1×1 convolution and BN",
        ),
    ];

    /// Layers per block with weights (convolutions on the main path).
    pub fn convs_per_block(&self) -> usize {
        match self.block {
            ConvBlock::Basic => 2,
            ConvBlock::Bottleneck => 3,
        }
    }
}

impl fmt::Display for ConvArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.residual { "resnet" } else { "plain" })?;
        let mut opts = Vec::new();
        if self.block == ConvBlock::Bottleneck {
            opts.push("block=bottleneck");
        }
        if self.shortcut == Shortcut::B {
            opts.push("shortcut=b");
        }
        if !opts.is_empty() {
            write!(f, ":{}", opts.join(","))?;
        }
        Ok(())
    }
}

impl FromStr for ConvArch {
    type Err = SpecError;
    fn from_str(input: &str) -> Result<Self> {
        const WHAT: &str = "conv architecture";
        let (name, opts) = match input.trim().split_once(':') {
            Some((n, o)) => (n.trim(), Some(o)),
            None => (input.trim(), None),
        };
        let Some((_, mut a, _)) = Self::PRESETS.iter().find(|(n, ..)| *n == name).copied() else {
            let known: Vec<&str> = Self::PRESETS.iter().map(|(n, ..)| *n).collect();
            return Err(SpecError::parse(
                WHAT,
                input,
                format!("unknown name (known: {})", known.join(", ")),
            ));
        };
        for opt in opts.into_iter().flat_map(|o| o.split(',')) {
            match opt
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim().to_ascii_lowercase()))
            {
                Some(("block", v)) if v == "basic" => a.block = ConvBlock::Basic,
                Some(("block", v)) if v == "bottleneck" => a.block = ConvBlock::Bottleneck,
                Some(("shortcut", v)) if v == "a" => a.shortcut = Shortcut::A,
                Some(("shortcut", v)) if v == "b" => a.shortcut = Shortcut::B,
                _ => {
                    let known: Vec<String> = Self::OPTIONS
                        .iter()
                        .map(|(key, values, _)| format!("{key}={}", values.join("|")))
                        .collect();
                    return Err(SpecError::parse(
                        WHAT,
                        input,
                        format!("bad option `{opt}` (known: {})", known.join(", ")),
                    ));
                }
            }
        }
        Ok(a)
    }
}

serde_via_str!(ConvArch);

/// Unchecked parameters of a convolutional net.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvNetParams {
    /// Plain or residual, block and shortcut kind.
    pub arch: ConvArch,
    /// Weighted layers: 6n + 2 (basic) or 9n + 2 (bottleneck).
    pub depth: usize,
    /// Stage widths (bottleneck stages output 4× these).
    pub widths: [usize; 3],
    /// Input channels (1 for MNIST, 3 for CIFAR-10).
    pub in_channels: usize,
    /// Input height = width.
    pub image_size: usize,
    /// Output classes.
    pub classes: usize,
    /// Weight initialisation.
    pub weight_init: WeightInit,
    #[serde(rename = "dtype")]
    /// f32 or f64.
    pub precision: Precision,
    /// Seed of every weight draw (per tensor name).
    pub seed: u64,
}

impl Default for ConvNetParams {
    fn default() -> Self {
        ConvNetParams {
            arch: ConvArch::RESNET,
            depth: 20,
            widths: [16, 32, 64],
            in_channels: 3,
            image_size: 32,
            classes: 10,
            weight_init: WeightInit::He,
            precision: Precision::F32,
            seed: 0,
        }
    }
}

impl ConvNetParams {
    /// Blocks per stage n, if the depth has the form 6n + 2 (9n + 2 for bottlenecks).
    pub fn blocks_per_stage(&self) -> Option<usize> {
        let per = 3 * self.arch.convs_per_block();
        (self.depth >= per + 2 && (self.depth - 2) % per == 0).then(|| (self.depth - 2) / per)
    }

    /// Validate into a [`ConvNetSpec`]: depth of the form 6n + 2 (9n + 2), positive sizes.
    pub fn check(&self) -> Result<ConvNetSpec> {
        let per = 3 * self.arch.convs_per_block();
        if self.blocks_per_stage().is_none() {
            return Err(SpecError::invalid(
                "depth",
                format!(
                    "a {} net has {per}n + 2 layers (n ≥ 1), got {}",
                    self.arch, self.depth
                ),
            ));
        }
        if self.depth > 2000 {
            return Err(SpecError::invalid(
                "depth",
                format!("must be at most 2000, got {}", self.depth),
            ));
        }
        for (field, v, max) in [
            ("in_channels", self.in_channels, 64),
            ("image_size", self.image_size, 512),
            ("classes", self.classes, 100_000),
        ] {
            if v == 0 || v > max {
                return Err(SpecError::invalid(
                    field,
                    format!("must be 1..={max}, got {v}"),
                ));
            }
        }
        if self.widths.iter().any(|&w| w == 0 || w > 4096) {
            return Err(SpecError::invalid(
                "widths",
                format!("must be 1..=4096, got {:?}", self.widths),
            ));
        }
        if self.image_size < 4 {
            return Err(SpecError::invalid(
                "image_size",
                format!(
                    "must be at least 4 (two stride-2 stages), got {}",
                    self.image_size
                ),
            ));
        }
        Ok(ConvNetSpec(self.clone()))
    }
}

/// Validated conv-net parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ConvNetSpec(ConvNetParams);

impl std::ops::Deref for ConvNetSpec {
    type Target = ConvNetParams;
    fn deref(&self) -> &ConvNetParams {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_arch_strings_round_trip_and_bad_ones_name_the_known_forms() {
        for s in [
            "plain",
            "resnet",
            "resnet:shortcut=b",
            "resnet:block=bottleneck",
            "plain:block=bottleneck,shortcut=b",
        ] {
            assert_eq!(s.parse::<ConvArch>().unwrap().to_string(), s);
        }
        assert_eq!(
            "resnet:block=basic,shortcut=A".parse::<ConvArch>().unwrap(),
            ConvArch::RESNET
        );
        assert_eq!(
            "resnet:shortcut=c"
                .parse::<ConvArch>()
                .unwrap_err()
                .to_string(),
            "cannot parse conv architecture `resnet:shortcut=c`: bad option `shortcut=c` \
             (known: block=basic|bottleneck, shortcut=a|b)"
        );
        assert_eq!(
            "densenet".parse::<ConvArch>().unwrap_err().to_string(),
            "cannot parse conv architecture `densenet`: unknown name (known: plain, resnet)"
        );
    }
}
