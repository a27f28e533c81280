//! The engine's passes beyond one capture, against candle (the oracle):
//! a training step (gradients through the batch statistics, the running
//! statistics, the parameters written back), blocks run one at a time and
//! deleted or reordered (lesions), and a net built for one pass against one
//! that keeps Wᵀ for many.

use candle_core::Tensor;
use gradscope_engine::{Engine, Options, Want, for_net};
use gradscope_nets::{Arch, BiasInit, BnMode, Mlp, Model, Net, NetParams, Precision};
use ndarray::Array2;

const ARCHS: [&str; 12] = [
    "plain-bn",
    "resnet-bn",
    "resnet-bn:order=post",
    "resnet:norm=ln",
    "plain:norm=wn",
    "xskip-ln:lambda=2",
    "rskip-ln:lambda=2",
    "highway",
    "resnet:skip=proj",
    "resnet:skip=dropout(0.2)",
    "resnet-bn:init=skipinit",
    "looks-linear",
];

fn net(arch: &str, depth: usize, seed: u64) -> Mlp {
    let p = NetParams {
        arch: arch.parse::<Arch>().unwrap(),
        depth,
        width: 6,
        input_dim: 3,
        output_dim: 2,
        bias_init: BiasInit::Normal { std: 0.2 },
        precision: Precision::F64,
        seed,
        ..Default::default()
    };
    Mlp::new(&p.check().unwrap()).unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// |a − b| ≤ tol · max(‖b‖_∞, floor), elementwise.
fn close(a: &[f64], b: &[f64], tol: f64, floor: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(floor);
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * scale, "{what}: {x} vs {y}");
    }
}

/// Training mode on two copies of a net: the engine's and candle's
/// gradients through the batch statistics, one SGD step by hand on each,
/// then the running statistics, every parameter written back, and eval mode
/// on the result agree.
#[test]
fn a_training_step_equals_candles() {
    let x = Array2::from_shape_fn((9, 3), |(i, j)| ((i * 7 + j * 5) % 9) as f64 / 4.0 - 1.0);
    let g = Array2::from_shape_fn((9, 2), |(i, k)| (i as f64 - 4.0) * 0.3 + k as f64);
    for arch in ARCHS {
        let (ours, theirs) = (Net::Mlp(net(arch, 3, 5)), Net::Mlp(net(arch, 3, 5)));
        let mut engine = for_net::<f64>(&ours, Options::repeated(BnMode::Train)).unwrap();
        let mut oracle =
            for_net::<f64>(&theirs, Options::repeated(BnMode::Train).on_candle()).unwrap();
        let want = Want {
            params: true,
            ..Want::default()
        };
        let mut grads = Vec::new();
        for e in [&mut engine, &mut oracle] {
            let fwd = e.forward(x.view(), true).unwrap();
            e.update_running_stats(&fwd);
            let gr = e.backward(&fwd, 3, Some(g.view()), want).unwrap();
            e.update_params(&gr, &mut |_, _, w, g| {
                w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g)
            })
            .unwrap();
            e.sync().unwrap();
            grads.push(gr);
        }
        for ((name, a), (_, b)) in grads[0].params.iter().zip(&grads[1].params) {
            close(a, b, 1e-10, 1e-30, &format!("{arch} ∂L/∂{name}"));
        }
        // Every entry is O(0.1–1) but the running means of the first BN,
        // whose inputs are centred: there both are rounding noise.
        for ((name, a), (_, b)) in ours.state_dict().iter().zip(theirs.state_dict()) {
            close(
                &flat(a.as_tensor()),
                &flat(b.as_tensor()),
                1e-12,
                1e-3,
                &format!("{arch} {name} after a step"),
            );
        }
        let eval = |n: &Net| {
            for_net::<f64>(n, Options::once(BnMode::Eval))
                .unwrap()
                .predict(x.view())
                .unwrap()
        };
        close(
            eval(&ours).as_slice().unwrap(),
            eval(&theirs).as_slice().unwrap(),
            1e-12,
            1e-30,
            &format!("{arch} eval output after a step"),
        );
    }
}

/// Blocks run one at a time, deleted (bypassed) and reordered give the
/// outputs of candle's blocks run the same way (Veit et al. 2016's lesions).
#[test]
fn lesioned_nets_equal_candles() {
    let x = Array2::from_shape_fn((11, 3), |(i, j)| ((i * 3 + j * 7) % 11) as f64 / 5.0 - 1.0);
    for arch in ["plain-bn", "resnet-bn", "resnet", "resnet-bn:alpha=0.5"] {
        let m = net(arch, 5, 2);
        let xt = Tensor::from_iter(x.iter().copied(), &candle_core::Device::Cpu)
            .unwrap()
            .reshape((11, 3))
            .unwrap();
        m.calibrate_batch_norm(&xt).unwrap();
        let m = Net::Mlp(m);
        let run = |e: &dyn Engine<f64>, order: &[usize], deleted: &[bool]| {
            let mut h = e.stem(x.view()).unwrap();
            for &b in order {
                h = if deleted[b] {
                    e.bypass(b, h).unwrap()
                } else {
                    e.block(b, &h).unwrap()
                };
            }
            e.head(&h).unwrap()
        };
        let engine = for_net::<f64>(&m, Options::repeated(BnMode::Eval)).unwrap();
        let oracle = for_net::<f64>(&m, Options::repeated(BnMode::Eval).on_candle()).unwrap();
        let cases: [(&[usize], &[bool]); 4] = [
            (&[0, 1, 2, 3, 4], &[false; 5]),
            (&[0, 1, 2, 3, 4], &[false, true, false, false, true]),
            (&[0, 2, 1, 3, 4], &[false; 5]),
            (&[4, 3, 2, 1, 0], &[true, false, false, true, false]),
        ];
        for (order, deleted) in cases {
            close(
                run(engine.as_ref(), order, deleted).as_slice().unwrap(),
                run(oracle.as_ref(), order, deleted).as_slice().unwrap(),
                1e-12,
                1e-30,
                &format!("{arch} order {order:?} deleted {deleted:?}"),
            );
        }
    }
}

/// A net built for one pass (W's transposed view in the forward products)
/// gives the outputs, gradients and tangents of one that keeps Wᵀ
/// row-major, to rounding; and each gives the same on a second pass (no
/// pass sees the other layout).
#[test]
fn a_net_for_one_pass_equals_the_net_that_keeps_w_transposed() {
    let x = Array2::from_shape_fn((48, 3), |(i, j)| (i as f64 - 24.0) / 12.0 + j as f64 * 0.1);
    let v = [1.0, -0.5, 0.25];
    for arch in ARCHS {
        let m = Net::Mlp(net(arch, 4, 3));
        let kept = for_net::<f64>(&m, Options::repeated(BnMode::PerSample)).unwrap();
        let once = for_net::<f64>(&m, Options::once(BnMode::PerSample)).unwrap();
        let pass = |e: &dyn Engine<f64>| {
            let fwd = e.forward(x.view(), false).unwrap();
            let out = e.output(&fwd, 4).unwrap();
            let dx = e.backward(&fwd, 4, None, Want::default()).unwrap().input;
            (out, dx, e.tangent_sweep(x.view(), &v).unwrap())
        };
        let (a, b) = (pass(kept.as_ref()), pass(once.as_ref()));
        for (what, p, q) in [
            ("f", &a.0, &b.0),
            ("df/dx", &a.1, &b.1),
            ("tangent", &a.2, &b.2),
        ] {
            close(
                q.as_slice().unwrap(),
                p.as_slice().unwrap(),
                1e-12,
                1e-30,
                &format!("{arch} {what}"),
            );
        }
        assert_eq!(
            pass(kept.as_ref()).0,
            a.0,
            "{arch}: a second pass of the kept-copy net"
        );
        assert_eq!(
            pass(once.as_ref()).0,
            b.0,
            "{arch}: a second pass of the one-pass net"
        );
    }
}

/// A conv net is not made of engine ops: it runs on candle, which its
/// kernels and the process's fallbacks say, with why.
#[test]
fn a_conv_net_falls_back_to_candle_and_says_why() {
    use gradscope_engine::{Kernels, fallbacks};
    use gradscope_nets::{ConvNet, ConvNetParams};
    let conv = ConvNet::new(
        &ConvNetParams {
            depth: 8,
            widths: [2, 3, 4],
            in_channels: 1,
            image_size: 4,
            classes: 3,
            precision: Precision::F64,
            seed: 1,
            ..Default::default()
        }
        .check()
        .unwrap(),
    )
    .unwrap();
    let net = Net::Conv(conv);
    let before = fallbacks();
    let engine = for_net::<f64>(&net, Options::once(BnMode::Eval)).unwrap();
    let Kernels::Candle { reason } = engine.kernels() else {
        panic!("a conv net on the engine's kernels")
    };
    assert!(reason.contains("convolutions"), "{reason}");
    let after = fallbacks();
    let key = after
        .keys()
        .find(|k| k.contains("convolutions"))
        .expect("recorded");
    assert_eq!(after[key], before.get(key).copied().unwrap_or(0) + 1);
    // And it computes: 2 images of 1×4×4 give 2 × 3 logits.
    let x = Array2::from_shape_fn((2, 16), |(i, j)| (i * 16 + j) as f64 / 32.0);
    assert_eq!(engine.predict(x.view()).unwrap().dim(), (2, 3));
}

/// The engine runs a net in the net's own float type: asked for another,
/// it refuses rather than convert behind the caller's back.
#[test]
fn a_float_type_mismatch_is_refused() {
    let p = NetParams {
        precision: Precision::F32,
        width: 4,
        depth: 2,
        ..Default::default()
    };
    let net = Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap());
    let opts = Options::once(BnMode::PerSample);
    assert!(for_net::<f64>(&net, opts).is_err());
    assert!(for_net::<f64>(&net, opts.on_candle()).is_err());
    assert!(for_net::<f32>(&net, opts).is_ok());
}
