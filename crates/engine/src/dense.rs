//! An MLP on the engine's kernels: the net's layers as arrays, a forward
//! pass that keeps what the backward pass needs, reverse mode from *any*
//! depth (hidden states, input, and on request parameters and per-example
//! Gram matrices), and forward mode giving df_L/dx for every depth L at once.
//!
//! It computes what candle's autograd computes (tested to rounding op by
//! op, `tests/oracle.rs`), skipping what a study does not need (autograd
//! bookkeeping, gradients nobody reads), and sharing the forward pass
//! between depths: the depth-L net is the first L blocks of the deepest one
//! plus the same head.

use std::collections::HashMap;

use gradscope_nets::{Activation, BnMode, ConvNet, Mlp, Model, Net};
use ndarray::{Array2, ArrayView2};

use crate::block::{Unit, UnitSaved};
use crate::chain::{self, Cur};
use crate::engine::{Engine, Forward, Grads, Kernels, ParamUpdate};
use crate::kernels::{frobenius, slice_norm};
use crate::ops::{Op, Saved, Sink, Want, Writer, coupled, linear::Linear};
use crate::{EngineError, Real, Result};

/// An MLP as arrays of T.
pub(crate) struct DenseNet<T> {
    /// The net whose variables [`Engine::sync`] writes (sharing their storage).
    net: Net,
    kernels: Kernels,
    stem: Vec<Op<T>>,
    blocks: Vec<Unit<T>>,
    /// The ops between the last block and the linear head (a conv net's
    /// global average pooling; none in an MLP).
    head_pre: Vec<Op<T>>,
    head: Linear<T>,
    /// Whether the head reads h_l (l = 0 … L): always in an MLP; in a conv
    /// net only past the last change of width (the depth-l prefix of a
    /// conv net is a net only there).
    head_reads: Vec<bool>,
    /// Parameter shapes by state-dict name.
    shapes: HashMap<String, Vec<usize>>,
    mode: BnMode,
}

/// What the backward passes need from the forward pass.
struct Kept<T> {
    stem: Vec<Saved<T>>,
    blocks: Vec<UnitSaved<T>>,
}

fn unsupported(what: &str) -> EngineError {
    EngineError::Input(format!(
        "the engine's {what} needs samples that do not interact"
    ))
}

impl<T: Real> DenseNet<T> {
    /// The net's weights and BN statistics as arrays; BN runs in `mode`.
    /// With `repeated`, each linear layer keeps a row-major copy of Wᵀ
    /// for the forward products (for a net run more than once).
    pub(crate) fn build(net: &Mlp, mode: BnMode, repeated: bool) -> Result<Self> {
        check_dtype::<T>(net.dtype())?;
        let blocks = net
            .blocks()
            .iter()
            .enumerate()
            .map(|(l, b)| Unit::from_block(&format!("layers.{l}"), b, repeated))
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseNet {
            net: Net::Mlp(net.clone()),
            kernels: Kernels::Engine,
            stem: vec![Op::Linear(Linear::from_layer(
                "stem".into(),
                net.stem(),
                repeated,
            )?)],
            blocks,
            head_pre: Vec::new(),
            head: Linear::from_layer("head".into(), net.head(), repeated)?,
            head_reads: vec![true; net.depth() + 1],
            shapes: shapes(net),
            mode,
        })
    }

    /// A conv net (He et al. 2016a): conv → BN → ReLU stem, its blocks,
    /// global average pooling and the linear classifier.
    pub(crate) fn build_conv(net: &ConvNet, mode: BnMode, repeated: bool) -> Result<Self> {
        check_dtype::<T>(net.dtype())?;
        let (conv, bn) = net.stem();
        let stem = vec![
            Op::Conv(crate::ops::conv::Conv::from_layer("conv1".into(), conv)?),
            Op::BatchNorm(crate::ops::batch_norm::BatchNorm::from_layer(
                "bn1".into(),
                bn,
            )?),
            Op::Act(Activation::Relu),
        ];
        let blocks = net
            .units()
            .into_iter()
            .map(|(prefix, u)| Unit::from_conv(&prefix, u))
            .collect::<Result<Vec<_>>>()?;
        let fc = net.fc();
        let channels = fc.weight().dims()[1];
        // Channels of h_0 … h_L: the stem's, then each block's last convolution's.
        let mut widths = vec![conv.weight().dims()[0]];
        widths.extend(net.units().iter().map(|(_, u)| {
            u.convs()
                .last()
                .expect("a block has convolutions")
                .0
                .weight()
                .dims()[0]
        }));
        let last_change = widths
            .iter()
            .rposition(|&w| w != channels)
            .map_or(0, |i| i + 1);
        let head_reads = (0..widths.len()).map(|l| l >= last_change).collect();
        Ok(DenseNet {
            net: Net::Conv(net.clone()),
            kernels: Kernels::Engine,
            stem,
            blocks,
            head_pre: vec![Op::Pool { channels }],
            head: Linear::from_layer("fc".into(), fc, repeated)?,
            head_reads,
            shapes: shapes(net),
            mode,
        })
    }

    /// The head's input from h_L: h_L itself, or its pooled channels.
    fn head_input(&self, h: &Array2<T>, saved: Option<&mut Vec<Saved<T>>>) -> Array2<T> {
        if self.head_pre.is_empty() {
            return h.clone();
        }
        let mut scratch = Vec::new();
        let saved = saved.unwrap_or(&mut scratch);
        chain::forward(&self.head_pre, Cur::In(h.view()), saved, false, self.mode)
    }

    fn kept<'f>(&self, fwd: &'f Forward<T>) -> &'f Kept<T> {
        fwd.state
            .downcast_ref::<Kept<T>>()
            .expect("a forward pass of this engine")
    }

    /// Every trainable parameter as (state-dict name, values in the
    /// tensor's layout), in state-dict order: the order of [`Grads::params`].
    pub(crate) fn params_mut(&mut self) -> Vec<(String, &mut [T])> {
        let mut out = Vec::new();
        self.stem.iter_mut().for_each(|op| op.params_mut(&mut out));
        self.blocks.iter_mut().for_each(|u| u.params_mut(&mut out));
        self.head_pre
            .iter_mut()
            .for_each(|op| op.params_mut(&mut out));
        self.head.params_mut(&mut out);
        out
    }

    /// [`params_mut`](Self::params_mut), read-only.
    pub(crate) fn params(&self) -> Vec<(String, &[T])> {
        let mut out = Vec::new();
        self.stem.iter().for_each(|op| op.params(&mut out));
        self.blocks.iter().for_each(|u| u.params(&mut out));
        self.head_pre.iter().for_each(|op| op.params(&mut out));
        self.head.params(&mut out);
        out
    }

    /// The number of outputs (classes).
    pub(crate) fn head_outputs(&self) -> usize {
        self.head.outputs()
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

    /// [`check_depth`](Self::check_depth) for a net ending at block `depth`:
    /// the head must read its last hidden state.
    fn check_prefix(&self, depth: usize) -> Result<()> {
        self.check_depth(depth)?;
        if !self.head_reads[depth] {
            return Err(EngineError::Input(format!(
                "the head does not read h_{depth}: the first {depth} blocks of this conv net end at another width"
            )));
        }
        Ok(())
    }
}

impl<T: Real> Engine<T> for DenseNet<T> {
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

    fn forward(&self, x: ArrayView2<T>, inputs: bool) -> Result<Forward<T>> {
        let mode = self.mode;
        let mut stem = Vec::new();
        let mut h = chain::forward(&self.stem, Cur::In(x), &mut stem, inputs, mode);
        let mut hidden = Vec::with_capacity(self.blocks.len() + 1);
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for unit in &self.blocks {
            let (next, s) = unit.forward(&h, inputs, mode);
            // h_l is kept as it is (moved, not copied): the block only read it.
            hidden.push(std::mem::replace(&mut h, next));
            blocks.push(s);
        }
        hidden.push(h);
        Ok(Forward {
            hidden,
            state: Box::new(Kept { stem, blocks }),
        })
    }

    fn activation_norms(&self, fwd: &Forward<T>, depth: usize) -> Vec<f64> {
        fwd.hidden[..=depth].iter().map(frobenius).collect()
    }

    fn output(&self, fwd: &Forward<T>, depth: usize) -> Result<Array2<T>> {
        self.check_prefix(depth)?;
        if self.head_pre.is_empty() {
            return Ok(self.head.forward(fwd.hidden[depth].view()));
        }
        Ok(self
            .head
            .forward(self.head_input(&fwd.hidden[depth], None).view()))
    }

    fn backward(
        &self,
        fwd: &Forward<T>,
        depth: usize,
        out_grad: Option<ArrayView2<T>>,
        want: Want,
    ) -> Result<Grads<T>> {
        self.check_prefix(depth)?;
        let kept = self.kept(fwd);
        let n = fwd.hidden[0].nrows();
        let g_out = match out_grad {
            Some(g) => g.to_owned(),
            None => Array2::from_elem((n, self.head.outputs()), T::one()),
        };
        let mut sink = Sink::new(want, self.mode);
        // The head's saved input is h_depth (pooled in a conv net).
        let mut pre_saved = Vec::new();
        let head_input = (want.params || want.gram || !self.head_pre.is_empty())
            .then(|| self.head_input(&fwd.hidden[depth], Some(&mut pre_saved)));
        let mut g = self.head.vjp(
            head_input.as_ref().filter(|_| want.params || want.gram),
            ndarray::CowArray::from(g_out),
            &mut sink,
        );
        if !self.head_pre.is_empty() {
            g = chain::backward(&self.head_pre, &pre_saved, g, &mut sink);
        }
        let mut hidden = Vec::new();
        let mut hidden_norms = vec![0.0; depth + 1];
        for (l, unit) in self.blocks[..depth].iter().enumerate().rev() {
            hidden_norms[l + 1] = frobenius(&g);
            if want.hidden {
                hidden.push(g.clone());
            }
            g = unit.backward(&kept.blocks[l], g.view(), &mut sink);
        }
        hidden_norms[0] = frobenius(&g);
        if want.hidden {
            hidden.push(g.clone());
            hidden.reverse();
        }
        let input = chain::backward(&self.stem, &kept.stem, g, &mut sink);
        // Collected output-to-input; report in state-dict (input-to-output) order.
        let mut params = sink.params;
        params.reverse();
        let mut gram = sink.gram;
        gram.reverse();
        Ok(Grads {
            hidden_norms,
            hidden,
            input,
            unreached: Vec::new(),
            params,
            gram,
        })
    }

    fn tangent_sweep(&self, x: ArrayView2<T>, v: &[T]) -> Result<Array2<T>> {
        if coupled(self.mode) {
            return Err(unsupported(&format!(
                "forward-mode sweep in BN `{}` mode",
                self.mode
            )));
        }
        let n = x.nrows();
        let t0 = Array2::from_shape_fn((n, v.len()), |(_, j)| v[j]);
        let mode = self.mode;
        let (mut h, mut t) = chain::tangent(&self.stem, x.to_owned(), t0, mode);
        let w_sum = self.head.column_sums();
        // The output sum's tangent at h_l: through the pooling (linear) to the head.
        let at_head = |t: &Array2<T>| {
            let t = if self.head_pre.is_empty() {
                std::borrow::Cow::Borrowed(t)
            } else {
                std::borrow::Cow::Owned(
                    chain::tangent(&self.head_pre, t.clone(), t.clone(), mode).1,
                )
            };
            t.dot(&w_sum)
        };
        // NaN where the head does not read h_l (a conv net's early stages).
        let mut out = Array2::from_elem((self.blocks.len() + 1, n), T::nan());
        if self.head_reads[0] {
            out.row_mut(0).assign(&at_head(&t));
        }
        for (l, unit) in self.blocks.iter().enumerate() {
            (h, t) = unit.tangent(h, t, mode);
            if self.head_reads[l + 1] {
                out.row_mut(l + 1).assign(&at_head(&t));
            }
        }
        Ok(out)
    }

    fn predict(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        let fwd = self.forward(x, false)?;
        self.output(&fwd, self.blocks.len())
    }

    fn stem(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        Ok(chain::forward(
            &self.stem,
            Cur::In(x),
            &mut Vec::new(),
            false,
            self.mode,
        ))
    }

    fn block(&self, b: usize, h: &Array2<T>) -> Result<Array2<T>> {
        self.check_depth(b + 1)?;
        Ok(self.blocks[b].forward(h, false, self.mode).0)
    }

    fn bypass(&self, b: usize, h: Array2<T>) -> Result<Array2<T>> {
        self.check_depth(b + 1)?;
        self.blocks[b].bypass(h, self.mode).ok_or_else(|| {
            EngineError::Input(format!(
                "block {b} changes the shape of its input: a plain block that does cannot be deleted"
            ))
        })
    }

    fn head(&self, h: &Array2<T>) -> Result<Array2<T>> {
        if self.head_pre.is_empty() {
            return Ok(self.head.forward(h.view()));
        }
        Ok(self.head.forward(self.head_input(h, None).view()))
    }

    fn head_vjp(&self, fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>> {
        let mut sink = Sink::new(Want::default(), self.mode);
        let g = self.head.vjp(None, ndarray::CowArray::from(g), &mut sink);
        if self.head_pre.is_empty() {
            return Ok(g);
        }
        let mut saved = Vec::new();
        self.head_input(&fwd.hidden[self.blocks.len()], Some(&mut saved));
        Ok(chain::backward(&self.head_pre, &saved, g, &mut sink))
    }

    fn path_vjp(
        &self,
        fwd: &Forward<T>,
        b: usize,
        g: ArrayView2<T>,
        through_branch: bool,
    ) -> Result<Array2<T>> {
        if coupled(self.mode) {
            return Err(unsupported(&format!(
                "path gradient in BN `{}` mode",
                self.mode
            )));
        }
        self.check_depth(b + 1)?;
        let mut sink = Sink::new(Want::default(), self.mode);
        self.blocks[b]
            .path_vjp(&self.kept(fwd).blocks[b], g, through_branch, &mut sink)
            .ok_or_else(|| {
                EngineError::Input(
                    "path gradients need residual blocks s(x) + α·F(x) (plain blocks, gated or dropout shortcuts and recursions have no path expansion)".into(),
                )
            })
    }

    fn stem_vjp(&self, fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>> {
        let mut sink = Sink::new(Want::default(), self.mode);
        Ok(chain::backward(
            &self.stem,
            &self.kept(fwd).stem,
            g,
            &mut sink,
        ))
    }

    fn param_norms(&self) -> Vec<(String, f64)> {
        self.params()
            .into_iter()
            .map(|(name, v)| (name, slice_norm(v)))
            .collect()
    }

    fn update_params(&mut self, grads: &Grads<T>, f: &mut ParamUpdate<'_, T>) -> Result<()> {
        let shapes = std::mem::take(&mut self.shapes);
        let result = (|| {
            let params = self.params_mut();
            if params.len() != grads.params.len() {
                return Err(EngineError::Input(format!(
                    "{} gradients for {} parameters: update after a whole-net backward pass with parameters",
                    grads.params.len(),
                    params.len()
                )));
            }
            for ((name, w), (_, g)) in params.into_iter().zip(&grads.params) {
                f(&name, &shapes[&name], w, g);
            }
            Ok(())
        })();
        self.shapes = shapes;
        result
    }

    fn update_running_stats(&mut self, fwd: &Forward<T>) {
        let n = fwd.hidden[0].nrows();
        let kept = fwd
            .state
            .downcast_ref::<Kept<T>>()
            .expect("a forward pass of this engine");
        chain::update_running_stats(&mut self.stem, &kept.stem, n);
        for (unit, s) in self.blocks.iter_mut().zip(&kept.blocks) {
            unit.update_running_stats(s, n);
        }
    }

    fn sync(&self) -> Result<()> {
        let vars: HashMap<String, candle_core::Var> = self.net.state_dict().into_iter().collect();
        let w = Writer { vars: &vars };
        for op in &self.stem {
            op.write(&w)?;
        }
        for unit in &self.blocks {
            unit.write(&w)?;
        }
        self.head.write(&w)
    }
}

/// The engine runs a net in its own float type.
fn check_dtype<T: Real>(dtype: candle_core::DType) -> Result<()> {
    if dtype != T::STORED {
        return Err(EngineError::Input(format!(
            "net is {dtype:?}, the engine was asked for {:?}",
            T::STORED
        )));
    }
    Ok(())
}

/// Parameter shapes by state-dict name.
fn shapes(net: &dyn Model) -> HashMap<String, Vec<usize>> {
    net.parameters()
        .into_iter()
        .map(|(name, v)| (name, v.dims().to_vec()))
        .collect()
}
