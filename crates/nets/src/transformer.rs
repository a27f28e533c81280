//! A transformer encoder (Vaswani et al. 2017) from candle's basic ops, so
//! that every op records its backward pass: softmax as exp / sum / div with
//! the (detached) row maximum subtracted, layer norm from mean and variance.
//!
//! Layout as a [`BlockNet`](crate::BlockNet): the stem embeds the token ids,
//! h₀ = E[ids] + P (token and learned position embeddings); each block is
//! attention then (optionally) the feed-forward sublayer, with the residual
//! and layer norm placed as the [`TransformerArch`] says; the head is the
//! final LN (pre-LN only) and a linear map to V logits on every token.
//!
//! A batch row: the input is T token ids stored as floats (B × T); each
//! hidden state is (B, T, d), flattened per example to T·d values, token
//! after token; the output is (B, T, V), flattened to T·V.
//!
//! Under PyTorch's `nn.TransformerEncoderLayer` `state_dict` names, every
//! block weight Xavier uniform, U(±√(6/(fan_in + fan_out))), and every block
//! bias 0 — the initialisation Xiong et al. 2020 analyse (and fairseq's),
//! so each sublayer adds a contribution of the order of its input:
//! `embed.weight` and `pos_embed.weight` N(0, 1);
//! `layers.{l}.self_attn.in_proj_weight` (3d × d, Xavier as one matrix, as
//! PyTorch) and `in_proj_bias`; `self_attn.out_proj.{weight, bias}`;
//! `linear1`, `linear2`; `norm1`, `norm2` (γ = 1, β = 0), and rSkip+LN's
//! further norms of recursion i = 2 … λ `norm1_i`, `norm2_i`; ReZero's
//! `alpha1`, `alpha2` (0); the final `norm` (pre-LN) and `head` (PyTorch's
//! `nn.Linear` default, U(±1/√d)).

use candle_core::{D, DType, Device, Tensor, Var};
use rand::Rng;

use crate::{
    BnMode, LnPlace, Model, NetError, PrecisionExt, Result, TransformerArch, TransformerSpec,
    tensor_rng,
};

/// The ε of every layer norm (PyTorch's default).
pub const LN_EPS: f64 = 1e-5;

/// A score added where the causal mask hides a token: exp of it is 0.
const MASKED: f64 = -1e30;

/// Layer norm over the last axis: γ ⊙ (x − μ)/√(σ² + ε) + β, σ² the biased
/// variance (Ba et al. 2016).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// γ (d).
    pub weight: Var,
    /// β (d).
    pub bias: Var,
}

impl LayerNorm {
    /// Normalise each row of the last axis.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mu = x.mean_keepdim(D::Minus1)?;
        let c = x.broadcast_sub(&mu)?;
        let var = c.sqr()?.mean_keepdim(D::Minus1)?;
        let n = c.broadcast_div(&(var + LN_EPS)?.sqrt()?)?;
        Ok(n.broadcast_mul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

/// y = x Wᵀ + b on the last axis of a (B, T, n) tensor.
fn affine(x: &Tensor, w: &Var, b: &Var) -> Result<Tensor> {
    Ok(x.broadcast_matmul(&w.as_tensor().t()?)?
        .broadcast_add(b.as_tensor())?)
}

/// Multi-head scaled dot-product self-attention (Vaswani et al. 2017):
/// [q k v] = x W_inᵀ + b_in, per head softmax(q kᵀ/√d_h + M) v, heads
/// concatenated and projected by W_out; M = −∞ above the diagonal when
/// causal, else 0.
#[derive(Clone, Debug)]
pub struct Attention {
    /// W_in (3d × d): rows 0…d−1 give q, then k, then v.
    pub in_proj_weight: Var,
    /// b_in (3d).
    pub in_proj_bias: Var,
    /// W_out (d × d).
    pub out_proj_weight: Var,
    /// b_out (d).
    pub out_proj_bias: Var,
    /// Number of heads.
    pub heads: usize,
    /// Whether token t sees tokens ≤ t only.
    pub causal: bool,
}

impl Attention {
    /// x: (B, T, d) → (B, T, d).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let h = self.heads;
        let dh = d / h;
        let qkv = affine(x, &self.in_proj_weight, &self.in_proj_bias)?;
        // (B, T, d) → (B, H, T, d_h)
        let split = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i * d, d)?
                .reshape((b, t, h, dh))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let mut scores = (q.matmul(&k.transpose(2, 3)?.contiguous()?)? / (dh as f64).sqrt())?;
        if self.causal {
            let mask: Vec<f64> = (0..t * t)
                .map(|i| if i % t > i / t { MASKED } else { 0.0 })
                .collect();
            let mask = Tensor::from_vec(mask, (t, t), x.device())?.to_dtype(x.dtype())?;
            scores = scores.broadcast_add(&mask)?;
        }
        let p = softmax_last(&scores)?;
        let o = p
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, d))?;
        affine(&o, &self.out_proj_weight, &self.out_proj_bias)
    }
}

/// softmax over the last axis from exp, sum and div; the row maximum is
/// subtracted for range and detached (softmax does not depend on it).
pub fn softmax_last(s: &Tensor) -> Result<Tensor> {
    let m = s.max_keepdim(D::Minus1)?.detach();
    let e = s.broadcast_sub(&m)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// The feed-forward sublayer W₂ ReLU(W₁x + b₁) + b₂.
#[derive(Clone, Debug)]
pub struct FeedForward {
    /// W₁ (ff × d), b₁.
    pub linear1: (Var, Var),
    /// W₂ (d × ff), b₂.
    pub linear2: (Var, Var),
}

impl FeedForward {
    /// x: (B, T, d) → (B, T, d).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = affine(x, &self.linear1.0, &self.linear1.1)?.relu()?;
        affine(&h, &self.linear2.0, &self.linear2.1)
    }
}

/// How a sublayer's output joins its input.
#[derive(Clone, Debug)]
pub enum Join {
    /// LN(λx + F(x)) (post-LN: λ = 1).
    Post(LayerNorm, f64),
    /// x + F(LN(x)).
    Pre(LayerNorm),
    /// x + F(x).
    Plain,
    /// x + α·F(x).
    ReZero(Var),
    /// Liu et al. 2020's rSkip+LN with λ = the number of norms:
    /// y₁ = LN₁(x + F(x)), yᵢ = LNᵢ(x + yᵢ₋₁) for i = 2 … λ, output y_λ;
    /// each LNᵢ its own γ, β (as the MLP's `rskip-ln`).
    RSkip(Vec<LayerNorm>),
}

/// The state-dict name of sublayer k's i-th layer norm (i from 1):
/// `norm{k}`, then rSkip's `norm{k}_{i}`.
pub fn norm_name(prefix: &str, k: usize, i: usize) -> String {
    if i == 1 {
        format!("{prefix}.norm{k}")
    } else {
        format!("{prefix}.norm{k}_{i}")
    }
}

/// One sublayer with its residual and layer norm.
#[derive(Clone, Debug)]
pub struct Sublayer<F> {
    /// The map F.
    pub f: F,
    /// How F(x) and x are joined.
    pub join: Join,
    /// Whether x is added back at all.
    pub skip: bool,
}

impl<F> Sublayer<F> {
    fn forward(&self, x: &Tensor, f: impl Fn(&F, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
        Ok(match &self.join {
            Join::Post(ln, lambda) => {
                let y = f(&self.f, x)?;
                ln.forward(&if self.skip { ((x * *lambda)? + y)? } else { y })?
            }
            Join::Pre(ln) => {
                let y = f(&self.f, &ln.forward(x)?)?;
                if self.skip { (x + y)? } else { y }
            }
            Join::Plain => {
                let y = f(&self.f, x)?;
                if self.skip { (x + y)? } else { y }
            }
            Join::ReZero(alpha) => {
                let y = f(&self.f, x)?.broadcast_mul(alpha.as_tensor())?;
                if self.skip { (x + y)? } else { y }
            }
            Join::RSkip(norms) => {
                let mut y = f(&self.f, x)?;
                for ln in norms {
                    y = ln.forward(&if self.skip { (x + y)? } else { y })?;
                }
                y
            }
        })
    }

    fn visit(&self, prefix: &str, k: usize, out: &mut Vec<(String, Var)>) {
        match &self.join {
            Join::Post(ln, _) | Join::Pre(ln) => {
                out.push((format!("{prefix}.norm{k}.weight"), ln.weight.clone()));
                out.push((format!("{prefix}.norm{k}.bias"), ln.bias.clone()));
            }
            Join::RSkip(norms) => {
                for (i, ln) in norms.iter().enumerate() {
                    let name = norm_name(prefix, k, i + 1);
                    out.push((format!("{name}.weight"), ln.weight.clone()));
                    out.push((format!("{name}.bias"), ln.bias.clone()));
                }
            }
            Join::ReZero(a) => out.push((format!("{prefix}.alpha{k}"), a.clone())),
            Join::Plain => {}
        }
    }
}

/// One transformer block: attention, then the feed-forward sublayer.
#[derive(Clone, Debug)]
pub struct TransformerBlock {
    /// Self-attention with its join.
    pub attn: Sublayer<Attention>,
    /// The feed-forward sublayer, when the arch has it.
    pub mlp: Option<Sublayer<FeedForward>>,
}

impl TransformerBlock {
    /// (B, T, d) → (B, T, d).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.attn.forward(x, |a, x| a.forward(x))?;
        match &self.mlp {
            Some(m) => m.forward(&h, |f, x| f.forward(x)),
            None => Ok(h),
        }
    }

    fn parameters(&self, l: usize, out: &mut Vec<(String, Var)>) {
        let p = format!("layers.{l}");
        let a = &self.attn.f;
        out.push((
            format!("{p}.self_attn.in_proj_weight"),
            a.in_proj_weight.clone(),
        ));
        out.push((
            format!("{p}.self_attn.in_proj_bias"),
            a.in_proj_bias.clone(),
        ));
        out.push((
            format!("{p}.self_attn.out_proj.weight"),
            a.out_proj_weight.clone(),
        ));
        out.push((
            format!("{p}.self_attn.out_proj.bias"),
            a.out_proj_bias.clone(),
        ));
        if let Some(m) = &self.mlp {
            out.push((format!("{p}.linear1.weight"), m.f.linear1.0.clone()));
            out.push((format!("{p}.linear1.bias"), m.f.linear1.1.clone()));
            out.push((format!("{p}.linear2.weight"), m.f.linear2.0.clone()));
            out.push((format!("{p}.linear2.bias"), m.f.linear2.1.clone()));
        }
        self.attn.visit(&p, 1, out);
        if let Some(m) = &self.mlp {
            m.visit(&p, 2, out);
        }
    }
}

/// A transformer encoder with a per-token linear head.
#[derive(Clone, Debug)]
pub struct Transformer {
    spec: TransformerSpec,
    embed: Var,
    pos_embed: Var,
    blocks: Vec<TransformerBlock>,
    norm: Option<LayerNorm>,
    head: (Var, Var),
}

/// Xavier (Glorot) uniform's bound √(6/(fan_in + fan_out)).
fn xavier_bound(fan_in: usize, fan_out: usize) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

/// Draws a net's tensors from its seed, per tensor name.
struct Draw<'a> {
    spec: &'a TransformerSpec,
    dtype: DType,
}

impl Draw<'_> {
    fn var(&self, values: Vec<f64>, shape: &[usize]) -> Result<Var> {
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?.to_dtype(self.dtype)?;
        Ok(Var::from_tensor(&t)?)
    }

    fn uniform(&self, name: &str, bound: f64, shape: &[usize]) -> Result<Var> {
        let n = shape.iter().product();
        let mut rng = tensor_rng(self.spec.seed, name);
        let v = (0..n)
            .map(|_| bound * (2.0 * rng.random::<f64>() - 1.0))
            .collect();
        self.var(v, shape)
    }

    fn normal(&self, name: &str, shape: &[usize]) -> Result<Var> {
        use rand_distr::{Distribution, StandardNormal};
        let n = shape.iter().product();
        let mut rng = tensor_rng(self.spec.seed, name);
        let v = (0..n)
            .map(|_| <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng))
            .collect();
        self.var(v, shape)
    }

    fn constant(&self, c: f64, shape: &[usize]) -> Result<Var> {
        self.var(vec![c; shape.iter().product()], shape)
    }

    fn ln(&self, d: usize) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: self.constant(1.0, &[d])?,
            bias: self.constant(0.0, &[d])?,
        })
    }

    fn join(&self, arch: &TransformerArch, d: usize) -> Result<Join> {
        Ok(match arch.ln {
            LnPlace::Post => Join::Post(self.ln(d)?, 1.0),
            LnPlace::XSkip { lambda } => Join::Post(self.ln(d)?, lambda),
            LnPlace::Pre => Join::Pre(self.ln(d)?),
            LnPlace::None => Join::Plain,
            LnPlace::ReZero => Join::ReZero(self.constant(0.0, &[1])?),
            LnPlace::RSkip { recursions } => {
                Join::RSkip((0..recursions).map(|_| self.ln(d)).collect::<Result<_>>()?)
            }
        })
    }

    fn block(&self, l: usize) -> Result<TransformerBlock> {
        let s = self.spec;
        let (d, ff) = (s.width, s.ff_width);
        let p = format!("layers.{l}");
        let xavier = xavier_bound(d, 3 * d);
        let attn = Attention {
            in_proj_weight: self.uniform(
                &format!("{p}.self_attn.in_proj_weight"),
                xavier,
                &[3 * d, d],
            )?,
            in_proj_bias: self.constant(0.0, &[3 * d])?,
            out_proj_weight: self.uniform(
                &format!("{p}.self_attn.out_proj.weight"),
                xavier_bound(d, d),
                &[d, d],
            )?,
            out_proj_bias: self.constant(0.0, &[d])?,
            heads: s.heads,
            causal: s.arch.causal,
        };
        let linear = |name: &str, fan_in: usize, fan_out: usize| -> Result<(Var, Var)> {
            Ok((
                self.uniform(
                    &format!("{p}.{name}.weight"),
                    xavier_bound(fan_in, fan_out),
                    &[fan_out, fan_in],
                )?,
                self.constant(0.0, &[fan_out])?,
            ))
        };
        let mlp = if s.arch.mlp {
            Some(Sublayer {
                f: FeedForward {
                    linear1: linear("linear1", d, ff)?,
                    linear2: linear("linear2", ff, d)?,
                },
                join: self.join(&s.arch, d)?,
                skip: s.arch.skip,
            })
        } else {
            None
        };
        Ok(TransformerBlock {
            attn: Sublayer {
                f: attn,
                join: self.join(&s.arch, d)?,
                skip: s.arch.skip,
            },
            mlp,
        })
    }
}

impl Transformer {
    /// Build the net from a checked spec, every tensor drawn from its seed
    /// and name (so the depth-L net is the first L blocks of a deeper one).
    pub fn new(spec: &TransformerSpec) -> Result<Self> {
        let draw = Draw {
            spec,
            dtype: spec.precision.dtype(),
        };
        let (d, v, t) = (spec.width, spec.vocab, spec.seq_len);
        let bound = 1.0 / (d as f64).sqrt();
        Ok(Transformer {
            spec: spec.clone(),
            embed: draw.normal("embed.weight", &[v, d])?,
            pos_embed: draw.normal("pos_embed.weight", &[t, d])?,
            blocks: (0..spec.depth)
                .map(|l| draw.block(l))
                .collect::<Result<_>>()?,
            norm: if spec.arch.ln == LnPlace::Pre {
                Some(draw.ln(d)?)
            } else {
                None
            },
            head: (
                draw.uniform("head.weight", bound, &[v, d])?,
                draw.uniform("head.bias", bound, &[v])?,
            ),
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &TransformerSpec {
        &self.spec
    }

    /// The blocks, input to output.
    pub fn blocks(&self) -> &[TransformerBlock] {
        &self.blocks
    }

    /// h₀ = E\[ids\] + P for ids (B × T) stored as floats.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t != self.spec.seq_len {
            return Err(NetError::invalid(
                "input",
                format!(
                    "{t} tokens per example, the net takes {}",
                    self.spec.seq_len
                ),
            ));
        }
        let raw = ids.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let v = self.spec.vocab;
        let mut idx = Vec::with_capacity(raw.len());
        for r in raw {
            if !(r >= 0.0 && r < v as f64 && r.fract() == 0.0) {
                return Err(NetError::invalid(
                    "input",
                    format!("token id {r} is not one of 0 … {}", v - 1),
                ));
            }
            idx.push(r as u32);
        }
        let idx = Tensor::from_vec(idx, b * t, ids.device())?;
        let e = self
            .embed
            .as_tensor()
            .index_select(&idx, 0)?
            .reshape((b, t, self.spec.width))?;
        Ok(e.broadcast_add(self.pos_embed.as_tensor())?)
    }

    /// The logits (B, T, V) from the last hidden state (B, T, d).
    pub fn unembed(&self, h: &Tensor) -> Result<Tensor> {
        let h = match &self.norm {
            Some(n) => n.forward(h)?,
            None => h.clone(),
        };
        affine(&h, &self.head.0, &self.head.1)
    }
}

impl Model for Transformer {
    fn forward(&self, x: &Tensor, _mode: BnMode) -> Result<Tensor> {
        let mut h = self.embed(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        self.unembed(&h)
    }

    fn parameters(&self) -> Vec<(String, Var)> {
        let mut out = vec![
            ("embed.weight".to_string(), self.embed.clone()),
            ("pos_embed.weight".to_string(), self.pos_embed.clone()),
        ];
        for (l, b) in self.blocks.iter().enumerate() {
            b.parameters(l, &mut out);
        }
        if let Some(n) = &self.norm {
            out.push(("norm.weight".into(), n.weight.clone()));
            out.push(("norm.bias".into(), n.bias.clone()));
        }
        out.push(("head.weight".into(), self.head.0.clone()));
        out.push(("head.bias".into(), self.head.1.clone()));
        out
    }

    fn buffers(&self) -> Vec<(String, Var)> {
        Vec::new()
    }

    fn dtype(&self) -> DType {
        self.spec.precision.dtype()
    }
}

// block_parts stays the default None: two sublayers per block, each with
// its own sum, so there is no single F(h) + s(h) split.
impl crate::BlockNet for Transformer {
    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
    fn stem_forward(&self, x: &Tensor, _mode: BnMode) -> Result<Tensor> {
        self.embed(x)
    }
    fn block_forward(&self, b: usize, h: &Tensor, _mode: BnMode) -> Result<Tensor> {
        match self.blocks.get(b) {
            Some(block) => block.forward(h),
            None => Err(NetError::invalid(
                "block",
                format!("a depth-{} transformer has no block {b}", self.blocks.len()),
            )),
        }
    }
    fn keeps_shape(&self, _b: usize) -> bool {
        true
    }
    fn head_forward(&self, h: &Tensor, _mode: BnMode) -> Result<Tensor> {
        self.unembed(h)
    }
}
