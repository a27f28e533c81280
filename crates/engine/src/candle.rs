//! The engine's interface on candle's autograd: the oracle the kernels are
//! tested against, and the path for nets whose layers are not engine ops.
//!
//! candle keeps gradients only for `Var`s, so the input is a `Var` (giving
//! ∂L/∂x) and a zero `Var` "probe" is added to every hidden state h_l: its
//! gradient is ∂L/∂h_l.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{BlockNet, BnMode, Model, Net};
use ndarray::{Array2, ArrayView2};

use crate::engine::{Engine, Forward, Grads, Kernels, ParamUpdate};
use crate::ops::Want;
use crate::{EngineError, Real, Result};

/// A net on candle's autograd, in element type T (the net's own).
pub(crate) struct CandleNet<T> {
    /// A clone of the net, sharing its variables.
    net: Net,
    kernels: Kernels,
    mode: BnMode,
    /// Per-example shape of the input and of each hidden state h_0 … h_L.
    dims: Vec<Vec<usize>>,
    _t: std::marker::PhantomData<T>,
}

/// The forward pass's graph: the input `Var`, one probe per hidden state,
/// and the hidden states with their probes added.
struct Graph {
    x: Var,
    probes: Vec<Var>,
    hidden: Vec<Tensor>,
    norms: Vec<f64>,
}

/// ‖t‖_F, accumulated in f64 so squares of large f32 values do not overflow.
pub(crate) fn frobenius(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

/// A tensor as (batch × features) of T.
fn to_rows<T: Real + candle_core::WithDType>(t: &Tensor) -> Result<Array2<T>> {
    let n = t.dim(0)?;
    let v = t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?;
    let per = v.len() / n.max(1);
    Ok(Array2::from_shape_vec((n, per), v).expect("shape matches the tensor's"))
}

/// Whether parameter `name` belongs to the stem, the head or one of the
/// first `depth` blocks of an MLP (conv nets always run whole here).
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

impl<T: Real + candle_core::WithDType> CandleNet<T> {
    /// The net on candle; `reason` says why (kept in [`Kernels::Candle`]).
    pub(crate) fn new(net: &Net, mode: BnMode, reason: String) -> Result<Self> {
        if net.dtype() != T::DTYPE {
            return Err(EngineError::Input(format!(
                "net is {:?}, the engine was asked for {:?}",
                net.dtype(),
                T::DTYPE
            )));
        }
        // The hidden shapes, from one zero example in eval mode (which
        // changes nothing in the net).
        let input = net.input_dims();
        let mut shape = vec![1];
        shape.extend(&input);
        let x = Tensor::zeros(shape, net.dtype(), &Device::Cpu)?;
        let mut h = net.stem_forward(&x, BnMode::Eval)?;
        let mut dims = vec![input, h.dims()[1..].to_vec()];
        for b in 0..net.num_blocks() {
            h = net.block_forward(b, &h, BnMode::Eval)?;
            dims.push(h.dims()[1..].to_vec());
        }
        Ok(CandleNet {
            net: net.clone(),
            kernels: Kernels::Candle { reason },
            mode,
            dims,
            _t: std::marker::PhantomData,
        })
    }

    /// Rows (batch × features) as a tensor of hidden state `l`'s shape
    /// (`None`: the input's).
    fn tensor(&self, a: ArrayView2<T>, l: Option<usize>) -> Result<Tensor> {
        let dims = match l {
            None => &self.dims[0],
            Some(l) => &self.dims[l + 1],
        };
        let mut shape = vec![a.nrows()];
        shape.extend(dims);
        let data: Vec<T> = a.iter().copied().collect();
        Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
    }

    fn graph<'f>(&self, fwd: &'f Forward<T>) -> &'f Graph {
        fwd.state
            .downcast_ref::<Graph>()
            .expect("a forward pass of this engine")
    }

    /// gᵀ ∂f(a)/∂a, with a re-rooted at a fresh `Var`.
    fn vjp(
        &self,
        f: impl Fn(&Tensor) -> gradscope_nets::Result<Tensor>,
        at: &Tensor,
        g: &Tensor,
    ) -> Result<Tensor> {
        let v = Var::from_tensor(&at.detach())?;
        let out = f(v.as_tensor())?;
        let grads = (out * g)?.sum_all()?.backward()?;
        Ok(match grads.get(v.as_tensor()) {
            Some(t) => t.clone(),
            None => v.as_tensor().zeros_like()?,
        })
    }

    /// The loss whose backward pass gives ∂L/∂θ: Σ outputs·g (Σ outputs
    /// when `g` is `None`).
    fn loss(out: &Tensor, g: Option<&Tensor>) -> Result<Tensor> {
        Ok(match g {
            Some(g) => (out * g)?.sum_all()?,
            None => out.sum_all()?,
        })
    }

    /// Per-example Gram matrices by layer: one backward pass per example
    /// of ⟨output_i, g_i⟩ (samples must not interact).
    fn grams(&self, out: &Tensor, g: &Tensor, depth: usize) -> Result<Vec<(String, Array2<f64>)>> {
        let n = out.dim(0)?;
        let params: Vec<(String, Var)> = self
            .net
            .parameters()
            .into_iter()
            .filter(|(name, _)| used_at_depth(name, depth))
            .collect();
        let layer_of = |name: &str| name.rsplit_once('.').map_or(name, |(l, _)| l).to_string();
        let mut layers: Vec<String> = Vec::new();
        for (name, _) in &params {
            let l = layer_of(name);
            if !layers.contains(&l) {
                layers.push(l);
            }
        }
        // per_example[i][layer] = example i's flattened gradient of the layer's parameters.
        let mut per_example: Vec<Vec<Vec<f64>>> = Vec::with_capacity(n);
        for i in 0..n {
            let loss = (out.narrow(0, i, 1)? * g.narrow(0, i, 1)?)?.sum_all()?;
            let grads = loss.backward()?;
            let mut by_layer = vec![Vec::new(); layers.len()];
            for (name, var) in &params {
                let k = layers
                    .iter()
                    .position(|l| *l == layer_of(name))
                    .expect("listed");
                match grads.get(var.as_tensor()) {
                    Some(t) => {
                        by_layer[k].extend(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?)
                    }
                    None => by_layer[k].extend(std::iter::repeat_n(0.0, var.elem_count())),
                }
            }
            per_example.push(by_layer);
        }
        Ok(layers
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let gram = Array2::from_shape_fn((n, n), |(i, j)| {
                    per_example[i][k]
                        .iter()
                        .zip(&per_example[j][k])
                        .map(|(a, b)| a * b)
                        .sum()
                });
                (name.clone(), gram)
            })
            .collect())
    }
}

impl<T: Real + candle_core::WithDType> Engine<T> for CandleNet<T> {
    fn kernels(&self) -> &Kernels {
        &self.kernels
    }

    fn depth(&self) -> usize {
        self.net.num_blocks()
    }

    fn mode(&self) -> BnMode {
        self.mode
    }

    fn set_mode(&mut self, mode: BnMode) {
        self.mode = mode;
    }

    fn forward(&self, x: ArrayView2<T>, _inputs: bool) -> Result<Forward<T>> {
        let x = Var::from_tensor(&self.tensor(x, None)?)?;
        let dev = Device::Cpu;
        let dtype = self.net.dtype();
        let mut probes = Vec::new();
        let mut hidden = Vec::new();
        let mut with_probe = |h: Tensor| -> Result<Tensor> {
            let p = Var::zeros(h.shape(), dtype, &dev)?;
            let h = (h + p.as_tensor())?;
            probes.push(p);
            hidden.push(h.clone());
            Ok(h)
        };
        let mut h = with_probe(self.net.stem_forward(x.as_tensor(), self.mode)?)?;
        for b in 0..self.net.num_blocks() {
            h = with_probe(self.net.block_forward(b, &h, self.mode)?)?;
        }
        let norms = hidden.iter().map(frobenius).collect::<Result<Vec<_>>>()?;
        Ok(Forward {
            hidden: hidden.iter().map(to_rows).collect::<Result<_>>()?,
            state: Box::new(Graph {
                x,
                probes,
                hidden,
                norms,
            }),
        })
    }

    fn activation_norms(&self, fwd: &Forward<T>, depth: usize) -> Vec<f64> {
        self.graph(fwd).norms[..=depth].to_vec()
    }

    fn output(&self, fwd: &Forward<T>, depth: usize) -> Result<Array2<T>> {
        to_rows(
            &self
                .net
                .head_forward(&self.graph(fwd).hidden[depth], self.mode)?,
        )
    }

    fn backward(
        &self,
        fwd: &Forward<T>,
        depth: usize,
        out_grad: Option<ArrayView2<T>>,
        want: Want,
    ) -> Result<Grads<T>> {
        let gr = self.graph(fwd);
        if depth > self.depth() {
            return Err(EngineError::Input(format!(
                "cannot run {depth} blocks of a depth-{} net",
                self.depth()
            )));
        }
        let out = self.net.head_forward(&gr.hidden[depth], self.mode)?;
        let g = out_grad
            .map(|g| {
                let data: Vec<T> = g.iter().copied().collect();
                Tensor::from_vec(data, out.shape(), &Device::Cpu)
            })
            .transpose()?;
        let grads = Self::loss(&out, g.as_ref())?.backward()?;
        let mut hidden_norms = Vec::with_capacity(depth + 1);
        let mut hidden = Vec::new();
        for p in &gr.probes[..=depth] {
            let grad = grads.get(p.as_tensor());
            hidden_norms.push(match grad {
                Some(g) => frobenius(g)?,
                None => 0.0,
            });
            if want.hidden {
                hidden.push(match grad {
                    Some(g) => to_rows(g)?,
                    None => to_rows(&p.as_tensor().zeros_like()?)?,
                });
            }
        }
        let input = match grads.get(gr.x.as_tensor()) {
            Some(g) => to_rows(g)?,
            None => to_rows(&gr.x.as_tensor().zeros_like()?)?,
        };
        let (mut params, mut unreached) = (Vec::new(), Vec::new());
        if want.params {
            for (name, var) in self.net.parameters() {
                if !used_at_depth(&name, depth) {
                    continue;
                }
                let values = match grads.get(var.as_tensor()) {
                    Some(t) => t.to_dtype(T::DTYPE)?.flatten_all()?.to_vec1::<T>()?,
                    None => {
                        unreached.push(name.clone());
                        vec![T::zero(); var.elem_count()]
                    }
                };
                params.push((name, values));
            }
        }
        let gram = if want.gram {
            let ones;
            let g = match &g {
                Some(g) => g,
                None => {
                    ones = out.ones_like()?;
                    &ones
                }
            };
            self.grams(&out, g, depth)?
        } else {
            Vec::new()
        };
        Ok(Grads {
            hidden_norms,
            hidden,
            input,
            params,
            unreached,
            gram,
        })
    }

    fn tangent_sweep(&self, x: ArrayView2<T>, v: &[T]) -> Result<Array2<T>> {
        if matches!(self.mode, BnMode::Full | BnMode::Train) {
            return Err(EngineError::Input(format!(
                "the forward-mode sweep needs samples that do not interact, not BN `{}` mode",
                self.mode
            )));
        }
        // No forward mode in candle: per depth, the input gradient of the
        // output sum (per sample, since samples do not interact) along v.
        let fwd = self.forward(x, false)?;
        let depth = self.depth();
        let mut out = Array2::zeros((depth + 1, x.nrows()));
        for d in 0..=depth {
            let g = self.backward(&fwd, d, None, Want::default())?.input;
            for (i, row) in g.rows().into_iter().enumerate() {
                out[[d, i]] = row.iter().zip(v).fold(T::zero(), |s, (&a, &b)| s + a * b);
            }
        }
        Ok(out)
    }

    fn predict(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        to_rows(&self.net.forward(&self.tensor(x, None)?, self.mode)?)
    }

    fn stem(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        to_rows(&self.net.stem_forward(&self.tensor(x, None)?, self.mode)?)
    }

    fn block(&self, b: usize, h: &Array2<T>) -> Result<Array2<T>> {
        let t = self.tensor(h.view(), Some(b))?;
        to_rows(&self.net.block_forward(b, &t, self.mode)?)
    }

    fn bypass(&self, b: usize, h: Array2<T>) -> Result<Array2<T>> {
        let t = self.tensor(h.view(), Some(b))?;
        Ok(match self.net.block_parts(b, &t, self.mode)? {
            Some((_, s)) => to_rows(&self.net.block_post(b, &s)?)?,
            None => h,
        })
    }

    fn head(&self, h: &Array2<T>) -> Result<Array2<T>> {
        let t = self.tensor(h.view(), Some(self.depth()))?;
        to_rows(&self.net.head_forward(&t, self.mode)?)
    }

    fn head_vjp(&self, fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>> {
        let h = &self.graph(fwd).hidden[self.depth()];
        let out = self.net.head_forward(h, self.mode)?;
        let data: Vec<T> = g.iter().copied().collect();
        let g = Tensor::from_vec(data, out.shape(), &Device::Cpu)?;
        to_rows(&self.vjp(|t| self.net.head_forward(t, self.mode), h, &g)?)
    }

    fn path_vjp(
        &self,
        fwd: &Forward<T>,
        b: usize,
        g: ArrayView2<T>,
        through_branch: bool,
    ) -> Result<Array2<T>> {
        let h = &self.graph(fwd).hidden[b];
        let mode = self.mode;
        let Some((f, s)) = self.net.block_parts(b, h, mode)? else {
            return Err(EngineError::Input(
                "path gradients need blocks x + α·F(x) (plain, gated, scaled or normalised-after-the-sum shortcuts have no path expansion)".into(),
            ));
        };
        let g = self.tensor(g, Some(b + 1))?;
        // Through the activation after the addition, at its actual input.
        let pre = (f + s)?;
        let g_pre = self.vjp(|t| self.net.block_post(b, t), &pre, &g)?;
        let part = |t: &Tensor| -> gradscope_nets::Result<Tensor> {
            let (f, s) = self.net.block_parts(b, t, mode)?.expect("a residual block");
            Ok(if through_branch { f } else { s })
        };
        to_rows(&self.vjp(part, h, &g_pre)?)
    }

    fn stem_vjp(&self, fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>> {
        let gr = self.graph(fwd);
        let g = self.tensor(g, Some(0))?;
        to_rows(&self.vjp(
            |t| self.net.stem_forward(t, self.mode),
            gr.x.as_tensor(),
            &g,
        )?)
    }

    fn param_norms(&self) -> Vec<(String, f64)> {
        self.net
            .parameters()
            .into_iter()
            .map(|(name, v)| {
                let n = frobenius(v.as_tensor()).unwrap_or(f64::NAN);
                (name, n)
            })
            .collect()
    }

    fn update_params(&mut self, grads: &Grads<T>, f: &mut ParamUpdate<'_, T>) -> Result<()> {
        let params = self.net.parameters();
        if params.len() != grads.params.len() {
            return Err(EngineError::Input(format!(
                "{} gradients for {} parameters: update after a whole-net backward pass with parameters",
                grads.params.len(),
                params.len()
            )));
        }
        for ((name, var), (_, g)) in params.iter().zip(&grads.params) {
            let mut values = var.as_tensor().flatten_all()?.to_vec1::<T>()?;
            f(name, var.dims(), &mut values, g);
            var.set(&Tensor::from_vec(values, var.dims(), var.device())?)?;
        }
        Ok(())
    }

    fn update_running_stats(&mut self, _fwd: &Forward<T>) {
        // candle's BN layers update their running statistics in the
        // training-mode forward pass itself.
    }

    fn sync(&self) -> Result<()> {
        // The net's own variables are the parameters.
        Ok(())
    }
}
