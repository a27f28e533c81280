//! Gradients checked against central finite differences in f64, for every
//! architecture and every BN mode, and the structural facts the studies rely on.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{Arch, BiasInit, BnMode, BranchInit, Mlp, Net, NetParams, Precision};
use gradscope_probe::{CaptureOpts, capture, scalar_grid};
use ndarray::Array2;

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

/// Every variant the nets crate builds (block kinds, norms, shortcuts, inits).
fn archs() -> Vec<Arch> {
    Arch::VARIANTS.iter().map(|s| s.parse().unwrap()).collect()
}

/// Fixup, SkipInit and ReZero start with a zero branch multiplier or last
/// layer, which holds every other branch gradient at exactly zero: move every
/// parameter a little off its initial value, so each has a gradient to check.
fn unzeroed(net: Mlp) -> Mlp {
    let zero_init = matches!(
        net.spec().arch,
        Arch::Residual { init, .. } if init != BranchInit::Standard
    );
    if zero_init {
        for (k, (_, var)) in net.parameters().iter().enumerate() {
            let t = var.as_tensor();
            let shift: Vec<f64> = (0..t.elem_count())
                .map(|i| 0.2 * (((k * 7919 + i) as f64 * 0.618_034).fract() - 0.5))
                .collect();
            let shift = Tensor::from_vec(shift, t.dims(), &Device::Cpu)
                .unwrap()
                .to_dtype(t.dtype())
                .unwrap();
            var.set(&(t + shift).unwrap()).unwrap();
        }
    }
    net
}

fn small_net(arch: Arch) -> Mlp {
    let spec = NetParams {
        arch,
        depth: 3,
        width: 6,
        bias_init: BiasInit::Normal { std: 0.3 },
        precision: Precision::F64,
        seed: 11,
        ..Default::default()
    }
    .check()
    .unwrap();
    unzeroed(Mlp::new(&spec).unwrap())
}

fn batch() -> Array2<f64> {
    // Irregular points, so no two samples sit on the same ReLU pattern by symmetry.
    Array2::from_shape_vec((7, 1), vec![-1.9, -1.1, -0.37, 0.21, 0.64, 1.33, 1.98]).unwrap()
}

fn tensor(x: &Array2<f64>) -> Tensor {
    Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape(x.dim())
        .unwrap()
}

/// L = Σ outputs, the objective of `capture`.
fn objective(net: &Mlp, x: &Array2<f64>, mode: BnMode) -> f64 {
    net.forward(&tensor(x), mode)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// The mode finite differences must use to check `mode`: per-sample gradients
/// hold the batch statistics fixed, which is eval mode on calibrated statistics.
fn fd_mode(net: &Mlp, x: &Array2<f64>, mode: BnMode) -> BnMode {
    if net.buffers().is_empty() {
        // No BN: every mode is the same function (eval mode would also turn a
        // shortcut dropout mask into its expectation).
        return mode;
    }
    match mode {
        BnMode::PerSample => {
            net.calibrate_batch_norm(&tensor(x)).unwrap();
            BnMode::Eval
        }
        m => m,
    }
}

fn assert_close(what: &str, got: f64, want: f64, scale: f64) {
    let err = (got - want).abs() / scale.max(1e-8);
    assert!(
        err < TOL,
        "{what}: autograd {got:.10e} vs finite difference {want:.10e} (rel. err {err:.2e})"
    );
}

fn set_entry(var: &Var, i: usize, value: f64) {
    let shape = var.dims().to_vec();
    let mut v = var
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    v[i] = value;
    var.set(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap())
        .unwrap();
}

fn entry(var: &Var, i: usize) -> f64 {
    var.as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[i]
}

#[test]
fn input_gradients_match_finite_differences() {
    for arch in archs() {
        for mode in BnMode::ALL {
            let net = small_net(arch);
            let x = batch();
            if mode == BnMode::Eval {
                // Running statistics that are not those of this batch.
                net.calibrate_batch_norm(&tensor(&scalar_grid(5, -3.0, 1.0)))
                    .unwrap();
            }
            let cap = capture(
                &Net::Mlp(net.clone()),
                x.view(),
                &CaptureOpts {
                    bn_mode: mode,
                    ..Default::default()
                },
            )
            .unwrap();
            let fd = fd_mode(&net, &x, mode);
            let scale = cap.input_grads.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for i in 0..x.nrows() {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[[i, 0]] += H;
                xm[[i, 0]] -= H;
                let want = (objective(&net, &xp, fd) - objective(&net, &xm, fd)) / (2.0 * H);
                assert_close(
                    &format!("{arch} {mode} dL/dx[{i}]"),
                    cap.input_grads[[i, 0]],
                    want,
                    scale,
                );
            }
        }
    }
}

#[test]
fn parameter_gradients_match_finite_differences() {
    for arch in archs() {
        for mode in [BnMode::PerSample, BnMode::Full] {
            let net = small_net(arch);
            let x = batch();
            let cap = capture(
                &Net::Mlp(net.clone()),
                x.view(),
                &CaptureOpts {
                    bn_mode: mode,
                    ..Default::default()
                },
            )
            .unwrap();
            let fd = fd_mode(&net, &x, mode);
            // Recompute the gradient tensors themselves (capture keeps norms).
            let xt = tensor(&x);
            let grads = net
                .forward(&xt, mode)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            // Finite differences carry an absolute error, so compare on the scale
            // of the largest parameter gradient of the net (a near-invariant
            // direction, e.g. a weight feeding BN, has a tiny gradient).
            let scale = cap
                .params
                .iter()
                .map(|p| p.grad_norm)
                .fold(0.0f64, f64::max);
            for ((name, var), stat) in net.parameters().iter().zip(&cap.params) {
                assert_eq!(name, &stat.name);
                let g = grads
                    .get(var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                assert!(
                    (norm - stat.grad_norm).abs() <= 1e-12 * norm.max(1.0),
                    "{arch} {name}: norm"
                );
                for (i, gi) in g.iter().enumerate() {
                    let w = entry(var, i);
                    set_entry(var, i, w + H);
                    let lp = objective(&net, &x, fd);
                    set_entry(var, i, w - H);
                    let lm = objective(&net, &x, fd);
                    set_entry(var, i, w);
                    assert_close(
                        &format!("{arch} {mode} dL/d{name}[{i}]"),
                        *gi,
                        (lp - lm) / (2.0 * H),
                        scale,
                    );
                }
            }
        }
    }
}

#[test]
fn probe_gradients_are_dl_dh_by_finite_differences() {
    for arch in archs() {
        let mode = BnMode::Full;
        let net = small_net(arch);
        let x = batch();
        let cap = capture(
            &Net::Mlp(net.clone()),
            x.view(),
            &CaptureOpts {
                bn_mode: mode,
                keep_layer_grads: true,
                ..Default::default()
            },
        )
        .unwrap();
        let layer_grads = cap.layer_grads.as_ref().unwrap();
        let (n, w) = (x.nrows(), net.spec().width);
        let probes: Vec<Var> = (0..=net.depth())
            .map(|_| Var::zeros((n, w), DType::F64, &Device::Cpu).unwrap())
            .collect();
        let l_at = |probes: &[Var]| {
            net.trace(&tensor(&x), mode, Some(probes))
                .unwrap()
                .output
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        for (l, g) in layer_grads.iter().enumerate() {
            let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((norm - cap.layers[l].grad_norm).abs() <= 1e-12 * norm.max(1.0));
            for (i, j) in [(0, 0), (3, 2), (6, 5), (2, 4)] {
                set_entry(&probes[l], i * w + j, H);
                let lp = l_at(&probes);
                set_entry(&probes[l], i * w + j, -H);
                let lm = l_at(&probes);
                set_entry(&probes[l], i * w + j, 0.0);
                assert_close(
                    &format!("{arch} dL/dh_{l}[{i},{j}]"),
                    g[[i, j]],
                    (lp - lm) / (2.0 * H),
                    scale,
                );
            }
        }
    }
}

#[test]
fn every_parameter_of_every_arch_receives_a_nonzero_gradient() {
    for arch in archs() {
        for precision in [Precision::F32, Precision::F64] {
            for mode in [BnMode::PerSample, BnMode::Full] {
                let spec = NetParams {
                    arch,
                    depth: 4,
                    width: 16,
                    precision,
                    ..Default::default()
                }
                .check()
                .unwrap();
                let net = unzeroed(Mlp::new(&spec).unwrap());
                // Not symmetric about 0: a looks-linear net is linear at init,
                // and on a symmetric grid dL/dW_stem = Σ xᵢ·(…) is exactly 0.
                let cap = capture(
                    &Net::Mlp(net.clone()),
                    scalar_grid(32, -2.0, 3.0).view(),
                    &CaptureOpts {
                        bn_mode: mode,
                        ..Default::default()
                    },
                )
                .unwrap();
                let missing: Vec<_> = cap
                    .params
                    .iter()
                    .filter(|p| {
                        !p.has_grad
                            || p.grad_norm.is_nan()
                            || p.grad_norm <= 1e-6 * p.value_norm.max(1e-3)
                    })
                    .map(|p| format!("{} (grad {:e})", p.name, p.grad_norm))
                    .collect();
                assert!(
                    missing.is_empty(),
                    "{arch} {precision} {mode}: no gradient for {missing:?}"
                );
                assert_eq!(cap.params.len(), net.parameters().len());
                assert!(cap.layers.iter().all(|l| l.grad_norm > 0.0));
            }
        }
    }
}

#[test]
fn zero_bias_relu_nets_have_two_gradient_values_on_a_scalar_input() {
    // f(a·x) = a·f(x) for a > 0, so g(x) is one constant for x < 0 and another for x > 0.
    for arch in [Arch::PLAIN, Arch::RESNET] {
        for bias_init in [BiasInit::Zero, BiasInit::Torch] {
            let spec = NetParams {
                arch,
                depth: 16,
                width: 64,
                bias_init,
                precision: Precision::F64,
                seed: 5,
                ..Default::default()
            }
            .check()
            .unwrap();
            let net = Mlp::new(&spec).unwrap();
            let x = scalar_grid(256, -2.0, 2.0);
            let g = capture(&Net::Mlp(net.clone()), x.view(), &CaptureOpts::default())
                .unwrap()
                .input_grads
                .column(0)
                .to_owned();
            let (neg, pos) = (g[0], g[255]);
            let spread = |r: std::ops::Range<usize>, v: f64| {
                g.slice(ndarray::s![r])
                    .iter()
                    .fold(0.0f64, |m, u| m.max((u - v).abs()))
            };
            let scale = neg.abs().max(pos.abs());
            if bias_init == BiasInit::Zero {
                assert!(
                    spread(0..128, neg) <= 1e-12 * scale,
                    "{arch}: x<0 side varies"
                );
                assert!(
                    spread(128..256, pos) <= 1e-12 * scale,
                    "{arch}: x>0 side varies"
                );
                assert!(
                    (neg - pos).abs() > 1e-6 * scale,
                    "{arch}: the two values coincide"
                );
            } else {
                let mut distinct: Vec<f64> = g.to_vec();
                distinct.sort_by(f64::total_cmp);
                distinct.dedup_by(|a, b| (*a - *b).abs() <= 1e-9 * scale);
                assert!(
                    distinct.len() > 10,
                    "{arch} with biases: only {} gradient values",
                    distinct.len()
                );
            }
        }
    }
}

#[test]
fn prefix_capture_equals_the_shallower_net() {
    let spec = NetParams {
        arch: Arch::RESNET_BN,
        depth: 8,
        width: 12,
        precision: Precision::F64,
        ..Default::default()
    }
    .check()
    .unwrap();
    let deep = Mlp::new(&spec).unwrap();
    let shallow = Mlp::new(&spec.with_depth(3).unwrap()).unwrap();
    let x = scalar_grid(40, -2.0, 2.0);
    let a = capture(
        &Net::Mlp(deep.clone()),
        x.view(),
        &CaptureOpts {
            depth: Some(3),
            ..Default::default()
        },
    )
    .unwrap();
    let b = capture(
        &Net::Mlp(shallow.clone()),
        x.view(),
        &CaptureOpts::default(),
    )
    .unwrap();
    assert_eq!(a.input_grads, b.input_grads);
    assert_eq!(a.layer_grad_norms(), b.layer_grad_norms());
    assert_eq!(a.params.len(), b.params.len());
}

#[test]
fn overflow_is_recorded_at_the_layer_where_it_happens() {
    // Weights of variance 400/fan_in blow the forward pass up by ~√200 per layer:
    // f32 overflows (3.4e38) after about 16 layers; f64 holds.
    let p = NetParams {
        arch: Arch::PLAIN,
        depth: 40,
        width: 32,
        weight_init: gradscope_nets::WeightInit::Normal { sigma_w2: 400.0 },
        ..Default::default()
    };
    let x = scalar_grid(16, -2.0, 2.0);
    let cap32 = capture(
        &Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap()),
        x.view(),
        &CaptureOpts::default(),
    )
    .unwrap();
    let net64 = Mlp::new(
        &NetParams {
            precision: Precision::F64,
            ..p
        }
        .check()
        .unwrap(),
    )
    .unwrap();
    let cap64 = capture(&Net::Mlp(net64.clone()), x.view(), &CaptureOpts::default()).unwrap();
    assert!(cap64.faults.is_empty(), "{:?}", cap64.faults);
    let fault = cap32.first_forward_fault().expect("f32 overflows");
    assert!(!fault.nan);
    // The first non-finite layer in f32 is the first whose largest f64 entry
    // passes the f32 range (±1 for rounding on the way there).
    let trace = net64.trace(&tensor(&x), BnMode::PerSample, None).unwrap();
    let expected = trace
        .hidden
        .iter()
        .position(|h| {
            h.abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
                > f32::MAX as f64
        })
        .unwrap();
    assert!(
        fault.layer.abs_diff(expected) <= 1,
        "fault at {} expected at {expected}",
        fault.layer
    );
    assert!(
        cap32.layers[..fault.layer]
            .iter()
            .all(|l| l.activation_norm.is_finite())
    );
}

#[test]
fn bad_inputs_are_errors() {
    let net = small_net(Arch::PLAIN);
    let two_cols = Array2::<f64>::zeros((4, 2));
    assert!(
        capture(
            &Net::Mlp(net.clone()),
            two_cols.view(),
            &CaptureOpts::default()
        )
        .unwrap_err()
        .to_string()
        .contains("columns")
    );
    let empty = Array2::<f64>::zeros((0, 1));
    assert!(
        capture(
            &Net::Mlp(net.clone()),
            empty.view(),
            &CaptureOpts::default()
        )
        .is_err()
    );
    let deep = CaptureOpts {
        depth: Some(9),
        ..Default::default()
    };
    assert!(capture(&Net::Mlp(net.clone()), batch().view(), &deep).is_err());
}
