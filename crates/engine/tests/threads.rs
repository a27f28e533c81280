//! The engine with its products and row loops split between two
//! product threads equals the path on one thread, to rounding. One test in
//! its own binary, since the product-thread count is process-wide.

use gradscope_engine::{Engine, Grads, Options, Want, for_net, set_product_threads};
use gradscope_nets::{Arch, BiasInit, BnMode, Mlp, Net, NetParams, Precision};
use ndarray::Array2;

/// Everything a pass gives: hidden states, gradients, parameter gradients,
/// Grams and the forward-mode sweep (where the mode has one).
fn outputs(
    dense: &dyn Engine<f64>,
    x: &Array2<f64>,
) -> (Vec<Array2<f64>>, Grads<f64>, Option<Array2<f64>>) {
    let fwd = dense.forward(x.view(), true).unwrap();
    let grads = dense
        .backward(
            &fwd,
            dense.depth(),
            None,
            Want {
                hidden: true,
                params: true,
                gram: true,
            },
        )
        .unwrap();
    let sweep = dense.tangent_sweep(x.view(), &[1.0, -0.5, 0.25]).ok();
    (fwd.hidden, grads, sweep)
}

fn close(a: &Array2<f64>, b: &Array2<f64>, what: &str) {
    assert_eq!(a.dim(), b.dim(), "{what}: shapes");
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (u, v)| m.max((u - v).abs()));
    assert!(
        diff <= 1e-12 * scale,
        "{what}: max difference {diff:e} on a scale of {scale:e}"
    );
}

#[test]
fn two_product_threads_give_the_one_thread_results() {
    // Sizes above the split thresholds: 256 rows, 64 features (16 384 elements).
    let (n, width) = (256, 64);
    let x = Array2::from_shape_fn((n, 3), |(i, j)| ((i * 7 + j * 5) % 23) as f64 / 11.0 - 1.0);
    let archs = [
        "plain",
        "resnet-bn",
        "resnet:norm=ln",
        "highway",
        "looks-linear",
        "resnet:init=fixup",
    ];
    let mut compared = 0;
    for arch in archs {
        let arch: Arch = arch.parse().unwrap();
        for mode in [BnMode::PerSample, BnMode::Train] {
            let p = NetParams {
                arch,
                depth: 4,
                width,
                input_dim: 3,
                output_dim: 2,
                bias_init: BiasInit::Normal { std: 0.2 },
                precision: Precision::F64,
                seed: 5,
                ..Default::default()
            };
            let m = Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap());
            let dense = for_net::<f64>(&m, Options::repeated(mode)).unwrap();
            set_product_threads(1);
            let (h1, g1, s1) = outputs(dense.as_ref(), &x);
            set_product_threads(2);
            let (h2, g2, s2) = outputs(dense.as_ref(), &x);
            let what = |s: &str| format!("{arch} {mode}: {s}");
            for (l, (a, b)) in h1.iter().zip(&h2).enumerate() {
                close(a, b, &what(&format!("h_{l}")));
            }
            for (l, (a, b)) in g1.hidden.iter().zip(&g2.hidden).enumerate() {
                close(a, b, &what(&format!("∂L/∂h_{l}")));
            }
            close(&g1.input, &g2.input, &what("∂L/∂x"));
            for (a, b) in g1.hidden_norms.iter().zip(&g2.hidden_norms) {
                assert!((a - b).abs() <= 1e-12 * a.abs(), "{}", what("norms"));
            }
            assert_eq!(g1.params.len(), g2.params.len());
            for ((name, a), (_, b)) in g1.params.iter().zip(&g2.params) {
                let (a, b) = (
                    Array2::from_shape_vec((1, a.len()), a.clone()).unwrap(),
                    Array2::from_shape_vec((1, b.len()), b.clone()).unwrap(),
                );
                close(&a, &b, &what(name));
            }
            assert_eq!(g1.gram.len(), g2.gram.len());
            for ((name, a), (_, b)) in g1.gram.iter().zip(&g2.gram) {
                close(a, b, &what(&format!("Gram {name}")));
            }
            assert_eq!(s1.is_some(), s2.is_some());
            if let (Some(a), Some(b)) = (&s1, &s2) {
                close(a, b, &what("tangent sweep"));
            }
            assert!(!g1.params.is_empty() && !g1.gram.is_empty());
            compared += 1;
        }
    }
    assert_eq!(compared, 12);
}
