//! The facts each skip connection and normaliser is defined by, checked on
//! built nets in f64: scaled skips multiply gradients by λ per block, rSkip+LN
//! is the recursion it claims to be, a closed highway gate carries its input,
//! norms normalise, and the zero-initialised tricks start as their shortcut.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{
    BatchNorm, BnMode, FeatureNorm, FeatureNormKind, Mlp, NORM_EPS, NetParams, Precision,
};

fn net(arch: &str, depth: usize, width: usize) -> Mlp {
    let spec = NetParams {
        arch: arch.parse().unwrap(),
        depth,
        width,
        precision: Precision::F64,
        seed: 5,
        ..Default::default()
    }
    .check()
    .unwrap();
    Mlp::new(&spec).unwrap()
}

fn grid(n: usize) -> Tensor {
    let v: Vec<f64> = (0..n)
        .map(|i| -2.0 + 4.3 * i as f64 / (n - 1) as f64)
        .collect();
    Tensor::from_vec(v, (n, 1), &Device::Cpu).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    t.to_vec2::<f64>().unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

fn param(net: &Mlp, name: &str) -> Tensor {
    net.parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
        .1
        .as_tensor()
        .clone()
}

/// dL/dh_l for every hidden state, L = Σ f(x), through zero probes.
fn hidden_grads(net: &Mlp, x: &Tensor) -> Vec<Tensor> {
    let (n, w) = (x.dims()[0], net.spec().width);
    let probes: Vec<Var> = (0..=net.depth())
        .map(|_| Var::zeros((n, w), DType::F64, &Device::Cpu).unwrap())
        .collect();
    let out = net.trace(x, BnMode::PerSample, Some(&probes)).unwrap();
    let grads = out.output.sum_all().unwrap().backward().unwrap();
    probes
        .iter()
        .map(|p| grads.get(p.as_tensor()).unwrap().clone())
        .collect()
}

#[test]
fn with_the_branch_off_the_gradient_through_l_scaled_skips_is_lambda_to_the_l() {
    let depth = 12;
    for lambda in [0.5f64, 0.9, 1.3, 2.0] {
        let net = net(&format!("xskip:lambda={lambda},init=skipinit"), depth, 8);
        let g = hidden_grads(&net, &grid(9));
        for (l, gl) in g.iter().enumerate() {
            // h_L = λ^(L−l) h_l, so dL/dh_l = λ^(L−l) dL/dh_L, entry by entry.
            let want = (&g[depth] * lambda.powi((depth - l) as i32)).unwrap();
            let scale = want
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(
                max_abs_diff(gl, &want) <= 1e-13 * scale,
                "λ = {lambda}, layer {l}"
            );
        }
    }
}

/// The forward pass of one rSkip+LN block by hand: F = fc2(φ(fc1 x)),
/// y₁ = LN(x + F), yᵢ = LN(x + yᵢ₋₁) (γ = 1, β = 0 at init).
fn rskip_by_hand(net: &Mlp, block: usize, x: &[Vec<f64>], lambda: usize) -> Vec<Vec<f64>> {
    let p = |n: &str| rows(&param(net, &format!("layers.{block}.{n}")));
    let v = |n: &str| {
        param(net, &format!("layers.{block}.{n}"))
            .to_vec1::<f64>()
            .unwrap()
    };
    let (w1, b1, w2, b2) = (
        p("fc1.weight"),
        v("fc1.bias"),
        p("fc2.weight"),
        v("fc2.bias"),
    );
    let affine = |w: &Vec<Vec<f64>>, b: &Vec<f64>, x: &[f64]| -> Vec<f64> {
        w.iter()
            .zip(b)
            .map(|(row, bi)| row.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + bi)
            .collect()
    };
    let ln = |v: Vec<f64>| -> Vec<f64> {
        let n = v.len() as f64;
        let mu = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|a| (a - mu).powi(2)).sum::<f64>() / n;
        v.iter()
            .map(|a| (a - mu) / (var + NORM_EPS).sqrt())
            .collect()
    };
    x.iter()
        .map(|xi| {
            let h: Vec<f64> = affine(&w1, &b1, xi)
                .into_iter()
                .map(|a| a.max(0.0))
                .collect();
            let f = affine(&w2, &b2, &h);
            let mut y = ln(xi.iter().zip(&f).map(|(a, b)| a + b).collect());
            for _ in 1..lambda {
                y = ln(xi.iter().zip(&y).map(|(a, b)| a + b).collect());
            }
            y
        })
        .collect()
}

#[test]
fn rskip_ln_is_its_recursion_and_at_lambda_1_the_post_ln_block() {
    let x = grid(6);
    for lambda in [1, 2, 4] {
        let net = net(&format!("rskip-ln:lambda={lambda}"), 3, 8);
        let trace = net.trace(&x, BnMode::PerSample, None).unwrap();
        for b in 0..3 {
            let want = rskip_by_hand(&net, b, &rows(&trace.hidden[b]), lambda);
            let got = rows(&trace.hidden[b + 1]);
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((g - w).abs() < 1e-12, "λ = {lambda}, block {b}: {g} vs {w}");
            }
        }
    }
    // λ = 1 is the post-LN residual block, y = LN(x + F(x)), weight for weight.
    let a = net("rskip-ln:lambda=1", 4, 8);
    let b = net("resnet:order=postnorm,norm=ln", 4, 8);
    assert_eq!(a.spec().arch, b.spec().arch);
    let (ya, yb) = (
        a.forward(&x, BnMode::PerSample).unwrap(),
        b.forward(&x, BnMode::PerSample).unwrap(),
    );
    assert_eq!(max_abs_diff(&ya, &yb), 0.0);
}

#[test]
fn a_highway_with_a_closed_gate_passes_its_input_through() {
    let x = grid(7);
    let net = net("highway:bias=-100", 6, 8);
    let trace = net.trace(&x, BnMode::PerSample, None).unwrap();
    let g = hidden_grads(&net, &x);
    for l in 1..=6 {
        // T = σ(−100 + W_T x) < 1e-30: y = x to rounding.
        let d = max_abs_diff(&trace.hidden[l], &trace.hidden[0]);
        assert!(d < 1e-14, "block {l}: {d}");
        let d = max_abs_diff(&g[l], &g[0]);
        assert!(d < 1e-14, "gradient at block {l}: {d}");
    }
    // An open gate (bias +100) is a plain layer: y = H(x) = φ(W x + b).
    let open = net_with("highway:bias=100", 8);
    let trace = open.trace(&x, BnMode::PerSample, None).unwrap();
    let w = param(&open, "layers.0.fc1.weight");
    let b = param(&open, "layers.0.fc1.bias");
    let h = trace.hidden[0]
        .matmul(&w.t().unwrap())
        .unwrap()
        .broadcast_add(&b)
        .unwrap()
        .relu()
        .unwrap();
    assert!(max_abs_diff(&trace.hidden[1], &h) < 1e-14);
}

fn net_with(arch: &str, width: usize) -> Mlp {
    net(arch, 1, width)
}

fn random(n: usize, w: usize, seed: u64) -> Tensor {
    let v: Vec<f64> = (0..n * w)
        .map(|i| {
            let t = ((i as u64 + 1) * 2_654_435_761 + seed * 97) % 10_007;
            3.0 * (t as f64 / 10_007.0) - 1.0 + (i % w) as f64 * 0.3
        })
        .collect();
    Tensor::from_vec(v, (n, w), &Device::Cpu).unwrap()
}

fn ones_var(w: usize, v: f64) -> Var {
    Var::from_tensor(&Tensor::full(v, w, &Device::Cpu).unwrap()).unwrap()
}

#[test]
fn layer_group_and_rms_norms_normalise_each_sample() {
    let (n, w) = (5, 12);
    let x = random(n, w, 1);
    for (kind, groups) in [
        (FeatureNormKind::Layer, 1),
        (FeatureNormKind::Group(3), 3),
        (FeatureNormKind::Rms, 1),
    ] {
        let beta = kind.has_shift().then(|| ones_var(w, 0.0));
        let y = rows(
            &FeatureNorm::new(kind, ones_var(w, 1.0), beta)
                .forward(&x)
                .unwrap(),
        );
        for (i, (yi, xi)) in y.iter().zip(rows(&x)).enumerate() {
            for g in 0..groups {
                let size = w / groups;
                let (ys, xs) = (&yi[g * size..(g + 1) * size], &xi[g * size..(g + 1) * size]);
                let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
                let (mx, my) = (mean(xs), mean(ys));
                if kind == FeatureNormKind::Rms {
                    // mean(y²) = m/(m + ε) with m = mean(x²).
                    let m = mean(&xs.iter().map(|a| a * a).collect::<Vec<_>>());
                    let my2 = mean(&ys.iter().map(|a| a * a).collect::<Vec<_>>());
                    assert!((my2 - m / (m + NORM_EPS)).abs() < 1e-12, "{kind} {i}");
                } else {
                    let var = |v: &[f64], m: f64| {
                        mean(&v.iter().map(|a| (a - m).powi(2)).collect::<Vec<_>>())
                    };
                    let vx = var(xs, mx);
                    assert!(my.abs() < 1e-12, "{kind} sample {i} group {g}: mean {my}");
                    assert!(
                        (var(ys, my) - vx / (vx + NORM_EPS)).abs() < 1e-12,
                        "{kind} sample {i} group {g}"
                    );
                }
            }
        }
    }
    // γ and β act per feature after normalising.
    let gamma = Var::from_tensor(&random(1, w, 2).squeeze(0).unwrap()).unwrap();
    let beta = Var::from_tensor(&random(1, w, 3).squeeze(0).unwrap()).unwrap();
    let plain = FeatureNorm::new(
        FeatureNormKind::Layer,
        ones_var(w, 1.0),
        Some(ones_var(w, 0.0)),
    )
    .forward(&x)
    .unwrap();
    let affine = FeatureNorm::new(FeatureNormKind::Layer, gamma.clone(), Some(beta.clone()))
        .forward(&x)
        .unwrap();
    let want = plain
        .broadcast_mul(gamma.as_tensor())
        .unwrap()
        .broadcast_add(beta.as_tensor())
        .unwrap();
    assert!(max_abs_diff(&affine, &want) < 1e-12);
}

#[test]
fn batch_norm_in_eval_mode_uses_the_running_statistics() {
    let w = 4;
    let v = |x: Vec<f64>| Var::from_tensor(&Tensor::from_vec(x, w, &Device::Cpu).unwrap()).unwrap();
    let (gamma, beta, rm, rv) = (
        vec![1.5, 0.5, 2.0, 1.0],
        vec![0.1, -0.2, 0.0, 0.3],
        vec![0.5, -1.0, 2.0, 0.0],
        vec![4.0, 0.25, 1.0, 9.0],
    );
    let bn = BatchNorm::new(
        v(gamma.clone()),
        v(beta.clone()),
        v(rm.clone()),
        v(rv.clone()),
    );
    let x = random(6, w, 4);
    let y = rows(&bn.forward(&x, BnMode::Eval).unwrap());
    for (yi, xi) in y.iter().zip(rows(&x)) {
        for j in 0..w {
            let want = (xi[j] - rm[j]) / (rv[j] + 1e-5).sqrt() * gamma[j] + beta[j];
            assert!((yi[j] - want).abs() < 1e-12);
        }
    }
    // One sample alone gets the same output: no batch statistics in eval mode.
    let one = bn
        .forward(&x.narrow(0, 2, 1).unwrap(), BnMode::Eval)
        .unwrap();
    assert_eq!(rows(&one)[0], y[2]);
    // …while per-sample mode normalises with the batch's own statistics.
    let per_sample = bn.forward(&x, BnMode::PerSample).unwrap();
    assert!(max_abs_diff(&per_sample, &bn.forward(&x, BnMode::Eval).unwrap()) > 0.1);
}

#[test]
fn zero_initialised_branches_start_as_their_shortcut() {
    let x = grid(9);
    for arch in [
        "resnet:init=fixup",
        "resnet-bn:init=skipinit",
        "resnet:init=rezero",
    ] {
        let net = net(arch, 5, 8);
        let t = net.trace(&x, BnMode::PerSample, None).unwrap();
        for l in 1..=5 {
            assert_eq!(
                max_abs_diff(&t.hidden[l], &t.hidden[0]),
                0.0,
                "{arch} block {l}"
            );
        }
    }
    // Fixup scales the inner layer by L^(−1/(2k−2)) = 5^(−1/2) for k = 2
    // and zeroes the last; the draws are those of the standard net.
    let fixup = net("resnet:init=fixup", 5, 8);
    let standard = net("resnet", 5, 8);
    let w = |n: &Mlp, name: &str| param(n, name);
    let scaled = (w(&standard, "layers.3.fc1.weight") / 5f64.sqrt()).unwrap();
    assert!(max_abs_diff(&w(&fixup, "layers.3.fc1.weight"), &scaled) < 1e-15);
    assert_eq!(
        w(&fixup, "layers.3.fc2.weight")
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap(),
        0.0
    );
    assert_eq!(w(&fixup, "layers.3.gain").to_vec1::<f64>().unwrap(), [1.0]);
}

#[test]
fn a_looks_linear_net_is_linear_at_initialisation() {
    let x = grid(11);
    let net = net("looks-linear", 8, 16);
    let f = net
        .forward(&x, BnMode::PerSample)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    // Equally spaced inputs: second differences of an affine function vanish.
    let scale = f.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for i in 1..f.len() - 1 {
        assert!((f[i - 1] - 2.0 * f[i] + f[i + 1]).abs() < 1e-12 * scale.max(1.0));
    }
    // Each block is y = M h + b with the weight [M, −M].
    let weight = param(&net, "layers.0.fc.weight");
    let (m, neg) = (
        weight.narrow(1, 0, 16).unwrap(),
        weight.narrow(1, 16, 16).unwrap(),
    );
    assert_eq!(max_abs_diff(&m, &neg.neg().unwrap()), 0.0);
    // A plain ReLU net of the same draws is not linear.
    let plain = net_plain_relu(&x);
    assert!(plain > 1e-3);
}

fn net_plain_relu(x: &Tensor) -> f64 {
    let f = net("plain", 8, 16)
        .forward(x, BnMode::PerSample)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    (1..f.len() - 1)
        .map(|i| (f[i - 1] - 2.0 * f[i] + f[i + 1]).abs())
        .fold(0.0, f64::max)
}

#[test]
fn weight_norm_starts_as_the_net_it_reparametrises() {
    let x = grid(9);
    for (wn, plain) in [("plain:norm=wn", "plain"), ("resnet:norm=wn", "resnet")] {
        let (a, b) = (net(wn, 3, 8), net(plain, 3, 8));
        let d = max_abs_diff(
            &a.forward(&x, BnMode::PerSample).unwrap(),
            &b.forward(&x, BnMode::PerSample).unwrap(),
        );
        assert!(d < 1e-12, "{wn}: {d}");
        // W = g·v/‖v‖: scaling v leaves the net unchanged, scaling g scales W.
        let v = a
            .parameters()
            .into_iter()
            .find(|(n, _)| n.ends_with("weight_v"))
            .unwrap()
            .1;
        let y0 = a.forward(&x, BnMode::PerSample).unwrap();
        v.set(&(v.as_tensor() * 3.0).unwrap()).unwrap();
        assert!(max_abs_diff(&a.forward(&x, BnMode::PerSample).unwrap(), &y0) < 1e-12);
    }
}

#[test]
fn shortcut_dropout_is_fixed_per_net_fresh_per_training_step_and_its_mean_in_eval() {
    let net = net("resnet:skip=dropout(0.3)", 2, 64);
    let x = grid(50);
    let a = net.forward(&x, BnMode::PerSample).unwrap();
    assert_eq!(
        max_abs_diff(&a, &net.forward(&x, BnMode::Full).unwrap()),
        0.0
    );
    let t1 = net.forward(&x, BnMode::Train).unwrap();
    let t2 = net.forward(&x, BnMode::Train).unwrap();
    assert!(max_abs_diff(&t1, &t2) > 0.0);
    // The mask keeps 1 − p of the entries: count through a block whose branch is off.
    let off = self::net("resnet:skip=dropout(0.3),init=skipinit", 1, 64);
    let t = off.trace(&x, BnMode::PerSample, None).unwrap();
    let (h0, h1) = (rows(&t.hidden[0]), rows(&t.hidden[1]));
    let (mut kept, mut total) = (0usize, 0usize);
    for (r0, r1) in h0.iter().zip(&h1) {
        for (a, b) in r0.iter().zip(r1) {
            if a.abs() > 1e-9 {
                total += 1;
                if (a - b).abs() < 1e-12 {
                    kept += 1;
                } else {
                    assert_eq!(*b, 0.0);
                }
            }
        }
    }
    let share = kept as f64 / total as f64;
    // 3200 Bernoulli(0.7) draws: standard error 0.008.
    assert!((share - 0.7).abs() < 0.04, "kept {share}");
    let eval = off.trace(&x, BnMode::Eval, None).unwrap();
    assert!(max_abs_diff(&eval.hidden[1], &(&eval.hidden[0] * 0.7).unwrap()) < 1e-15);
}
