//! Structure of built nets: names, counts, prefixes, weights files.

use candle_core::{Device, Tensor};
use gradscope_nets::{Arch, BiasInit, BnMode, Mlp, NetParams, Precision};

/// Every variant the nets crate builds (block kinds, norms, shortcuts, inits).
fn archs() -> Vec<Arch> {
    Arch::VARIANTS.iter().map(|s| s.parse().unwrap()).collect()
}

fn grid(n: usize) -> Tensor {
    let v: Vec<f64> = (0..n)
        .map(|i| -2.0 + 4.0 * i as f64 / (n - 1) as f64)
        .collect();
    Tensor::from_vec(v, (n, 1), &Device::Cpu).unwrap()
}

fn params(arch: Arch, depth: usize) -> NetParams {
    NetParams {
        arch,
        depth,
        width: 8,
        precision: Precision::F64,
        seed: 3,
        ..Default::default()
    }
}

#[test]
fn parameter_count_matches_the_built_net() {
    // Every variant, and combinations of options the variants list leaves apart.
    let combos = [
        "looks-linear:norm=wn",
        "looks-linear:norm=ln",
        "resnet:norm=wn,order=post,bottleneck=2",
        "xskip:norm=rms,skip=proj",
        "resnet-bn:skip=gate(-1),init=skipinit",
    ]
    .map(|s| s.parse::<Arch>().unwrap());
    for arch in archs().into_iter().chain(combos) {
        let spec = params(arch, 3).check().unwrap();
        let net = Mlp::new(&spec).unwrap();
        let built: usize = net.parameters().iter().map(|(_, v)| v.elem_count()).sum();
        assert_eq!(built as u64, spec.parameter_count(), "{arch}");
    }
}

#[test]
fn state_dict_names_follow_pytorch() {
    let net = Mlp::new(&params(Arch::RESNET_BN, 2).check().unwrap()).unwrap();
    let names: Vec<String> = net.state_dict().into_iter().map(|(n, _)| n).collect();
    for expected in [
        "stem.weight",
        "stem.bias",
        "layers.0.bn1.weight",
        "layers.0.bn1.bias",
        "layers.0.fc1.weight",
        "layers.0.bn2.weight",
        "layers.1.fc2.weight",
        "layers.1.fc2.bias",
        "head.weight",
        "head.bias",
        "layers.1.bn2.running_var",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing {expected} in {names:?}"
        );
    }
    // A linear layer feeding BN carries no bias.
    assert!(!names.iter().any(|n| n == "layers.0.fc1.bias"));
    let plain = Mlp::new(&params(Arch::PLAIN, 1).check().unwrap()).unwrap();
    let names: Vec<String> = plain.parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "stem.weight",
            "stem.bias",
            "layers.0.fc.weight",
            "layers.0.fc.bias",
            "head.weight",
            "head.bias"
        ]
    );
}

#[test]
fn a_shallower_net_is_the_prefix_of_a_deeper_one() {
    for arch in archs() {
        let deep = Mlp::new(&params(arch, 6).check().unwrap()).unwrap();
        let shallow = Mlp::new(&deep.spec().with_depth(3).unwrap()).unwrap();
        let x = grid(16);
        let a = deep
            .trace_to(&x, BnMode::PerSample, 3, None)
            .unwrap()
            .output;
        let b = shallow.forward(&x, BnMode::PerSample).unwrap();
        let (a, b) = (
            a.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            b.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
        );
        assert_eq!(a, b, "{arch}");
    }
}

#[test]
fn same_seed_same_net_other_seed_other_net() {
    let x = grid(9);
    let out = |seed| {
        let spec = NetParams {
            seed,
            ..params(Arch::RESNET, 4)
        }
        .check()
        .unwrap();
        Mlp::new(&spec)
            .unwrap()
            .forward(&x, BnMode::PerSample)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    };
    assert_eq!(out(1), out(1));
    assert_ne!(out(1), out(2));
}

/// Every tensor of a net, flattened, by state-dict name.
fn weights(m: &Mlp) -> Vec<(String, Vec<f64>)> {
    m.state_dict()
        .into_iter()
        .map(|(name, v)| {
            let t = v.as_tensor().to_dtype(candle_core::DType::F64).unwrap();
            (name, t.flatten_all().unwrap().to_vec1::<f64>().unwrap())
        })
        .collect()
}

#[test]
fn nets_built_from_shared_draws_equal_nets_built_alone() {
    use gradscope_nets::{Activation, DrawCache, WeightInit};
    let inits = [
        WeightInit::He,
        WeightInit::Xavier,
        WeightInit::LeCun,
        WeightInit::HeFanOut,
        WeightInit::Normal { sigma_w2: 0.7 },
        WeightInit::Uniform { sigma_w2: 2.0 },
        WeightInit::Orthogonal { gain: 1.5 },
    ];
    for arch in archs() {
        let draws = DrawCache::new();
        let mut kept = 0;
        for (k, weight_init) in inits.iter().enumerate() {
            let activation = [Activation::Relu, Activation::Tanh][k % 2];
            let spec = NetParams {
                weight_init: *weight_init,
                activation,
                bias_init: BiasInit::Torch,
                ..params(arch, 3)
            }
            .check()
            .unwrap();
            let (alone, shared) = (
                Mlp::new(&spec).unwrap(),
                Mlp::with_draws(&spec, &draws).unwrap(),
            );
            // Bitwise: σ·z from the kept z is what a fresh draw computes.
            assert_eq!(weights(&alone), weights(&shared), "{arch} {weight_init}");
            if k == 0 {
                kept = draws.len();
                assert!(kept > 0, "{arch}: Gaussian weights are kept");
            }
        }
        // The later Gaussian inits drew nothing new.
        assert_eq!(draws.len(), kept, "{arch}");
    }
}

#[test]
fn f32_and_f64_nets_share_their_weights_to_rounding() {
    let p = params(Arch::RESNET_BN, 5);
    let n64 = Mlp::new(&p.check().unwrap()).unwrap();
    let n32 = Mlp::new(
        &NetParams {
            precision: Precision::F32,
            ..p
        }
        .check()
        .unwrap(),
    )
    .unwrap();
    let x = grid(32);
    let a = n64
        .forward(&x, BnMode::Full)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let b = n32
        .forward(&x, BnMode::Full)
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() <= 1e-4 * scale, "{u} vs {v}");
    }
}

#[test]
fn calibrated_eval_mode_equals_per_sample_mode() {
    for arch in [Arch::PLAIN_BN, Arch::RESNET_BN, Arch::RESNET1_BN] {
        let net = Mlp::new(&params(arch, 4).check().unwrap()).unwrap();
        let x = grid(20);
        let per_sample = net.forward(&x, BnMode::PerSample).unwrap();
        let eval_before = net.forward(&x, BnMode::Eval).unwrap();
        net.calibrate_batch_norm(&x).unwrap();
        let eval_after = net.forward(&x, BnMode::Eval).unwrap();
        let diff = |a: &Tensor, b: &Tensor| {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        };
        assert!(diff(&per_sample, &eval_after) < 1e-12, "{arch}");
        // Before calibration the running statistics (0, 1) are not the batch's.
        assert!(diff(&per_sample, &eval_before) > 1e-3, "{arch}");
    }
}

#[test]
fn weights_round_trip_through_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let a = Mlp::new(&params(Arch::RESNET_BN, 3).check().unwrap()).unwrap();
    a.calibrate_batch_norm(&grid(8)).unwrap();
    std::fs::write(&path, a.to_safetensors().unwrap()).unwrap();
    let b = Mlp::new(
        &NetParams {
            seed: 99,
            ..params(Arch::RESNET_BN, 3)
        }
        .check()
        .unwrap(),
    )
    .unwrap();
    let x = grid(11);
    assert_ne!(
        a.forward(&x, BnMode::Eval)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap(),
        b.forward(&x, BnMode::Eval)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    );
    b.load_safetensors(&path).unwrap();
    for mode in BnMode::ALL {
        assert_eq!(
            a.forward(&x, mode)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            b.forward(&x, mode)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap(),
            "{mode}"
        );
    }
    // The file names every tensor of the net and is deterministic.
    assert_eq!(std::fs::read(&path).unwrap(), a.to_safetensors().unwrap());
    // Its spec is JSON that rebuilds the net.
    let spec = gradscope_nets::read_spec(&path).unwrap().unwrap();
    assert_eq!(
        spec,
        gradscope_nets::WeightsSpec::Mlp(a.spec().params().clone())
    );
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    assert!(
        header.contains(r#"\"kind\":\"mlp\""#) && header.contains(r#"\"arch\":\"resnet-bn\""#),
        "{header}"
    );
}

#[test]
fn mismatched_weights_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let deep = Mlp::new(&params(Arch::RESNET_BN, 3).check().unwrap()).unwrap();
    std::fs::write(&path, deep.to_safetensors().unwrap()).unwrap();

    let shallow = Mlp::new(&params(Arch::RESNET_BN, 2).check().unwrap()).unwrap();
    let e = shallow.load_safetensors(&path).unwrap_err().to_string();
    assert!(e.contains("layers.2") && e.contains("does not have"), "{e}");
    // The file's spec says which flag builds its net.
    assert!(e.contains("resnet-bn of depth 3: use --depth 3"), "{e}");

    let deeper = Mlp::new(&params(Arch::RESNET_BN, 4).check().unwrap()).unwrap();
    let e = deeper.load_safetensors(&path).unwrap_err().to_string();
    assert!(e.contains("`layers.3.") && e.contains("missing"), "{e}");
    assert!(e.contains("use --depth 3"), "{e}");

    let wider = Mlp::new(
        &NetParams {
            width: 9,
            ..params(Arch::RESNET_BN, 3)
        }
        .check()
        .unwrap(),
    )
    .unwrap();
    let e = wider.load_safetensors(&path).unwrap_err().to_string();
    let width = deep.spec().params().width;
    assert!(
        e.contains("shape") && e.contains(&format!(": use --width {width}")),
        "{e}"
    );
    // A file without a spec (PyTorch's) still names the width of its stem.
    let plain = gradscope_nets::to_safetensors(&deep, "from elsewhere".into()).unwrap();
    let other = dir.path().join("torch.safetensors");
    std::fs::write(&other, plain).unwrap();
    assert_eq!(gradscope_nets::read_spec(&other).unwrap(), None);
    let e = wider.load_safetensors(&other).unwrap_err().to_string();
    assert!(
        e.contains("`stem.weight` has shape") && e.contains(&format!("use --width {width}")),
        "{e}"
    );

    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = deep.load_safetensors(&path).unwrap_err().to_string();
    assert!(e.contains("not a valid safetensors"), "{e}");

    let e = deep
        .load_safetensors(&dir.path().join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
}

#[test]
fn zero_bias_is_an_option_and_torch_the_default() {
    assert_eq!(NetParams::default().bias_init, BiasInit::Torch);
    let spec = NetParams {
        bias_init: BiasInit::Zero,
        ..params(Arch::PLAIN, 2)
    }
    .check()
    .unwrap();
    let net = Mlp::new(&spec).unwrap();
    for (name, v) in net.parameters() {
        if name.ends_with(".bias") {
            assert_eq!(
                v.sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap(),
                0.0,
                "{name}"
            );
        }
    }
}
