//! Convolutional nets of He et al. 2016a: shapes, parameter counts, gradients,
//! BN training statistics.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{BatchNorm, BnMode, ConvArch, ConvNet, ConvNetParams, Model, Precision};

fn images(n: usize, c: usize, size: usize, dtype: DType) -> Tensor {
    let v: Vec<f64> = (0..n * c * size * size)
        .map(|i| ((i * 7919 % 1000) as f64 / 500.0) - 1.0)
        .collect();
    Tensor::from_vec(v, (n, c, size, size), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn count(net: &ConvNet) -> usize {
    net.parameters().iter().map(|(_, v)| v.elem_count()).sum()
}

#[test]
fn resnet20_has_the_papers_parameter_count_and_shapes() {
    // He 2016a, Table 6: ResNet-20 has 0.27M parameters. By hand (option A, no
    // projection weights): stem 3·16·9 + 32 = 464; stage 1: 3·(2·16·16·9 + 2·32)
    // = 14 016; stage 2: 16·32·9 + 32·32·9 + 128 = 13 952, plus 2·(2·32·32·9 + 128)
    // = 37 120; stage 3: 32·64·9 + 64·64·9 + 256 = 55 552, plus 2·(2·64·64·9 + 256)
    // = 147 968; classifier 64·10 + 10 = 650. Total 269 722.
    let spec = ConvNetParams {
        depth: 20,
        ..Default::default()
    }
    .check()
    .unwrap();
    let net = ConvNet::new(&spec).unwrap();
    assert_eq!(count(&net), 269_722);
    let y = net
        .forward(&images(2, 3, 32, DType::F32), BnMode::Full)
        .unwrap();
    assert_eq!(y.dims(), &[2, 10]);
    // Option B adds two 1×1 projections with BN: 16·32 + 64 and 32·64 + 128.
    let b = ConvNet::new(
        &ConvNetParams {
            arch: "resnet:shortcut=b".parse().unwrap(),
            ..(*spec).clone()
        }
        .check()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(count(&b), 269_722 + 512 + 64 + 2048 + 128);
    assert!(
        b.parameters()
            .iter()
            .any(|(n, _)| n == "layer2.0.downsample.0.weight")
    );
    // The plain net has the same layers and no shortcuts at all.
    let plain = ConvNet::new(
        &ConvNetParams {
            arch: ConvArch::PLAIN,
            ..(*spec).clone()
        }
        .check()
        .unwrap(),
    )
    .unwrap();
    assert_eq!(count(&plain), 269_722);
}

#[test]
fn mnist_sized_inputs_and_depths_of_the_paper() {
    for depth in [20, 32, 44, 56, 110] {
        let p = ConvNetParams {
            depth,
            in_channels: 1,
            image_size: 28,
            widths: [2, 2, 2],
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(p.blocks_per_stage(), Some((depth - 2) / 6));
        let net = ConvNet::new(&p).unwrap();
        let convs = net
            .parameters()
            .iter()
            .filter(|(n, _)| n.ends_with(".weight") && n.contains("conv"))
            .count();
        assert_eq!(convs + 1, depth, "weighted layers of ResNet-{depth}");
        assert_eq!(
            net.forward(&images(1, 1, 28, DType::F32), BnMode::Eval)
                .unwrap()
                .dims(),
            &[1, 10]
        );
    }
    let bottleneck = ConvNetParams {
        arch: "resnet:block=bottleneck".parse().unwrap(),
        depth: 164,
        widths: [2, 2, 2],
        ..Default::default()
    };
    assert_eq!(bottleneck.check().unwrap().blocks_per_stage(), Some(18));
    for bad in [0, 21, 7] {
        let e = ConvNetParams {
            depth: bad,
            ..Default::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(e.contains("6n + 2"), "{e}");
    }
}

#[test]
fn every_parameter_gets_a_gradient_and_matches_finite_differences() {
    for arch in [
        "plain",
        "resnet",
        "resnet:shortcut=b",
        "resnet:block=bottleneck",
    ] {
        let arch: ConvArch = arch.parse().unwrap();
        let depth = if arch.block == gradscope_nets::ConvBlock::Bottleneck {
            11
        } else {
            8
        };
        let p = ConvNetParams {
            arch,
            depth,
            widths: [2, 3, 4],
            in_channels: 2,
            image_size: 6,
            classes: 3,
            precision: Precision::F64,
            seed: 4,
            ..Default::default()
        };
        let net = ConvNet::new(&p.check().unwrap()).unwrap();
        let x = images(3, 2, 6, DType::F64);
        // A fixed linear read-out of the logits keeps the objective generic.
        let objective = |net: &ConvNet| -> Tensor {
            let y = net.forward(&x, BnMode::Full).unwrap();
            let w = Tensor::from_vec(
                (0..9).map(|i| (i as f64 * 0.37).sin()).collect::<Vec<_>>(),
                (3, 3),
                &Device::Cpu,
            )
            .unwrap();
            (y * w).unwrap().sum_all().unwrap()
        };
        let grads = objective(&net).backward().unwrap();
        let params = net.parameters();
        let scale = params
            .iter()
            .map(|(_, v)| {
                grads.get(v.as_tensor()).map_or(0.0, |g| {
                    g.abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap()
                })
            })
            .fold(0.0, f64::max);
        for (name, var) in &params {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{arch}: no gradient for {name}"));
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            assert!(
                g.iter().any(|v| *v != 0.0),
                "{arch}: zero gradient for {name}"
            );
            // Central differences on one entry of every tensor.
            let mut w = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let i = w.len() / 2;
            let h = 1e-6;
            let set = |w: &[f64]| {
                var.set(&Tensor::from_slice(w, var.dims(), &Device::Cpu).unwrap())
                    .unwrap()
            };
            w[i] += h;
            set(&w);
            let lp = objective(&net).to_scalar::<f64>().unwrap();
            w[i] -= 2.0 * h;
            set(&w);
            let lm = objective(&net).to_scalar::<f64>().unwrap();
            w[i] += h;
            set(&w);
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-6 * scale.max(1.0),
                "{arch} {name}[{i}]: {} vs {fd}",
                g[i]
            );
        }
    }
}

#[test]
fn train_mode_updates_running_statistics_like_pytorch() {
    let dev = Device::Cpu;
    let v = |x: Vec<f64>| Var::from_tensor(&Tensor::from_vec(x, 2, &dev).unwrap()).unwrap();
    let bn = BatchNorm::new(
        v(vec![1.0, 1.0]),
        v(vec![0.0, 0.0]),
        v(vec![0.0, 0.0]),
        v(vec![1.0, 1.0]),
    );
    // Feature 0: 1, 2, 3, 6 (mean 3, unbiased variance 14/3); feature 1: all 5.
    let x = Tensor::from_vec(vec![1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 6.0, 5.0], (4, 2), &dev).unwrap();
    let y = bn
        .forward(&x, BnMode::Train)
        .unwrap()
        .to_vec2::<f64>()
        .unwrap();
    let rm = bn.running_mean().as_tensor().to_vec1::<f64>().unwrap();
    let rv = bn.running_var().as_tensor().to_vec1::<f64>().unwrap();
    assert!(
        (rm[0] - 0.3).abs() < 1e-12 && (rm[1] - 0.5).abs() < 1e-12,
        "{rm:?}"
    );
    assert!(
        (rv[0] - (0.9 + 0.1 * 14.0 / 3.0)).abs() < 1e-12 && (rv[1] - 0.9).abs() < 1e-12,
        "{rv:?}"
    );
    // The output is normalised with the batch's biased variance (3.5).
    assert!((y[3][0] - 3.0 / (3.5f64 + 1e-5).sqrt()).abs() < 1e-12);
    // Other modes leave the running statistics alone.
    bn.forward(&x, BnMode::Full).unwrap();
    assert_eq!(bn.running_mean().as_tensor().to_vec1::<f64>().unwrap(), rm);
    // Images: statistics per channel over (batch, height, width).
    let img = Tensor::from_vec(
        (0..16).map(|i| i as f64).collect::<Vec<_>>(),
        (2, 2, 2, 2),
        &dev,
    )
    .unwrap();
    let out = bn.forward(&img, BnMode::Full).unwrap();
    let per_channel = out.transpose(0, 1).unwrap().flatten_from(1).unwrap();
    let means = per_channel.mean(1).unwrap().to_vec1::<f64>().unwrap();
    let vars = per_channel
        .sqr()
        .unwrap()
        .mean(1)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    for c in 0..2 {
        assert!(
            means[c].abs() < 1e-12 && (vars[c] - 1.0).abs() < 1e-4,
            "{means:?} {vars:?}"
        );
    }
}

#[test]
fn conv_weights_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = ConvNetParams {
        depth: 8,
        widths: [2, 3, 4],
        image_size: 8,
        ..Default::default()
    };
    let a = ConvNet::new(&p.check().unwrap()).unwrap();
    let b = ConvNet::new(&ConvNetParams { seed: 9, ..p }.check().unwrap()).unwrap();
    let f = dir.path().join("w.safetensors");
    std::fs::write(&f, a.to_safetensors().unwrap()).unwrap();
    b.load_safetensors(&f).unwrap();
    let x = images(2, 3, 8, DType::F32);
    assert_eq!(
        a.forward(&x, BnMode::Eval)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap(),
        b.forward(&x, BnMode::Eval)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    );
}
