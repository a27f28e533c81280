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
//!
//! The stem in `stem.rs`, a block in `block.rs`; here the whole net, its
//! head and the [`Engine`] interface.

mod block;
mod stem;

use std::collections::HashMap;

use gradscope_nets::{BnMode, LN_EPS, Model, Net, Transformer};
use ndarray::{Array2, ArrayView2, CowArray};

use self::block::{Block, BlockSaved};
use self::stem::Stem;
use crate::engine::{Engine, Forward, Grads, Kernels, ParamUpdate};
use crate::kernels::{frobenius, slice_norm};
use crate::ops::feature_norm::FeatureNorm;
use crate::ops::linear::Linear;
use crate::ops::{Sink, Want, Writer, array1, array2};
use crate::{EngineError, Real, Result};

/// A transformer as arrays of T.
pub(crate) struct TransformerNet<T> {
    net: Net,
    kernels: Kernels,
    stem: Stem<T>,
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
        let blocks = net
            .blocks()
            .iter()
            .enumerate()
            .map(|(l, b)| Block::build(l, b, &linear))
            .collect::<Result<_>>()?;
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
            stem: Stem {
                embed: array2(var("embed.weight")?.as_tensor())?,
                pos: array2(var("pos_embed.weight")?.as_tensor())?,
            },
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
        let mut out: Vec<(String, &mut [T])> = Vec::new();
        self.stem.params_mut(&mut out);
        for b in &mut self.blocks {
            b.params_mut(&mut out);
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
        let mut owned: Vec<(String, Vec<T>)> = Vec::new();
        let mut borrowed: Vec<(String, &[T])> = Vec::new();
        self.stem.param_values(&mut owned);
        for b in &self.blocks {
            b.param_values(&mut owned, &mut borrowed);
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
        let ids = self.stem.ids(x)?;
        let b = x.nrows();
        let mut h = self.stem.forward(&ids);
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
            let g0 = as_tokens(&g, self.width);
            sink.params.extend(self.stem.grads(g0, &kept.ids));
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
        self.stem.ids(x)?;
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
        let ids = self.stem.ids(x)?;
        Ok(as_rows(self.stem.forward(&ids), x.nrows()))
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
