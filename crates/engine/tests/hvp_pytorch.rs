//! Hessian-vector and Gauss–Newton products against PyTorch's on identical
//! weights: `tests/fixtures/hvp_pytorch.json` holds small MLPs and conv nets
//! of He et al. 2016a (option A and B shortcuts, plain), with BN on the batch
//! statistics and in eval mode (weights, batch, labels, direction v),
//! exported from here and, for each, the loss,
//! ∇L, H·v (double backward: ∂/∂θ ⟨∇L, v⟩) and G·v (`torch.func.jvp` of
//! the logits, then their vector–Jacobian product) that
//! `benches/peer/peer_hvp.py` computed with PyTorch in f64.
//!
//! To make the fixture again (after a change to the nets it holds):
//!
//! ```sh
//! GRADSCOPE_HVP_INPUTS=/tmp/hvp_inputs.json cargo test -p gradscope-engine --test hvp_pytorch
//! python3 benches/peer/peer_hvp.py /tmp/hvp_inputs.json crates/engine/tests/fixtures/hvp_pytorch.json
//! ```

mod common;
use common::perturb_vectors;

use candle_core::{Device, Tensor};
use gradscope_engine::Curvature;
use gradscope_nets::{Activation, BnMode, Mlp, Net, NetParams, Precision};
use ndarray::Array2;
use serde_json::{Value, json};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/hvp_pytorch.json"
);
const BATCH: usize = 12;
const INPUTS: usize = 4;
const CLASSES: usize = 3;

/// One net of the fixture: an MLP (arch, depth, width, activation) or a
/// conv net of He et al. 2016a (arch, depth) on small images, with the BN
/// mode of its loss.
#[derive(Clone, Copy)]
enum Case {
    Mlp(&'static str, usize, usize, Activation, BnMode),
    Conv(&'static str, usize, BnMode),
}

fn cases() -> Vec<Case> {
    use Case::{Conv, Mlp};
    vec![
        Mlp("plain", 3, 6, Activation::Tanh, BnMode::Full),
        Mlp("plain", 3, 6, Activation::Relu, BnMode::Full),
        Mlp("resnet", 3, 6, Activation::Tanh, BnMode::Full),
        Mlp("plain-bn", 3, 6, Activation::Relu, BnMode::Full),
        Mlp("resnet-bn", 3, 6, Activation::Tanh, BnMode::Full),
        Mlp("resnet-bn", 2, 5, Activation::Relu, BnMode::Eval),
        Conv("resnet", 8, BnMode::Full),
        Conv("plain", 8, BnMode::Full),
        Conv("resnet:shortcut=b", 8, BnMode::Full),
        Conv("resnet", 8, BnMode::Eval),
    ]
}

/// Conv cases: 2 × 6 × 6 images, stage widths 2, 3, 4.
const CHANNELS: usize = 2;
const IMAGE: usize = 6;

fn inputs(width: usize) -> Array2<f64> {
    Array2::from_shape_fn((BATCH, width), |(i, j)| {
        ((i * 5 + j * 3) as f64 * 0.37).sin() * 1.3
    })
}

impl Case {
    fn input_width(self) -> usize {
        match self {
            Case::Mlp(..) => INPUTS,
            Case::Conv(..) => CHANNELS * IMAGE * IMAGE,
        }
    }

    fn mode(self) -> BnMode {
        match self {
            Case::Mlp(.., mode) | Case::Conv(.., mode) => mode,
        }
    }

    fn describe(self) -> String {
        match self {
            Case::Mlp(arch, depth, _, act, mode) => {
                format!("{arch} depth {depth} {act} in {mode} mode")
            }
            Case::Conv(arch, depth, mode) => format!("conv {arch} depth {depth} in {mode} mode"),
        }
    }

    /// The net, in f64, and its state dict.
    fn build(self) -> (Net, Vec<(String, candle_core::Var)>) {
        match self {
            Case::Mlp(arch, depth, width, act, _) => {
                let m = net(arch, depth, width, act);
                let dict = m.state_dict();
                (Net::Mlp(m), dict)
            }
            Case::Conv(arch, depth, _) => {
                use gradscope_nets::{ConvNet, ConvNetParams, Model};
                let p = ConvNetParams {
                    arch: arch.parse().unwrap(),
                    depth,
                    widths: [2, 3, 4],
                    in_channels: CHANNELS,
                    image_size: IMAGE,
                    classes: CLASSES,
                    precision: Precision::F64,
                    seed: 13,
                    ..Default::default()
                };
                let c = ConvNet::new(&p.check().unwrap()).unwrap();
                perturb_vectors(&c.parameters());
                // Running statistics off (0, 1), so eval mode is not γx + β.
                for (k, (name, var)) in c.buffers().iter().enumerate() {
                    let n = var.as_tensor().dims1().unwrap();
                    let s = |i: usize| ((k * 13 + i * 5) as f64).sin();
                    let v: Vec<f64> = if name.ends_with("running_var") {
                        (0..n).map(|i| 1.0 + 0.5 * s(i) * s(i)).collect()
                    } else {
                        (0..n).map(|i| 0.2 * s(i)).collect()
                    };
                    var.set(&Tensor::from_vec(v, n, &Device::Cpu).unwrap())
                        .unwrap();
                }
                let mut dict = c.parameters();
                dict.extend(c.buffers());
                (Net::Conv(c), dict)
            }
        }
    }
}

fn tensor(x: &Array2<f64>) -> Tensor {
    Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape(x.dim())
        .unwrap()
}

fn labels() -> Vec<u32> {
    (0..BATCH).map(|i| ((i * 7) % CLASSES) as u32).collect()
}

fn direction(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 11 + 2) as f64 * 0.29).cos()).collect()
}

/// An MLP of one case, in f64: BN running statistics set to the batch's
/// (so the eval-mode case is not the identity map), then its vector
/// parameters perturbed.
fn net(arch: &str, depth: usize, width: usize, activation: Activation) -> Mlp {
    let p = NetParams {
        arch: arch.parse().unwrap(),
        depth,
        width,
        input_dim: INPUTS,
        output_dim: CLASSES,
        activation,
        precision: Precision::F64,
        seed: 11,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    m.calibrate_batch_norm(&tensor(&inputs(INPUTS))).unwrap();
    perturb_vectors(&m.parameters());
    m
}

fn values(v: &candle_core::Var) -> (Vec<usize>, Vec<f64>) {
    let t = v.as_tensor();
    let flat = t.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    (t.dims().to_vec(), flat)
}

/// One case as the peer reads it: every tensor of the state dict by name
/// (shape, values), the parameters' order, the batch, labels and v.
fn export(case: Case) -> Value {
    let (net, dict) = case.build();
    let x = inputs(case.input_width());
    let c = Curvature::<f64>::new(&net, case.mode(), x.view(), &labels()).unwrap();
    let tensors: serde_json::Map<String, Value> = dict
        .iter()
        .map(|(name, var)| {
            let (shape, data) = values(var);
            (name.clone(), json!({ "shape": shape, "values": data }))
        })
        .collect();
    let order: Vec<&str> = c
        .parameter_sizes()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let net = match case {
        Case::Mlp(arch, depth, width, act, _) => json!({
            "kind": "mlp", "arch": arch, "depth": depth, "width": width,
            "activation": act.to_string(),
        }),
        Case::Conv(arch, depth, _) => json!({
            "kind": "conv", "arch": arch, "depth": depth, "channels": CHANNELS, "image": IMAGE,
        }),
    };
    json!({
        "net": net,
        "mode": case.mode().to_string(),
        "tensors": tensors,
        "parameters": order,
        "x": { "shape": [BATCH, case.input_width()], "values": x.iter().copied().collect::<Vec<_>>() },
        "labels": labels(),
        "v": direction(c.dim()),
    })
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// ‖a − b‖ / ‖b‖.
fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let d: f64 = a.iter().zip(b).map(|(a, b)| (a - b) * (a - b)).sum();
    let n: f64 = b.iter().map(|b| b * b).sum();
    (d / n).sqrt()
}

fn fixture() -> Vec<Value> {
    let text = std::fs::read_to_string(FIXTURE).expect("the fixture is in the repository");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// The fixture was computed on exactly the nets, batch and directions built
/// here now: every tensor, input and v equal, bit for bit (JSON keeps f64
/// exactly). With `GRADSCOPE_HVP_INPUTS` set, writes them for the peer.
#[test]
fn the_fixture_holds_the_nets_built_here() {
    let now: Vec<Value> = cases().into_iter().map(export).collect();
    if let Ok(path) = std::env::var("GRADSCOPE_HVP_INPUTS") {
        std::fs::write(
            &path,
            serde_json::to_string(&json!({ "cases": now })).unwrap(),
        )
        .unwrap();
    }
    let stored = fixture();
    assert_eq!(stored.len(), now.len(), "one stored case per net");
    for (s, n) in stored.iter().zip(&now) {
        for key in [
            "arch",
            "depth",
            "width",
            "activation",
            "mode",
            "tensors",
            "parameters",
            "x",
            "labels",
            "v",
        ] {
            assert_eq!(
                s[key], n[key],
                "{} {}: `{key}` differs",
                n["arch"], n["mode"]
            );
        }
    }
}

/// Loss, gradient, H·v and G·v equal PyTorch's on the same weights to
/// 1e-12 relative (f64: both are exact to rounding; the sums run in
/// different orders).
#[test]
fn hessian_vector_products_equal_pytorch_double_backward() {
    for (stored, case) in fixture().iter().zip(cases()) {
        let (net, _) = case.build();
        let x = inputs(case.input_width());
        let mut c = Curvature::<f64>::new(&net, case.mode(), x.view(), &labels()).unwrap();
        let torch = &stored["pytorch"];
        let v = floats(&stored["v"]);
        let (loss, grad) = c.loss_gradient().unwrap();
        let what = case.describe();
        let loss_err = (loss - torch["loss"].as_f64().unwrap()).abs() / loss.abs();
        assert!(loss_err < 1e-13, "{what}: loss {loss} vs {}", torch["loss"]);
        let e = relative_error(&grad, &floats(&torch["gradient"]));
        assert!(e < 1e-12, "{what}: ∇L differs by {e:.2e}");
        let e = relative_error(&c.hvp(&v).unwrap(), &floats(&torch["hvp"]));
        assert!(e < 1e-12, "{what}: H·v differs by {e:.2e}");
        let hv_err = relative_error(&c.hvp(&v).unwrap(), &floats(&torch["hvp"]));
        let e = relative_error(
            &c.gauss_newton(&v).unwrap(),
            &floats(&torch["gauss_newton"]),
        );
        assert!(e < 1e-12, "{what}: G·v differs by {e:.2e}");
        eprintln!("{what}: loss {loss_err:.1e}, H·v {hv_err:.1e}, G·v {e:.1e} relative");
    }
}
