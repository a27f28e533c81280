//! One forward and backward pass with everything a study may want from it.
//!
//! The objective is the sum of the net's outputs over the batch,
//! L = Σᵢ Σₖ fₖ(xᵢ). When samples do not interact (no BN, or BN in
//! [`BnMode::PerSample`] or [`BnMode::Eval`]) its gradient with respect to xᵢ is
//! the per-sample input gradient g(xᵢ) = ∂f(xᵢ)/∂xᵢ of Balduzzi et al. 2017.

use gradscope_engine::{Engine, Kernels, Options, Real, Request, Task, Want, to_f64};
use gradscope_nets::{BnMode, Net};
use ndarray::{Array2, ArrayView2};

use crate::{ProbeError, Result};

/// What to capture.
#[derive(Clone, Copy, Debug)]
pub struct CaptureOpts {
    /// How BN layers normalise, and how their gradient treats the statistics.
    pub bn_mode: BnMode,
    /// Run the depth-`d` prefix of the net (first d blocks, then the head);
    /// `None` for the whole net.
    pub depth: Option<usize>,
    /// Keep the full dL/dh_l arrays, not only their norms.
    pub keep_layer_grads: bool,
    /// Compute ‖∂L/∂θ‖ of every parameter tensor (`Capture::params`); without
    /// them the engine skips the weight-gradient GEMMs, a third of its work.
    pub param_grads: bool,
    /// The engine's kernels where they cover the net (the default), or
    /// candle's autograd: the oracle.
    pub request: Request,
}

impl Default for CaptureOpts {
    fn default() -> Self {
        CaptureOpts {
            bn_mode: BnMode::PerSample,
            depth: None,
            keep_layer_grads: false,
            param_grads: true,
            request: Request::Auto,
        }
    }
}

/// Which pass a numerical fault appeared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// In the forward pass (activations).
    Forward,
    /// In the backward pass (gradients).
    Backward,
}

/// A layer whose activations (forward) or gradients (backward) hold NaN or ±inf.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    /// Forward or backward.
    pub pass: Pass,
    /// Index of the hidden state: 0 for the stem's output h_0, l for block l's output.
    pub layer: usize,
    /// Name of the hidden state (`h0`, `h1`, …).
    pub name: String,
    /// True when a NaN is present (otherwise the values overflowed to ±inf).
    pub nan: bool,
}

/// Per hidden state h_l: its name, ‖h_l‖_F and ‖∂L/∂h_l‖_F over the batch.
#[derive(Clone, Debug)]
pub struct LayerStat {
    /// Name of the hidden state (`h0`, `h1`, …).
    pub name: String,
    /// ‖h_l‖_F over the batch.
    pub activation_norm: f64,
    /// ‖∂L/∂h_l‖_F over the batch.
    pub grad_norm: f64,
}

/// Per parameter tensor: ‖θ‖_F and ‖∂L/∂θ‖_F; `has_grad` is false when the
/// backward pass did not reach it (which a test treats as a bug).
#[derive(Clone, Debug)]
pub struct ParamStat {
    /// The parameter's `state_dict` name.
    pub name: String,
    /// ‖θ‖_F.
    pub value_norm: f64,
    /// ‖∂L/∂θ‖_F.
    pub grad_norm: f64,
    /// Whether the backward pass reached the parameter.
    pub has_grad: bool,
}

/// Everything one forward/backward pass gives.
#[derive(Clone, Debug)]
pub struct Capture {
    /// f(xᵢ), shape (batch, output_dim).
    pub output: Array2<f64>,
    /// ∂L/∂xᵢ, shape (batch, input_dim).
    pub input_grads: Array2<f64>,
    /// h_0 … h_L.
    pub layers: Vec<LayerStat>,
    /// ∂L/∂h_l for each l, when asked for, each (batch, width).
    pub layer_grads: Option<Vec<Array2<f64>>>,
    /// Every parameter tensor the pass reaches (empty unless
    /// `CaptureOpts::param_grads`).
    pub params: Vec<ParamStat>,
    /// NaN/inf by layer, in the order found (forward first, then backward).
    pub faults: Vec<Fault>,
    /// Which kernels computed it.
    pub kernels: Kernels,
}

impl Capture {
    /// The first layer (lowest index) whose forward values are not finite.
    pub fn first_forward_fault(&self) -> Option<&Fault> {
        self.faults.iter().find(|f| f.pass == Pass::Forward)
    }

    /// The first layer the backward pass reached (highest index) whose
    /// gradient is not finite.
    pub fn first_backward_fault(&self) -> Option<&Fault> {
        self.faults
            .iter()
            .filter(|f| f.pass == Pass::Backward)
            .max_by_key(|f| f.layer)
    }

    /// ‖∂L/∂h_l‖ for l = 0 … L.
    pub fn layer_grad_norms(&self) -> Vec<f64> {
        self.layers.iter().map(|l| l.grad_norm).collect()
    }
}

/// The name of hidden state `l`: `stem` for h_0, `layers.{l-1}` for block outputs.
pub fn hidden_name(l: usize) -> String {
    if l == 0 {
        "stem".to_string()
    } else {
        format!("layers.{}", l - 1)
    }
}

/// Run `net` on the batch `x` (batch, input features) with gradient capture:
/// one forward and one backward pass of the depth-`opts.depth` net.
pub fn capture(net: &Net, x: ArrayView2<f64>, opts: &CaptureOpts) -> Result<Capture> {
    check_input(net, x, opts.depth)?;
    let engine = Options {
        request: opts.request,
        ..Options::once(opts.bn_mode)
    };
    Ok(gradscope_engine::run(net, engine, One { x, opts })?)
}

/// Captures of the depth-d prefixes of `net` for every d in `depths`, sharing
/// one forward pass (the depth-d net is the first d blocks of the deepest and
/// the same head). Parameter gradients are not computed (`params` is empty).
pub fn capture_depths(
    net: &Net,
    x: ArrayView2<f64>,
    depths: &[usize],
    bn_mode: BnMode,
) -> Result<Vec<Capture>> {
    for &d in depths {
        check_input(net, x, Some(d))?;
    }
    Ok(gradscope_engine::run(
        net,
        Options::once(bn_mode),
        Depths { x, depths },
    )?)
}

/// Inputs `net` can run: its input features as columns, at least one row,
/// and a depth the net has.
fn check_input(net: &Net, x: ArrayView2<f64>, depth: Option<usize>) -> Result<()> {
    use gradscope_nets::BlockNet;
    let (n, d) = x.dim();
    let input: usize = net.input_dims().iter().product();
    if d != input {
        return Err(ProbeError::Input(format!(
            "inputs have {d} columns, the net takes {input}"
        )));
    }
    if n == 0 {
        return Err(ProbeError::Input("empty batch".into()));
    }
    if let Some(depth) = depth.filter(|&k| k > net.num_blocks()) {
        return Err(ProbeError::Input(format!(
            "cannot run {depth} blocks of a depth-{} net",
            net.num_blocks()
        )));
    }
    Ok(())
}

/// One capture.
struct One<'a> {
    x: ArrayView2<'a, f64>,
    opts: &'a CaptureOpts,
}

impl Task for One<'_> {
    type Output = Capture;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Capture> {
        let opts = self.opts;
        let depth = opts.depth.unwrap_or(engine.depth());
        let x = self.x.mapv(T::of);
        let fwd = engine.forward(x.view(), opts.param_grads)?;
        let grads = engine.backward(
            &fwd,
            depth,
            None,
            Want {
                hidden: opts.keep_layer_grads,
                params: opts.param_grads,
                gram: false,
            },
        )?;
        let layers = layer_stats(&engine.activation_norms(&fwd, depth), &grads.hidden_norms);
        let values: std::collections::HashMap<String, f64> = if opts.param_grads {
            engine.param_norms().into_iter().collect()
        } else {
            Default::default()
        };
        let params = grads
            .params
            .iter()
            .zip(grads.param_norms())
            .map(|((name, _), grad_norm)| ParamStat {
                name: name.clone(),
                value_norm: values.get(name).copied().unwrap_or(f64::NAN),
                grad_norm,
                has_grad: !grads.unreached.contains(name),
            })
            .collect();
        Ok(Capture {
            output: to_f64(&engine.output(&fwd, depth)?),
            input_grads: to_f64(&grads.input),
            faults: find_faults(&layers),
            layer_grads: opts
                .keep_layer_grads
                .then(|| grads.hidden.iter().map(to_f64).collect()),
            layers,
            params,
            kernels: engine.kernels().clone(),
        })
    }
}

/// Captures at several depths from one forward pass.
struct Depths<'a> {
    x: ArrayView2<'a, f64>,
    depths: &'a [usize],
}

impl Task for Depths<'_> {
    type Output = Vec<Capture>;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Vec<Capture>> {
        let x = self.x.mapv(T::of);
        let fwd = engine.forward(x.view(), false)?;
        self.depths
            .iter()
            .map(|&depth| {
                // The norms only: the gradients themselves are not kept.
                let grads = engine.backward(&fwd, depth, None, Want::default())?;
                let layers =
                    layer_stats(&engine.activation_norms(&fwd, depth), &grads.hidden_norms);
                Ok(Capture {
                    output: to_f64(&engine.output(&fwd, depth)?),
                    input_grads: to_f64(&grads.input),
                    faults: find_faults(&layers),
                    layers,
                    layer_grads: None,
                    params: Vec::new(),
                    kernels: engine.kernels().clone(),
                })
            })
            .collect()
    }
}

/// ‖h_l‖ and ‖∂L/∂h_l‖ per hidden state, named.
fn layer_stats(activation_norms: &[f64], grad_norms: &[f64]) -> Vec<LayerStat> {
    activation_norms
        .iter()
        .zip(grad_norms)
        .enumerate()
        .map(|(l, (&activation_norm, &grad_norm))| LayerStat {
            name: hidden_name(l),
            activation_norm,
            grad_norm,
        })
        .collect()
}

/// Layers whose activation (forward) or gradient (backward) norm is not finite.
pub(crate) fn find_faults(layers: &[LayerStat]) -> Vec<Fault> {
    let mut faults = Vec::new();
    for pass in [Pass::Forward, Pass::Backward] {
        for (l, s) in layers.iter().enumerate() {
            let v = if pass == Pass::Forward {
                s.activation_norm
            } else {
                s.grad_norm
            };
            if !v.is_finite() {
                faults.push(Fault {
                    pass,
                    layer: l,
                    name: hidden_name(l),
                    nan: v.is_nan(),
                });
            }
        }
    }
    faults
}
