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

use gradscope_nets::{BnMode, Mlp};
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
    net: Mlp,
    kernels: Kernels,
    stem: Vec<Op<T>>,
    blocks: Vec<Unit<T>>,
    head: Linear<T>,
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
        if net.dtype() != T::DTYPE {
            return Err(EngineError::Input(format!(
                "net is {:?}, the engine was asked for {:?}",
                net.dtype(),
                T::DTYPE
            )));
        }
        let blocks = net
            .blocks()
            .iter()
            .enumerate()
            .map(|(l, b)| Unit::from_block(&format!("layers.{l}"), b, repeated))
            .collect::<Result<Vec<_>>>()?;
        Ok(DenseNet {
            net: net.clone(),
            kernels: Kernels::Engine,
            stem: vec![Op::Linear(Linear::from_layer(
                "stem".into(),
                net.stem(),
                repeated,
            )?)],
            blocks,
            head: Linear::from_layer("head".into(), net.head(), repeated)?,
            shapes: net
                .parameters()
                .into_iter()
                .map(|(name, v)| (name, v.dims().to_vec()))
                .collect(),
            mode,
        })
    }

    fn kept<'f>(&self, fwd: &'f Forward<T>) -> &'f Kept<T> {
        fwd.state
            .downcast_ref::<Kept<T>>()
            .expect("a forward pass of this engine")
    }

    /// Every trainable parameter as (state-dict name, values in the
    /// tensor's layout), in state-dict order: the order of [`Grads::params`].
    fn params_mut(&mut self) -> Vec<(String, &mut [T])> {
        let mut out = Vec::new();
        self.stem.iter_mut().for_each(|op| op.params_mut(&mut out));
        self.blocks.iter_mut().for_each(|u| u.params_mut(&mut out));
        self.head.params_mut(&mut out);
        out
    }

    /// [`params_mut`](Self::params_mut), read-only.
    fn params(&self) -> Vec<(String, &[T])> {
        let mut out = Vec::new();
        self.stem.iter().for_each(|op| op.params(&mut out));
        self.blocks.iter().for_each(|u| u.params(&mut out));
        self.head.params(&mut out);
        out
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
        self.check_depth(depth)?;
        Ok(self.head.forward(fwd.hidden[depth].view()))
    }

    fn backward(
        &self,
        fwd: &Forward<T>,
        depth: usize,
        out_grad: Option<ArrayView2<T>>,
        want: Want,
    ) -> Result<Grads<T>> {
        self.check_depth(depth)?;
        let kept = self.kept(fwd);
        let n = fwd.hidden[0].nrows();
        let g_out = match out_grad {
            Some(g) => g.to_owned(),
            None => Array2::from_elem((n, self.head.outputs()), T::one()),
        };
        let mut sink = Sink::new(want, self.mode);
        // The head's saved input is h_depth.
        let head_input = (want.params || want.gram).then(|| fwd.hidden[depth].clone());
        let mut g = self.head.vjp(
            head_input.as_ref(),
            ndarray::CowArray::from(g_out),
            &mut sink,
        );
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
            param_norms: params.iter().map(|(_, g)| slice_norm(g)).collect(),
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
        let mut out = Array2::zeros((self.blocks.len() + 1, n));
        out.row_mut(0).assign(&t.dot(&w_sum));
        for (l, unit) in self.blocks.iter().enumerate() {
            (h, t) = unit.tangent(h, t, mode);
            out.row_mut(l + 1).assign(&t.dot(&w_sum));
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
        // Every MLP block keeps its width; a residual block's shortcut here
        // is read as the identity (Veit et al.'s deletion).
        self.check_depth(b + 1)?;
        Ok(h)
    }

    fn head(&self, h: &Array2<T>) -> Result<Array2<T>> {
        Ok(self.head.forward(h.view()))
    }

    fn head_vjp(&self, _fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>> {
        let mut sink = Sink::new(Want::default(), self.mode);
        Ok(self.head.vjp(None, ndarray::CowArray::from(g), &mut sink))
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
        let Some(r) = self.blocks[b].plain_sum() else {
            return Err(EngineError::Input(
                "path gradients need blocks x + α·F(x) (plain, gated, scaled, projected or normalised-after-the-sum shortcuts have no path expansion)".into(),
            ));
        };
        if !through_branch {
            return Ok(g.to_owned());
        }
        let mut sink = Sink::new(Want::default(), self.mode);
        Ok(r.branch_vjp(&self.kept(fwd).blocks[b], g, &mut sink))
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
