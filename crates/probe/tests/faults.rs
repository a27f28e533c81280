//! A NaN in a weight or a bias is recorded where it first shows: the
//! forward pass of the hidden state it first reaches, on the engine's
//! kernels and on candle's autograd alike, in f32 and f64 — never hidden
//! by a ReLU (max(NaN, 0) = 0) nor moved to the backward pass.

use candle_core::Tensor;
use gradscope_engine::{Kernels, Request};
use gradscope_nets::{Activation, Arch, BiasInit, Mlp, Net, NetParams, Precision};
use gradscope_probe::{CaptureOpts, Pass, capture, capture_depths, scalar_grid};

/// Entry `at` of parameter `name` set to NaN.
fn poison(m: &Mlp, name: &str, at: usize) {
    let (_, var) = m
        .parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"));
    let t = var.as_tensor();
    let dims = t.dims().to_vec();
    let mut v: Vec<f64> = t
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    v[at] = f64::NAN;
    let new = Tensor::from_vec(v, dims, t.device())
        .unwrap()
        .to_dtype(t.dtype())
        .unwrap();
    var.set(&new).unwrap();
}

fn mlp(arch: Arch, activation: Activation, precision: Precision) -> Mlp {
    let p = NetParams {
        arch,
        depth: 6,
        width: 10,
        activation,
        bias_init: BiasInit::Normal { std: 0.1 },
        precision,
        seed: 5,
        ..Default::default()
    };
    Mlp::new(&p.check().unwrap()).unwrap()
}

/// The first parameter of block `block` (or the stem) whose name ends in
/// `suffix`, BN parameters aside (a linear before BN may have no bias).
fn param_name(m: &Mlp, block: Option<usize>, suffix: &str) -> Option<String> {
    let prefix = block.map_or("stem".to_string(), |b| format!("layers.{b}."));
    m.parameters()
        .into_iter()
        .map(|(n, _)| n)
        .find(|n| n.starts_with(&prefix) && n.ends_with(suffix) && !n.contains("bn"))
}

#[test]
fn a_nan_weight_or_bias_is_a_forward_fault_at_the_layer_it_reaches() {
    let x = scalar_grid(16, -2.0, 2.0);
    for precision in [Precision::F32, Precision::F64] {
        for (arch, act) in [
            (Arch::PLAIN, Activation::Relu),
            (Arch::RESNET, Activation::Relu),
            (Arch::RESNET_BN, Activation::Relu),
            (Arch::PLAIN, Activation::LeakyRelu { slope: 0.2 }),
            (Arch::PLAIN, Activation::Elu),
            (Arch::PLAIN, Activation::Selu),
            (Arch::PLAIN, Activation::Softplus),
            (Arch::LOOKS_LINEAR, Activation::Relu),
        ] {
            // The stem (h_0) and blocks 0, 2 and 5 (h_1, h_3, h_6).
            for block in [None, Some(0), Some(2), Some(5)] {
                for suffix in ["weight", "bias"] {
                    let m = mlp(arch, act, precision);
                    let Some(name) = param_name(&m, block, suffix) else {
                        assert_eq!((arch, suffix), (Arch::RESNET_BN, "bias"));
                        continue;
                    };
                    poison(&m, &name, 1);
                    let layer = block.map_or(0, |b| b + 1);
                    let what = format!("{arch} {act} {precision:?} {name}");
                    let net = Net::Mlp(m);
                    let fast = capture(&net, x.view(), &CaptureOpts::default()).unwrap();
                    let slow = capture(
                        &net,
                        x.view(),
                        &CaptureOpts {
                            request: Request::Candle,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                    assert_eq!(fast.kernels, Kernels::Engine, "{what}");
                    for cap in [&fast, &slow] {
                        let first = &cap.faults[0];
                        assert_eq!(
                            (first.pass, first.layer, first.nan),
                            (Pass::Forward, layer, true),
                            "{what}: {:?}",
                            cap.faults
                        );
                        assert_eq!(cap.first_forward_fault(), Some(first), "{what}");
                        // Every later hidden state holds the NaN too.
                        let forward: Vec<usize> = cap
                            .faults
                            .iter()
                            .filter(|f| f.pass == Pass::Forward)
                            .map(|f| f.layer)
                            .collect();
                        assert_eq!(forward, (layer..=6).collect::<Vec<_>>(), "{what}");
                        assert!(cap.output.iter().any(|v| v.is_nan()), "{what}");
                        // Through φ'(NaN) = NaN, or a NaN weight's transpose.
                        // A bias after the last φ of the last block (resnet-bn's
                        // fc2, looks-linear's fc) adds to values no later φ'
                        // reads: their gradient stays finite.
                        let after_last_phi = block == Some(5)
                            && suffix == "bias"
                            && matches!(arch, Arch::RESNET_BN | Arch::LOOKS_LINEAR);
                        if !after_last_phi {
                            assert!(cap.input_grads.iter().any(|v| v.is_nan()), "{what}");
                        }
                    }
                    assert_eq!(fast.faults, slow.faults, "{what}");
                }
            }
        }
    }
}

#[test]
fn a_nan_bias_gives_no_finite_input_gradient_at_any_depth() {
    // The shattered study's path: one forward pass, captures at each depth.
    for precision in [Precision::F32, Precision::F64] {
        let m = mlp(Arch::RESNET, Activation::Relu, precision);
        let name = param_name(&m, Some(1), "bias").expect("a bias");
        poison(&m, &name, 0);
        let caps = capture_depths(
            &Net::Mlp(m),
            scalar_grid(32, -2.0, 2.0).view(),
            &[1, 2, 6],
            Default::default(),
        )
        .unwrap();
        // Depth 1 does not reach block 1; depths 2 and 6 do, at h_2.
        assert!(caps[0].faults.is_empty(), "{:?}", caps[0].faults);
        assert!(caps[0].input_grads.iter().all(|v| v.is_finite()));
        for cap in &caps[1..] {
            let f = cap.first_forward_fault().expect("a fault");
            assert_eq!((f.layer, f.nan), (2, true));
            assert!(cap.input_grads.iter().all(|v| v.is_nan()));
        }
    }
}
