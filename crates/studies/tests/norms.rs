//! The norms study against theory: mean-field backward ratios, the residual
//! √2 growth, the scalar chain's closed form, sigmoid's ¼ bound, orthogonal
//! isometry, and f32 overflow recorded where it happens. (The singular values
//! behind the Jacobian spectra are tested in `gradscope_stats::svd`.)

use gradscope_nets::{Activation, Arch, BiasInit, Precision, WeightInit};
use gradscope_studies::Params;
use gradscope_studies::RunOptions;
use gradscope_studies::norms::{JacobianInit, NormsParams};

fn small() -> NormsParams {
    NormsParams {
        archs: vec![Arch::PLAIN],
        activations: vec![Activation::Relu],
        inits: vec![WeightInit::He],
        depth: 16,
        width: 256,
        batch: 128,
        seeds: 4,
        bias_init: BiasInit::Zero,
        chain_weights: vec![0.8, 1.0, 1.2],
        chain_depth: 50,
        phase_sigma_w2: vec![1.0],
        phase_activations: vec![Activation::Relu],
        jacobian_width: 32,
        jacobian_depths: vec![1, 8],
        jacobian_activations: vec![Activation::Identity],
        ..Default::default()
    }
}

#[test]
fn per_layer_ratios_match_mean_field_and_sigmoid_obeys_the_quarter_bound() {
    let p = NormsParams {
        archs: vec![Arch::PLAIN],
        activations: vec![Activation::Relu, Activation::Sigmoid, Activation::Tanh],
        inits: vec![WeightInit::Normal { sigma_w2: 1.5 }, WeightInit::Xavier],
        ..small()
    };
    let s = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap()
        .summary;
    let find = |a: Activation, i: WeightInit| {
        s.layers
            .iter()
            .find(|r| r.activation == a && r.init == i)
            .unwrap()
    };
    // ReLU: squared ratio σ_w²/2 = 0.75, measured and predicted.
    let relu = find(Activation::Relu, WeightInit::Normal { sigma_w2: 1.5 });
    let m = relu.backward_ratio.mean;
    assert!((m * m / 0.75 - 1.0).abs() < 0.04, "ReLU ratio² {}", m * m);
    assert!(
        (relu.predicted_ratio - 0.75f64.sqrt()).abs() < 1e-9,
        "{}",
        relu.predicted_ratio
    );
    // Sigmoid with Xavier (σ_w² = 1): φ' ≤ ¼, so the gradient shrinks at least 4× per layer.
    let sig = find(Activation::Sigmoid, WeightInit::Xavier);
    assert!(sig.backward_ratio.mean <= 0.25, "{:?}", sig.backward_ratio);
    assert!(
        (sig.backward_ratio.mean / sig.predicted_ratio - 1.0).abs() < 0.05,
        "{} vs {}",
        sig.backward_ratio.mean,
        sig.predicted_ratio
    );
    let tanh = find(Activation::Tanh, WeightInit::Xavier);
    assert!(
        (tanh.backward_ratio.mean / tanh.predicted_ratio - 1.0).abs() < 0.05,
        "{} vs {}",
        tanh.backward_ratio.mean,
        tanh.predicted_ratio
    );
    // Weight and bias gradients are reported for every layer.
    assert_eq!(relu.weight_names.len(), 16 + 2);
    assert!(relu.weight_grad_norm.iter().all(|g| g.summary.mean > 0.0));
}

#[test]
fn the_scalar_grid_input_gives_the_same_mean_field_ratio() {
    let p = NormsParams {
        input: "grid".into(),
        input_dim: 1,
        inits: vec![WeightInit::Normal { sigma_w2: 1.5 }],
        ..small()
    };
    let s = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap()
        .summary;
    let m = s.layers[0].backward_ratio.mean;
    assert!((m * m / 0.75 - 1.0).abs() < 0.05, "ratio² {}", m * m);
}

#[test]
fn a_residual_relu_net_without_bn_grows_the_gradient_by_root_two_per_block() {
    let p = NormsParams {
        archs: vec![Arch::RESNET],
        depth: 10,
        width: 512,
        batch: 64,
        seeds: 4,
        ..small()
    };
    let s = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap()
        .summary;
    let r = s.layers[0].backward_ratio.mean;
    assert!((r / 2f64.sqrt() - 1.0).abs() < 0.05, "ratio {r}");
}

#[test]
fn the_chain_matches_its_closed_form_and_orthogonal_linear_nets_are_isometries() {
    let s = small()
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap()
        .summary;
    for c in &s.chains {
        for (a, f) in c.autograd.iter().zip(&c.closed_form) {
            assert!(
                (a - f).abs() <= 1e-12 * f.max(1.0),
                "w = {}: {a} vs {f}",
                c.w
            );
        }
    }
    let at50 = |w: f64| s.chains.iter().find(|c| c.w == w).unwrap().autograd[49];
    assert!(at50(0.8) < 1e-4 && at50(1.2) > 1e3 && at50(1.0) == 1.0);
    for row in s
        .jacobian
        .iter()
        .filter(|r| !r.residual && r.init == JacobianInit::Orthogonal)
    {
        assert!(
            row.singular_values.iter().all(|s| (s - 1.0).abs() < 1e-5),
            "depth {}: {:?}",
            row.depth,
            row.max
        );
    }
    // Gaussian linear chains spread out with depth (E[σ²] stays 1, its variance grows).
    let g = |d: usize| {
        s.jacobian
            .iter()
            .find(|r| !r.residual && r.init == JacobianInit::Gaussian && r.depth == d)
            .unwrap()
    };
    assert!(
        g(8).var_sq > 2.0 * g(1).var_sq,
        "{} vs {}",
        g(8).var_sq,
        g(1).var_sq
    );
}

#[test]
fn f32_overflow_is_recorded_at_the_layer_where_f64_crosses_the_f32_range() {
    let base = NormsParams {
        inits: vec![WeightInit::Normal { sigma_w2: 100.0 }],
        depth: 60,
        width: 64,
        batch: 16,
        seeds: 1,
        ..small()
    };
    let f32s = NormsParams {
        dtype: Precision::F32,
        ..base.clone()
    }
    .check()
    .unwrap()
    .run(&RunOptions::with_threads(1))
    .unwrap()
    .summary;
    let f64s = base
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(1))
        .unwrap()
        .summary;
    let fault = &f32s.layers[0].faults;
    assert_eq!(fault.len(), 1, "{fault:?}");
    assert_eq!(fault[0].pass, "forward");
    assert!(f64s.layers[0].faults.is_empty());
    // In f64 the same net's activations pass f32::MAX around the same layer.
    let grads = &f64s.layers[0].grad_norm;
    assert!(grads.iter().all(|g| g.summary.mean.is_finite()));
    // The first element to overflow is within a few RMS of the typical one:
    // predict the layer from the f64 activations' RMS (×√50 per layer here).
    let rms = &f64s.layers[0].activation_rms;
    let predicted = rms
        .iter()
        .position(|&r| r * 4.0 > f32::MAX as f64)
        .expect("f64 passes the f32 range");
    assert!(
        fault[0].layer.abs_diff(predicted) <= 1,
        "fault at {}, predicted {predicted}",
        fault[0].layer
    );
}

#[test]
fn bad_parameters_are_clear_errors() {
    for (p, field) in [
        (
            NormsParams {
                parts: vec!["everything".into()],
                ..small()
            },
            "parts",
        ),
        (
            NormsParams {
                parts: vec![],
                ..small()
            },
            "parts",
        ),
        (
            NormsParams {
                input: "grid".into(),
                ..small()
            },
            "input_dim",
        ),
        (
            NormsParams {
                input: "images".into(),
                ..small()
            },
            "input",
        ),
        (
            NormsParams {
                activations: vec![],
                ..small()
            },
            "activations",
        ),
        (
            NormsParams {
                depth: 0,
                ..small()
            },
            "depth",
        ),
        (
            NormsParams {
                phase_sigma_w2: vec![-1.0],
                ..small()
            },
            "phase_sigma_w2",
        ),
        (
            NormsParams {
                chain_weights: vec![f64::NAN],
                ..small()
            },
            "chain_weights",
        ),
        (
            NormsParams {
                inits: vec![WeightInit::Orthogonal { gain: 0.0 }],
                ..small()
            },
            "weight_init",
        ),
        (
            NormsParams {
                jacobian_depths: vec![0],
                ..small()
            },
            "depth",
        ),
    ] {
        let e = p.check().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
}

#[test]
fn the_norms_estimate_grows_with_the_draws_and_refuses_above_its_limit() {
    let layers = |seeds: usize| NormsParams {
        parts: vec!["layers".into()],
        seeds,
        ..small()
    };
    let draws = |p: &NormsParams| p.check().unwrap().draws_estimate_gib();
    // One f64 per weight of every seed: 4 seeds hold twice what 2 do, and
    // 2 seeds of a depth-16, width-256 plain net are 2 · 16 · 256² · 8 bytes
    // and a little more (stem, head, biases).
    let (two, four) = (draws(&layers(2)), draws(&layers(4)));
    assert!((four / two - 2.0).abs() < 1e-12, "{two} {four}");
    let weights = 2.0 * 16.0 * 256.0 * 256.0 * 8.0 / (1u64 << 30) as f64;
    assert!(two >= weights && two < 1.05 * weights, "{two} vs {weights}");
    let config = layers(4).check().unwrap();
    let one = config.memory_estimate_gib(1);
    assert!(one > four && config.memory_estimate_gib(2) > one);

    // The issue-sized run (depth 500, width 1400, batch 8192) is refused in
    // one line, before anything is drawn.
    let big = NormsParams {
        archs: vec![Arch::PLAIN],
        depth: 500,
        width: 1400,
        batch: 8192,
        ..Default::default()
    };
    let err = big.check().unwrap_err().to_string();
    assert!(
        err.contains("memory_limit_gib") && !err.contains('\n'),
        "{err}"
    );
    // A limit just under the estimate refuses; at the estimate it runs.
    let under = NormsParams {
        memory_limit_gib: one * 0.99,
        ..layers(4)
    };
    assert!(
        under
            .check()
            .unwrap_err()
            .to_string()
            .contains("memory_limit_gib")
    );
    let at = NormsParams {
        memory_limit_gib: one * 1.01,
        ..layers(4)
    };
    assert!(at.check().is_ok());
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let p = NormsParams {
            memory_limit_gib: bad,
            ..small()
        };
        assert!(p.check().is_err(), "{bad}");
    }
}
