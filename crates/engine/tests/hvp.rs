//! Hessian-vector products on dual numbers against finite differences of
//! the gradient (f64), their symmetry, the f32 engine against the f64 one,
//! the Gauss–Newton product against Jᵀ H_L J formed densely, and Lanczos on
//! a Hessian formed column by column.

mod common;
use common::perturb_vectors;

use candle_core::{Device, Tensor};
use gradscope_engine::Curvature;
use gradscope_nets::{Activation, BnMode, Mlp, Net, NetParams, Precision};
use ndarray::Array2;

const BATCH: usize = 10;
const INPUTS: usize = 3;
const CLASSES: usize = 3;

fn inputs(n: usize, d: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        (((i * 7 + j * 5) % 13) as f64 / 6.0 - 1.0) * 0.9
    })
}

fn labels(n: usize) -> Vec<u32> {
    (0..n).map(|i| (i % CLASSES) as u32).collect()
}

/// A small MLP of `arch`, its rank-1 parameters (γ, β, biases) moved off
/// 1 and 0, its BN statistics calibrated on the batch.
fn mlp(
    arch: &str,
    depth: usize,
    width: usize,
    activation: Activation,
    precision: Precision,
) -> Net {
    let p = NetParams {
        arch: arch.parse().unwrap(),
        depth,
        width,
        input_dim: INPUTS,
        output_dim: CLASSES,
        activation,
        precision,
        seed: 5,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    perturb_vectors(&gradscope_nets::Model::parameters(&m));
    let x = inputs(BATCH, INPUTS);
    let dtype = match precision {
        Precision::F32 => candle_core::DType::F32,
        Precision::F64 => candle_core::DType::F64,
    };
    let xt = Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape(x.dim())
        .unwrap()
        .to_dtype(dtype)
        .unwrap();
    m.calibrate_batch_norm(&xt).unwrap();
    Net::Mlp(m)
}

/// A small conv net (ResNet of depth 8 on 2 × 6 × 6 images, 3 classes).
fn conv(arch: &str) -> (Net, Array2<f64>) {
    use gradscope_nets::{ConvNet, ConvNetParams};
    let p = ConvNetParams {
        arch: arch.parse().unwrap(),
        depth: 8,
        widths: [2, 3, 4],
        in_channels: 2,
        image_size: 6,
        classes: CLASSES,
        precision: Precision::F64,
        seed: 4,
        ..Default::default()
    };
    let net = ConvNet::new(&p.check().unwrap()).unwrap();
    perturb_vectors(&gradscope_nets::Model::parameters(&net));
    (Net::Conv(net), inputs(6, 72))
}

/// A direction with entries of both signs and distinct sizes.
fn direction(n: usize, k: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * (2 * k + 3) + k) as f64 * 0.7).sin())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// ‖H·v − D‖ / ‖H·v‖ with D the fourth-order central difference of the
/// gradient along v, (8(∇L(θ + εv) − ∇L(θ − εv)) − (∇L(θ + 2εv) − ∇L(θ − 2εv)))/12ε.
fn finite_difference_error(c: &mut Curvature<f64>, v: &[f64]) -> f64 {
    let hv = c.hvp(v).unwrap();
    let theta = c.parameters();
    let eps = 1e-4;
    let at = |c: &mut Curvature<f64>, s: f64| {
        let shifted: Vec<f64> = theta.iter().zip(v).map(|(t, v)| t + s * v).collect();
        c.set_parameters(&shifted).unwrap();
        c.loss_gradient().unwrap().1
    };
    let (p1, m1, p2, m2) = (at(c, eps), at(c, -eps), at(c, 2.0 * eps), at(c, -2.0 * eps));
    c.set_parameters(&theta).unwrap();
    let fd: Vec<f64> = (0..hv.len())
        .map(|i| (8.0 * (p1[i] - m1[i]) - (p2[i] - m2[i])) / (12.0 * eps))
        .collect();
    let diff: Vec<f64> = hv.iter().zip(&fd).map(|(a, b)| a - b).collect();
    norm(&diff) / norm(&hv)
}

fn check_net(net: &Net, x: &Array2<f64>, modes: &[BnMode], what: &str) {
    let y = labels(x.nrows());
    for &mode in modes {
        let mut c = Curvature::<f64>::new(net, mode, x.view(), &y).unwrap();
        let n = c.dim();
        let (u, v) = (direction(n, 1), direction(n, 2));
        let err = finite_difference_error(&mut c, &v);
        assert!(err <= 1e-6, "{what} ({mode}): relative error {err:e}");
        // Symmetry, uᵀHv = vᵀHu, where the backward pass is a gradient:
        // per-sample mode holds the batch statistics constant backwards only,
        // so its product is the Jacobian of a field that is not a gradient.
        let (hu, hv) = (c.hvp(&u).unwrap(), c.hvp(&v).unwrap());
        let (a, b) = (dot(&u, &hv), dot(&v, &hu));
        let symmetric = (a - b).abs() <= 1e-10 * a.abs().max(b.abs());
        assert_eq!(
            symmetric,
            mode != BnMode::PerSample || !what.contains("bn"),
            "{what} ({mode}): uᵀHv = {a}, vᵀHu = {b}"
        );
        // The gradient's value is the training gradient: the loss decreases along −∇L.
        let (loss, g) = c.loss_gradient().unwrap();
        assert!(loss.is_finite() && norm(&g) > 0.0);
    }
}

#[test]
fn hessian_vector_products_equal_finite_differences_of_the_gradient() {
    let x = inputs(BATCH, INPUTS);
    let all = [BnMode::Train, BnMode::Full, BnMode::Eval, BnMode::PerSample];
    check_net(
        &mlp("plain", 3, 6, Activation::Tanh, Precision::F64),
        &x,
        &[BnMode::Train],
        "plain tanh",
    );
    check_net(
        &mlp("resnet", 3, 6, Activation::Relu, Precision::F64),
        &x,
        &[BnMode::Train],
        "resnet relu",
    );
    check_net(
        &mlp("resnet-bn", 3, 6, Activation::Relu, Precision::F64),
        &x,
        &all,
        "resnet-bn relu",
    );
    check_net(
        &mlp("plain-bn", 2, 5, Activation::Gelu, Precision::F64),
        &x,
        &all,
        "plain-bn gelu",
    );
    // The trainable shortcut scale λ, under the LN after the sum.
    check_net(
        &mlp(
            "xskip-ln:lambda=learn(2)",
            3,
            6,
            Activation::Tanh,
            Precision::F64,
        ),
        &x,
        &[BnMode::Train],
        "xskip-ln learned λ tanh",
    );
    let (net, images) = conv("resnet");
    check_net(
        &net,
        &images,
        &[BnMode::Train, BnMode::Eval],
        "conv resnet-8",
    );
}

#[test]
fn the_f32_engine_agrees_with_the_f64_one() {
    let x = inputs(BATCH, INPUTS);
    let y = labels(BATCH);
    let (n64, n32) = (
        mlp("resnet-bn", 3, 6, Activation::Relu, Precision::F64),
        mlp("resnet-bn", 3, 6, Activation::Relu, Precision::F32),
    );
    let mut c64 = Curvature::<f64>::new(&n64, BnMode::Train, x.view(), &y).unwrap();
    let mut c32 = Curvature::<f32>::new(&n32, BnMode::Train, x.view(), &y).unwrap();
    let v = direction(c64.dim(), 3);
    let (h64, h32) = (c64.hvp(&v).unwrap(), c32.hvp(&v).unwrap());
    let diff: Vec<f64> = h64.iter().zip(&h32).map(|(a, b)| a - b).collect();
    assert!(
        norm(&diff) <= 1e-4 * norm(&h64),
        "{}",
        norm(&diff) / norm(&h64)
    );
    // A net in f64 refuses an f32 engine.
    assert!(Curvature::<f32>::new(&n64, BnMode::Train, x.view(), &y).is_err());
}

/// The whole matrix of a product, column by column: A e_k.
fn dense(n: usize, mut product: impl FnMut(&[f64]) -> Vec<f64>) -> Array2<f64> {
    let mut a = Array2::zeros((n, n));
    for k in 0..n {
        let mut e = vec![0.0; n];
        e[k] = 1.0;
        for (i, v) in product(&e).into_iter().enumerate() {
            a[[i, k]] = v;
        }
    }
    a
}

#[test]
fn the_gauss_newton_product_is_jt_hl_j_and_positive_semi_definite() {
    let x = inputs(6, INPUTS);
    let y = labels(6);
    let net = mlp("resnet-bn", 2, 4, Activation::Tanh, Precision::F64);
    let mut c = Curvature::<f64>::new(&net, BnMode::Train, x.view(), &y).unwrap();
    let n = c.dim();
    // J: (examples·classes) × parameters, from forward tangents.
    let mut j = Array2::zeros((6 * CLASSES, n));
    for k in 0..n {
        let mut e = vec![0.0; n];
        e[k] = 1.0;
        let jv = c.output_tangent(&e).unwrap();
        for (i, v) in jv.iter().enumerate() {
            j[[i, k]] = *v;
        }
    }
    // H_L: per example (diag(p) − ppᵀ)/B, from the logits.
    let mut hl = Array2::zeros((6 * CLASSES, 6 * CLASSES));
    let logits = {
        let (_, _) = c.loss_gradient().unwrap();
        logits_of(&net, &x)
    };
    for i in 0..6 {
        let z = logits.row(i);
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        for a in 0..CLASSES {
            for b in 0..CLASSES {
                let (pa, pb) = (e[a] / s, e[b] / s);
                hl[[i * CLASSES + a, i * CLASSES + b]] =
                    (if a == b { pa } else { 0.0 } - pa * pb) / 6.0;
            }
        }
    }
    let g_dense = j.t().dot(&hl).dot(&j);
    let g = dense(n, |v| c.gauss_newton(v).unwrap());
    let scale = g_dense.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in g.iter().zip(&g_dense) {
        assert!((a - b).abs() <= 1e-10 * scale, "{a} against {b}");
    }
    let eig = gradscope_stats::symmetric_eigen(&g).unwrap().values;
    assert!(eig[0] >= -1e-12 * scale, "λ_min(G) = {}", eig[0]);
    assert!(eig[n - 1] > 0.0);
    // H itself is indefinite here, and differs from G.
    let h = dense(n, |v| c.hvp(v).unwrap());
    let eh = gradscope_stats::symmetric_eigen(&h).unwrap().values;
    assert!(eh[0] < -1e-6, "λ_min(H) = {}", eh[0]);
}

/// The net's logits on x in train mode (the Curvature's own forward pass).
fn logits_of(net: &Net, x: &Array2<f64>) -> Array2<f64> {
    use gradscope_engine::{Options, for_net};
    let e = for_net::<f64>(net, Options::once(BnMode::Train)).unwrap();
    e.predict(x.view()).unwrap()
}

#[test]
fn lanczos_on_hessian_products_matches_the_dense_hessian() {
    let x = inputs(BATCH, INPUTS);
    let y = labels(BATCH);
    let net = mlp("resnet", 2, 5, Activation::Tanh, Precision::F64);
    let mut c = Curvature::<f64>::new(&net, BnMode::Train, x.view(), &y).unwrap();
    let n = c.dim();
    let h = dense(n, |v| c.hvp(v).unwrap());
    let exact = gradscope_stats::symmetric_eigen(&h).unwrap().values;
    let start = direction(n, 5);
    let l = gradscope_stats::lanczos_top(&start, 2, n, 1e-10, |v| {
        c.hvp(v)
            .map_err(|e| gradscope_stats::StatsError::Shape(e.to_string()))
    })
    .unwrap();
    assert!(l.converged);
    for (k, got) in l.eigenvalues.iter().enumerate() {
        let want = exact[n - 1 - k];
        assert!(
            (got - want).abs() <= 1e-8 * exact[n - 1].abs(),
            "{got} against {want}"
        );
    }
    let trace: f64 = (0..n).map(|i| h[[i, i]]).sum();
    let t = gradscope_stats::hutchinson_trace(n, 100, 2, |v| {
        c.hvp(v)
            .map_err(|e| gradscope_stats::StatsError::Shape(e.to_string()))
    })
    .unwrap();
    assert!(
        (t.mean - trace).abs() <= 3.0 * t.std_error,
        "{} ± {} against {trace}",
        t.mean,
        t.std_error
    );
}
