//! The dense fast path equals the candle path: outputs, hidden-state and input
//! gradients at every depth, and the forward-mode sweep.

use candle_core::{Device, Tensor};
use gradscope_nets::{Activation, Arch, BiasInit, BnMode, Mlp, NetParams, Precision};
use gradscope_probe::dense::{DenseMlp, frobenius_dense};
use gradscope_probe::{CaptureOpts, capture, scalar_grid};
use ndarray::Array2;

fn archs() -> Vec<Arch> {
    [
        "plain",
        "plain-bn",
        "resnet",
        "resnet-bn",
        "resnet1",
        "resnet1-bn",
        "resnet-bn:alpha=0.5",
        "resnet:branch=3,norm=bn",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn net(arch: Arch, activation: Activation, precision: Precision) -> Mlp {
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
    Mlp::new(&p.check().unwrap()).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * scale, "{what}: {x} vs {y}");
    }
}

#[test]
fn dense_gradients_equal_the_candle_path_at_every_depth() {
    let x = scalar_grid(40, -2.0, 2.0);
    for arch in archs() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            for mode in [BnMode::PerSample, BnMode::Eval] {
                let m = net(arch, act, Precision::F64);
                if mode == BnMode::Eval {
                    m.calibrate_batch_norm(
                        &Tensor::from_vec(vec![-1.0, 0.3, 2.5, 0.7], (4, 1), &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                }
                let dense = DenseMlp::<f64>::from_mlp(&m, mode).unwrap();
                let fwd = dense.forward(x.view());
                let sweep = dense.tangent_sweep(x.view(), &[1.0]);
                for depth in 1..=m.depth() {
                    let what = format!("{arch} {act} {mode} depth {depth}");
                    let cap = capture(
                        &m,
                        x.view(),
                        &CaptureOpts {
                            bn_mode: mode,
                            depth: Some(depth),
                            keep_layer_grads: true,
                        },
                    )
                    .unwrap();
                    let out = dense.output(&fwd, depth);
                    close(
                        out.as_slice().unwrap(),
                        cap.output.as_slice().unwrap(),
                        1e-12,
                        &format!("{what}: output"),
                    );
                    let (grads, dx) = dense.backward(&fwd, depth);
                    close(
                        dx.as_slice().unwrap(),
                        cap.input_grads.as_slice().unwrap(),
                        1e-10,
                        &format!("{what}: dL/dx"),
                    );
                    for (l, g) in grads.iter().enumerate() {
                        let want = &cap.layer_grads.as_ref().unwrap()[l];
                        close(
                            g.as_slice().unwrap(),
                            want.as_slice().unwrap(),
                            1e-10,
                            &format!("{what}: dL/dh_{l}"),
                        );
                        assert!(
                            (frobenius_dense(g) - cap.layers[l].grad_norm).abs()
                                <= 1e-10 * cap.layers[l].grad_norm.max(1e-30)
                        );
                    }
                    // Forward mode gives the same df_L/dx for every L from one pass.
                    close(
                        sweep.row(depth).as_slice().unwrap(),
                        cap.input_grads.column(0).to_vec().as_slice(),
                        1e-10,
                        &format!("{what}: tangent"),
                    );
                }
            }
        }
    }
}

#[test]
fn f32_agrees_to_rounding_and_full_bn_mode_is_refused() {
    let x = scalar_grid(64, -2.0, 2.0);
    let m = net(Arch::RESNET_BN, Activation::Relu, Precision::F32);
    let dense = DenseMlp::<f32>::from_mlp(&m, BnMode::PerSample).unwrap();
    let fwd = dense.forward(x.mapv(|v| v as f32).view());
    let (_, dx) = dense.backward(&fwd, m.depth());
    let cap = capture(&m, x.view(), &CaptureOpts::default()).unwrap();
    let dx: Vec<f64> = dx.iter().map(|v| *v as f64).collect();
    close(&dx, cap.input_grads.as_slice().unwrap(), 1e-4, "f32 dL/dx");
    assert!(DenseMlp::<f32>::from_mlp(&m, BnMode::Full).is_err());
    assert!(
        DenseMlp::<f64>::from_mlp(&m, BnMode::PerSample).is_err(),
        "dtype mismatch is refused"
    );
    // A vector input and a direction: D_v f = (∂f/∂x)·v.
    let p = NetParams {
        arch: Arch::RESNET,
        depth: 3,
        width: 8,
        input_dim: 3,
        output_dim: 2,
        precision: Precision::F64,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    let xs = Array2::from_shape_fn((5, 3), |(i, j)| (i as f64 - 2.0) * 0.4 + j as f64 * 0.1);
    let dense = DenseMlp::<f64>::from_mlp(&m, BnMode::PerSample).unwrap();
    let v = [0.3, -1.0, 0.5];
    let sweep = dense.tangent_sweep(xs.view(), &v);
    let cap = capture(&m, xs.view(), &CaptureOpts::default()).unwrap();
    let want: Vec<f64> = cap
        .input_grads
        .rows()
        .into_iter()
        .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
        .collect();
    close(
        sweep.row(3).as_slice().unwrap(),
        &want,
        1e-10,
        "directional derivative",
    );
}
