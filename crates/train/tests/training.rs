//! The training loop against hand computations, a separable problem, and an
//! interrupted-then-resumed run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{Arch, BnMode, Mlp, Model, Net, NetParams, Precision};
use gradscope_train::{Decay, Examples, OptimizerParams, Schedule, TrainParams, Trainer};
use rand::{Rng, SeedableRng};

/// Softmax regression: logits = x Wᵀ + b, a model whose gradient is known in closed form.
struct Softmax {
    w: Var,
    b: Var,
}

impl Model for Softmax {
    fn forward(&self, x: &Tensor, _: BnMode) -> gradscope_nets::Result<Tensor> {
        Ok(x.matmul(&self.w.as_tensor().t()?)?
            .broadcast_add(self.b.as_tensor())?)
    }
    fn parameters(&self) -> Vec<(String, Var)> {
        vec![
            ("fc.weight".into(), self.w.clone()),
            ("fc.bias".into(), self.b.clone()),
        ]
    }
    fn buffers(&self) -> Vec<(String, Var)> {
        vec![]
    }
    fn dtype(&self) -> DType {
        DType::F64
    }
}

fn no_logging(p: TrainParams) -> TrainParams {
    TrainParams {
        probe_points: 0,
        similarity_examples: 0,
        ..p
    }
}

#[test]
fn one_sgd_step_equals_the_hand_computed_update() {
    let dev = Device::Cpu;
    let w0 = vec![0.5, -0.25, 0.1, 0.3];
    let b0 = vec![0.05, -0.05];
    let softmax = Softmax {
        w: Var::from_tensor(&Tensor::from_vec(w0.clone(), (2, 2), &dev).unwrap()).unwrap(),
        b: Var::from_tensor(&Tensor::from_vec(b0.clone(), 2, &dev).unwrap()).unwrap(),
    };
    let (w, b) = (softmax.w.clone(), softmax.b.clone());
    let model = Net::custom(softmax, vec![2]);
    let xs = [[1.0f32, 2.0], [-1.0, 0.5], [0.3, -0.7]];
    let ys = [0u32, 1, 1];
    let data = Examples::new(
        xs.iter().flatten().copied().collect(),
        vec![2],
        ys.to_vec(),
        2,
    )
    .unwrap();
    let (lr, wd) = (0.2, 0.01);
    let p = no_logging(TrainParams {
        epochs: 1,
        batch_size: 3,
        optimizer: OptimizerParams::Sgd {
            lr,
            momentum: 0.9,
            weight_decay: wd,
            nesterov: false,
        },
        ..Default::default()
    });
    let config = p.check(3).unwrap();
    Trainer {
        model: &model,
        label: "softmax".into(),
        config: &config,
        train: &data,
        test: &data,
        checkpoint: None,
        cancel: None,
        observer: None,
    }
    .run()
    .unwrap();

    // By hand: ∂L/∂W = (1/B) Σᵢ (softmax(zᵢ) − e_{yᵢ}) xᵢᵀ, ∂L/∂b = (1/B) Σᵢ (softmax(zᵢ) − e_{yᵢ});
    // the first momentum step is v = g + λθ, θ ← θ − η·v.
    let mut gw = [0.0f64; 4];
    let mut gb = [0.0f64; 2];
    for (x, &y) in xs.iter().zip(&ys) {
        let z: Vec<f64> = (0..2)
            .map(|k| w0[2 * k] * x[0] as f64 + w0[2 * k + 1] * x[1] as f64 + b0[k])
            .collect();
        let s = z[0].exp() + z[1].exp();
        for k in 0..2 {
            let d = z[k].exp() / s - f64::from(u8::from(k as u32 == y));
            gw[2 * k] += d * x[0] as f64 / 3.0;
            gw[2 * k + 1] += d * x[1] as f64 / 3.0;
            gb[k] += d / 3.0;
        }
    }
    let w1 = w
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let b1 = b.as_tensor().to_vec1::<f64>().unwrap();
    for i in 0..4 {
        let want = w0[i] - lr * (gw[i] + wd * w0[i]);
        assert!((w1[i] - want).abs() < 1e-6, "w[{i}]: {} vs {want}", w1[i]);
    }
    for k in 0..2 {
        let want = b0[k] - lr * (gb[k] + wd * b0[k]);
        assert!((b1[k] - want).abs() < 1e-6, "b[{k}]: {} vs {want}", b1[k]);
    }
}

/// Three well-separated Gaussian blobs in 2-D.
fn blobs(n: usize, seed: u64) -> Examples {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let centres = [(-3.0, 0.0), (3.0, 0.0), (0.0, 4.0)];
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % 3;
        x.push(centres[c].0 + rng.random_range(-0.8..0.8));
        x.push(centres[c].1 + rng.random_range(-0.8..0.8));
        y.push(c as u32);
    }
    Examples::new(x, vec![2], y, 3).unwrap()
}

fn mlp(arch: Arch, depth: usize, seed: u64) -> Net {
    Net::Mlp(
        Mlp::new(
            &NetParams {
                arch,
                depth,
                width: 32,
                input_dim: 2,
                output_dim: 3,
                seed,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )
        .unwrap(),
    )
}

#[test]
fn a_small_mlp_separates_gaussian_blobs() {
    let (train, test) = (blobs(150, 1), blobs(60, 2));
    for arch in [Arch::PLAIN, Arch::RESNET_BN] {
        let model = mlp(arch, 2, 3);
        let config = TrainParams {
            epochs: 15,
            batch_size: 16,
            optimizer: OptimizerParams::Sgd {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 0.0,
                nesterov: false,
            },
            ..Default::default()
        }
        .check(train.len())
        .unwrap();
        let h = Trainer {
            model: &model,
            label: arch.to_string(),
            config: &config,
            train: &train,
            test: &test,
            checkpoint: None,
            cancel: None,
            observer: None,
        }
        .run()
        .unwrap();
        let last = h.final_epoch().unwrap();
        assert_eq!(last.train_error, 0.0, "{arch}: {last:?}");
        assert_eq!(last.test_error, 0.0, "{arch}: {last:?}");
        assert!(last.train_loss < h.epochs[0].train_loss);
        // One gradient log at step 0 and one per epoch, one norm per layer.
        assert_eq!(h.logs.len(), 16);
        assert!(
            h.logs
                .iter()
                .all(|l| l.layer_grad_norms.len() == h.layers.len()
                    && l.layer_grad_norms.iter().all(|v| v.is_finite()))
        );
        assert!(h.logs.iter().all(|l| (-1.0..=1.0).contains(&l.line_r1) && (-1.0..=1.0).contains(&l.mean_cosine)));
        assert_eq!(h.layers.first().map(String::as_str), Some("stem"));
        assert_eq!(h.layers.last().map(String::as_str), Some("head"));
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_same_result() {
    let (train, test) = (blobs(90, 4), blobs(30, 5));
    let params = TrainParams {
        epochs: 5,
        batch_size: 16,
        optimizer: OptimizerParams::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-3,
        },
        schedule: Schedule {
            decay: Decay::Cosine { min_lr: 0.0 },
            warmup_epochs: 1,
        },
        log_every: 3,
        ..Default::default()
    };
    let config = params.check(train.len()).unwrap();
    let run = |model: &Net,
               dir: Option<std::path::PathBuf>,
               cancel: Option<Arc<AtomicBool>>,
               stop_after: Option<usize>| {
        let stop = cancel.clone();
        let on_epoch = move |e: gradscope_train::TrainEvent<'_>| {
            if let gradscope_train::TrainEvent::Epoch(r) = e
                && Some(r.epoch) == stop_after
            {
                stop.as_ref().unwrap().store(true, Ordering::Relaxed);
            }
        };
        Trainer {
            model,
            label: "resnet-bn".into(),
            config: &config,
            train: &train,
            test: &test,
            checkpoint: dir,
            cancel,
            observer: Some(&on_epoch),
        }
        .run()
    };
    let straight = mlp(Arch::RESNET_BN, 3, 7);
    let whole = run(&straight, None, None, None).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    let first = mlp(Arch::RESNET_BN, 3, 7);
    let stop = Arc::new(AtomicBool::new(false));
    let e = run(&first, Some(dir.clone()), Some(stop), Some(2)).unwrap_err();
    assert!(e.to_string().contains("interrupted"));
    // A fresh process: a new model object (other weights), resumed from the folder.
    let resumed = mlp(Arch::RESNET_BN, 3, 99);
    let h = run(&resumed, Some(dir.clone()), None, None).unwrap();
    assert!(h == whole, "resumed history differs");
    for ((n, a), (_, b)) in straight.state_dict().iter().zip(resumed.state_dict()) {
        assert_eq!(
            a.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            b.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            "{n}"
        );
    }
    // Only the latest epoch's files are kept, with θ₀ for the distance from init.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "init.safetensors",
            "model-e5.safetensors",
            "optimizer-e5.safetensors",
            "state.json"
        ]
    );
    // Another configuration refuses the folder instead of mixing runs.
    let other = TrainParams {
        epochs: 6,
        ..params
    }
    .check(train.len())
    .unwrap();
    let m = mlp(Arch::RESNET_BN, 3, 7);
    let e = Trainer {
        model: &m,
        label: "resnet-bn".into(),
        config: &other,
        train: &train,
        test: &test,
        checkpoint: Some(dir),
        cancel: None,
        observer: None,
    }
    .run()
    .unwrap_err()
    .to_string();
    assert!(e.contains("another configuration"), "{e}");
}

#[test]
fn divergence_is_recorded_not_a_crash() {
    let (train, test) = (blobs(60, 6), blobs(30, 7));
    let model = Net::Mlp(
        Mlp::new(
            &NetParams {
                arch: Arch::PLAIN,
                depth: 6,
                width: 32,
                input_dim: 2,
                output_dim: 3,
                precision: Precision::F32,
                ..Default::default()
            }
            .check()
            .unwrap(),
        )
        .unwrap(),
    );
    let config = no_logging(TrainParams {
        epochs: 3,
        batch_size: 10,
        optimizer: OptimizerParams::Sgd {
            lr: 1e6,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        ..Default::default()
    })
    .check(train.len())
    .unwrap();
    let h = Trainer {
        model: &model,
        label: "plain".into(),
        config: &config,
        train: &train,
        test: &test,
        checkpoint: None,
        cancel: None,
        observer: None,
    }
    .run()
    .unwrap();
    assert!(h.diverged_at.is_some(), "{h:?}");
}
