//! Training on the engine's kernels equals training on candle's autograd:
//! the same history (losses, errors, every gradient log) and the same
//! weights, BN running statistics and optimiser state after a run, for
//! plain and residual MLPs with and without BN, SGD and Adam.

use gradscope_engine::Request;
use gradscope_nets::{Arch, Mlp, Model, Net, NetParams, Precision};
use gradscope_train::{Examples, History, OptimizerParams, TrainParams, Trainer};
use rand::{Rng, SeedableRng};

/// Two noisy interleaved classes in 6 dimensions plus a third, so the nets
/// neither fit at once nor stall.
fn data(n: usize, seed: u64) -> Examples {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = (i % 3) as u32;
        for d in 0..6 {
            let centre = ((c as usize + d) % 3) as f32 - 1.0;
            x.push(centre + rng.random_range(-1.0f32..1.0));
        }
        y.push(c);
    }
    Examples::new(x, vec![6], y, 3).unwrap()
}

fn net(arch: &str) -> Net {
    let p = NetParams {
        arch: arch.parse::<Arch>().unwrap(),
        depth: 4,
        width: 10,
        input_dim: 6,
        output_dim: 3,
        precision: Precision::F64,
        seed: 7,
        ..Default::default()
    };
    Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap())
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * b.abs().max(1.0);
    assert!(ok, "{what}: engine {a} vs candle {b}");
}

fn same_history(a: &History, b: &History, what: &str) {
    assert_eq!(a.layers, b.layers, "{what}");
    assert_eq!(a.diverged_at, b.diverged_at, "{what}");
    assert_eq!(a.epochs.len(), b.epochs.len(), "{what}");
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        let e = format!("{what} epoch {}", y.epoch);
        close(x.train_loss, y.train_loss, 1e-9, &format!("{e} train loss"));
        close(x.test_loss, y.test_loss, 1e-9, &format!("{e} test loss"));
        assert_eq!(x.train_error, y.train_error, "{e} train error");
        assert_eq!(x.test_error, y.test_error, "{e} test error");
    }
    assert_eq!(a.logs.len(), b.logs.len(), "{what}");
    for (x, y) in a.logs.iter().zip(&b.logs) {
        let s = format!("{what} log at step {}", y.step);
        for (u, v) in x.layer_grad_norms.iter().zip(&y.layer_grad_norms) {
            close(*u, *v, 1e-8, &format!("{s}: layer gradient norm"));
        }
        close(x.line_r1, y.line_r1, 1e-8, &format!("{s}: line r1"));
        close(
            x.line_slope,
            y.line_slope,
            1e-8,
            &format!("{s}: line slope"),
        );
        close(
            x.mean_cosine,
            y.mean_cosine,
            1e-8,
            &format!("{s}: mean cosine"),
        );
    }
}

#[test]
fn engine_training_equals_candle_training() {
    let (train, test) = (data(90, 1), data(45, 2));
    let optimisers = [
        OptimizerParams::Sgd {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 1e-3,
            nesterov: true,
        },
        OptimizerParams::Adam {
            lr: 3e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
        },
    ];
    for arch in [
        "plain",
        "plain-bn",
        "resnet",
        "resnet-bn",
        "resnet-bn:init=skipinit",
        "resnet:init=fixup",
        "looks-linear",
    ] {
        for opt in &optimisers {
            let p = TrainParams {
                epochs: 3,
                batch_size: 16,
                optimizer: opt.clone(),
                log_every: 4,
                probe_points: 32,
                similarity_examples: 6,
                ..Default::default()
            };
            let config = p.check(train.len()).unwrap();
            let (fast, slow) = (net(arch), net(arch));
            fn trainer<'a>(
                model: &'a Net,
                config: &'a gradscope_train::TrainConfig,
                train: &'a Examples,
                test: &'a Examples,
            ) -> Trainer<'a> {
                Trainer {
                    model,
                    label: "net".into(),
                    config,
                    train,
                    test,
                    checkpoint: None,
                    cancel: None,
                    observer: None,
                }
            }
            let a = trainer(&fast, &config, &train, &test).run().unwrap();
            let b = trainer(&slow, &config, &train, &test)
                .run_with(Request::Candle)
                .unwrap();
            let what = format!("{arch} {opt:?}");
            same_history(&a, &b, &what);
            assert!(
                b.epochs[2].train_loss < b.epochs[0].train_loss,
                "{what} learns"
            );
            for ((name, x), (_, y)) in fast.state_dict().iter().zip(slow.state_dict()) {
                let x = x
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                let y = y
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f64>()
                    .unwrap();
                for (u, v) in x.iter().zip(&y) {
                    close(*u, *v, 1e-9, &format!("{what}: {name}"));
                }
            }
        }
    }
}
