//! The dense fast path equals the candle path: outputs, hidden-state and input
//! gradients at every depth, and the forward-mode sweep.

use candle_core::{Device, Tensor};
use gradscope_nets::{Activation, Arch, BiasInit, BnMode, Mlp, NetParams, Precision};
use gradscope_probe::dense::{DenseMlp, frobenius_dense};
use gradscope_probe::{CaptureOpts, capture, scalar_grid};
use ndarray::Array2;

fn archs() -> Vec<Arch> {
    [
        "plain",
        "plain-bn",
        "resnet",
        "resnet-bn",
        "resnet1",
        "resnet1-bn",
        "resnet-bn:alpha=0.5",
        "resnet:branch=3,norm=bn",
        "plain:norm=ln",
        "resnet:norm=ln",
        "resnet:norm=gn(3)",
        "resnet:norm=rms",
        "resnet-bn:order=post",
        "xskip:lambda=0.5",
        "xskip-ln:lambda=2,alpha=0.5",
        "rskip-ln:lambda=3",
        "resnet:skip=scale(0.7)",
        "highway",
        "resnet:skip=gate(-1),alpha=0.5",
        "resnet-bn:skip=shortcut-gate(0.5)",
        "looks-linear",
        "resnet-bn:init=skipinit",
        "resnet:init=rezero",
        "resnet:init=fixup",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

/// Every γ, β and bias set away from its initial 1 or 0, so that a normaliser
/// that dropped or misplaced them would show.
fn perturb_vectors(m: &Mlp) {
    for (k, (name, var)) in m.parameters().iter().enumerate() {
        let t = var.as_tensor();
        if t.rank() != 1 {
            continue;
        }
        let n = t.dims1().unwrap();
        let base = if name.ends_with(".weight") { 1.0 } else { 0.0 };
        let v: Vec<f64> = (0..n)
            .map(|i| base + 0.3 * ((k * 31 + i * 7) as f64).sin())
            .collect();
        let new = Tensor::from_vec(v, n, t.device())
            .unwrap()
            .to_dtype(t.dtype())
            .unwrap();
        var.set(&new).unwrap();
    }
}

fn net(arch: Arch, activation: Activation, precision: Precision) -> Mlp {
    let p = NetParams {
        arch,
        depth: 6,
        width: 12,
        activation,
        bias_init: BiasInit::Normal { std: 0.2 },
        precision,
        seed: 3,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    perturb_vectors(&m);
    m
}

/// A tensor's values, flattened.
fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Candle's gradient of every parameter of `m` (state-dict order) for
/// L = Σᵢₖ w[i,k]·f_k(xᵢ), BN in `mode`.
fn candle_param_grads(m: &Mlp, x: &Tensor, w: &Tensor, mode: BnMode) -> Vec<(String, Vec<f64>)> {
    let grads = (m.forward(x, mode).unwrap() * w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    m.parameters()
        .into_iter()
        .map(|(name, var)| (name, flat(grads.get(var.as_tensor()).unwrap())))
        .collect()
}

/// The dense parameter gradients carry candle's names, in its order, and its values.
fn assert_same_grads(got: &[(String, Vec<f64>)], want: &[(String, Vec<f64>)], arch: Arch) {
    assert_eq!(got.len(), want.len(), "{arch}");
    for ((name, g), (want_name, w)) in got.iter().zip(want) {
        assert_eq!(name, want_name);
        close(g, w, 1e-10, &format!("{arch} ∂L/∂{name}"));
    }
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    close_above(a, b, tol, 1e-30, what);
}

/// [`close`] relative to max(‖b‖_∞, `floor`): for entries that are zero up
/// to rounding (a running mean of centred inputs is ~1e-18 either way).
fn close_above(a: &[f64], b: &[f64], tol: f64, floor: f64, what: &str) {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(floor);
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol * scale, "{what}: {x} vs {y}");
    }
}

#[test]
fn dense_gradients_equal_the_candle_path_at_every_depth() {
    let x = scalar_grid(40, -2.0, 2.0);
    for arch in archs() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            for mode in [BnMode::PerSample, BnMode::Eval, BnMode::Full] {
                let m = net(arch, act, Precision::F64);
                if mode == BnMode::Eval {
                    m.calibrate_batch_norm(
                        &Tensor::from_vec(vec![-1.0, 0.3, 2.5, 0.7], (4, 1), &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                }
                let dense = DenseMlp::<f64>::from_mlp(&m, mode).unwrap();
                let fwd = dense.forward(x.view());
                let sweep = dense.tangent_sweep(x.view(), &[1.0]);
                // The sweep needs samples that do not interact.
                assert_eq!(sweep.is_err(), mode == BnMode::Full, "{arch} {mode}");
                for depth in 1..=m.depth() {
                    let what = format!("{arch} {act} {mode} depth {depth}");
                    let cap = capture(
                        &m,
                        x.view(),
                        &CaptureOpts {
                            bn_mode: mode,
                            depth: Some(depth),
                            keep_layer_grads: true,
                            param_grads: true,
                        },
                    )
                    .unwrap();
                    let out = dense.output(&fwd, depth);
                    close(
                        out.as_slice().unwrap(),
                        cap.output.as_slice().unwrap(),
                        1e-12,
                        &format!("{what}: output"),
                    );
                    let (grads, dx) = dense.backward(&fwd, depth);
                    // Through the batch statistics g − mean(g) − x̂·mean(g x̂)
                    // cancels most of g (a scalar input makes every feature
                    // of h₀ affine in x), so rounding grows by about 100×.
                    let tol = if mode == BnMode::Full { 1e-8 } else { 1e-10 };
                    close(
                        dx.as_slice().unwrap(),
                        cap.input_grads.as_slice().unwrap(),
                        tol,
                        &format!("{what}: dL/dx"),
                    );
                    for (l, g) in grads.iter().enumerate() {
                        let want = &cap.layer_grads.as_ref().unwrap()[l];
                        close(
                            g.as_slice().unwrap(),
                            want.as_slice().unwrap(),
                            tol,
                            &format!("{what}: dL/dh_{l}"),
                        );
                        assert!(
                            (frobenius_dense(g) - cap.layers[l].grad_norm).abs()
                                <= tol * cap.layers[l].grad_norm.max(1e-30)
                        );
                    }
                    // Forward mode gives the same df_L/dx for every L from one pass.
                    let Ok(sweep) = &sweep else { continue };
                    close(
                        sweep.row(depth).as_slice().unwrap(),
                        cap.input_grads.column(0).to_vec().as_slice(),
                        1e-10,
                        &format!("{what}: tangent"),
                    );
                }
            }
        }
    }
}

#[test]
fn f32_agrees_to_rounding_and_a_dtype_mismatch_is_refused() {
    let x = scalar_grid(64, -2.0, 2.0);
    let m = net(Arch::RESNET_BN, Activation::Relu, Precision::F32);
    let dense = DenseMlp::<f32>::from_mlp(&m, BnMode::PerSample).unwrap();
    let fwd = dense.forward(x.mapv(|v| v as f32).view());
    let (_, dx) = dense.backward(&fwd, m.depth());
    let cap = capture(&m, x.view(), &CaptureOpts::default()).unwrap();
    let dx: Vec<f64> = dx.iter().map(|v| *v as f64).collect();
    close(&dx, cap.input_grads.as_slice().unwrap(), 1e-4, "f32 dL/dx");
    assert!(
        DenseMlp::<f64>::from_mlp(&m, BnMode::PerSample).is_err(),
        "dtype mismatch is refused"
    );
    // A vector input and a direction: D_v f = (∂f/∂x)·v.
    let p = NetParams {
        arch: Arch::RESNET,
        depth: 3,
        width: 8,
        input_dim: 3,
        output_dim: 2,
        precision: Precision::F64,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    let xs = Array2::from_shape_fn((5, 3), |(i, j)| (i as f64 - 2.0) * 0.4 + j as f64 * 0.1);
    let dense = DenseMlp::<f64>::from_mlp(&m, BnMode::PerSample).unwrap();
    let v = [0.3, -1.0, 0.5];
    let sweep = dense.tangent_sweep(xs.view(), &v).unwrap();
    let cap = capture(&m, xs.view(), &CaptureOpts::default()).unwrap();
    let want: Vec<f64> = cap
        .input_grads
        .rows()
        .into_iter()
        .map(|r| r.iter().zip(&v).map(|(a, b)| a * b).sum())
        .collect();
    close(
        sweep.row(3).as_slice().unwrap(),
        &want,
        1e-10,
        "directional derivative",
    );
}

#[test]
fn parameter_gradients_and_per_example_grams_equal_the_naive_computation() {
    use gradscope_probe::dense::Want;
    let x = Array2::from_shape_fn((7, 3), |(i, j)| ((i * 5 + j * 3) % 7) as f64 / 3.0 - 1.0);
    for arch in archs() {
        let p = NetParams {
            arch,
            depth: 3,
            width: 6,
            input_dim: 3,
            output_dim: 2,
            bias_init: BiasInit::Normal { std: 0.2 },
            precision: Precision::F64,
            seed: 8,
            ..Default::default()
        };
        let m = Mlp::new(&p.check().unwrap()).unwrap();
        perturb_vectors(&m);
        // Per-sample BN holds the batch statistics fixed: eval mode on calibrated statistics.
        let xt = Tensor::from_iter(x.iter().copied(), &Device::Cpu)
            .unwrap()
            .reshape((7, 3))
            .unwrap();
        m.calibrate_batch_norm(&xt).unwrap();
        let dense = DenseMlp::<f64>::from_mlp(&m, BnMode::PerSample).unwrap();
        let fwd = dense.forward_keeping(x.view(), true);
        // A per-example loss gradient with distinct rows.
        let out_grad = Array2::from_shape_fn((7, 2), |(i, k)| {
            (i as f64 + 1.0) * if k == 0 { 1.0 } else { -0.5 }
        });
        let got = dense.backward_with(
            &fwd,
            3,
            Some(out_grad.view()),
            Want {
                params: true,
                gram: true,
                ..Want::default()
            },
        );

        // Whole-batch gradients from candle: L = Σᵢₖ out_grad[i,k]·f_k(xᵢ).
        let w = Tensor::from_iter(out_grad.iter().copied(), &Device::Cpu)
            .unwrap()
            .reshape((7, 2))
            .unwrap();
        let params = candle_param_grads(&m, &xt, &w, BnMode::Eval);
        assert_same_grads(&got.params, &params, arch);

        // Naive per-example gradients, one backward pass each, grouped by layer.
        let per_example: Vec<Vec<(String, Vec<f64>)>> = (0..7)
            .map(|i| {
                let (xi, wi) = (xt.narrow(0, i, 1).unwrap(), w.narrow(0, i, 1).unwrap());
                candle_param_grads(&m, &xi, &wi, BnMode::Eval)
            })
            .collect();
        for (layer, gram) in &got.gram {
            for i in 0..7 {
                for j in 0..7 {
                    let dot: f64 = per_example[i]
                        .iter()
                        .zip(&per_example[j])
                        .filter(|((n, _), _)| {
                            n.rsplit_once('.').map(|(l, _)| l) == Some(layer.as_str())
                        })
                        .map(|((_, a), (_, b))| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>())
                        .sum();
                    // On the scale of |gᵢ||gⱼ| (Cauchy–Schwarz), as entries can cancel to ~0.
                    let scale = (gram[[i, i]] * gram[[j, j]]).sqrt().max(1e-300);
                    assert!(
                        (gram[[i, j]] - dot).abs() <= 1e-10 * scale,
                        "{arch} {layer} [{i},{j}]: {} vs {dot}",
                        gram[[i, j]]
                    );
                }
            }
        }
        let layers_with_params: std::collections::BTreeSet<&str> = params
            .iter()
            .map(|(n, _)| n.rsplit_once('.').unwrap().0)
            .collect();
        assert_eq!(
            got.gram.len(),
            layers_with_params.len(),
            "{arch}: one Gram per layer with parameters"
        );
    }
}

/// Training mode: the loss gradient of every parameter through the batch
/// statistics, the running-statistics update, and the write-back into the
/// candle net equal candle's training step.
#[test]
fn training_mode_gradients_running_statistics_and_write_back_equal_candle() {
    use gradscope_probe::dense::Want;
    let x = Array2::from_shape_fn((9, 3), |(i, j)| ((i * 7 + j * 5) % 9) as f64 / 4.0 - 1.0);
    let xt = Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape((9, 3))
        .unwrap();
    let out_grad = Array2::from_shape_fn((9, 2), |(i, k)| (i as f64 - 4.0) * 0.3 + k as f64);
    let w = Tensor::from_iter(out_grad.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape((9, 2))
        .unwrap();
    for arch in archs() {
        let p = NetParams {
            arch,
            depth: 3,
            width: 6,
            input_dim: 3,
            output_dim: 2,
            bias_init: BiasInit::Normal { std: 0.2 },
            precision: Precision::F64,
            seed: 5,
            ..Default::default()
        };
        let (candle_net, dense_net) = (
            Mlp::new(&p.check().unwrap()).unwrap(),
            Mlp::new(&p.check().unwrap()).unwrap(),
        );
        perturb_vectors(&candle_net);
        perturb_vectors(&dense_net);
        let mut dense = DenseMlp::<f64>::from_mlp(&dense_net, BnMode::Train).unwrap();
        let fwd = dense.forward_keeping(x.view(), true);
        let got = dense.backward_with(
            &fwd,
            3,
            Some(out_grad.view()),
            Want {
                params: true,
                ..Want::default()
            },
        );
        let want = candle_param_grads(&candle_net, &xt, &w, BnMode::Train);
        assert_same_grads(&got.params, &want, arch);
        // One SGD step by hand on both, then the running statistics and the
        // written-back net.
        for ((_, slot), (_, g)) in dense.params_mut().into_iter().zip(&got.params) {
            slot.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g);
        }
        for ((_, var), (_, g)) in candle_net.parameters().iter().zip(&want) {
            let g = Tensor::from_slice(g, var.shape(), var.device()).unwrap();
            var.set(&(var.as_tensor() - (g * 0.1).unwrap()).unwrap())
                .unwrap();
        }
        dense.update_running_stats(&fwd);
        dense.write_to(&dense_net).unwrap();
        // Every entry is O(0.1–1) but the running means of the first BN,
        // whose inputs are centred: there both are rounding noise.
        for ((name, a), (_, b)) in dense_net.state_dict().iter().zip(candle_net.state_dict()) {
            close_above(
                &flat(a.as_tensor()),
                &flat(b.as_tensor()),
                1e-12,
                1e-3,
                &format!("{arch} {name} after a step"),
            );
        }
        // Eval mode on the updated running statistics.
        dense.set_mode(BnMode::Eval);
        let out = dense.output(&dense.forward(x.view()), 3);
        let want = candle_net
            .forward(&xt, BnMode::Eval)
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        let want: Vec<f64> = want.into_iter().flatten().collect();
        close(
            out.as_slice().unwrap(),
            &want,
            1e-12,
            &format!("{arch} eval output"),
        );
    }
}

/// Lesions (Veit et al. 2016): blocks deleted and reordered on the dense path
/// give the outputs of the candle net run block by block the same way.
#[test]
fn lesioned_outputs_equal_the_candle_blocks() {
    use gradscope_nets::BlockNet;
    let x = Array2::from_shape_fn((11, 3), |(i, j)| ((i * 3 + j * 7) % 11) as f64 / 5.0 - 1.0);
    let xt = Tensor::from_iter(x.iter().copied(), &Device::Cpu)
        .unwrap()
        .reshape((11, 3))
        .unwrap();
    for arch in ["plain-bn", "resnet-bn", "resnet", "resnet-bn:alpha=0.5"] {
        let p = NetParams {
            arch: arch.parse().unwrap(),
            depth: 5,
            width: 7,
            input_dim: 3,
            output_dim: 4,
            bias_init: BiasInit::Normal { std: 0.2 },
            precision: Precision::F64,
            seed: 2,
            ..Default::default()
        };
        let m = Mlp::new(&p.check().unwrap()).unwrap();
        m.calibrate_batch_norm(&xt).unwrap();
        let dense = DenseMlp::<f64>::from_mlp(&m, BnMode::Eval).unwrap();
        let cases: [(&[usize], &[bool]); 4] = [
            (&[0, 1, 2, 3, 4], &[false; 5]),
            (&[0, 1, 2, 3, 4], &[false, true, false, false, true]),
            (&[0, 2, 1, 3, 4], &[false; 5]),
            (&[4, 3, 2, 1, 0], &[true, false, false, true, false]),
        ];
        for (order, deleted) in cases {
            let mut h = m.stem_forward(&xt, BnMode::Eval).unwrap();
            for &b in order {
                h = if deleted[b] {
                    match m.block_parts(b, &h, BnMode::Eval).unwrap() {
                        Some((_, s)) => m.block_post(b, &s).unwrap(),
                        None => h,
                    }
                } else {
                    m.block_forward(b, &h, BnMode::Eval).unwrap()
                };
            }
            let want: Vec<f64> = m
                .head_forward(&h, BnMode::Eval)
                .unwrap()
                .to_vec2::<f64>()
                .unwrap()
                .into_iter()
                .flatten()
                .collect();
            let got = dense.lesioned_output(x.view(), order, deleted);
            close(
                got.as_slice().unwrap(),
                &want,
                1e-12,
                &format!("{arch} order {order:?} deleted {deleted:?}"),
            );
        }
    }
}

/// Two captures agree: outputs, input gradients, every layer's norms and
/// gradients, every parameter's norms, and the faults.
fn assert_same_capture(
    a: &gradscope_probe::Capture,
    b: &gradscope_probe::Capture,
    tol: f64,
    what: &str,
) {
    close(
        a.output.as_slice().unwrap(),
        b.output.as_slice().unwrap(),
        tol,
        &format!("{what}: output"),
    );
    close(
        a.input_grads.as_slice().unwrap(),
        b.input_grads.as_slice().unwrap(),
        tol,
        &format!("{what}: dL/dx"),
    );
    assert_eq!(a.layers.len(), b.layers.len(), "{what}");
    for (x, y) in a.layers.iter().zip(&b.layers) {
        assert_eq!(x.name, y.name, "{what}");
        close(
            &[x.activation_norm],
            &[y.activation_norm],
            tol,
            &format!("{what}: ‖{}‖", x.name),
        );
        close(
            &[x.grad_norm],
            &[y.grad_norm],
            tol,
            &format!("{what}: ‖∂L/∂{}‖", x.name),
        );
    }
    match (&a.layer_grads, &b.layer_grads) {
        (Some(ga), Some(gb)) => {
            for (l, (x, y)) in ga.iter().zip(gb).enumerate() {
                close(
                    x.as_slice().unwrap(),
                    y.as_slice().unwrap(),
                    tol,
                    &format!("{what}: dL/dh_{l}"),
                );
            }
        }
        (None, None) => {}
        _ => panic!("{what}: layer gradients kept by one capture only"),
    }
    let mut pa: Vec<_> = a
        .params
        .iter()
        .map(|p| (&p.name, p.value_norm, p.grad_norm, p.has_grad))
        .collect();
    let mut pb: Vec<_> = b
        .params
        .iter()
        .map(|p| (&p.name, p.value_norm, p.grad_norm, p.has_grad))
        .collect();
    pa.sort_by(|x, y| x.0.cmp(y.0));
    pb.sort_by(|x, y| x.0.cmp(y.0));
    assert_eq!(pa.len(), pb.len(), "{what}: parameters");
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!((x.0, x.3), (y.0, y.3), "{what}");
        close(
            &[x.1, x.2],
            &[y.1, y.2],
            tol,
            &format!("{what}: ‖{}‖, ‖∂L/∂{}‖", x.0, x.0),
        );
    }
    assert_eq!(a.faults, b.faults, "{what}: faults");
}

#[test]
fn capture_fast_equals_the_candle_capture() {
    use gradscope_probe::capture_fast;
    let x = scalar_grid(24, -2.0, 2.0);
    let mut archs = archs();
    // Blocks the dense path does not cover: capture_fast falls back to candle.
    archs.extend(
        ["resnet:skip=proj", "resnet:skip=dropout(0.1)"]
            .iter()
            .map(|s| s.parse::<Arch>().unwrap()),
    );
    for arch in archs {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            for mode in [BnMode::PerSample, BnMode::Full] {
                let m = net(arch, act, Precision::F64);
                for (depth, keep, param_grads) in [
                    (None, false, true),
                    (Some(3), true, true),
                    (Some(3), false, false),
                ] {
                    let opts = CaptureOpts {
                        bn_mode: mode,
                        depth,
                        keep_layer_grads: keep,
                        param_grads,
                    };
                    let tol = if mode == BnMode::Full { 1e-8 } else { 1e-10 };
                    let fast = capture_fast(&m, x.view(), &opts).unwrap();
                    let slow = capture(&m, x.view(), &opts).unwrap();
                    assert_eq!(fast.params.is_empty(), !param_grads, "{arch}");
                    assert_eq!(slow.params.is_empty(), !param_grads, "{arch}");
                    assert_same_capture(
                        &fast,
                        &slow,
                        tol,
                        &format!("{arch} {act} {mode} {depth:?}"),
                    );
                }
            }
        }
    }
    // f32, and an overflow: the same faults, at the same layers.
    let p = NetParams {
        arch: Arch::PLAIN,
        depth: 40,
        width: 16,
        weight_init: gradscope_nets::WeightInit::Normal { sigma_w2: 400.0 },
        precision: Precision::F32,
        seed: 1,
        ..Default::default()
    };
    let m = Mlp::new(&p.check().unwrap()).unwrap();
    let fast = capture_fast(&m, x.view(), &CaptureOpts::default()).unwrap();
    let slow = capture(&m, x.view(), &CaptureOpts::default()).unwrap();
    assert!(
        !slow.faults.is_empty(),
        "a gain of about 14 per layer over 40 layers overflows f32"
    );
    assert_eq!(fast.faults, slow.faults);
    let finite = |c: &gradscope_probe::Capture| -> Vec<f64> {
        c.layers
            .iter()
            .map(|l| l.activation_norm)
            .filter(|v| v.is_finite())
            .collect()
    };
    close(
        &finite(&fast),
        &finite(&slow),
        1e-5,
        "f32 ‖h_l‖ before the overflow",
    );
    // Bad inputs are errors on every path, not panics.
    let two_cols = Array2::<f64>::zeros((4, 2));
    assert!(capture_fast(&m, two_cols.view(), &CaptureOpts::default()).is_err());
    assert!(gradscope_probe::capture_depths(&m, two_cols.view(), &[1], BnMode::PerSample).is_err());
    let too_deep = CaptureOpts {
        depth: Some(41),
        ..Default::default()
    };
    assert!(capture_fast(&m, x.view(), &too_deep).is_err());
}

/// A net built for one pass (W's transposed view in the forward products)
/// gives the outputs, gradients and tangents of one that keeps Wᵀ row-major,
/// to rounding; and each gives the same on a second pass (no pass sees the
/// other layout).
#[test]
fn a_net_for_one_pass_equals_the_net_that_keeps_w_transposed() {
    let x = scalar_grid(48, -2.0, 2.0);
    for arch in archs() {
        let m = net(arch, Activation::Tanh, Precision::F64);
        let kept = DenseMlp::<f64>::from_mlp(&m, BnMode::PerSample).unwrap();
        let once = DenseMlp::<f64>::for_one_pass(&m, BnMode::PerSample).unwrap();
        let (fk, fo) = (kept.forward(x.view()), once.forward(x.view()));
        let depth = m.depth();
        let (ok, oo) = (kept.output(&fk, depth), once.output(&fo, depth));
        close(
            oo.as_slice().unwrap(),
            ok.as_slice().unwrap(),
            1e-12,
            &format!("{arch} f"),
        );
        let ((_, dk), (_, d_o)) = (kept.backward(&fk, depth), once.backward(&fo, depth));
        close(
            d_o.as_slice().unwrap(),
            dk.as_slice().unwrap(),
            1e-12,
            &format!("{arch} df/dx"),
        );
        let (tk, to) = (
            kept.tangent_sweep(x.view(), &[1.0]).unwrap(),
            once.tangent_sweep(x.view(), &[1.0]).unwrap(),
        );
        close(
            to.as_slice().unwrap(),
            tk.as_slice().unwrap(),
            1e-12,
            &format!("{arch} tangent"),
        );
        let again = kept.output(&kept.forward(x.view()), depth);
        assert_eq!(again, ok, "{arch}: a second pass of the kept-copy net");
        let again = once.output(&once.forward(x.view()), depth);
        assert_eq!(again, oo, "{arch}: a second pass of the one-pass net");
    }
    let m = net(Arch::RESNET_BN, Activation::Relu, Precision::F32);
    let x32 = x.mapv(|v| v as f32);
    let kept = DenseMlp::<f32>::from_mlp(&m, BnMode::PerSample).unwrap();
    let once = DenseMlp::<f32>::for_one_pass(&m, BnMode::PerSample).unwrap();
    let (fk, fo) = (kept.forward(x32.view()), once.forward(x32.view()));
    let ((_, dk), (_, d_o)) = (kept.backward(&fk, m.depth()), once.backward(&fo, m.depth()));
    let f = |a: &Array2<f32>| a.iter().map(|&v| v as f64).collect::<Vec<_>>();
    close(&f(&d_o), &f(&dk), 1e-5, "f32 df/dx");
}
