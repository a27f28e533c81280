//! A transformer encoder on the engine's kernels: the token and position
//! embeddings, blocks of attention ([`AttentionOp`]) and the feed-forward
//! sublayer W₂ ReLU(W₁x + b₁) + b₂, each joined to its input as the arch
//! places the layer norm (post: LN(λx + F(x)); pre: x + F(LN(x)); none:
//! x + F(x); ReZero: x + α·F(x); without the skip the x term is dropped),
//! the final LN (pre-LN) and the per-token head.
//!
//! Inside, a hidden state is B·T token rows of d values (the same memory as
//! the interface's B rows of T·d values): every projection, LN and the FFN
//! run once over all B·T tokens as GEMMs and row loops; only attention's
//! T × T products run per example and head.
//!
//! Token ids are not differentiable: ∂L/∂x, the input tangents of the
//! forward-mode sweep and the stem's VJP are zero, as on candle.

use std::collections::HashMap;

use gradscope_nets::{BnMode, Join, LN_EPS, Model, Net, Transformer};
use ndarray::{Array2, ArrayView2, CowArray};

use crate::engine::{Engine, Forward, Grads, Kernels, ParamUpdate};
use crate::kernels::{add_skip, frobenius, map_inplace, map_slope, slice_norm};
use crate::ops::attention::{AttentionOp, AttentionSaved};
use crate::ops::feature_norm::{FeatureNorm, Saved as NormSaved};
use crate::ops::linear::Linear;
use crate::ops::{Sink, Want, Writer, array1, array2};
use crate::{EngineError, Real, Result};

/// A sublayer's map F.
enum Map<T> {
    Attn(AttentionOp<T>),
    /// linear1, linear2 (ReLU between).
    Ffn(Linear<T>, Linear<T>),
}

enum MapSaved<T> {
    Attn(AttentionSaved<T>),
    /// ReLU(W₁x + b₁), linear2's input.
    Ffn(Array2<T>),
}

/// How F(x) joins x.
enum Place<T> {
    /// LN(λx + F(x)).
    Post(FeatureNorm<T>, T),
    /// x + F(LN(x)).
    Pre(FeatureNorm<T>),
    /// x + F(x).
    Plain,
    /// x + α·F(x), α's state-dict name.
    ReZero(String, T),
}

struct Sub<T> {
    /// State-dict prefix of F's parameters (`layers.0.self_attn`, `layers.0`).
    prefix: String,
    f: Map<T>,
    place: Place<T>,
    skip: bool,
}

/// What a sublayer's backward pass needs.
struct SubSaved<T> {
    /// F's input (x, or LN(x) pre-LN), token rows.
    input: Array2<T>,
    map: MapSaved<T>,
    /// F(x), for α's gradient (ReZero).
    out: Option<Array2<T>>,
    norm: Option<NormSaved<T>>,
}

/// The attention sublayer's saved state, and the FFN's.
type BlockSaved<T> = (SubSaved<T>, Option<SubSaved<T>>);

struct Block<T> {
    attn: Sub<T>,
    mlp: Option<Sub<T>>,
}

/// A transformer as arrays of T.
pub(crate) struct TransformerNet<T> {
    net: Net,
    kernels: Kernels,
    /// E (V × d), P (T × d).
    embed: Array2<T>,
    pos: Array2<T>,
    blocks: Vec<Block<T>>,
    norm: Option<FeatureNorm<T>>,
    head: Linear<T>,
    seq_len: usize,
    width: usize,
    vocab: usize,
    /// Parameter names in state-dict order, and shapes.
    names: Vec<String>,
    shapes: HashMap<String, Vec<usize>>,
    mode: BnMode,
}

struct Kept<T> {
    blocks: Vec<BlockSaved<T>>,
    ids: Vec<usize>,
}

/// Rows (B × k·w) as k·B rows of w, sharing memory.
fn as_tokens<T>(a: &Array2<T>, w: usize) -> ArrayView2<'_, T> {
    let s = a.as_slice().expect("row-major");
    ArrayView2::from_shape((s.len() / w, w), s).expect("whole tokens")
}

/// Token rows (B·T × w) as B rows of T·w.
fn as_rows<T>(a: Array2<T>, b: usize) -> Array2<T> {
    let n = a.len() / b.max(1);
    a.into_shape_with_order((b, n)).expect("whole examples")
}

fn ln_of<T: Real>(name: &str, ln: &gradscope_nets::LayerNorm) -> Result<FeatureNorm<T>> {
    Ok(FeatureNorm::layer(
        name.to_string(),
        array1(ln.weight.as_tensor())?,
        array1(ln.bias.as_tensor())?,
        LN_EPS,
    ))
}

fn scalar<T: Real>(v: &candle_core::Var) -> Result<T> {
    Ok(T::from_tensor(v.as_tensor())?[0])
}

impl<T: Real> Map<T> {
    fn forward(&self, x: ArrayView2<T>, t: usize) -> (Array2<T>, MapSaved<T>) {
        match self {
            Map::Attn(a) => {
                let (y, s) = a.forward_tokens(x, t);
                (y, MapSaved::Attn(s))
            }
            Map::Ffn(l1, l2) => {
                let mut a = l1.forward(x);
                // A select, not max(z, 0), so NaN passes (docs/reliability.md).
                map_inplace(&mut a, |v| if v <= T::zero() { T::zero() } else { v });
                (l2.forward(a.view()), MapSaved::Ffn(a))
            }
        }
    }

    fn backward(
        &self,
        prefix: &str,
        x: &Array2<T>,
        saved: &MapSaved<T>,
        g: Array2<T>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        let params = sink.want.params;
        match (self, saved) {
            (Map::Attn(op), MapSaved::Attn(s)) => {
                let (gx, grads) = op.backward_tokens(x.view(), s, g.view(), params);
                if let Some(gr) = grads {
                    for (n, v) in [
                        ("in_proj_weight", gr.w_in.into_raw_vec_and_offset().0),
                        ("in_proj_bias", gr.b_in.to_vec()),
                        ("out_proj.weight", gr.w_out.into_raw_vec_and_offset().0),
                        ("out_proj.bias", gr.b_out.to_vec()),
                    ] {
                        sink.params.push((format!("{prefix}.{n}"), v));
                    }
                }
                gx
            }
            (Map::Ffn(l1, l2), MapSaved::Ffn(a)) => {
                let mut ga = l2.vjp(params.then_some(a), CowArray::from(g), sink);
                // ReLU's slope: 1 where its output is positive.
                map_slope(
                    &mut ga,
                    a,
                    None,
                    |g, y| if y <= T::zero() { T::zero() } else { g },
                );
                l1.vjp(params.then_some(x), CowArray::from(ga), sink)
            }
            _ => unreachable!("a map's own saved state"),
        }
    }

    fn params_mut<'a>(&'a mut self, prefix: &str, out: &mut Vec<(String, &'a mut [T])>) {
        match self {
            Map::Attn(a) => {
                let slice = |v: &'a mut [T]| v;
                out.push((
                    format!("{prefix}.in_proj_weight"),
                    slice(a.w_in.as_slice_mut().expect("row-major")),
                ));
                out.push((
                    format!("{prefix}.in_proj_bias"),
                    slice(a.b_in.as_slice_mut().expect("contiguous")),
                ));
                out.push((
                    format!("{prefix}.out_proj.weight"),
                    slice(a.w_out.as_slice_mut().expect("row-major")),
                ));
                out.push((
                    format!("{prefix}.out_proj.bias"),
                    slice(a.b_out.as_slice_mut().expect("contiguous")),
                ));
            }
            Map::Ffn(l1, l2) => {
                l1.params_mut(out);
                l2.params_mut(out);
            }
        }
    }
}

impl<T: Real> Sub<T> {
    fn forward(&self, x: ArrayView2<T>, t: usize) -> (Array2<T>, SubSaved<T>) {
        let one = T::one();
        let joined = |y: Array2<T>, alpha: T, lambda: T| {
            if self.skip {
                add_skip(y, &x.to_owned(), alpha, lambda)
            } else if alpha != one {
                y.mapv(|v| alpha * v)
            } else {
                y
            }
        };
        match &self.place {
            Place::Post(ln, lambda) => {
                let (y, map) = self.f.forward(x, t);
                let (out, ns) = ln.forward(joined(y, one, *lambda));
                let saved = SubSaved {
                    input: x.to_owned(),
                    map,
                    out: None,
                    norm: Some(ns),
                };
                (out, saved)
            }
            Place::Pre(ln) => {
                let (n, ns) = ln.forward(x.to_owned());
                let (y, map) = self.f.forward(n.view(), t);
                let saved = SubSaved {
                    input: n,
                    map,
                    out: None,
                    norm: Some(ns),
                };
                (joined(y, one, one), saved)
            }
            Place::Plain => {
                let (y, map) = self.f.forward(x, t);
                let saved = SubSaved {
                    input: x.to_owned(),
                    map,
                    out: None,
                    norm: None,
                };
                (joined(y, one, one), saved)
            }
            Place::ReZero(_, alpha) => {
                let (y, map) = self.f.forward(x, t);
                let out = joined(y.clone(), *alpha, one);
                let saved = SubSaved {
                    input: x.to_owned(),
                    map,
                    out: Some(y),
                    norm: None,
                };
                (out, saved)
            }
        }
    }

    /// ∂L/∂x from g = ∂L/∂(the sublayer's output).
    fn backward(&self, s: &SubSaved<T>, mut g: Array2<T>, sink: &mut Sink<T>) -> Array2<T> {
        let through = |g: Array2<T>, sink: &mut Sink<T>| {
            self.f.backward(&self.prefix, &s.input, &s.map, g, sink)
        };
        let norm = || s.norm.as_ref().expect("a normalised sublayer");
        match &self.place {
            Place::Post(ln, lambda) => {
                ln.vjp(norm(), &mut g, sink);
                let gx = through(g.clone(), sink);
                if self.skip {
                    add_skip(gx, &g, T::one(), *lambda)
                } else {
                    gx
                }
            }
            Place::Pre(ln) => {
                let mut gn = through(g.clone(), sink);
                ln.vjp(norm(), &mut gn, sink);
                if self.skip { gn + &g } else { gn }
            }
            Place::Plain => {
                let gx = through(g.clone(), sink);
                if self.skip { gx + &g } else { gx }
            }
            Place::ReZero(name, alpha) => {
                if sink.want.params {
                    let y = s.out.as_ref().expect("F(x) kept");
                    let d = g.iter().zip(y).fold(T::zero(), |a, (&g, &y)| a + g * y);
                    sink.params.push((name.clone(), vec![d]));
                }
                let gx = through(g.mapv(|v| v * *alpha), sink);
                if self.skip { gx + &g } else { gx }
            }
        }
    }

    fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        self.f.params_mut(&self.prefix, out);
        match &mut self.place {
            Place::Post(ln, _) | Place::Pre(ln) => ln.params_mut(out),
            Place::ReZero(name, alpha) => out.push((name.clone(), std::slice::from_mut(alpha))),
            Place::Plain => {}
        }
    }
}

impl<T: Real> Block<T> {
    fn forward(&self, h: ArrayView2<T>, t: usize) -> (Array2<T>, BlockSaved<T>) {
        let (h, a) = self.attn.forward(h, t);
        match &self.mlp {
            Some(m) => {
                let (h, s) = m.forward(h.view(), t);
                (h, (a, Some(s)))
            }
            None => (h, (a, None)),
        }
    }

    fn backward(&self, s: &BlockSaved<T>, mut g: Array2<T>, sink: &mut Sink<T>) -> Array2<T> {
        if let (Some(m), Some(ms)) = (&self.mlp, &s.1) {
            g = m.backward(ms, g, sink);
        }
        self.attn.backward(&s.0, g, sink)
    }
}

fn sub<T: Real, F>(
    l: usize,
    k: usize,
    prefix: String,
    f: Map<T>,
    s: &gradscope_nets::Sublayer<F>,
) -> Result<Sub<T>> {
    let norm = format!("layers.{l}.norm{k}");
    let place = match &s.join {
        Join::Post(ln, lambda) => Place::Post(ln_of(&norm, ln)?, T::of(*lambda)),
        Join::Pre(ln) => Place::Pre(ln_of(&norm, ln)?),
        Join::Plain => Place::Plain,
        Join::ReZero(a) => Place::ReZero(format!("layers.{l}.alpha{k}"), scalar(a)?),
    };
    Ok(Sub {
        prefix,
        f,
        place,
        skip: s.skip,
    })
}

impl<T: Real> TransformerNet<T> {
    /// The net's parameters as arrays; with `repeated`, the linear maps keep
    /// a row-major Wᵀ.
    pub(crate) fn build(net: &Transformer, mode: BnMode, repeated: bool) -> Result<Self> {
        if net.dtype() != T::STORED {
            return Err(EngineError::Input(format!(
                "net is {:?}, the engine was asked for {:?}",
                net.dtype(),
                T::STORED
            )));
        }
        let params: HashMap<String, candle_core::Var> = net.parameters().into_iter().collect();
        let var = |n: &str| {
            params
                .get(n)
                .ok_or_else(|| EngineError::Input(format!("`{n}` is not in the net")))
        };
        let linear = |n: &str| -> Result<Linear<T>> {
            Ok(Linear::new(
                n.to_string(),
                array2(var(&format!("{n}.weight"))?.as_tensor())?,
                Some(array1(var(&format!("{n}.bias"))?.as_tensor())?),
                repeated,
            ))
        };
        let mut blocks = Vec::with_capacity(net.blocks().len());
        for (l, b) in net.blocks().iter().enumerate() {
            let attn = sub(
                l,
                1,
                format!("layers.{l}.self_attn"),
                Map::Attn(AttentionOp::from_layer(&b.attn.f)?),
                &b.attn,
            )?;
            let mlp = match &b.mlp {
                Some(m) => Some(sub(
                    l,
                    2,
                    format!("layers.{l}"),
                    Map::Ffn(
                        linear(&format!("layers.{l}.linear1"))?,
                        linear(&format!("layers.{l}.linear2"))?,
                    ),
                    m,
                )?),
                None => None,
            };
            blocks.push(Block { attn, mlp });
        }
        let norm = match params.get("norm.weight") {
            Some(w) => Some(FeatureNorm::layer(
                "norm".into(),
                array1(w.as_tensor())?,
                array1(var("norm.bias")?.as_tensor())?,
                LN_EPS,
            )),
            None => None,
        };
        let spec = net.spec();
        Ok(TransformerNet {
            net: Net::Transformer(net.clone()),
            kernels: Kernels::Engine,
            embed: array2(var("embed.weight")?.as_tensor())?,
            pos: array2(var("pos_embed.weight")?.as_tensor())?,
            blocks,
            norm,
            head: linear("head")?,
            seq_len: spec.seq_len,
            width: spec.width,
            vocab: spec.vocab,
            names: net.parameters().into_iter().map(|(n, _)| n).collect(),
            shapes: net
                .parameters()
                .into_iter()
                .map(|(n, v)| (n, v.dims().to_vec()))
                .collect(),
            mode,
        })
    }

    /// The token ids of x (B × T), checked.
    fn ids(&self, x: ArrayView2<T>) -> Result<Vec<usize>> {
        if x.ncols() != self.seq_len {
            return Err(EngineError::Input(format!(
                "{} tokens per example, the net takes {}",
                x.ncols(),
                self.seq_len
            )));
        }
        x.iter()
            .map(|&r| {
                let v = r.f64();
                if v >= 0.0 && v < self.vocab as f64 && v.fract() == 0.0 {
                    Ok(v as usize)
                } else {
                    Err(EngineError::Input(format!(
                        "token id {v} is not one of 0 … {}",
                        self.vocab - 1
                    )))
                }
            })
            .collect()
    }

    /// h₀ = E[ids] + P as token rows.
    fn embed(&self, ids: &[usize]) -> Array2<T> {
        let t = self.seq_len;
        let mut h = Array2::zeros((ids.len(), self.width));
        for (k, (mut row, &id)) in h.rows_mut().into_iter().zip(ids).enumerate() {
            let (e, p) = (self.embed.row(id), self.pos.row(k % t));
            row.iter_mut()
                .zip(e.iter().zip(p))
                .for_each(|(h, (&e, &p))| *h = e + p);
        }
        h
    }

    /// The logits (B × T·V) of the last hidden state h (B × T·d).
    fn head_of(&self, h: &Array2<T>) -> Array2<T> {
        let b = h.nrows();
        let tokens = as_tokens(h, self.width);
        let z = match &self.norm {
            Some(n) => self.head.forward(n.forward(tokens.to_owned()).0.view()),
            None => self.head.forward(tokens),
        };
        as_rows(z, b)
    }

    /// ∂L/∂h (B × T·d) from ∂L/∂logits at h, the head's gradients in `sink`.
    fn head_back(&self, h: &Array2<T>, g: ArrayView2<T>, sink: &mut Sink<T>) -> Array2<T> {
        let b = h.nrows();
        let tokens = as_tokens(h, self.width).to_owned();
        let g = CowArray::from(
            g.as_standard_layout()
                .into_owned()
                .into_shape_with_order((b * self.seq_len, self.vocab))
                .expect("T·V logits per example"),
        );
        let params = sink.want.params;
        let gh = match &self.norm {
            Some(n) => {
                let (y, s) = n.forward(tokens);
                let mut gy = self.head.vjp(params.then_some(&y), g, sink);
                n.vjp(&s, &mut gy, sink);
                gy
            }
            None => self.head.vjp(params.then_some(&tokens), g, sink),
        };
        as_rows(gh, b)
    }

    fn kept<'f>(&self, fwd: &'f Forward<T>) -> &'f Kept<T> {
        fwd.state
            .downcast_ref::<Kept<T>>()
            .expect("a forward pass of this engine")
    }

    fn check_depth(&self, depth: usize) -> Result<()> {
        if depth > self.blocks.len() {
            return Err(EngineError::Input(format!(
                "cannot run {depth} blocks of a depth-{} net",
                self.blocks.len()
            )));
        }
        Ok(())
    }

    /// Every parameter as (state-dict name, values), in state-dict order.
    fn params_mut(&mut self) -> Vec<(String, &mut [T])> {
        let mut out: Vec<(String, &mut [T])> = vec![
            (
                "embed.weight".into(),
                self.embed.as_slice_mut().expect("row-major"),
            ),
            (
                "pos_embed.weight".into(),
                self.pos.as_slice_mut().expect("row-major"),
            ),
        ];
        for b in &mut self.blocks {
            b.attn.params_mut(&mut out);
            if let Some(m) = &mut b.mlp {
                m.params_mut(&mut out);
            }
        }
        if let Some(n) = &mut self.norm {
            n.params_mut(&mut out);
        }
        self.head.params_mut(&mut out);
        let mut by_name: HashMap<String, &mut [T]> = out.into_iter().collect();
        self.names
            .iter()
            .map(|n| {
                let v = by_name.remove(n).expect("every parameter of the net");
                (n.clone(), v)
            })
            .collect()
    }
}

impl<T: Real> TransformerNet<T> {
    /// Every parameter as (state-dict name, a copy of its values), in
    /// state-dict order (for norms and write-back, which run rarely).
    fn param_values(&self) -> Vec<(String, Vec<T>)> {
        let mut owned: Vec<(String, Vec<T>)> = vec![
            ("embed.weight".into(), self.embed.iter().copied().collect()),
            (
                "pos_embed.weight".into(),
                self.pos.iter().copied().collect(),
            ),
        ];
        let mut borrowed: Vec<(String, &[T])> = Vec::new();
        for s in self
            .blocks
            .iter()
            .flat_map(|b| std::iter::once(&b.attn).chain(&b.mlp))
        {
            match &s.f {
                Map::Attn(a) => {
                    for (n, v) in [
                        ("in_proj_weight", a.w_in.iter().copied().collect::<Vec<_>>()),
                        ("in_proj_bias", a.b_in.to_vec()),
                        ("out_proj.weight", a.w_out.iter().copied().collect()),
                        ("out_proj.bias", a.b_out.to_vec()),
                    ] {
                        owned.push((format!("{}.{n}", s.prefix), v));
                    }
                }
                Map::Ffn(l1, l2) => {
                    l1.params(&mut borrowed);
                    l2.params(&mut borrowed);
                }
            }
            match &s.place {
                Place::Post(ln, _) | Place::Pre(ln) => ln.params(&mut borrowed),
                Place::ReZero(n, a) => owned.push((n.clone(), vec![*a])),
                Place::Plain => {}
            }
        }
        if let Some(n) = &self.norm {
            n.params(&mut borrowed);
        }
        self.head.params(&mut borrowed);
        owned.extend(borrowed.into_iter().map(|(n, v)| (n, v.to_vec())));
        let mut by_name: HashMap<String, Vec<T>> = owned.into_iter().collect();
        self.names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    by_name.remove(n).expect("every parameter of the net"),
                )
            })
            .collect()
    }
}

/// Whether parameter `name` is used by the first `depth` blocks' net.
fn used_at_depth(name: &str, depth: usize) -> bool {
    match name.strip_prefix("layers.") {
        Some(rest) => rest
            .split('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .is_some_and(|i| i < depth),
        None => true,
    }
}

impl<T: Real> Engine<T> for TransformerNet<T> {
    fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    fn depth(&self) -> usize {
        self.blocks.len()
    }

    fn mode(&self) -> BnMode {
        self.mode
    }

    fn set_mode(&mut self, mode: BnMode) {
        self.mode = mode;
    }

    fn forward(&self, x: ArrayView2<T>, _inputs: bool) -> Result<Forward<T>> {
        let ids = self.ids(x)?;
        let b = x.nrows();
        let mut h = self.embed(&ids);
        let mut hidden = Vec::with_capacity(self.blocks.len() + 1);
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let (next, s) = block.forward(h.view(), self.seq_len);
            hidden.push(as_rows(std::mem::replace(&mut h, next), b));
            blocks.push(s);
        }
        hidden.push(as_rows(h, b));
        Ok(Forward {
            hidden,
            state: Box::new(Kept { blocks, ids }),
        })
    }

    fn activation_norms(&self, fwd: &Forward<T>, depth: usize) -> Vec<f64> {
        fwd.hidden[..=depth].iter().map(frobenius).collect()
    }

    fn output(&self, fwd: &Forward<T>, depth: usize) -> Result<Array2<T>> {
        self.check_depth(depth)?;
        Ok(self.head_of(&fwd.hidden[depth]))
    }

    fn backward(
        &self,
        fwd: &Forward<T>,
        depth: usize,
        out_grad: Option<ArrayView2<T>>,
        want: Want,
    ) -> Result<Grads<T>> {
        self.check_depth(depth)?;
        if want.gram {
            return Err(EngineError::Unsupported(
                "per-example Gram matrices of a transformer".into(),
            ));
        }
        let kept = self.kept(fwd);
        let b = fwd.hidden[0].nrows();
        let ones;
        let g_out = match out_grad {
            Some(g) => g,
            None => {
                ones = Array2::from_elem((b, self.seq_len * self.vocab), T::one());
                ones.view()
            }
        };
        let mut sink = Sink::new(want, self.mode);
        let mut g = self.head_back(&fwd.hidden[depth], g_out, &mut sink);
        let mut hidden = Vec::new();
        let mut hidden_norms = vec![0.0; depth + 1];
        for l in (0..depth).rev() {
            hidden_norms[l + 1] = frobenius(&g);
            if want.hidden {
                hidden.push(g.clone());
            }
            let gt = as_tokens(&g, self.width).to_owned();
            g = as_rows(self.blocks[l].backward(&kept.blocks[l], gt, &mut sink), b);
        }
        hidden_norms[0] = frobenius(&g);
        if want.hidden {
            hidden.push(g.clone());
            hidden.reverse();
        }
        let mut params = Vec::new();
        if want.params {
            let (t, d) = (self.seq_len, self.width);
            let mut ge = Array2::<T>::zeros(self.embed.raw_dim());
            let mut gp = Array2::<T>::zeros(self.pos.raw_dim());
            for (k, (row, &id)) in as_tokens(&g, d)
                .rows()
                .into_iter()
                .zip(&kept.ids)
                .enumerate()
            {
                ge.row_mut(id).zip_mut_with(&row, |a, &v| *a += v);
                gp.row_mut(k % t).zip_mut_with(&row, |a, &v| *a += v);
            }
            sink.params
                .push(("embed.weight".into(), ge.into_raw_vec_and_offset().0));
            sink.params
                .push(("pos_embed.weight".into(), gp.into_raw_vec_and_offset().0));
            let mut by_name: HashMap<String, Vec<T>> = sink.params.into_iter().collect();
            for n in self.names.iter().filter(|n| used_at_depth(n, depth)) {
                let v = by_name.remove(n).ok_or_else(|| {
                    EngineError::Input(format!("the backward pass did not reach `{n}`"))
                })?;
                params.push((n.clone(), v));
            }
        }
        Ok(Grads {
            hidden_norms,
            hidden,
            input: Array2::zeros((b, self.seq_len)),
            params,
            unreached: Vec::new(),
            gram: Vec::new(),
        })
    }

    /// Zero at every depth: the output does not change along a direction
    /// of token ids (the embedding is a lookup), as candle's sweep says.
    fn tangent_sweep(&self, x: ArrayView2<T>, v: &[T]) -> Result<Array2<T>> {
        self.ids(x)?;
        if v.len() != self.seq_len {
            return Err(EngineError::Input(format!(
                "a direction of {} values for {} tokens",
                v.len(),
                self.seq_len
            )));
        }
        Ok(Array2::zeros((self.blocks.len() + 1, x.nrows())))
    }

    fn predict(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        let fwd = self.forward(x, false)?;
        self.output(&fwd, self.blocks.len())
    }

    fn stem(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        let ids = self.ids(x)?;
        Ok(as_rows(self.embed(&ids), x.nrows()))
    }

    fn block(&self, b: usize, h: &Array2<T>) -> Result<Array2<T>> {
        self.check_depth(b + 1)?;
        let h = h.as_standard_layout();
        let tokens = as_tokens_view(h.view(), self.width);
        Ok(as_rows(
            self.blocks[b].forward(tokens, self.seq_len).0,
            h.nrows(),
        ))
    }

    fn bypass(&self, b: usize, h: Array2<T>) -> Result<Array2<T>> {
        // No single F(h) + s(h) split (two sublayers, each with its own
        // sum): a deleted block passes its input on, as on candle.
        self.check_depth(b + 1)?;
        Ok(h)
    }

    fn head(&self, h: &Array2<T>) -> Result<Array2<T>> {
        Ok(self.head_of(&h.as_standard_layout().into_owned()))
    }

    fn head_vjp(&self, fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>> {
        let mut sink = Sink::new(Want::default(), self.mode);
        Ok(self.head_back(&fwd.hidden[self.blocks.len()], g, &mut sink))
    }

    fn path_vjp(
        &self,
        _fwd: &Forward<T>,
        _b: usize,
        _g: ArrayView2<T>,
        _through_branch: bool,
    ) -> Result<Array2<T>> {
        Err(EngineError::Input(
            "path gradients need blocks x + α·F(x) (plain, gated, scaled or normalised-after-the-sum shortcuts have no path expansion)".into(),
        ))
    }

    fn stem_vjp(&self, fwd: &Forward<T>, _g: ArrayView2<T>) -> Result<Array2<T>> {
        Ok(Array2::zeros((fwd.hidden[0].nrows(), self.seq_len)))
    }

    fn param_norms(&self) -> Vec<(String, f64)> {
        self.param_values()
            .into_iter()
            .map(|(n, v)| (n, slice_norm(&v)))
            .collect()
    }

    fn update_params(&mut self, grads: &Grads<T>, f: &mut ParamUpdate<'_, T>) -> Result<()> {
        if grads.params.len() != self.names.len() {
            return Err(EngineError::Input(format!(
                "{} gradients for {} parameters: update after a whole-net backward pass with parameters",
                grads.params.len(),
                self.names.len()
            )));
        }
        let shapes = std::mem::take(&mut self.shapes);
        for ((name, w), (_, g)) in self.params_mut().into_iter().zip(&grads.params) {
            f(&name, &shapes[&name], w, g);
        }
        self.shapes = shapes;
        Ok(())
    }

    fn update_running_stats(&mut self, _fwd: &Forward<T>) {
        // No batch statistics in a transformer.
    }

    fn sync(&self) -> Result<()> {
        let vars: HashMap<String, candle_core::Var> = self.net.parameters().into_iter().collect();
        let w = Writer { vars: &vars };
        for (n, v) in self.param_values() {
            w.set_as(&n, &v)?;
        }
        Ok(())
    }
}

/// A row-major view (B × T·w) as token rows.
fn as_tokens_view<T>(a: ArrayView2<'_, T>, w: usize) -> ArrayView2<'_, T> {
    let n = a.len() / w;
    a.into_shape_with_order((n, w)).expect("whole tokens")
}
