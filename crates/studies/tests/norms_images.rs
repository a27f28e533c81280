//! The norms study on images: the conv kernels' ‖∂L/∂W‖ it writes are the
//! norms of central finite differences of the loss, its per-block ‖∂L/∂h_l‖
//! are candle's autograd's, in f64, and bad image settings are one-line errors.

use candle_core::{Device, Tensor};
use gradscope_engine::Request;
use gradscope_nets::{Model, Net, Precision};
use gradscope_spec::{ConvArch, DataSource, ModelArch};
use gradscope_studies::norms::NormsParams;
use gradscope_studies::norms::images::{image_gradients, weighted_layers};
use gradscope_studies::{Params, RunOptions};
use ndarray::Array2;

const PLAIN: ModelArch = ModelArch::Conv(ConvArch::PLAIN);
const RESNET: ModelArch = ModelArch::Conv(ConvArch::RESNET);

/// The image part beside the cheapest part (the study runs at least one).
fn on_images(depths: Vec<usize>) -> NormsParams {
    NormsParams {
        parts: vec!["chain".into()],
        chain_weights: vec![1.0],
        chain_depth: 2,
        seeds: 1,
        dtype: Precision::F64,
        image_archs: vec![PLAIN, RESNET],
        image_depths: depths,
        image_batch: 8,
        ..Default::default()
    }
}

/// Entry `k` of parameter `name` of `net` set to `v`.
fn set_entry(net: &Net, name: &str, k: usize, v: f64) {
    let (_, var) = net
        .parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap();
    let mut vals = var.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    vals[k] = v;
    let t = Tensor::from_vec(vals, var.dims(), &Device::Cpu).unwrap();
    var.set(&t).unwrap();
}

fn entry(net: &Net, name: &str, k: usize) -> f64 {
    let (_, var) = net
        .parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap();
    var.flatten_all().unwrap().to_vec1::<f64>().unwrap()[k]
}

/// (L(θ + h) − L(θ − h))/2h of entry `k` of `name`.
fn central_difference(net: &Net, x: &Array2<f64>, y: &[u32], name: &str, k: usize) -> f64 {
    let h = 1e-5;
    let w = entry(net, name, k);
    let loss = |v: f64| {
        set_entry(net, name, k, v);
        image_gradients(net, x.view(), y, Request::Auto)
            .unwrap()
            .loss
    };
    let d = (loss(w + h) - loss(w - h)) / (2.0 * h);
    set_entry(net, name, k, w);
    d
}

/// BN is in training mode with the gradient through the batch's statistics,
/// so the loss is a smooth function of every weight and ∂L/∂W its central
/// difference: the whole stem kernel's norm as written, and single entries
/// of a later kernel and the classifier.
#[test]
fn written_weight_gradients_are_central_differences_of_the_loss() {
    let config = on_images(vec![8]).check().unwrap();
    let s = config.run(&RunOptions::with_threads(2)).unwrap().summary;
    let im = s.images.as_ref().unwrap();
    for (a, &arch) in [PLAIN, RESNET].iter().enumerate() {
        let r = &im.results[a];
        let (net, x, y) = config.image_inputs(arch, 8, 0).unwrap();
        // Weighted layers of a depth-8 conv net: the stem, two per block, the classifier.
        assert_eq!(r.weight_names.len(), 8);
        assert_eq!(r.weight_blocks, vec![0, 1, 1, 2, 2, 3, 3, 4]);
        assert_eq!(
            weighted_layers(&net)
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>(),
            r.weight_names
        );
        // The stem's 16 × 1 × 3 × 3 kernel, every entry.
        let fd: f64 = (0..144)
            .map(|k| central_difference(&net, &x, &y, "conv1.weight", k).powi(2))
            .sum::<f64>()
            .sqrt();
        let written = r.weight_grad_norm[0].mean;
        assert_eq!(r.weight_names[0], "conv1.weight");
        assert!(
            (written / fd - 1.0).abs() < 1e-6,
            "{arch}: written ‖∂L/∂W‖ {written} vs finite differences {fd}"
        );
        let g = image_gradients(&net, x.view(), &y, Request::Auto).unwrap();
        for (name, ks) in [
            ("layer2.0.conv1.weight", [0, 777, 4607]),
            ("fc.weight", [0, 123, 639]),
        ] {
            let grad = &g.params.iter().find(|(n, _)| n == name).unwrap().1;
            let k_of = r.weight_names.iter().position(|n| n == name).unwrap();
            let norm = grad.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((r.weight_grad_norm[k_of].mean / norm - 1.0).abs() < 1e-12);
            for k in ks {
                let fd = central_difference(&net, &x, &y, name, k);
                assert!(
                    (grad[k] - fd).abs() <= 1e-6 * grad[k].abs().max(1e-4 * norm),
                    "{arch} {name}[{k}]: {} vs {fd}",
                    grad[k]
                );
            }
        }
    }
}

/// The per-block ‖∂L/∂h_l‖ the study writes are candle's autograd's on the
/// same net and batch (f64), at two depths.
#[test]
fn written_block_gradients_match_the_candle_oracle() {
    let config = on_images(vec![8, 14]).check().unwrap();
    let s = config.run(&RunOptions::with_threads(2)).unwrap().summary;
    let im = s.images.as_ref().unwrap();
    let mut k = 0;
    for arch in [PLAIN, RESNET] {
        for depth in [8, 14] {
            let r = &im.results[k];
            k += 1;
            assert_eq!(
                (r.arch.as_str(), r.depth),
                (arch.to_string().as_str(), depth)
            );
            let (net, x, y) = config.image_inputs(arch, depth, 0).unwrap();
            let oracle = image_gradients(&net, x.view(), &y, Request::Candle).unwrap();
            // A depth-(6n + 2) net has 3n blocks and the stem's output.
            assert_eq!(r.grad_norm.len(), (depth - 2) / 2 + 1);
            assert_eq!(oracle.hidden_norms.len(), r.grad_norm.len());
            for (l, (w, o)) in r.grad_norm.iter().zip(&oracle.hidden_norms).enumerate() {
                assert!(
                    (w.mean / o - 1.0).abs() < 1e-10,
                    "{arch} depth {depth} block {l}: {} vs candle {o}",
                    w.mean
                );
            }
            assert!((r.loss.mean / oracle.loss - 1.0).abs() < 1e-12);
        }
    }
}

#[test]
fn bad_image_settings_are_one_line_errors() {
    let cases: Vec<(NormsParams, &str)> = vec![
        (on_images(vec![21]), "image_depths"),
        (on_images(vec![]), "image_depths"),
        (
            NormsParams {
                image_batch: 0,
                ..on_images(vec![8])
            },
            "image_batch",
        ),
        (
            NormsParams {
                image_batch: 1_000_000,
                ..on_images(vec![8])
            },
            "image_batch",
        ),
        (
            NormsParams {
                image_batch: 4096,
                ..on_images(vec![8])
            },
            "training set",
        ),
        (
            NormsParams {
                image_data: DataSource::Mnist("/nonexistent/mnist".into()),
                ..on_images(vec![8])
            },
            "image_data",
        ),
    ];
    for (p, what) in cases {
        let e = p.check().expect_err("refused").to_string();
        assert!(e.contains(what), "{e}");
        assert!(!e.contains('\n'), "{e:?}");
    }
    // No image archs: no image part, as before it existed.
    let p = NormsParams {
        image_archs: vec![],
        ..on_images(vec![])
    };
    let s = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(1))
        .unwrap()
        .summary;
    assert!(s.images.is_none());
}
