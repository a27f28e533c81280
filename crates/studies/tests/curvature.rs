//! The curvature study end to end on nets small enough to form the whole
//! Hessian: H e_i for every unit vector e_i gives H densely, and its
//! eigendecomposition is what the study's Lanczos, Hutchinson and
//! quadrature numbers must agree with.

use gradscope_engine::Curvature;
use gradscope_nets::{Arch, BnMode};
use gradscope_spec::{ModelArch, TrainParams};
use gradscope_stats::symmetric_eigen;
use gradscope_studies::RunOptions;
use gradscope_studies::curvature::{Cell, CurvatureParams, read_density, read_summary};
use gradscope_studies::{Params, Study};
use ndarray::Array2;

#[test]
fn lanczos_trace_and_density_match_the_dense_hessian() {
    let p = CurvatureParams {
        archs: vec![ModelArch::Mlp(Arch::PLAIN), ModelArch::Mlp(Arch::RESNET_BN)],
        depths: vec![2],
        width: 4,
        seeds: 1,
        batch: 32,
        train: TrainParams {
            epochs: 0,
            ..CurvatureParams::default().train
        },
        top_k: 3,
        lanczos_steps: 60,
        lanczos_tol: 1e-6,
        trace_probes: 64,
        density_probes: 8,
        density_steps: 40,
        ..CurvatureParams::default()
    };
    let config = p.check().unwrap();
    let results = config.run(&RunOptions::with_threads(2)).unwrap();
    let cells = config.cells();
    assert_eq!(results.nets.len(), cells.len());
    let mut misses = 0;
    for (cell, (key, net)) in cells.iter().zip(&results.nets) {
        let h = &net.phases[0];
        let dense = dense_hessian(&config, cell);
        let n = dense.nrows();
        assert_eq!(n, net.parameters, "{key}");
        let eig = symmetric_eigen(&dense).unwrap();
        let exact_top: Vec<f64> = eig.values.iter().rev().take(3).cloned().collect();
        let exact_trace: f64 = eig.values.iter().sum();
        // Lanczos: the top three to 1e-6 relative, converged, with its residuals.
        assert!(h.converged, "{key}: {:?}", h.residuals);
        assert!(h.lanczos_iterations <= 60 && h.lanczos_iterations >= 3);
        assert_eq!(h.top_history.len(), h.lanczos_iterations);
        for (got, want) in h.top.iter().zip(&exact_top) {
            assert!(
                (got - want).abs() <= 1e-6 * exact_top[0].abs(),
                "{key}: Lanczos {:?}, dense {exact_top:?}",
                h.top
            );
        }
        // Hutchinson: an unbiased estimate, so within 3.5 standard errors.
        assert!(h.trace_se > 0.0);
        let z = (h.trace - exact_trace) / h.trace_se;
        assert!(
            z.abs() < 3.5,
            "{key}: trace {} ± {}, dense {exact_trace}",
            h.trace,
            h.trace_se
        );
        misses += usize::from(z.abs() > 2.0);
        // Quadrature: each probe's weights sum to 1 and its nodes lie in the spectrum.
        let (lo, hi) = (eig.values[0], eig.values[n - 1]);
        for (x, w) in h.density_nodes.iter().zip(&h.density_weights) {
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{key}");
            let slack = 1e-8 * (hi - lo);
            assert!(x.iter().all(|v| *v >= lo - slack && *v <= hi + slack));
        }
        // Its negative mass (a ratio of two quadrature estimates, noisy with 8
        // probes) is the dense one's to within a quarter.
        let neg: f64 = eig.values.iter().filter(|v| **v < 0.0).map(|v| -v).sum();
        let abs: f64 = eig.values.iter().map(|v| v.abs()).sum();
        assert!(
            (h.negative_mass - neg / abs).abs() < 0.25,
            "{key}: negative mass {} vs dense {}",
            h.negative_mass,
            neg / abs
        );
        // The loss is the one the engine computes on the same batch.
        let (net_, (x, y)) = config.problem(cell).unwrap();
        let mut c = Curvature::<f64>::new(&net_, BnMode::Train, x.view(), &y).unwrap();
        assert_eq!(c.loss_gradient().unwrap().0, h.loss);
    }
    assert!(misses <= 1, "{misses} of 2 traces beyond 2 s.e.");
    // Written and read back: the densities integrate to 1 on their grids.
    let tmp = tempfile::tempdir().unwrap();
    results.write(tmp.path()).unwrap();
    let s = read_summary(tmp.path()).unwrap();
    let d = read_density(tmp.path(), &s).unwrap();
    for (g, row) in s.density_grids.iter().zip(d.rows()) {
        let step = (g.hi - g.lo) / (row.len() - 1) as f64;
        let integral: f64 = row.iter().sum::<f64>() * step;
        assert!((integral - 1.0).abs() < 1e-3, "{}: ∫ = {integral}", g.arch);
    }
    assert_eq!(s.points.len(), 2);
}

#[test]
fn conv_nets_are_accepted_and_a_conv_depth_that_is_not_6n_plus_2_is_refused() {
    let conv = |depth| CurvatureParams {
        archs: vec![
            "conv-plain".parse().unwrap(),
            "conv-resnet".parse().unwrap(),
        ],
        depths: vec![depth],
        ..CurvatureParams::default()
    };
    let config = conv(8).check().unwrap();
    // The loss of a conv cell is the one its engine computes, on images.
    let (net, (x, y)) = config.problem(&config.cells()[1]).unwrap();
    assert_eq!(net.input_dims(), vec![1, 8, 8]);
    let mut c = Curvature::<f64>::new(&net, BnMode::Train, x.view(), &y).unwrap();
    let (loss, _) = c.loss_gradient().unwrap();
    // Ten classes at initialisation: near ln 10.
    assert!((loss - 10f64.ln()).abs() < 1.0, "loss {loss}");
    let err = conv(9).check().unwrap_err().to_string();
    assert!(err.contains("6n") || err.contains("6·n"), "{err}");
}

/// H of the study's loss for `cell`, column i = H e_i.
fn dense_hessian(
    config: &gradscope_studies::curvature::CurvatureConfig,
    cell: &Cell,
) -> Array2<f64> {
    let (net, (x, y)) = config.problem(cell).unwrap();
    let mut c = Curvature::<f64>::new(&net, BnMode::Train, x.view(), &y).unwrap();
    let n = c.dim();
    let mut h = Array2::zeros((n, n));
    let mut e = vec![0.0; n];
    for i in 0..n {
        e[i] = 1.0;
        let col = c.hvp(&e).unwrap();
        e[i] = 0.0;
        for (j, v) in col.into_iter().enumerate() {
            h[[j, i]] = v;
        }
    }
    // Symmetric to rounding (BN in training mode keeps the batch's loss a
    // function of the parameters alone).
    let asym = (&h - &h.t()).iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scale = h.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(asym <= 1e-9 * scale, "asymmetry {asym} of {scale}");
    h
}
