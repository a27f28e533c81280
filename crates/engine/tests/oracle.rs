//! Every op of the engine against candle's autograd (the oracle), and in
//! f64 against finite differences: the forward pass, reverse mode (input and
//! hidden-state gradients at every depth), forward mode, parameter gradients
//! and per-example Gram matrices, in f32 and f64 and in every BN mode. One
//! test per op, each on the nets that use it.

mod common;
use common::perturb_vectors;

use candle_core::{Device, Tensor};
use gradscope_engine::{Engine, Grads, Kernels, Options, Real, Want, for_net};
use gradscope_nets::{Activation, Arch, BiasInit, BnMode, Mlp, Net, NetParams, Precision};
use ndarray::Array2;

const DEPTH: usize = 4;
const BATCH: usize = 12;
const INPUTS: usize = 3;
const OUTPUTS: usize = 2;

fn inputs() -> Array2<f64> {
    Array2::from_shape_fn((BATCH, INPUTS), |(i, j)| {
        ((i * 7 + j * 5) % 13) as f64 / 6.0 - 1.0
    })
}

/// A small net of `arch`, its vectors perturbed; BN statistics calibrated
/// on the inputs (so eval mode is a realistic net).
fn net(arch: &str, activation: Activation, precision: Precision) -> Net {
    let p = NetParams {
        arch: arch.parse::<Arch>().unwrap(),
        depth: DEPTH,
        width: 12,
        input_dim: INPUTS,
        output_dim: OUTPUTS,
        activation,
        bias_init: BiasInit::Normal { std: 0.2 },
        precision,
        seed: 3,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    perturb_vectors(&m.parameters());
    let x = inputs();
    let xt = Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape(x.dim())
        .unwrap()
        .to_dtype(precision_dtype(precision))
        .unwrap();
    m.calibrate_batch_norm(&xt).unwrap();
    Net::Mlp(m)
}

fn precision_dtype(p: Precision) -> candle_core::DType {
    match p {
        Precision::F32 => candle_core::DType::F32,
        Precision::F64 => candle_core::DType::F64,
    }
}

/// A per-example output gradient with distinct rows (n × outputs).
fn out_grad<T: Real>(n: usize, outputs: usize) -> Array2<T> {
    Array2::from_shape_fn((n, outputs), |(i, k)| {
        T::of((i as f64 + 1.0) * if k % 2 == 0 { 0.1 } else { -0.05 } * (1.0 + k as f64 / 7.0))
    })
}

fn to64<T: Real>(a: &[T]) -> Vec<f64> {
    a.iter().map(|v| v.f64()).collect()
}

/// |a − b| ≤ tol · max(‖b‖_∞, floor), elementwise.
fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}: {x} vs {y} (scale {scale:e})"
        );
    }
}

fn same_grads<T: Real>(got: &Grads<T>, want: &Grads<T>, tol: f64, what: &str) {
    close(
        &to64(got.input.as_slice().unwrap()),
        &to64(want.input.as_slice().unwrap()),
        tol,
        &format!("{what}: ∂L/∂x"),
    );
    assert_eq!(got.hidden.len(), want.hidden.len(), "{what}");
    for (l, (a, b)) in got.hidden.iter().zip(&want.hidden).enumerate() {
        close(
            &to64(a.as_slice().unwrap()),
            &to64(b.as_slice().unwrap()),
            tol,
            &format!("{what}: ∂L/∂h_{l}"),
        );
    }
    close(
        &got.hidden_norms,
        &want.hidden_norms,
        tol,
        &format!("{what}: ‖∂L/∂h‖"),
    );
    assert!(
        want.unreached.is_empty(),
        "{what}: oracle reached {:?}",
        want.unreached
    );
    let names = |g: &Grads<T>| g.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(got),
        names(want),
        "{what}: parameters in state-dict order"
    );
    for ((name, a), (_, b)) in got.params.iter().zip(&want.params) {
        close(&to64(a), &to64(b), tol, &format!("{what}: ∂L/∂{name}"));
    }
    close(
        &got.param_norms(),
        &want.param_norms(),
        tol,
        &format!("{what}: ‖∂L/∂θ‖"),
    );
    let layers = |g: &Grads<T>| g.gram.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(layers(got), layers(want), "{what}: Gram layers");
    for ((name, a), (_, b)) in got.gram.iter().zip(&want.gram) {
        close(
            &a.iter().copied().collect::<Vec<_>>(),
            &b.iter().copied().collect::<Vec<_>>(),
            tol,
            &format!("{what}: Gram of {name}"),
        );
    }
}

/// The engine and the oracle on `net` in `mode`: outputs, gradients
/// (input, hidden, parameters, Grams where samples do not interact) at the
/// shallowest and the full depth, activation norms and the forward-mode sweep.
fn against_oracle<T: Real>(net: &Net, x: &Array2<f64>, mode: BnMode, tol: f64, what: &str) {
    let engine = for_net::<T>(net, Options::once(mode)).unwrap();
    let oracle = for_net::<T>(net, Options::once(mode).on_candle()).unwrap();
    assert_eq!(engine.kernels(), &Kernels::Engine, "{what}");
    let x = x.mapv(T::of);
    let depth_all = engine.depth();
    let (fe, fo) = (
        engine.forward(x.view(), true).unwrap(),
        oracle.forward(x.view(), true).unwrap(),
    );
    let coupled = matches!(mode, BnMode::Full);
    let outputs = engine.predict(x.view()).unwrap().ncols();
    let g = out_grad::<T>(x.nrows(), outputs);
    // A conv net's head reads the last stage's channels: the whole net only.
    let depths = if matches!(net, Net::Conv(_)) {
        vec![depth_all]
    } else {
        vec![1, depth_all]
    };
    for depth in depths {
        let at = format!("{what} {mode} depth {depth}");
        close(
            &to64(engine.output(&fe, depth).unwrap().as_slice().unwrap()),
            &to64(oracle.output(&fo, depth).unwrap().as_slice().unwrap()),
            tol,
            &format!("{at}: output"),
        );
        close(
            &engine.activation_norms(&fe, depth),
            &oracle.activation_norms(&fo, depth),
            tol,
            &format!("{at}: ‖h‖"),
        );
        let want = Want {
            hidden: true,
            params: true,
            gram: !coupled,
        };
        let got = engine.backward(&fe, depth, Some(g.view()), want).unwrap();
        let expected = oracle.backward(&fo, depth, Some(g.view()), want).unwrap();
        same_grads(&got, &expected, tol, &at);
        assert!(!got.params.is_empty() && (coupled || !got.gram.is_empty()));
    }
    // Forward mode (one pass for every depth) against reverse mode per depth.
    let v: Vec<T> = (0..x.ncols())
        .map(|j| T::of([0.3, -1.0, 0.5][j % 3] * (1.0 + j as f64 / 50.0)))
        .collect();
    match (engine.tangent_sweep(x.view(), &v), coupled) {
        (Err(_), true) => {}
        (Ok(sweep), false) if matches!(net, Net::Conv(_)) => {
            // The whole net's row: D_v f = (∂Σf/∂x)·v.
            let gx = oracle
                .backward(&fo, depth_all, None, Want::default())
                .unwrap()
                .input;
            let want: Vec<f64> = gx
                .rows()
                .into_iter()
                .map(|r| r.iter().zip(&v).map(|(a, b)| a.f64() * b.f64()).sum())
                .collect();
            close(
                &to64(sweep.row(depth_all).to_vec().as_slice()),
                &want,
                tol,
                &format!("{what} {mode}: tangent at full depth"),
            );
            assert!(
                sweep.row(0).iter().all(|v| v.is_nan()),
                "{what}: no head at h_0"
            );
        }
        (Ok(sweep), false) => {
            let want = oracle.tangent_sweep(x.view(), &v).unwrap();
            close(
                &to64(sweep.as_slice().unwrap()),
                &to64(want.as_slice().unwrap()),
                tol,
                &format!("{what} {mode}: tangent sweep"),
            );
        }
        (r, _) => panic!(
            "{what} {mode}: the sweep needs samples that do not interact: {:?}",
            r.is_ok()
        ),
    }
}

/// L = Σ out_grad ⊙ f(x) of the whole net on the engine (f64).
fn loss(engine: &dyn Engine<f64>, x: &Array2<f64>) -> f64 {
    let out = engine.predict(x.view()).unwrap();
    (&out * &out_grad::<f64>(out.nrows(), out.ncols())).sum()
}

/// Central finite differences of L in x and in a few entries of every
/// parameter against the engine's gradients (f64; eval and full mode,
/// where the gradient is the derivative of the function computed).
fn against_finite_differences(net: &Net, x: &Array2<f64>, mode: BnMode, what: &str) {
    let mut engine = for_net::<f64>(net, Options::repeated(mode)).unwrap();
    let mut x = x.clone();
    let fwd = engine.forward(x.view(), true).unwrap();
    let outputs = engine.predict(x.view()).unwrap().ncols();
    let g = out_grad::<f64>(x.nrows(), outputs);
    let want = Want {
        params: true,
        ..Want::default()
    };
    let depth = engine.depth();
    let grads = engine.backward(&fwd, depth, Some(g.view()), want).unwrap();
    let h = 1e-6;
    let scale = grads.input.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let (n, d) = x.dim();
    for i in [0, n / 2, n - 1] {
        for j in [0, d / 3, d / 2, d - 1] {
            let x0 = x[[i, j]];
            x[[i, j]] = x0 + h;
            let up = loss(engine.as_ref(), &x);
            x[[i, j]] = x0 - h;
            let down = loss(engine.as_ref(), &x);
            x[[i, j]] = x0;
            let fd = (up - down) / (2.0 * h);
            let got = grads.input[[i, j]];
            assert!(
                (fd - got).abs() <= 1e-6 * scale.max(1e-6),
                "{what} {mode}: ∂L/∂x[{i},{j}] {got} vs finite difference {fd}"
            );
        }
    }
    for (name, gp) in &grads.params {
        let gscale = gp.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-6);
        for k in [0, gp.len() / 2, gp.len() - 1] {
            let nudge = |e: &mut dyn Engine<f64>, delta: f64| {
                e.update_params(&grads, &mut |n, _, w, _| {
                    if n == name {
                        w[k] += delta;
                    }
                })
                .unwrap();
            };
            nudge(engine.as_mut(), h);
            let up = loss(engine.as_ref(), &x);
            nudge(engine.as_mut(), -2.0 * h);
            let down = loss(engine.as_ref(), &x);
            nudge(engine.as_mut(), h);
            let fd = (up - down) / (2.0 * h);
            assert!(
                (fd - gp[k]).abs() <= 1e-6 * gscale,
                "{what} {mode}: ∂L/∂{name}[{k}] {} vs finite difference {fd}",
                gp[k]
            );
        }
    }
}

/// Every check of one net, in f64 and f32, on inputs `x`.
fn every_check(n64: &Net, n32: &Net, x: &Array2<f64>, what: &str) {
    for mode in [BnMode::PerSample, BnMode::Eval, BnMode::Full] {
        // Through the batch statistics g − mean(g) − x̂·mean(g x̂)
        // cancels most of g, so rounding grows by about 100×.
        let tol = if mode == BnMode::Full { 1e-8 } else { 1e-10 };
        against_oracle::<f64>(n64, x, mode, tol, what);
        against_oracle::<f32>(n32, x, mode, 2e-3, &format!("{what} f32"));
    }
    for mode in [BnMode::Eval, BnMode::Full] {
        against_finite_differences(n64, x, mode, what);
    }
}

/// Every check on every arch of `archs` with every activation of `acts`.
fn check(archs: &[&str], acts: &[Activation]) {
    for arch in archs {
        for &act in acts {
            let what = format!("{arch} {act}");
            let n64 = net(arch, act, Precision::F64);
            let n32 = net(arch, act, Precision::F32);
            every_check(&n64, &n32, &inputs(), &what);
        }
    }
}

#[test]
fn linear() {
    check(&["plain", "resnet1"], &[Activation::Relu]);
}

#[test]
fn activations() {
    check(&["plain", "resnet"], &Activation::ALL);
}

#[test]
fn batch_norm() {
    check(
        &[
            "plain-bn",
            "resnet-bn",
            "resnet1-bn",
            "resnet-bn:order=post",
            "resnet:branch=3,norm=bn",
            "resnet-bn:bottleneck=2",
        ],
        &[Activation::Relu, Activation::Tanh],
    );
}

#[test]
fn feature_norms() {
    check(
        &[
            "plain:norm=ln",
            "resnet:norm=ln",
            "resnet:norm=gn(3)",
            "resnet:norm=rms",
            "xskip-ln:lambda=2,alpha=0.5",
            "rskip-ln:lambda=3",
        ],
        &[Activation::Relu, Activation::Sigmoid],
    );
}

#[test]
fn weight_norm() {
    check(&["plain:norm=wn", "resnet:norm=wn"], &[Activation::Relu]);
}

#[test]
fn crelu() {
    check(&["looks-linear"], &[Activation::Relu]);
}

#[test]
fn branch_gains() {
    check(
        &[
            "resnet-bn:init=skipinit",
            "resnet:init=rezero",
            "resnet:init=fixup",
        ],
        &[Activation::Relu],
    );
}

#[test]
fn gates() {
    check(
        &[
            "highway",
            "resnet:skip=gate(-1),alpha=0.5",
            "resnet-bn:skip=shortcut-gate(0.5)",
            "resnet:skip=gate(-1),init=rezero",
        ],
        &[Activation::Relu],
    );
}

#[test]
fn shortcuts() {
    check(
        &[
            "resnet-bn:alpha=0.5",
            "resnet:skip=scale(0.7)",
            "xskip:lambda=0.5",
            "resnet:skip=proj",
            "resnet:skip=dropout(0.3)",
        ],
        &[Activation::Relu],
    );
}

/// The trainable shortcut scale λ (Liu et al. 2020) of each shortcut that
/// takes one: against the oracle in every mode, with the branch gain.
#[test]
fn learned_shortcut_scales() {
    check(
        &[
            "resnet:skip=scale(learn(0.7))",
            "xskip:lambda=learn(0.5)",
            "xskip-ln:lambda=learn(2),init=skipinit",
        ],
        &[Activation::Relu, Activation::Tanh],
    );
}

/// ∂L/∂λ of every block against central finite differences of the nets'
/// own (candle) forward pass in f64, with λ set through its variable, for
/// the scaled shortcut and xSkip with and without the LN after the sum.
#[test]
fn learned_shortcut_scale_gradient_is_the_finite_difference() {
    let x = inputs();
    let xt = Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape(x.dim())
        .unwrap();
    for arch in [
        "resnet:skip=scale(learn(0.7))",
        "xskip:lambda=learn(0.5)",
        "xskip-ln:lambda=learn(2)",
    ] {
        let net = net(arch, Activation::Tanh, Precision::F64);
        let Net::Mlp(m) = &net else { unreachable!() };
        let engine = for_net::<f64>(&net, Options::once(BnMode::Eval)).unwrap();
        let fwd = engine.forward(x.view(), true).unwrap();
        let g = out_grad::<f64>(BATCH, OUTPUTS);
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = engine.backward(&fwd, DEPTH, Some(g.view()), want).unwrap();
        let loss = || -> f64 {
            let out = m.forward(&xt, BnMode::Eval).unwrap();
            let out = Array2::from_shape_vec(
                (BATCH, OUTPUTS),
                out.flatten_all().unwrap().to_vec1().unwrap(),
            )
            .unwrap();
            (&out * &g).sum()
        };
        let lambdas: Vec<_> = m
            .parameters()
            .into_iter()
            .filter(|(n, _)| n.ends_with(".skip.lambda"))
            .collect();
        assert_eq!(lambdas.len(), DEPTH, "{arch}: one λ per block");
        for (name, var) in lambdas {
            let l0 = var.as_tensor().to_vec1::<f64>().unwrap()[0];
            let at = |l: f64| {
                var.set(&Tensor::new(&[l], &Device::Cpu).unwrap()).unwrap();
                loss()
            };
            let h = 1e-6;
            let fd = (at(l0 + h) - at(l0 - h)) / (2.0 * h);
            at(l0);
            let got = grads.params.iter().find(|(n, _)| *n == name).unwrap().1[0];
            assert!(
                (got - fd).abs() <= 1e-7 * fd.abs().max(1e-3),
                "{arch}: ∂L/∂{name} = {got}, finite difference {fd}"
            );
        }
    }
}

/// A small conv net of `arch` on 2 × 8 × 8 images, its vectors perturbed
/// and its BN statistics calibrated on the inputs.
fn conv_net(
    arch: &str,
    depth: usize,
    widths: [usize; 3],
    precision: Precision,
    x: &Array2<f64>,
) -> Net {
    use gradscope_nets::{ConvNet, ConvNetParams};
    let p = ConvNetParams {
        arch: arch.parse().unwrap(),
        depth,
        widths,
        in_channels: 2,
        image_size: 8,
        classes: 3,
        precision,
        seed: 4,
        ..Default::default()
    };
    let net = ConvNet::new(&p.check().unwrap()).unwrap();
    perturb_vectors(&gradscope_nets::Model::parameters(&net));
    let xt = Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape((x.nrows(), 2, 8, 8))
        .unwrap()
        .to_dtype(precision_dtype(precision))
        .unwrap();
    // Calibrate the running statistics: one training-mode pass, then set
    // them to the batch's by a second (momentum 0.1 would leave them near 0/1).
    for _ in 0..40 {
        gradscope_nets::Model::forward(&net, &xt, BnMode::Train).unwrap();
    }
    Net::Conv(net)
}

fn images() -> Array2<f64> {
    Array2::from_shape_fn((6, 128), |(i, j)| {
        (((i * 37 + j * 11) % 29) as f64 / 14.0 - 1.0) * 0.8
    })
}

/// Convolutions (3×3 and 1×1, stride 1 and 2, zero padding), BN over
/// channels, global average pooling and He et al.'s shortcuts (option A:
/// subsampled and zero-padded channels; option B: a strided 1×1 convolution
/// and BN), in basic and bottleneck blocks, plain and residual; with few
/// channels (GEMMs written channels-last) and with more than 32 (written
/// as channel rows).
#[test]
fn convolutions() {
    let x = images();
    for (arch, depth, widths) in [
        ("resnet", 8, [2, 4, 6]),
        ("plain", 8, [2, 4, 6]),
        ("resnet:shortcut=b", 8, [2, 4, 6]),
        ("resnet:block=bottleneck", 11, [2, 4, 6]),
        ("resnet", 8, [3, 33, 40]),
        ("resnet:shortcut=b", 8, [2, 35, 40]),
    ] {
        let (n64, n32) = (
            conv_net(arch, depth, widths, Precision::F64, &x),
            conv_net(arch, depth, widths, Precision::F32, &x),
        );
        every_check(&n64, &n32, &x, arch);
    }
}
