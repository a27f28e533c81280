//! One transformer block: attention ([`AttentionOp`]) then the
//! feed-forward sublayer W₂ ReLU(W₁x + b₁) + b₂, each joined to its input
//! as the arch places the layer norm (post: LN(λx + F(x)); pre:
//! x + F(LN(x)); none: x + F(x); ReZero: x + α·F(x); rSkip+LN:
//! y₁ = LN₁(x + F(x)), yᵢ = LNᵢ(x + yᵢ₋₁) up to i = λ; without the skip
//! every x term is dropped): forward, VJP with parameter gradients,
//! parameters.
//! Everything runs on B·T token rows of d values.

use gradscope_nets::{Join, LN_EPS, TransformerBlock, norm_name};
use ndarray::{Array2, ArrayView2, CowArray};

use crate::kernels::{add_skip, map_inplace, map_slope};
use crate::ops::attention::{AttentionOp, AttentionSaved};
use crate::ops::feature_norm::{FeatureNorm, Saved as NormSaved};
use crate::ops::linear::Linear;
use crate::ops::{Sink, array1};
use crate::{Real, Result};

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
    /// y₁ = LN₁(x + F(x)), yᵢ = LNᵢ(x + yᵢ₋₁), i = 2 … λ (Liu et al.
    /// 2020's rSkip+LN): the λ norms, each with its own γ, β.
    RSkip(Vec<FeatureNorm<T>>),
}

struct Sub<T> {
    /// State-dict prefix of F's parameters (`layers.0.self_attn`, `layers.0`).
    prefix: String,
    f: Map<T>,
    place: Place<T>,
    skip: bool,
}

/// What a sublayer's backward pass needs.
pub(super) struct SubSaved<T> {
    /// F's input (x, or LN(x) pre-LN), token rows.
    input: Array2<T>,
    map: MapSaved<T>,
    /// F(x), for α's gradient (ReZero).
    out: Option<Array2<T>>,
    /// Each layer norm's saved state, in order.
    norms: Vec<NormSaved<T>>,
}

/// The attention sublayer's saved state, and the FFN's.
pub(super) type BlockSaved<T> = (SubSaved<T>, Option<SubSaved<T>>);

/// Attention, then the FFN when the arch has it.
pub(super) struct Block<T> {
    attn: Sub<T>,
    mlp: Option<Sub<T>>,
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
                    norms: vec![ns],
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
                    norms: vec![ns],
                };
                (joined(y, one, one), saved)
            }
            Place::Plain => {
                let (y, map) = self.f.forward(x, t);
                let saved = SubSaved {
                    input: x.to_owned(),
                    map,
                    out: None,
                    norms: Vec::new(),
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
                    norms: Vec::new(),
                };
                (out, saved)
            }
            Place::RSkip(lns) => {
                let (mut y, map) = self.f.forward(x, t);
                let mut norms = Vec::with_capacity(lns.len());
                for ln in lns {
                    let (next, ns) = ln.forward(joined(y, one, one));
                    y = next;
                    norms.push(ns);
                }
                let saved = SubSaved {
                    input: x.to_owned(),
                    map,
                    out: None,
                    norms,
                };
                (y, saved)
            }
        }
    }

    /// ∂L/∂x from g = ∂L/∂(the sublayer's output).
    fn backward(&self, s: &SubSaved<T>, mut g: Array2<T>, sink: &mut Sink<T>) -> Array2<T> {
        let through = |g: Array2<T>, sink: &mut Sink<T>| {
            self.f.backward(&self.prefix, &s.input, &s.map, g, sink)
        };
        let norm = || s.norms.first().expect("a normalised sublayer");
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
            Place::RSkip(lns) => {
                // Back through LN_λ … LN₂: each passes g on to yᵢ₋₁ and,
                // with the skip, to x.
                let mut to_x: Option<Array2<T>> = None;
                for (ln, ns) in lns.iter().zip(&s.norms).skip(1).rev() {
                    ln.vjp(ns, &mut g, sink);
                    if self.skip {
                        to_x = Some(match to_x {
                            Some(a) => a + &g,
                            None => g.clone(),
                        });
                    }
                }
                lns[0].vjp(norm(), &mut g, sink);
                let gx = through(g.clone(), sink);
                let gx = if self.skip { gx + &g } else { gx };
                match to_x {
                    Some(a) => gx + &a,
                    None => gx,
                }
            }
        }
    }

    fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        self.f.params_mut(&self.prefix, out);
        match &mut self.place {
            Place::Post(ln, _) | Place::Pre(ln) => ln.params_mut(out),
            Place::ReZero(name, alpha) => out.push((name.clone(), std::slice::from_mut(alpha))),
            Place::RSkip(lns) => lns.iter_mut().for_each(|ln| ln.params_mut(out)),
            Place::Plain => {}
        }
    }
}

impl<T: Real> Block<T> {
    /// Block `l` of the net, its FFN's linear maps from `linear` (by
    /// state-dict prefix).
    pub(super) fn build(
        l: usize,
        b: &TransformerBlock,
        linear: &dyn Fn(&str) -> Result<Linear<T>>,
    ) -> Result<Self> {
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
        Ok(Block { attn, mlp })
    }

    /// Token rows h (B·T × d) → the block's output and what its backward
    /// pass needs.
    pub(super) fn forward(&self, h: ArrayView2<T>, t: usize) -> (Array2<T>, BlockSaved<T>) {
        let (h, a) = self.attn.forward(h, t);
        match &self.mlp {
            Some(m) => {
                let (h, s) = m.forward(h.view(), t);
                (h, (a, Some(s)))
            }
            None => (h, (a, None)),
        }
    }

    /// ∂L/∂h from g = ∂L/∂(the block's output), parameter gradients into
    /// `sink`.
    pub(super) fn backward(
        &self,
        s: &BlockSaved<T>,
        mut g: Array2<T>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        if let (Some(m), Some(ms)) = (&self.mlp, &s.1) {
            g = m.backward(ms, g, sink);
        }
        self.attn.backward(&s.0, g, sink)
    }

    /// Every parameter as (state-dict name, values).
    pub(super) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        self.attn.params_mut(out);
        if let Some(m) = &mut self.mlp {
            m.params_mut(out);
        }
    }

    /// Every parameter as (state-dict name, values): attention's and α's
    /// copied into `owned`, the linear maps' and LNs' borrowed.
    pub(super) fn param_values<'a>(
        &'a self,
        owned: &mut Vec<(String, Vec<T>)>,
        borrowed: &mut Vec<(String, &'a [T])>,
    ) {
        for s in std::iter::once(&self.attn).chain(&self.mlp) {
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
                    l1.params(borrowed);
                    l2.params(borrowed);
                }
            }
            match &s.place {
                Place::Post(ln, _) | Place::Pre(ln) => ln.params(borrowed),
                Place::ReZero(n, a) => owned.push((n.clone(), vec![*a])),
                Place::RSkip(lns) => lns.iter().for_each(|ln| ln.params(borrowed)),
                Place::Plain => {}
            }
        }
    }
}

fn sub<T: Real, F>(
    l: usize,
    k: usize,
    prefix: String,
    f: Map<T>,
    s: &gradscope_nets::Sublayer<F>,
) -> Result<Sub<T>> {
    let prefix_l = format!("layers.{l}");
    let norm = norm_name(&prefix_l, k, 1);
    let place = match &s.join {
        Join::Post(ln, lambda) => Place::Post(ln_of(&norm, ln)?, T::of(*lambda)),
        Join::Pre(ln) => Place::Pre(ln_of(&norm, ln)?),
        Join::RSkip(lns) => Place::RSkip(
            lns.iter()
                .enumerate()
                .map(|(i, ln)| ln_of(&norm_name(&prefix_l, k, i + 1), ln))
                .collect::<Result<_>>()?,
        ),
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
