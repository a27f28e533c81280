//! One forward and backward pass with everything a study may want from it.
//!
//! The objective is the sum of the net's outputs over the batch,
//! L = Σᵢ Σₖ fₖ(xᵢ). When samples do not interact (no BN, or BN in
//! [`BnMode::PerSample`] or [`BnMode::Eval`]) its gradient with respect to xᵢ is
//! the per-sample input gradient g(xᵢ) = ∂f(xᵢ)/∂xᵢ of Balduzzi et al. 2017.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{BnMode, Mlp};
use ndarray::{Array2, ArrayView2};

use crate::dense::to_f64;
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
    /// them the dense path skips the weight-gradient GEMMs, a third of its work.
    pub param_grads: bool,
}

impl Default for CaptureOpts {
    fn default() -> Self {
        CaptureOpts {
            bn_mode: BnMode::PerSample,
            depth: None,
            keep_layer_grads: false,
            param_grads: true,
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

/// Run `net` on the batch `x` (batch, input_dim) with gradient capture.
pub fn capture(net: &Mlp, x: ArrayView2<f64>, opts: &CaptureOpts) -> Result<Capture> {
    check_input(net, x, opts.depth)?;
    let (n, d) = x.dim();
    let spec = net.spec();
    let depth = opts.depth.unwrap_or(net.depth());
    let dtype = net.dtype();
    let dev = Device::Cpu;

    let x_t = Tensor::from_iter(x.iter().copied(), &dev)?
        .reshape((n, d))?
        .to_dtype(dtype)?;
    let x_var = Var::from_tensor(&x_t)?;
    let probes = (0..=depth)
        .map(|_| Var::zeros((n, spec.width), dtype, &dev))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let trace = net.trace_to(x_var.as_tensor(), opts.bn_mode, depth, Some(&probes))?;
    let grads = trace.output.sum_all()?.backward()?;

    let mut faults = Vec::new();
    let mut layers = Vec::with_capacity(depth + 1);
    let mut layer_grads = opts.keep_layer_grads.then(Vec::new);
    for (l, (h, p)) in trace.hidden.iter().zip(&probes).enumerate() {
        let name = hidden_name(l);
        let activation_norm = frobenius(h)?;
        let grad = grads.get(p.as_tensor());
        let grad_norm = match grad {
            Some(g) => frobenius(g)?,
            None => 0.0,
        };
        if let (Some(keep), Some(g)) = (layer_grads.as_mut(), grad) {
            keep.push(to_array2(g)?);
        }
        layers.push(LayerStat {
            name,
            activation_norm,
            grad_norm,
        });
    }
    faults.extend(find_faults(&layers));

    let mut params = Vec::new();
    for (name, var) in net.parameters() {
        if !opts.param_grads || !used_at_depth(&name, depth) {
            continue;
        }
        let g = grads.get(var.as_tensor());
        params.push(ParamStat {
            value_norm: frobenius(var.as_tensor())?,
            grad_norm: match g {
                Some(g) => frobenius(g)?,
                None => 0.0,
            },
            has_grad: g.is_some(),
            name,
        });
    }

    let input_grads = match grads.get(x_var.as_tensor()) {
        Some(g) => to_array2(g)?,
        None => Array2::zeros((n, d)),
    };
    Ok(Capture {
        output: to_array2(&trace.output)?,
        input_grads,
        layers,
        layer_grads,
        params,
        faults,
    })
}

/// Inputs `net` can run: `input_dim` columns, at least one row, and a depth
/// the net has.
fn check_input(net: &Mlp, x: ArrayView2<f64>, depth: Option<usize>) -> Result<()> {
    let (n, d) = x.dim();
    let input_dim = net.spec().input_dim;
    if d != input_dim {
        return Err(ProbeError::Input(format!(
            "inputs have {d} columns, the net takes {input_dim}"
        )));
    }
    if n == 0 {
        return Err(ProbeError::Input("empty batch".into()));
    }
    if let Some(depth) = depth.filter(|&k| k > net.depth()) {
        return Err(ProbeError::Input(format!(
            "cannot run {depth} blocks of a depth-{} net",
            net.depth()
        )));
    }
    Ok(())
}

/// [`capture`] by the dense fast path ([`dense`](crate::dense)) when it
/// applies (f32/f64 and the block kinds it covers, any BN mode), else by
/// candle: the same capture to rounding, parameter gradients included.
pub fn capture_fast(net: &Mlp, x: ArrayView2<f64>, opts: &CaptureOpts) -> Result<Capture> {
    use crate::dense::DenseMlp;
    check_input(net, x, opts.depth)?;
    let fast = match net.dtype() {
        DType::F32 => DenseMlp::<f32>::for_one_pass(net, opts.bn_mode)
            .ok()
            .map(|mut d| dense_capture(&mut d, x.mapv(|v| v as f32).view(), opts)),
        DType::F64 => DenseMlp::<f64>::for_one_pass(net, opts.bn_mode)
            .ok()
            .map(|mut d| dense_capture(&mut d, x, opts)),
        _ => None,
    };
    match fast {
        Some(cap) => Ok(cap),
        None => capture(net, x, opts),
    }
}

/// ‖h_l‖ and ‖∂L/∂h_l‖ for l = 0 … depth from a dense forward and backward pass.
fn dense_layer_stats<T: crate::dense::Real>(
    fwd: &crate::dense::DenseForward<T>,
    grads: &crate::dense::DenseGrads<T>,
) -> Vec<LayerStat> {
    grads
        .hidden_norms
        .iter()
        .enumerate()
        .map(|(l, &grad_norm)| LayerStat {
            name: hidden_name(l),
            activation_norm: crate::dense::frobenius_dense(&fwd.hidden[l]),
            grad_norm,
        })
        .collect()
}

fn dense_capture<T: crate::dense::Real>(
    net: &mut crate::dense::DenseMlp<T>,
    x: ArrayView2<T>,
    opts: &CaptureOpts,
) -> Capture {
    use crate::dense::Want;
    let depth = opts.depth.unwrap_or(net.depth());
    let fwd = net.forward_keeping(x, opts.param_grads);
    let grads = net.backward_with(
        &fwd,
        depth,
        None,
        Want {
            hidden: opts.keep_layer_grads,
            params: opts.param_grads,
            gram: false,
        },
    );
    let layers = dense_layer_stats(&fwd, &grads);
    let norm = crate::dense::slice_norm::<T>;
    let values: std::collections::HashMap<String, f64> = if opts.param_grads {
        net.params_mut()
            .into_iter()
            .map(|(name, v)| (name, norm(v)))
            .collect()
    } else {
        Default::default()
    };
    let params = grads
        .params
        .iter()
        .map(|(name, g)| ParamStat {
            name: name.clone(),
            value_norm: values.get(name).copied().unwrap_or(f64::NAN),
            grad_norm: norm(g),
            has_grad: true,
        })
        .collect();
    Capture {
        output: to_f64(&net.output(&fwd, depth)),
        input_grads: to_f64(&grads.input),
        faults: find_faults(&layers),
        layer_grads: opts
            .keep_layer_grads
            .then(|| grads.hidden.iter().map(to_f64).collect()),
        layers,
        params,
    }
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

/// Captures of the depth-d prefixes of `net` for every d in `depths`, sharing
/// one forward pass: the dense fast path ([`dense`](crate::dense)) when it
/// applies (f32/f64, the block kinds it covers, any BN mode), else
/// one candle capture per depth. Parameter gradients are not computed
/// (`params` is empty); everything else is the same to rounding.
pub fn capture_depths(
    net: &Mlp,
    x: ArrayView2<f64>,
    depths: &[usize],
    bn_mode: BnMode,
) -> Result<Vec<Capture>> {
    for &d in depths {
        check_input(net, x, Some(d))?;
    }
    let fast = match net.dtype() {
        DType::F32 => crate::dense::DenseMlp::<f32>::for_one_pass(net, bn_mode)
            .ok()
            .map(|d| dense_captures(&d, x.mapv(|v| v as f32).view(), depths)),
        DType::F64 => crate::dense::DenseMlp::<f64>::for_one_pass(net, bn_mode)
            .ok()
            .map(|d| dense_captures(&d, x, depths)),
        _ => None,
    };
    match fast {
        Some(caps) => Ok(caps),
        None => depths
            .iter()
            .map(|&d| {
                capture(
                    net,
                    x,
                    &CaptureOpts {
                        bn_mode,
                        depth: Some(d),
                        keep_layer_grads: false,
                        param_grads: false,
                    },
                )
            })
            .collect(),
    }
}

fn dense_captures<T: crate::dense::Real>(
    net: &crate::dense::DenseMlp<T>,
    x: ArrayView2<T>,
    depths: &[usize],
) -> Vec<Capture> {
    let fwd = net.forward(x);
    depths
        .iter()
        .map(|&depth| {
            // The norms only: the gradients themselves are not kept.
            let grads = net.backward_with(&fwd, depth, None, crate::dense::Want::default());
            let layers = dense_layer_stats(&fwd, &grads);
            Capture {
                output: to_f64(&net.output(&fwd, depth)),
                input_grads: to_f64(&grads.input),
                faults: find_faults(&layers),
                layers,
                layer_grads: None,
                params: Vec::new(),
            }
        })
        .collect()
}

/// Whether parameter `name` belongs to the stem, the head or one of the first `depth` blocks.
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

/// ‖t‖_F, accumulated in f64 so squares of large f32 values do not overflow.
pub fn frobenius(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        .sqrt())
}

/// A rank-2 tensor as an f64 ndarray.
pub fn to_array2(t: &Tensor) -> Result<Array2<f64>> {
    let (r, c) = t.dims2()?;
    let v = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    Ok(Array2::from_shape_vec((r, c), v).expect("shape matches the tensor's"))
}
