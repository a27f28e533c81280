//! The seam between a net and the numbers computed on it: [`Engine`] is
//! what captures, depth sweeps, lesions, path gradients, Gram matrices and
//! the training step are written against, once; [`for_net`] is the only
//! place that picks the engine's kernels or candle's autograd for a net, and
//! it says why when it picks candle.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Mutex;

use gradscope_nets::{BnMode, Net};
use ndarray::{Array2, ArrayView2};

use crate::ops::Want;
use crate::{Real, Result};

/// Which kernels compute a net's passes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// The engine's own per-op kernels (one file per op).
    Engine,
    /// candle's autograd, for what the engine does not cover; `reason`
    /// says what (or that candle was asked for).
    Candle {
        /// Why candle computes this net.
        reason: String,
    },
}

/// What [`for_net`] is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Request {
    /// The engine's kernels where they cover the net, else candle.
    #[default]
    Auto,
    /// candle's autograd whatever the net: the oracle the kernels are
    /// tested against.
    Candle,
}

/// How a net's engine is built.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How BN layers normalise and how their gradient treats the statistics.
    pub mode: BnMode,
    /// Kernels or candle.
    pub request: Request,
    /// Whether the net will run more than once (training, benchmarks): its
    /// linear layers then keep a row-major Wᵀ, which pays from the second
    /// pass on; a capture runs once and packs W's transposed view instead.
    pub repeated: bool,
}

impl Options {
    /// One pass in BN mode `mode`, on the engine where it covers the net.
    pub fn once(mode: BnMode) -> Self {
        Options {
            mode,
            request: Request::Auto,
            repeated: false,
        }
    }

    /// Many passes (training) in BN mode `mode`.
    pub fn repeated(mode: BnMode) -> Self {
        Options {
            repeated: true,
            ..Options::once(mode)
        }
    }

    /// The same options on candle's autograd.
    pub fn on_candle(self) -> Self {
        Options {
            request: Request::Candle,
            ..self
        }
    }
}

/// The forward pass of the whole net, kept for backward passes from any
/// depth (the depth-L net is the first L blocks and the same head).
pub struct Forward<T> {
    /// h_0 (the stem's output) … h_L, flattened per example (batch × features).
    pub hidden: Vec<Array2<T>>,
    pub(crate) state: Box<dyn Any + Send + Sync>,
}

/// What a backward pass returns.
#[derive(Clone, Debug)]
pub struct Grads<T> {
    /// ‖∂L/∂h_l‖_F for l = 0 … depth.
    pub hidden_norms: Vec<f64>,
    /// ∂L/∂h_l for l = 0 … depth, when asked for (empty otherwise).
    pub hidden: Vec<Array2<T>>,
    /// ∂L/∂x.
    pub input: Array2<T>,
    /// (name, ∂L/∂θ flattened in the tensor's own layout) per parameter
    /// the depth-`depth` net uses, in state-dict order, when asked for.
    pub params: Vec<(String, Vec<T>)>,
    /// Parameters of `params` the backward pass did not reach (their
    /// gradient is given as zeros): always empty on the engine's kernels;
    /// on candle, a layer that records no backward op (a bug the tests
    /// look for).
    pub unreached: Vec<String>,
    /// (layer name, B × B Gram matrix of per-example gradients) per layer
    /// with parameters, in state-dict order, when asked for.
    pub gram: Vec<(String, Array2<f64>)>,
}

impl<T: Real> Grads<T> {
    /// ‖∂L/∂θ‖_F of each entry of `params`, in f64 (computed when asked:
    /// a backward pass that only updates the weights does not need them).
    pub fn param_norms(&self) -> Vec<f64> {
        self.params
            .iter()
            .map(|(_, g)| crate::kernels::slice_norm(g))
            .collect()
    }
}

/// `f(name, shape, θ, ∂L/∂θ)`, changing θ in place: an optimiser's update
/// of one parameter.
pub type ParamUpdate<'a, T> = dyn FnMut(&str, &[usize], &mut [T], &[T]) + 'a;

/// The passes of one net, on the engine's kernels or on candle. Inputs and
/// outputs are flattened per example (batch × features).
pub trait Engine<T: Real>: Send + Sync {
    /// Which kernels compute the passes.
    fn kernels(&self) -> &Kernels;
    /// Number of blocks L.
    fn depth(&self) -> usize;
    /// The BN mode of every pass.
    fn mode(&self) -> BnMode;
    /// Run BN in `mode` from now on.
    fn set_mode(&mut self, mode: BnMode);
    /// Forward pass of the whole net on x; `inputs`: also keep each layer's
    /// input (for parameter gradients and Grams).
    fn forward(&self, x: ArrayView2<T>, inputs: bool) -> Result<Forward<T>>;
    /// ‖h_l‖_F for l = 0 … depth.
    fn activation_norms(&self, fwd: &Forward<T>, depth: usize) -> Vec<f64>;
    /// The outputs of the depth-`depth` net (the head on h_depth).
    fn output(&self, fwd: &Forward<T>, depth: usize) -> Result<Array2<T>>;
    /// Reverse mode for the depth-`depth` net with ∂L/∂output = `out_grad`
    /// (all ones when `None`: L = Σ outputs). Row i of `out_grad` is example
    /// i's own loss gradient, so per-example gradients and their Grams are
    /// well defined when samples do not interact (per-sample or eval mode).
    fn backward(
        &self,
        fwd: &Forward<T>,
        depth: usize,
        out_grad: Option<ArrayView2<T>>,
        want: Want,
    ) -> Result<Grads<T>>;
    /// Forward mode along input direction `v`: the directional derivative of
    /// the output sum of the depth-L net, D_v f_L(xᵢ), for L = 0 … depth
    /// (rows) and samples i (columns), in one pass. Needs samples that do
    /// not interact (per-sample or eval mode).
    fn tangent_sweep(&self, x: ArrayView2<T>, v: &[T]) -> Result<Array2<T>>;
    /// The whole net's outputs, keeping nothing.
    fn predict(&self, x: ArrayView2<T>) -> Result<Array2<T>>;
    /// h_0 = stem(x).
    fn stem(&self, x: ArrayView2<T>) -> Result<Array2<T>>;
    /// Block b's output for input h.
    fn block(&self, b: usize, h: &Array2<T>) -> Result<Array2<T>>;
    /// What block b passes on when it is deleted (Veit et al. 2016): its
    /// shortcut (then the activation after the sum, if any); the input
    /// itself for a block without one.
    fn bypass(&self, b: usize, h: Array2<T>) -> Result<Array2<T>>;
    /// The outputs from the last hidden state.
    fn head(&self, h: &Array2<T>) -> Result<Array2<T>>;
    /// ∂L/∂h_L from ∂L/∂output at the whole net's forward pass `fwd`.
    fn head_vjp(&self, fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>>;
    /// ∂L/∂h_b from ∂L/∂h_{b+1} = g along one branch of residual block b:
    /// through its branch α·F when `through_branch`, else through its
    /// shortcut (Veit et al. 2016's path view).
    fn path_vjp(
        &self,
        fwd: &Forward<T>,
        b: usize,
        g: ArrayView2<T>,
        through_branch: bool,
    ) -> Result<Array2<T>>;
    /// ∂L/∂x from ∂L/∂h_0 = g.
    fn stem_vjp(&self, fwd: &Forward<T>, g: ArrayView2<T>) -> Result<Array2<T>>;
    /// (state-dict name, ‖θ‖_F) of every trainable parameter.
    fn param_norms(&self) -> Vec<(String, f64)>;
    /// Calls `f(name, shape, θ, ∂L/∂θ)` for every parameter, in state-dict
    /// order, with the gradient of `grads` (a whole-net backward pass with
    /// parameters), so `f` can update θ in place (an optimiser step).
    fn update_params(&mut self, grads: &Grads<T>, f: &mut ParamUpdate<'_, T>) -> Result<()>;
    /// After a forward pass in [`BnMode::Train`]: each BN's running
    /// statistics move to (1 − m)·running + m·batch (unbiased batch
    /// variance), as PyTorch does; candle's BN layers do this during the
    /// forward pass itself.
    fn update_running_stats(&mut self, fwd: &Forward<T>);
    /// Write every parameter and BN running statistic back into the net's
    /// variables (for weights files and checkpoints).
    fn sync(&self) -> Result<()>;
}

/// Work to run on a net's engine, whatever its float type: the one place
/// where the element type is chosen is [`run`].
pub trait Task {
    /// What the work returns.
    type Output;
    /// The work on the net's engine.
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> Result<Self::Output>;
}

/// Run `task` on `net`'s engine: the engine's kernels where they cover the
/// net, else candle's autograd (recorded in [`fallbacks`], with why).
pub fn run<K: Task>(net: &Net, opts: Options, task: K) -> Result<K::Output> {
    use gradscope_nets::Model;
    match net.dtype() {
        candle_core::DType::F32 => task.run(for_net::<f32>(net, opts)?.as_mut()),
        candle_core::DType::F64 => task.run(for_net::<f64>(net, opts)?.as_mut()),
        other => Err(crate::EngineError::Input(format!(
            "nets are f32 or f64, not {other:?}"
        ))),
    }
}

/// The engine for `net` in element type T (the net's own): the engine's
/// kernels where they cover every layer and `opts` allows them, else
/// candle's autograd, with the reason kept in [`fallbacks`].
pub fn for_net<T: Real>(net: &Net, opts: Options) -> Result<Box<dyn Engine<T>>> {
    let why = match (opts.request, net) {
        (Request::Candle, _) => "candle was asked for".to_string(),
        (Request::Auto, Net::Mlp(mlp)) => {
            return Ok(Box::new(crate::dense::DenseNet::<T>::build(
                mlp,
                opts.mode,
                opts.repeated,
            )?));
        }
        (Request::Auto, Net::Conv(conv)) => {
            return Ok(Box::new(crate::dense::DenseNet::<T>::build_conv(
                conv,
                opts.mode,
                opts.repeated,
            )?));
        }
        (Request::Auto, Net::Transformer(t)) => {
            return Ok(Box::new(crate::transformer::TransformerNet::<T>::build(
                t,
                opts.mode,
                opts.repeated,
            )?));
        }
        (Request::Auto, Net::Custom { .. }) => {
            let why = "a custom model is not made of engine ops".to_string();
            note_fallback(&format!("{}: {why}", net.describe()));
            why
        }
    };
    T::candle(net, opts.mode, why)
}

static FALLBACKS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn note_fallback(what: &str) {
    *FALLBACKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(what.to_string())
        .or_default() += 1;
}

/// Every kind of net this process ran on candle because the engine does not
/// cover it, with why (`conv-resnet depth 20: convolutions are not engine
/// ops yet`) and how many times: a run's log and provenance say what was
/// computed where (a run compares the counts before and after it).
pub fn fallbacks() -> BTreeMap<String, u64> {
    FALLBACKS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
