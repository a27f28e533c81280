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

/// A model of one's own is not made of engine ops: it runs on candle,
/// which its kernels and the process's fallbacks say, with why.
#[test]
fn a_custom_model_falls_back_to_candle_and_says_why() {
    use candle_core::{DType, Var};
    use gradscope_engine::{Kernels, fallbacks};
    use gradscope_nets::Model;
    struct Affine(Var);
    impl Model for Affine {
        fn forward(&self, x: &Tensor, _: BnMode) -> gradscope_nets::Result<Tensor> {
            Ok(x.matmul(self.0.as_tensor())?)
        }
        fn parameters(&self) -> Vec<(String, Var)> {
            vec![("w".into(), self.0.clone())]
        }
        fn buffers(&self) -> Vec<(String, Var)> {
            Vec::new()
        }
        fn dtype(&self) -> DType {
            DType::F64
        }
    }
    let w = Var::from_tensor(
        &Tensor::from_vec(
            vec![1.0, 2.0, -1.0, 0.5, 0.0, 3.0],
            (3, 2),
            &candle_core::Device::Cpu,
        )
        .unwrap(),
    )
    .unwrap();
    let net = Net::custom(Affine(w), vec![3]);
    let before = fallbacks();
    let engine = for_net::<f64>(&net, Options::once(BnMode::Eval)).unwrap();
    let Kernels::Candle { reason } = engine.kernels() else {
        panic!("a custom model on the engine's kernels")
    };
    assert!(reason.contains("custom"), "{reason}");
    let after = fallbacks();
    let key = after
        .keys()
        .find(|k| k.contains("custom"))
        .expect("recorded");
    assert_eq!(after[key], before.get(key).copied().unwrap_or(0) + 1);
    // And it computes: x·W (row (3, 4, 5) by column (1, −1, 0) is −1), its
    // gradient the row sums of W.
    let x = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f64);
    assert_eq!(engine.predict(x.view()).unwrap()[[1, 0]], -1.0);
    let fwd = engine.forward(x.view(), false).unwrap();
    let gx = engine
        .backward(&fwd, 0, None, Want::default())
        .unwrap()
        .input;
    assert_eq!(gx.row(0).to_vec(), vec![3.0, -0.5, 3.0]);
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

/// A small conv net on 2 × 8 × 8 images (He et al. 2016a's shapes, tiny).
fn conv(arch: &str, depth: usize) -> Net {
    use gradscope_nets::{ConvNet, ConvNetParams};
    let p = ConvNetParams {
        arch: arch.parse().unwrap(),
        depth,
        widths: [2, 4, 6],
        in_channels: 2,
        image_size: 8,
        classes: 3,
        precision: Precision::F64,
        seed: 6,
        ..Default::default()
    };
    Net::Conv(ConvNet::new(&p.check().unwrap()).unwrap())
}

/// Conv nets: a training step (BN over channels in training mode, the
/// running statistics, the write-back) and lesions (a deleted block passes
/// on ReLU(s(h)), its shortcut's) equal candle's.
#[test]
fn conv_nets_train_and_lesion_as_candles_do() {
    let x = Array2::from_shape_fn((5, 128), |(i, j)| {
        ((i * 13 + j * 7) % 17) as f64 / 8.0 - 1.0
    });
    let g = Array2::from_shape_fn((5, 3), |(i, k)| (i as f64 - 2.0) * 0.3 + k as f64);
    for (arch, depth) in [
        ("resnet", 8),
        ("resnet:shortcut=b", 8),
        ("plain", 8),
        ("resnet:block=bottleneck", 11),
    ] {
        let (ours, theirs) = (conv(arch, depth), conv(arch, depth));
        let mut engine = for_net::<f64>(&ours, Options::repeated(BnMode::Train)).unwrap();
        let mut oracle =
            for_net::<f64>(&theirs, Options::repeated(BnMode::Train).on_candle()).unwrap();
        let want = Want {
            params: true,
            ..Want::default()
        };
        for e in [&mut engine, &mut oracle] {
            let fwd = e.forward(x.view(), true).unwrap();
            e.update_running_stats(&fwd);
            let gr = e
                .backward(&fwd, depth_of(e.as_ref()), Some(g.view()), want)
                .unwrap();
            e.update_params(&gr, &mut |_, _, w, g| {
                w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g)
            })
            .unwrap();
            e.sync().unwrap();
        }
        for ((name, a), (_, b)) in ours.state_dict().iter().zip(theirs.state_dict()) {
            close(
                &flat(a.as_tensor()),
                &flat(b.as_tensor()),
                1e-10,
                1e-3,
                &format!("{arch} {name} after a step"),
            );
        }
        let (e, o) = (
            for_net::<f64>(&ours, Options::once(BnMode::Eval)).unwrap(),
            for_net::<f64>(&ours, Options::once(BnMode::Eval).on_candle()).unwrap(),
        );
        let n = e.depth();
        let order: Vec<usize> = (0..n).collect();
        // Blocks that can be deleted: residual ones, and plain ones that keep their shape.
        let can = |b: usize| {
            use gradscope_nets::BlockNet;
            arch != "plain" || ours.keeps_shape(b)
        };
        let every_other: Vec<bool> = (0..n).map(|b| b % 2 == 1 && can(b)).collect();
        let all: Vec<bool> = (0..n).map(can).collect();
        for deleted in [vec![false; n], every_other, all] {
            let run = |e: &dyn Engine<f64>| {
                let mut h = e.stem(x.view()).unwrap();
                for &b in &order {
                    h = if deleted[b] {
                        e.bypass(b, h).unwrap()
                    } else {
                        e.block(b, &h).unwrap()
                    };
                }
                e.head(&h).unwrap()
            };
            close(
                run(e.as_ref()).as_slice().unwrap(),
                run(o.as_ref()).as_slice().unwrap(),
                1e-10,
                1e-30,
                &format!("{arch} deleted {deleted:?}"),
            );
        }
    }
}

fn depth_of(e: &dyn Engine<f64>) -> usize {
    e.depth()
}
