//! Transformer encoders (Vaswani et al. 2017) as the gradient studies of
//! layer-norm placement and rank collapse need them: the arch string
//! `transformer:ln=post|pre|none|rezero|xskip|rskip,lambda=λ,skip=on|off,mlp=on|off,causal=on|off`
//! ([`TransformerArch`]), and the sizes ([`TransformerParams`] →
//! [`TransformerSpec`]).
//!
//! Where the layer norm goes, for a sublayer F (attention or feed-forward):
//! post-LN x ← LN(x + F(x)) (Vaswani et al. 2017); pre-LN x ← x + F(LN(x))
//! with a final LN before the head (Xiong et al. 2020); none x ← x + F(x);
//! ReZero x ← x + α·F(x), α learned, 0 at init (Bachlechner et al. 2021);
//! xSkip+LN x ← LN(λx + F(x)) and rSkip+LN y₁ = LN(x + F(x)),
//! yᵢ = LN(x + yᵢ₋₁) for i = 2 … λ, x ← y_λ (Liu et al. 2020). Without the
//! skip every sum loses its x (post: LN(F(x)); pre: F(LN(x)); none: F(x);
//! ReZero: α·F(x); rSkip: yᵢ = LN(yᵢ₋₁)), the pure-attention stacks of
//! Dong et al. 2021 when the MLP is off too.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::parse::{finite, serde_via_str};
use crate::{MAX_DEPTH, MAX_PARAMETERS, MAX_WIDTH, Precision, Result, SpecError};

/// Where a transformer block's layer norm goes relative to its residual sum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LnPlace {
    /// x ← LN(x + F(x)), the original Transformer.
    Post,
    /// x ← x + F(LN(x)), and a final LN before the head.
    Pre,
    /// x ← x + F(x), no layer norm anywhere.
    None,
    /// x ← x + α·F(x), α a learned scalar per sublayer, 0 at init.
    ReZero,
    /// x ← LN(λx + F(x)), Liu et al. 2020's xSkip+LN.
    XSkip {
        /// The shortcut scale λ.
        lambda: f64,
    },
    /// Liu et al. 2020's rSkip+LN: y₁ = LN(x + F(x)), yᵢ = LN(x + yᵢ₋₁)
    /// for i = 2 … λ, x ← y_λ; each of the λ layer norms has its own γ, β
    /// (as the MLP's `rskip-ln`); λ = 1 is post-LN.
    RSkip {
        /// The number of layer norms λ, 1 ..= 64.
        recursions: usize,
    },
}

/// The most recursions rSkip+LN takes (as the MLP's `rskip-ln`).
const MAX_RECURSIONS: usize = 64;

impl LnPlace {
    /// The forms of `ln=`.
    pub const FORMS: [&'static str; 6] = ["post", "pre", "none", "rezero", "xskip", "rskip"];

    /// Whether the sublayers end in a layer norm after the sum.
    pub fn is_post(self) -> bool {
        matches!(
            self,
            LnPlace::Post | LnPlace::XSkip { .. } | LnPlace::RSkip { .. }
        )
    }

    /// The name in `ln=` (without λ).
    pub fn name(self) -> &'static str {
        match self {
            LnPlace::Post => "post",
            LnPlace::Pre => "pre",
            LnPlace::None => "none",
            LnPlace::ReZero => "rezero",
            LnPlace::XSkip { .. } => "xskip",
            LnPlace::RSkip { .. } => "rskip",
        }
    }

    /// The layer norms of each sublayer (λ for rSkip+LN).
    pub fn norms_per_sublayer(self) -> usize {
        match self {
            LnPlace::Pre | LnPlace::Post | LnPlace::XSkip { .. } => 1,
            LnPlace::RSkip { recursions } => recursions,
            LnPlace::None | LnPlace::ReZero => 0,
        }
    }
}

/// A transformer block's layout: LN placement, skip and MLP sublayer on or
/// off, causal mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformerArch {
    /// Where the layer norm goes.
    pub ln: LnPlace,
    /// Whether each sublayer adds its input back (the residual).
    pub skip: bool,
    /// Whether each block has the feed-forward sublayer after attention.
    pub mlp: bool,
    /// Whether token t attends to tokens ≤ t only.
    pub causal: bool,
}

impl TransformerArch {
    /// The arch string's name.
    pub const NAME: &'static str = "transformer";
    /// The post-LN encoder of Vaswani et al. 2017.
    pub const POST: TransformerArch = TransformerArch {
        ln: LnPlace::Post,
        skip: true,
        mlp: true,
        causal: false,
    };
    /// The options of the grammar: (key, forms, what it sets).
    pub const OPTIONS: [(&'static str, &'static [&'static str], &'static str); 5] = [
        (
            "ln",
            &LnPlace::FORMS,
            "LN(x+F(x)) | x+F(LN(x)), final LN | x+F(x) | x+α·F(x), α=0 | LN(λx+F(x)) | y₁=LN(x+F(x)), yᵢ=LN(x+yᵢ₋₁) up to i=λ",
        ),
        (
            "lambda",
            &["λ"],
            "xskip: the shortcut scale (default 1); rskip: the recursions, 1..64 (default 1)",
        ),
        ("skip", &["on", "off"], "off: each sublayer drops its x"),
        ("mlp", &["on", "off"], "off: attention-only blocks"),
        (
            "causal",
            &["on", "off"],
            "on: token t attends to tokens ≤ t",
        ),
    ];
    /// One example of each kind, for the help and the tests.
    pub const VARIANTS: [&'static str; 8] = [
        "transformer",
        "transformer:ln=pre",
        "transformer:ln=none",
        "transformer:ln=rezero",
        "transformer:ln=xskip,lambda=2",
        "transformer:ln=rskip,lambda=2",
        "transformer:ln=pre,causal=on",
        "transformer:ln=none,skip=off,mlp=off",
    ];
}

impl fmt::Display for TransformerArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut opts = Vec::new();
        match self.ln {
            LnPlace::Post => {}
            LnPlace::XSkip { lambda } => {
                opts.push("ln=xskip".to_string());
                if lambda != 1.0 {
                    opts.push(format!("lambda={lambda}"));
                }
            }
            LnPlace::RSkip { recursions } => {
                opts.push("ln=rskip".to_string());
                if recursions != 1 {
                    opts.push(format!("lambda={recursions}"));
                }
            }
            other => opts.push(format!("ln={}", other.name())),
        }
        if !self.skip {
            opts.push("skip=off".into());
        }
        if !self.mlp {
            opts.push("mlp=off".into());
        }
        if self.causal {
            opts.push("causal=on".into());
        }
        write!(f, "{}", Self::NAME)?;
        if !opts.is_empty() {
            write!(f, ":{}", opts.join(","))?;
        }
        Ok(())
    }
}

fn on_off(input: &str, key: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(SpecError::parse(
            "transformer arch",
            input,
            format!("`{key}` is on or off, not `{v}`"),
        )),
    }
}

impl FromStr for TransformerArch {
    type Err = SpecError;
    fn from_str(input: &str) -> Result<Self> {
        const WHAT: &str = "transformer arch";
        let s = input.trim();
        let (name, rest) = s.split_once(':').unwrap_or((s, ""));
        if name.trim() != Self::NAME {
            return Err(SpecError::parse(
                WHAT,
                input,
                format!("the name is `{}`", Self::NAME),
            ));
        }
        let mut arch = Self::POST;
        let mut lambda = None;
        for opt in rest.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let Some((key, v)) = opt.split_once('=') else {
                return Err(SpecError::parse(
                    WHAT,
                    input,
                    format!("`{opt}` is not key=value"),
                ));
            };
            let (key, v) = (key.trim(), v.trim());
            match key {
                "ln" => {
                    arch.ln = match v {
                        "post" => LnPlace::Post,
                        "pre" => LnPlace::Pre,
                        "none" => LnPlace::None,
                        "rezero" => LnPlace::ReZero,
                        "xskip" => LnPlace::XSkip { lambda: 1.0 },
                        "rskip" => LnPlace::RSkip { recursions: 1 },
                        _ => {
                            return Err(SpecError::parse(
                                WHAT,
                                input,
                                format!("`ln` is one of {}", LnPlace::FORMS.join(", ")),
                            ));
                        }
                    }
                }
                "lambda" => lambda = Some(v),
                "skip" => arch.skip = on_off(input, key, v)?,
                "mlp" => arch.mlp = on_off(input, key, v)?,
                "causal" => arch.causal = on_off(input, key, v)?,
                _ => {
                    let keys: Vec<&str> = Self::OPTIONS.iter().map(|o| o.0).collect();
                    return Err(SpecError::parse(
                        WHAT,
                        input,
                        format!("unknown option `{key}` (options: {})", keys.join(", ")),
                    ));
                }
            }
        }
        if let Some(v) = lambda {
            match &mut arch.ln {
                LnPlace::XSkip { lambda } => *lambda = finite(WHAT, input, v)?,
                LnPlace::RSkip { recursions } => {
                    let k: usize = v.parse().ok().filter(|&k| k >= 1).ok_or_else(|| {
                        SpecError::parse(
                            WHAT,
                            input,
                            format!(
                                "rskip's lambda counts recursions: a whole number ≥ 1, got `{v}`"
                            ),
                        )
                    })?;
                    if k > MAX_RECURSIONS {
                        return Err(SpecError::parse(
                            WHAT,
                            input,
                            format!(
                                "rskip lambda (recursions) must be a whole number 1..={MAX_RECURSIONS}, got {k}"
                            ),
                        ));
                    }
                    *recursions = k;
                }
                _ => {
                    return Err(SpecError::parse(
                        WHAT,
                        input,
                        "`lambda` applies to ln=xskip and ln=rskip only",
                    ));
                }
            }
        }
        Ok(arch)
    }
}

serde_via_str!(TransformerArch);

/// Unchecked sizes of a transformer: token and learned position
/// embeddings (vocab → d), `depth` blocks of `heads`-head self-attention
/// and a feed-forward sublayer d → ff → d (ReLU), and a linear head d →
/// vocab on every token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformerParams {
    /// The block layout.
    pub arch: TransformerArch,
    /// Number of blocks L.
    pub depth: usize,
    /// Model width d.
    pub width: usize,
    /// Attention heads (d divisible by heads).
    pub heads: usize,
    /// Tokens per sequence T.
    pub seq_len: usize,
    /// Vocabulary size V (inputs are token ids 0 … V−1, outputs V logits per token).
    pub vocab: usize,
    /// Feed-forward width; 0 means 4d.
    pub ff_width: usize,
    #[serde(rename = "dtype")]
    /// f32 or f64.
    pub precision: Precision,
    /// Seed of every weight draw (per tensor name).
    pub seed: u64,
}

impl Default for TransformerParams {
    fn default() -> Self {
        TransformerParams {
            arch: TransformerArch::POST,
            depth: 4,
            width: 32,
            heads: 4,
            seq_len: 8,
            vocab: 16,
            ff_width: 0,
            precision: Precision::F32,
            seed: 0,
        }
    }
}

/// Checked transformer sizes; only these build a net.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerSpec {
    params: TransformerParams,
    /// The feed-forward width (4d when the parameters said 0).
    pub ff_width: usize,
}

impl Deref for TransformerSpec {
    type Target = TransformerParams;
    fn deref(&self) -> &TransformerParams {
        &self.params
    }
}

impl TransformerSpec {
    /// The parameters it was checked from.
    pub fn params(&self) -> &TransformerParams {
        &self.params
    }

    /// d / heads.
    pub fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    /// The same spec with another seed.
    pub fn with_seed(&self, seed: u64) -> TransformerSpec {
        let mut s = self.clone();
        s.params.seed = seed;
        s
    }
}

impl TransformerParams {
    /// Number of trainable parameters.
    pub fn num_parameters(&self) -> u64 {
        let (d, v, t) = (self.width as u64, self.vocab as u64, self.seq_len as u64);
        let ff = if self.ff_width == 0 {
            4 * d
        } else {
            self.ff_width as u64
        };
        let attn = 3 * d * d + 3 * d + d * d + d;
        let mlp = if self.arch.mlp {
            2 * d * ff + ff + d
        } else {
            0
        };
        let sublayers = 1 + u64::from(self.arch.mlp);
        let norms = match self.arch.ln {
            LnPlace::ReZero => sublayers,
            ln => 2 * d * ln.norms_per_sublayer() as u64 * sublayers,
        };
        let final_norm = if self.arch.ln == LnPlace::Pre {
            2 * d
        } else {
            0
        };
        v * d + t * d + self.depth as u64 * (attn + mlp + norms) + final_norm + d * v + v
    }

    /// Validate the sizes.
    pub fn check(&self) -> Result<TransformerSpec> {
        let range = |field: &'static str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                Err(SpecError::invalid(
                    field,
                    format!("{v} is outside {lo} … {hi}"),
                ))
            } else {
                Ok(())
            }
        };
        range("depth", self.depth, 0, MAX_DEPTH)?;
        range("width", self.width, 1, MAX_WIDTH)?;
        range("heads", self.heads, 1, self.width.max(1))?;
        range("seq_len", self.seq_len, 1, MAX_WIDTH)?;
        range("vocab", self.vocab, 2, MAX_WIDTH)?;
        range("ff_width", self.ff_width, 0, MAX_WIDTH)?;
        if self.width % self.heads != 0 {
            return Err(SpecError::invalid(
                "heads",
                format!(
                    "width {} is not divisible by {} heads",
                    self.width, self.heads
                ),
            ));
        }
        let n = self.num_parameters();
        if n > MAX_PARAMETERS {
            return Err(SpecError::invalid(
                "width",
                format!("{n} parameters, above the limit of {MAX_PARAMETERS}"),
            ));
        }
        Ok(TransformerSpec {
            params: self.clone(),
            ff_width: if self.ff_width == 0 {
                4 * self.width
            } else {
                self.ff_width
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformer_archs_round_trip_in_their_shortest_form() {
        for s in TransformerArch::VARIANTS {
            assert_eq!(s.parse::<TransformerArch>().unwrap().to_string(), s);
        }
        let a: TransformerArch = "transformer:ln=xskip,lambda=1,skip=on,mlp=off"
            .parse()
            .unwrap();
        assert_eq!(a.to_string(), "transformer:ln=xskip,mlp=off");
        assert_eq!(
            a.ln,
            LnPlace::XSkip { lambda: 1.0 },
            "λ = 1 is xskip's default"
        );
        // rSkip's λ counts layer norms; 1 is its default, and the order of
        // the options does not matter.
        for (s, k, printed) in [
            ("transformer:ln=rskip", 1, "transformer:ln=rskip"),
            ("transformer:ln=rskip,lambda=1", 1, "transformer:ln=rskip"),
            (
                "transformer:lambda=3,ln=rskip,causal=on",
                3,
                "transformer:ln=rskip,lambda=3,causal=on",
            ),
            (
                "transformer:ln=rskip,lambda=64",
                64,
                "transformer:ln=rskip,lambda=64",
            ),
        ] {
            let a: TransformerArch = s.parse().unwrap();
            assert_eq!(a.ln, LnPlace::RSkip { recursions: k }, "{s}");
            assert_eq!(a.to_string(), printed);
            assert!(a.ln.is_post() && a.ln.norms_per_sublayer() == k);
        }
    }

    #[test]
    fn bad_transformer_archs_are_refused_with_the_reason() {
        for (s, why) in [
            ("transformers", "the name"),
            ("transformer:ln=mid", "`ln` is one of"),
            ("transformer:lambda=2", "ln=xskip and ln=rskip only"),
            ("transformer:ln=pre,lambda=2", "ln=xskip and ln=rskip only"),
            ("transformer:ln=xskip,lambda=inf", "not finite"),
            ("transformer:ln=rskip,lambda=0", "a whole number ≥ 1"),
            ("transformer:ln=rskip,lambda=-1", "a whole number ≥ 1"),
            ("transformer:ln=rskip,lambda=1.5", "a whole number ≥ 1"),
            ("transformer:ln=rskip,lambda=x", "a whole number ≥ 1"),
            ("transformer:ln=rskip,lambda=65", "1..=64"),
            ("transformer:skip=maybe", "on or off"),
            ("transformer:depth=3", "unknown option"),
            ("transformer:pre", "key=value"),
        ] {
            let e = s.parse::<TransformerArch>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn sizes_are_checked_and_parameters_counted() {
        let p = TransformerParams::default();
        let s = p.check().unwrap();
        assert_eq!(s.ff_width, 128);
        assert_eq!(s.head_dim(), 8);
        // d = 32, V = 16, T = 8, ff = 128, 4 post-LN blocks:
        // embeddings 16·32 + 8·32, per block 4·32² + 4·32 (attention)
        // + 2·32·128 + 128 + 32 (MLP) + 4·32 (two LNs), head 32·16 + 16.
        let block = 4 * 32 * 32 + 4 * 32 + 2 * 32 * 128 + 128 + 32 + 4 * 32;
        assert_eq!(
            p.num_parameters(),
            16 * 32 + 8 * 32 + 4 * block + 32 * 16 + 16
        );
        // rSkip+LN(λ = 3): three LNs (2d each) per sublayer instead of one.
        let r = TransformerParams {
            arch: "transformer:ln=rskip,lambda=3".parse().unwrap(),
            ..p.clone()
        };
        assert_eq!(
            r.num_parameters(),
            p.num_parameters() + 4 * 2 * (2 * 2 * 32)
        );
        let bad = TransformerParams {
            heads: 5,
            ..p.clone()
        };
        assert!(bad.check().unwrap_err().to_string().contains("divisible"));
        let bad = TransformerParams { vocab: 1, ..p };
        assert!(bad.check().is_err());
    }
}
