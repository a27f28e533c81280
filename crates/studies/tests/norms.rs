//! The norms study against theory: mean-field backward ratios, the residual
//! √2 growth, the scalar chain's closed form, sigmoid's ¼ bound, orthogonal
//! isometry, f32 overflow recorded where it happens, and the singular values
//! of matrices built from known ones.

use gradscope_nets::{Activation, Arch, BiasInit, Precision, WeightInit};
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

/// I − 2vvᵀ/‖v‖², an orthogonal reflection.
fn householder(v: &[f64]) -> ndarray::Array2<f64> {
    let n = v.len();
    let vv: f64 = v.iter().map(|x| x * x).sum();
    ndarray::Array2::from_shape_fn((n, n), |(i, j)| {
        f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv
    })
}

/// U·A·V with U, V fixed reflections of size n.
fn rotated(a: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    let n = a.nrows();
    let reflection =
        |f: fn(f64) -> f64| householder(&(0..n).map(|i| f(i as f64)).collect::<Vec<_>>());
    let u = reflection(|i| (i * 0.7).sin() + 0.3);
    let v = reflection(|i| (i * 1.3).cos() - 0.2);
    u.dot(a).dot(&v)
}

#[test]
fn singular_values_of_u_diag_v_are_the_diagonal() {
    use gradscope_studies::norms::singular_values;
    let check = |a: ndarray::Array2<f64>, s: &[f64]| {
        let got = singular_values(&rotated(&a));
        assert_eq!(got.len(), s.len());
        for (g, w) in got.iter().zip(s) {
            assert!((g - w).abs() <= 1e-12 * s[0], "n = {}: {g} vs {w}", s.len());
        }
    };
    // Sizes off and on the four-lane stride; values over thirteen decades.
    for n in [1, 2, 13, 32] {
        let s: Vec<f64> = (0..n)
            .map(|i| 1e3 * 10f64.powf(-13.0 * i as f64 / n.max(2) as f64))
            .collect();
        // Columns in scrambled order: the values come back sorted.
        let d =
            ndarray::Array2::from_shape_fn(
                (n, n),
                |(i, j)| {
                    if (i * 5 + 3) % n == j { s[i] } else { 0.0 }
                },
            );
        check(d, &s);
    }
    // Rank 3 of 32, as the Jacobian of a deep ReLU net.
    let mut s = vec![0.0; 32];
    s[..3].copy_from_slice(&[5.0, 2.0, 1.0]);
    s[31] = 1e-310;
    check(
        ndarray::Array2::from_diag(&ndarray::Array1::from(s.clone())),
        &s,
    );
    // [[3, 0], [4, 5]]: σ² are the eigenvalues of AᵀA = [[25, 20], [20, 25]], 45 and 5.
    let a = ndarray::arr2(&[[3.0, 0.0], [4.0, 5.0]]);
    let got = singular_values(&a);
    assert!((got[0] - 45f64.sqrt()).abs() < 1e-14 && (got[1] - 5f64.sqrt()).abs() < 1e-14);
}
