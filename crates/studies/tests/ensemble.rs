//! The path view of residual nets: exact path counts, path gradients that sum
//! to the full gradient, lesions that leave an intact net intact.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_engine::{Options, Request, for_net};
use gradscope_nets::{
    Arch, BlockNet, BnMode, ConvNet, ConvNetParams, Mlp, Net, NetParams, Precision,
};
use gradscope_studies::Params;
use gradscope_studies::ensemble::{
    binomial, effective_range, lesioned_error, path_gradient_norms, path_input_gradients,
    path_length_share, paths_of_length,
};
use gradscope_train::Examples;
use rand::SeedableRng;

#[test]
fn path_counts_are_binomial_exactly() {
    for n in 1..=50usize {
        let mut total = 0.0;
        for k in 0..=n {
            let c = binomial(n, k);
            assert_eq!(c, binomial(n, n - k));
            if k > 0 {
                assert_eq!(
                    c,
                    binomial(n - 1, k - 1) + binomial(n - 1, k),
                    "Pascal at ({n}, {k})"
                );
            }
            total += c;
        }
        assert_eq!(total, 2f64.powi(n as i32), "Σ C({n}, k) = 2^{n}");
    }
    assert_eq!(binomial(54, 27), 1_946_939_425_648_112.0);
    // Veit et al. 2016: about 98 % of the 2^54 paths of a 54-block resnet have
    // length 19–35; exactly Σ_{k=19}^{35} C(54, k) / 2^54 = 17 657 095 043 635 292 / 2^54.
    let share: f64 = (19..=35).map(|k| path_length_share(54, k)).sum();
    assert!(
        (share - 17_657_095_043_635_292.0 / 2f64.powi(54)).abs() < 1e-15,
        "{share}"
    );
}

#[test]
fn the_effective_range_is_the_shortest_window_with_the_mass() {
    assert_eq!(
        effective_range(&[0.0, 1.0, 8.0, 1.0, 0.0], 0.8),
        Some((2, 2))
    );
    assert_eq!(
        effective_range(&[0.0, 1.0, 8.0, 1.0, 0.0], 0.85),
        Some((1, 2))
    );
    assert_eq!(effective_range(&[0.0, 0.0], 0.9), None);
}

fn small_resnet(arch: Arch, depth: usize) -> Mlp {
    Mlp::new(
        &NetParams {
            arch,
            depth,
            width: 6,
            input_dim: 3,
            output_dim: 4,
            precision: Precision::F64,
            seed: 2,
            ..Default::default()
        }
        .check()
        .unwrap(),
    )
    .unwrap()
}

fn batch() -> (Tensor, Vec<u32>) {
    let x: Vec<f64> = (0..15)
        .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
        .collect();
    (
        Tensor::from_vec(x, (5, 3), &Device::Cpu).unwrap(),
        vec![0, 3, 1, 2, 1],
    )
}

/// ∂L/∂x of the whole net in eval mode, L the mean cross-entropy.
fn full_gradient(net: &dyn BlockNet, x: &Tensor, y: &[u32]) -> Vec<f64> {
    let v = Var::from_tensor(x).unwrap();
    let loss =
        gradscope_train::cross_entropy(&net.forward(v.as_tensor(), BnMode::Eval).unwrap(), y)
            .unwrap();
    loss.backward()
        .unwrap()
        .get(v.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// ∂L/∂x along each path, on the engine `request` asks for (eval mode).
fn path_gradients(
    net: &Net,
    x: &Tensor,
    y: &[u32],
    paths: &[Vec<bool>],
    request: Request,
) -> Vec<Vec<f64>> {
    let mut engine = for_net::<f64>(
        net,
        Options {
            request,
            ..Options::repeated(BnMode::Eval)
        },
    )
    .unwrap();
    let n = x.dim(0).unwrap();
    let rows = x.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let x = ndarray::Array2::from_shape_vec((n, rows.len() / n), rows).unwrap();
    path_input_gradients(engine.as_mut(), x.view(), y, paths)
        .unwrap()
        .into_iter()
        .map(|g| g.into_raw_vec_and_offset().0)
        .collect()
}

/// Every subset of the blocks as a path.
fn all_paths(n: usize) -> Vec<Vec<bool>> {
    (0..1u32 << n)
        .map(|mask| (0..n).map(|b| mask >> b & 1 == 1).collect())
        .collect()
}

fn sum_over_all_paths(net: &Net, x: &Tensor, y: &[u32]) -> Vec<f64> {
    let mut sum = vec![0.0; x.elem_count()];
    for g in path_gradients(net, x, y, &all_paths(net.num_blocks()), Request::Auto) {
        for (s, v) in sum.iter_mut().zip(g) {
            *s += v;
        }
    }
    sum
}

#[test]
fn the_gradients_of_all_paths_add_up_to_the_full_gradient() {
    // Π_l (I + J_l)ᵀ g = Σ over the 2^n subsets S of Π_{l∈S} J_lᵀ g: the unrolled view is exact.
    let (x, y) = batch();
    for arch in [
        Arch::RESNET,
        Arch::RESNET_BN,
        Arch::RESNET1_BN,
        "resnet-bn:alpha=0.5".parse().unwrap(),
    ] {
        let net = small_resnet(arch, 4);
        net.calibrate_batch_norm(&x).unwrap();
        let (full, paths) = (
            full_gradient(&net, &x, &y),
            sum_over_all_paths(&Net::Mlp(net.clone()), &x, &y),
        );
        let scale = full.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in full.iter().zip(&paths) {
            assert!(
                (a - b).abs() <= 1e-12 * scale.max(1e-12),
                "{arch}: {a} vs {b}"
            );
        }
    }
    // Post-activation conv blocks: the ReLU after each addition is applied on every path.
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
    let xi = Tensor::from_vec(
        (0..32).map(|i| (i as f64 * 0.7).sin()).collect::<Vec<_>>(),
        (2, 1, 4, 4),
        &Device::Cpu,
    )
    .unwrap();
    let yi = vec![0, 2];
    let (full, paths) = (
        full_gradient(&conv, &xi, &yi),
        sum_over_all_paths(&Net::Conv(conv.clone()), &xi, &yi),
    );
    let scale = full.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in full.iter().zip(&paths) {
        assert!((a - b).abs() <= 1e-12 * scale, "conv: {a} vs {b}");
    }
}

#[test]
fn with_silent_branches_only_the_empty_path_carries_gradient() {
    let net = small_resnet(Arch::RESNET, 3);
    for (name, v) in net.parameters() {
        if name.contains(".fc2.") {
            v.set(&v.as_tensor().zeros_like().unwrap()).unwrap();
        }
    }
    let (x, y) = batch();
    let grads = path_gradients(&Net::Mlp(net.clone()), &x, &y, &all_paths(3), Request::Auto);
    let full = full_gradient(&net, &x, &y);
    let scale = full.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in grads[0].iter().zip(&full) {
        assert!((a - b).abs() <= 1e-14 * scale, "{a} vs {b}");
    }
    for (mask, g) in grads.iter().enumerate().skip(1) {
        assert!(g.iter().all(|&v| v == 0.0), "path {mask:03b}: {g:?}");
    }
}

#[test]
fn enough_samples_enumerate_every_path_of_a_length() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let all = paths_of_length(6, 3, 20, &mut rng);
    assert_eq!(all.len(), 20);
    let mut uniq = all.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 20, "each 3-subset of 6 once");
    let sampled = paths_of_length(30, 15, 10, &mut rng);
    assert!(
        sampled.len() == 10
            && sampled
                .iter()
                .all(|s| s.len() == 15 && s.windows(2).all(|w| w[0] < w[1]))
    );
}

/// The batch as a data set (f32, as data sets hold it).
fn examples(x: &Tensor, y: &[u32]) -> Examples {
    let xs = x
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    Examples::new(xs, vec![3], y.to_vec(), 4).unwrap()
}

#[test]
fn deleting_no_block_is_the_intact_net() {
    let net = small_resnet(Arch::RESNET_BN, 4);
    let (x, y) = batch();
    net.calibrate_batch_norm(&x).unwrap();
    let data = examples(&x, &y);
    let intact = gradscope_train::error_rate(&net.forward(&x, BnMode::Eval).unwrap(), &y).unwrap();
    let order: Vec<usize> = (0..4).collect();
    assert_eq!(
        lesioned_error(&Net::Mlp(net.clone()), &data, &order, &[false; 4]).unwrap(),
        intact
    );
    // Deleting every branch leaves stem → head: a linear map of x.
    let all_gone = lesioned_error(&Net::Mlp(net.clone()), &data, &order, &[true; 4]).unwrap();
    let stem_head = gradscope_train::error_rate(
        &net.head_forward(&net.stem_forward(&x, BnMode::Eval).unwrap(), BnMode::Eval)
            .unwrap(),
        &y,
    )
    .unwrap();
    assert_eq!(all_gone, stem_head);
}

#[test]
fn a_trained_resnet_survives_lesions_that_break_a_plain_net() {
    // Quick sizes (depth 8, width 32, 6 epochs on the digits). Measured: plain-bn
    // 6 % intact → ~88 % with any one block deleted; resnet-bn 3 % → median 7 %.
    use gradscope_studies::ensemble::EnsembleParams;
    let res = EnsembleParams::quick()
        .check()
        .unwrap()
        .run(&gradscope_studies::RunOptions::with_threads(2))
        .unwrap();
    let arch = |name: &str| {
        res.summary
            .archs
            .iter()
            .find(|a| a.arch == name)
            .unwrap()
            .clone()
    };
    let median = |v: &[f64]| {
        let mut v: Vec<f64> = v.iter().copied().filter(|e| e.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (plain, resnet) = (arch("plain-bn"), arch("resnet-bn"));
    assert!(
        median(&plain.single_deletion) - plain.intact_error.mean > 0.5,
        "{plain:?}"
    );
    assert!(
        median(&resnet.single_deletion) - resnet.intact_error.mean < 0.1,
        "{resnet:?}"
    );
    // Deleting nothing is the intact net; error grows with the number deleted.
    assert_eq!(
        resnet.random_deletion.error[0].mean,
        resnet.intact_error.mean
    );
    let n = resnet.blocks;
    assert!(resnet.random_deletion.error[n].mean > resnet.random_deletion.error[1].mean);
    // One path's gradient falls with its length; plain nets have no path view.
    assert!(resnet.path_gradient[0] > 10.0 * resnet.path_gradient[n]);
    assert!(plain.path_gradient.iter().all(|g| g.is_nan()));
    let (lo, hi) = resnet.effective_range.unwrap();
    assert!(hi < n && lo <= hi);
}

/// The engine's path-gradient norms (one forward pass, a backward pass per
/// path) equal those of candle's autograd, path by path.
#[test]
fn path_gradient_norms_equal_the_oracles() {
    let (x, y) = batch();
    let data = examples(&x, &y);
    let idx: Vec<usize> = (0..data.len()).collect();
    let (xt, _) = data.batch(&idx, DType::F64).unwrap();
    for arch in [Arch::RESNET_BN, "resnet:alpha=0.5".parse().unwrap()] {
        let net = small_resnet(arch, 4);
        net.calibrate_batch_norm(&xt).unwrap();
        let net = Net::Mlp(net);
        let paths = all_paths(4);
        let norms = |request| {
            let opts = Options {
                request,
                ..Options::repeated(BnMode::Eval)
            };
            let mut engine = for_net::<f64>(&net, opts).unwrap();
            path_gradient_norms(engine.as_mut(), &data, &idx, &paths).unwrap()
        };
        let (fast, oracle) = (norms(Request::Auto), norms(Request::Candle));
        for ((branch, got), want) in paths.iter().zip(&fast).zip(&oracle) {
            assert!(
                (got - want).abs() <= 1e-10 * want.max(1e-30),
                "{arch} path {branch:?}: engine {got} vs candle {want}"
            );
        }
    }
}
