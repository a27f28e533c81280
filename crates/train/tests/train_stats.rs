//! The gradient statistics of training against hand computations on a tiny
//! f64 net: per-example gradients from candle's autograd one example at a
//! time give the GSNR; plain SGD's update is −η·ḡ, so its size and the
//! distance from θ₀ follow from the weights before and after.

use std::collections::BTreeMap;

use gradscope_nets::{Arch, BnMode, Mlp, Model, Net, NetParams, Precision};
use gradscope_train::{Examples, OptimizerParams, TrainParams, Trainer, cross_entropy};
use rand::{Rng, SeedableRng};

fn data(n: usize) -> Examples {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = (i % 2) as u32;
        for d in 0..4 {
            x.push(if (d % 2) as u32 == c { 1.0 } else { -1.0 } + rng.random_range(-0.8f32..0.8));
        }
        y.push(c);
    }
    Examples::new(x, vec![4], y, 2).unwrap()
}

fn net(arch: &str) -> Net {
    let p = NetParams {
        arch: arch.parse::<Arch>().unwrap(),
        depth: 2,
        width: 5,
        input_dim: 4,
        output_dim: 2,
        precision: Precision::F64,
        seed: 11,
        ..Default::default()
    };
    Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap())
}

/// Parameters by name, flattened, in f64.
fn values(model: &Net) -> BTreeMap<String, Vec<f64>> {
    model
        .parameters()
        .into_iter()
        .map(|(n, v)| {
            let t = v.as_tensor().flatten_all().unwrap();
            (n, t.to_vec1::<f64>().unwrap())
        })
        .collect()
}

fn layer(name: &str) -> &str {
    name.rsplit_once('.').unwrap().0
}

/// Per-example gradients of the loss, by parameter name, one pass each.
fn per_example_grads(model: &Net, set: &Examples) -> Vec<BTreeMap<String, Vec<f64>>> {
    (0..set.len())
        .map(|i| {
            let (x, y) = set.batch(&[i], candle_core::DType::F64).unwrap();
            let loss = cross_entropy(&model.forward(&x, BnMode::Eval).unwrap(), &y).unwrap();
            let grads = loss.backward().unwrap();
            model
                .parameters()
                .into_iter()
                .map(|(n, v)| {
                    let g = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap();
                    (n, g.to_vec1::<f64>().unwrap())
                })
                .collect()
        })
        .collect()
}

fn sq(v: impl Iterator<Item = f64>) -> f64 {
    v.map(|x| x * x).sum()
}

#[test]
fn gsnr_update_size_and_distance_from_init_equal_hand_computations() {
    let set = data(6);
    let model = net("plain:norm=ln");
    let theta0 = values(&model);
    let examples = per_example_grads(&model, &set);
    let lr = 0.3;
    let p = TrainParams {
        epochs: 2,
        batch_size: 6,
        optimizer: OptimizerParams::Sgd {
            lr,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        probe_points: 0,
        similarity_examples: 0,
        stats_every: Some(1),
        ..Default::default()
    };
    let config = p.check(set.len()).unwrap();
    let history = Trainer {
        model: &model,
        label: "tiny".into(),
        config: &config,
        train: &set,
        test: &set,
        checkpoint: None,
        cancel: None,
        observer: None,
    }
    .run()
    .unwrap();
    let theta2 = values(&model);
    let stats = &history.stats;
    assert_eq!(stats.steps.len(), 2, "one record per step");
    let first = &stats.steps[0];
    let b = examples.len() as f64;
    for (l, name) in history.layers.iter().enumerate() {
        let params: Vec<&String> = theta0.keys().filter(|n| layer(n) == name).collect();
        // GSNR: ‖mean g‖² / mean ‖g_i − mean g‖² over the layer's parameters.
        let mean: Vec<f64> = params
            .iter()
            .flat_map(|n| {
                (0..theta0[*n].len()).map(|k| examples.iter().map(|e| e[*n][k]).sum::<f64>() / b)
            })
            .collect();
        let spread = examples
            .iter()
            .map(|e| {
                let g = params.iter().flat_map(|n| e[*n].iter().copied());
                sq(g.zip(&mean).map(|(g, m)| g - m))
            })
            .sum::<f64>()
            / b;
        let gsnr = sq(mean.iter().copied()) / spread;
        let got = first.gsnr[l];
        assert!(
            (got - gsnr).abs() <= 1e-9 * gsnr,
            "{name}: GSNR {got} vs {gsnr}"
        );
        // The first step is θ₁ = θ₀ − η·mean g (one batch of all examples).
        let norm0 = sq(params.iter().flat_map(|n| theta0[*n].iter().copied())).sqrt();
        let update = lr * sq(mean.iter().copied()).sqrt() / norm0;
        let got = first.update_size[l];
        assert!(
            (got - update).abs() <= 1e-9 * update,
            "{name}: ‖Δθ‖/‖θ‖ {got} vs {update}"
        );
        // After the first step the distance from init is the update itself.
        assert!((first.distance_from_init[l] - update).abs() <= 1e-9 * update);
        let grad = sq(mean.iter().copied()).sqrt();
        assert!((first.grad_norm[l] - grad).abs() <= 1e-9 * grad);
        // After the second: ‖θ₂ − θ₀‖/‖θ₀‖ from the final weights.
        let moved = sq(params
            .iter()
            .flat_map(|n| theta2[*n].iter().zip(&theta0[*n]).map(|(a, b)| a - b)))
        .sqrt();
        let got = stats.steps[1].distance_from_init[l];
        assert!(
            (got - moved / norm0).abs() <= 1e-9 * moved / norm0,
            "{name}: {got}"
        );
        // Histograms count every entry of the layer.
        let entries: usize = params.iter().map(|n| theta0[*n].len()).sum();
        assert_eq!(first.grad_hist[l].iter().sum::<u64>() as usize, entries);
        assert_eq!(first.weight_hist[l].iter().sum::<u64>() as usize, entries);
    }
    // plain:norm=ln: each block's linear layer feeds an LN, so it is scale-invariant
    // and its effective learning rate is η/‖θ‖² after the step; stem and head are not.
    for (l, name) in history.layers.iter().enumerate() {
        let invariant = name.starts_with("layers.") && name.ends_with(".fc");
        assert_eq!(stats.scale_invariant[l], invariant, "{name}");
        let eff = stats.steps[1].effective_lr[l];
        if invariant {
            let norm2 = sq(theta2
                .iter()
                .filter(|(n, _)| layer(n) == name)
                .flat_map(|(_, v)| v.iter().copied()));
            assert!(
                (eff - lr / norm2).abs() <= 1e-9 * lr / norm2,
                "{name}: {eff}"
            );
        } else {
            assert!(eff.is_nan(), "{name}: {eff}");
        }
    }
}

#[test]
fn statistics_are_recorded_on_the_steps_asked_for_and_off_at_zero() {
    let set = data(8);
    let run = |stats_every: Option<usize>, log_every: usize| {
        let model = net("resnet");
        let p = TrainParams {
            epochs: 2,
            batch_size: 2,
            log_every,
            probe_points: 0,
            similarity_examples: 0,
            stats_every,
            ..Default::default()
        };
        let config = p.check(set.len()).unwrap();
        let h = Trainer {
            model: &model,
            label: "tiny".into(),
            config: &config,
            train: &set,
            test: &set,
            checkpoint: None,
            cancel: None,
            observer: None,
        }
        .run()
        .unwrap();
        h.stats.steps.iter().map(|s| s.step).collect::<Vec<_>>()
    };
    // 4 steps an epoch.
    assert_eq!(run(Some(3), 0), vec![3, 6]);
    assert_eq!(run(None, 0), vec![4, 8]);
    assert_eq!(run(None, 5), vec![5]);
    assert_eq!(run(Some(0), 0), Vec::<usize>::new());
}
