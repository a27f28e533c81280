//! A capture on the engine's kernels equals one on candle's autograd (the
//! oracle): outputs, input and hidden-state gradients, every norm, every
//! parameter's gradient, and the faults (NaN/inf by layer), for every block
//! kind, activation and BN mode.

use candle_core::Tensor;
use gradscope_engine::{Kernels, Request};
use gradscope_nets::{Activation, Arch, BiasInit, BnMode, Mlp, Net, NetParams, Precision};
use gradscope_probe::{CaptureOpts, capture, scalar_grid};
use ndarray::Array2;

fn archs() -> Vec<Arch> {
    Arch::VARIANTS.iter().map(|s| s.parse().unwrap()).collect()
}

/// Every rank-1 parameter (γ, β, biases, gains) set away from its initial
/// 1 or 0, so that a normaliser that dropped or misplaced one would show.
fn perturb_vectors(m: &Mlp) {
    for (k, (name, var)) in m.parameters().iter().enumerate() {
        let t = var.as_tensor();
        if t.rank() != 1 {
            continue;
        }
        let n = t.dims1().unwrap();
        let base = if name.ends_with(".weight") { 1.0 } else { 0.0 };
        let v: Vec<f64> = (0..n)
            .map(|i| base + 0.3 * ((k * 31 + i * 7) as f64).sin())
            .collect();
        let new = Tensor::from_vec(v, n, t.device())
            .unwrap()
            .to_dtype(t.dtype())
            .unwrap();
        var.set(&new).unwrap();
    }
}

fn net(arch: Arch, activation: Activation, precision: Precision) -> Net {
    let p = NetParams {
        arch,
        depth: 6,
        width: 12,
        activation,
        bias_init: BiasInit::Normal { std: 0.2 },
        precision,
        seed: 3,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    perturb_vectors(&m);
    Net::Mlp(m)
}

fn on_candle(opts: CaptureOpts) -> CaptureOpts {
    CaptureOpts {
        request: Request::Candle,
        ..opts
    }
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * scale, "{what}: {x} vs {y}");
    }
}

/// Two captures agree: outputs, input gradients, every layer's norms and
/// gradients, every parameter's norms, and the faults.
fn assert_same_capture(
    a: &gradscope_probe::Capture,
    b: &gradscope_probe::Capture,
    tol: f64,
    what: &str,
) {
    close(
        a.output.as_slice().unwrap(),
        b.output.as_slice().unwrap(),
        tol,
        &format!("{what}: output"),
    );
    close(
        a.input_grads.as_slice().unwrap(),
        b.input_grads.as_slice().unwrap(),
        tol,
        &format!("{what}: dL/dx"),
    );
    assert_eq!(a.layers.len(), b.layers.len(), "{what}");
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert_eq!(x.name, y.name, "{what}");
        close(
            &[x.activation_norm],
            &[y.activation_norm],
            tol,
            &format!("{what}: ‖{}‖", x.name),
        );
        close(
            &[x.grad_norm],
            &[y.grad_norm],
            tol,
            &format!("{what}: ‖∂L/∂{}‖", x.name),
        );
    }
    match (&a.layer_grads, &b.layer_grads) {
        (Some(ga), Some(gb)) => {
            for (l, (x, y)) in ga.iter().zip(gb).enumerate() {
                close(
                    x.as_slice().unwrap(),
                    y.as_slice().unwrap(),
                    tol,
                    &format!("{what}: dL/dh_{l}"),
                );
            }
        }
        (None, None) => {}
        _ => panic!("{what}: layer gradients kept by one capture only"),
    }
    let mut pa: Vec<_> = a
        .params
        .iter()
        .map(|p| (&p.name, p.value_norm, p.grad_norm, p.has_grad))
        .collect();
    let mut pb: Vec<_> = b
        .params
        .iter()
        .map(|p| (&p.name, p.value_norm, p.grad_norm, p.has_grad))
        .collect();
    pa.sort_by(|x, y| x.0.cmp(y.0));
    pb.sort_by(|x, y| x.0.cmp(y.0));
    assert_eq!(pa.len(), pb.len(), "{what}: parameters");
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!((x.0, x.3), (y.0, y.3), "{what}");
        close(
            &[x.1, x.2],
            &[y.1, y.2],
            tol,
            &format!("{what}: ‖{}‖, ‖∂L/∂{}‖", x.0, x.0),
        );
    }
    assert_eq!(a.faults, b.faults, "{what}: faults");
}

#[test]
fn the_engines_capture_equals_the_oracles() {
    let x = scalar_grid(24, -2.0, 2.0);
    for arch in archs() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            for mode in [BnMode::PerSample, BnMode::Full] {
                let m = net(arch, act, Precision::F64);
                for (depth, keep, param_grads) in [
                    (None, false, true),
                    (Some(3), true, true),
                    (Some(3), false, false),
                ] {
                    let opts = CaptureOpts {
                        bn_mode: mode,
                        depth,
                        keep_layer_grads: keep,
                        param_grads,
                        request: Request::Auto,
                    };
                    let tol = if mode == BnMode::Full { 1e-8 } else { 1e-10 };
                    let fast = capture(&m, x.view(), &opts).unwrap();
                    let slow = capture(&m, x.view(), &on_candle(opts)).unwrap();
                    assert_eq!(fast.kernels, Kernels::Engine);
                    assert_eq!(fast.params.is_empty(), !param_grads, "{arch}");
                    assert_eq!(slow.params.is_empty(), !param_grads, "{arch}");
                    assert_same_capture(
                        &fast,
                        &slow,
                        tol,
                        &format!("{arch} {act} {mode} {depth:?}"),
                    );
                }
            }
        }
    }
    // f32, and an overflow: the same faults, at the same layers.
    let p = NetParams {
        arch: Arch::PLAIN,
        depth: 40,
        width: 16,
        weight_init: gradscope_nets::WeightInit::Normal { sigma_w2: 400.0 },
        precision: Precision::F32,
        seed: 1,
        ..Default::default()
    };
    let m = Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap());
    let fast = capture(&m, x.view(), &CaptureOpts::default()).unwrap();
    let slow = capture(&m, x.view(), &on_candle(CaptureOpts::default())).unwrap();
    assert!(
        !slow.faults.is_empty(),
        "a gain of about 14 per layer over 40 layers overflows f32"
    );
    assert_eq!(fast.faults, slow.faults);
    let finite = |c: &gradscope_probe::Capture| -> Vec<f64> {
        c.layers
            .iter()
            .map(|l| l.activation_norm)
            .filter(|v| v.is_finite())
            .collect()
    };
    close(
        &finite(&fast),
        &finite(&slow),
        1e-5,
        "f32 ‖h_l‖ before the overflow",
    );
    // Bad inputs are errors on every path, not panics.
    let two_cols = Array2::<f64>::zeros((4, 2));
    assert!(capture(&m, two_cols.view(), &CaptureOpts::default()).is_err());
    assert!(gradscope_probe::capture_depths(&m, two_cols.view(), &[1], BnMode::PerSample).is_err());
    let too_deep = CaptureOpts {
        depth: Some(41),
        ..Default::default()
    };
    assert!(capture(&m, x.view(), &too_deep).is_err());
}
