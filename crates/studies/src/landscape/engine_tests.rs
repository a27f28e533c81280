//! The landscape's measures on real nets: the surface's origin, the
//! curvature along a direction, and a measured training run against the
//! training code's own run.

use gradscope_engine::{Curvature, Options, Real, for_net};
use gradscope_nets::{Activation, Arch, BnMode, Mlp, Model, Net, NetParams, Precision};
use gradscope_train::{Examples, TrainParams, Trainer, cross_entropy_gradient};

use super::directions::filter_normalised;
use super::objective::{EngineLoss, Objective, dot};
use super::smoothness::train_measured;
use super::surface::{second_difference, surface, symmetric_grid};

fn digits() -> Examples {
    let (train, _) = crate::data::load(&crate::data::DataSource::Digits).unwrap();
    train.reshaped(vec![64]).unwrap()
}

fn net(arch: Arch, activation: Activation, precision: Precision, seed: u64) -> Net {
    let p = NetParams {
        arch,
        depth: 2,
        width: 12,
        input_dim: 64,
        output_dim: 10,
        activation,
        precision,
        seed,
        ..NetParams::default()
    };
    Net::Mlp(Mlp::new(&p.check().unwrap()).unwrap())
}

/// The batch's mean cross-entropy on a fresh engine that never had its
/// parameters set: the current loss.
fn current_loss<T: Real>(net: &Net, x: &ndarray::Array2<T>, y: &[u32]) -> f64 {
    let e = for_net::<T>(net, Options::once(BnMode::Full)).unwrap();
    let fwd = e.forward(x.view(), false).unwrap();
    let mut z = e.output(&fwd, e.depth()).unwrap();
    let l = cross_entropy_gradient(&mut z, y);
    l.iter().sum::<f64>() / l.len() as f64
}

fn origin_is_current_loss<T: Real>(precision: Precision) {
    let data = digits();
    let idx: Vec<usize> = (0..96).collect();
    for arch in [Arch::PLAIN, Arch::RESNET_BN] {
        let net = net(arch, Activation::Relu, precision, 3);
        let (x, y) = data.matrix::<T>(&idx);
        let want = current_loss(&net, &x, &y);
        let mut e = for_net::<T>(&net, Options::repeated(BnMode::Train)).unwrap();
        let mut obj = EngineLoss::new(e.as_mut(), x, y, BnMode::Full).unwrap();
        let theta = obj.origin().to_vec();
        let d1 = filter_normalised(obj.layout(), &theta, 1);
        let d2 = filter_normalised(obj.layout(), &theta, 2);
        let g = symmetric_grid(5, 1.0);
        // Row by row, the origin comes after points that moved every weight.
        let s = surface(&mut obj, &theta, (&d1, &d2), &g, &g).unwrap();
        assert_eq!(s[(2, 2)], want, "{arch}");
        assert!(s.iter().all(|v| v.is_finite()));
        assert!(s[(0, 0)] != want && s[(4, 4)] != want);
        obj.restore().unwrap();
        assert_eq!(obj.loss(&theta).unwrap(), want);
    }
}

#[test]
fn a_surface_through_the_current_weights_takes_the_current_loss_at_its_origin() {
    origin_is_current_loss::<f64>(Precision::F64);
    origin_is_current_loss::<f32>(Precision::F32);
}

#[test]
fn the_second_difference_converges_to_the_exact_curvature() {
    let data = digits();
    let idx: Vec<usize> = (100..228).collect();
    // tanh keeps the loss smooth along the line (ReLU nets are smooth
    // only between kinks); BN in full mode couples the batch.
    for arch in [Arch::PLAIN_BN, Arch::RESNET_BN, Arch::RESNET] {
        let net = net(arch, Activation::Tanh, Precision::F64, 5);
        let (x, y) = data.matrix::<f64>(&idx);
        let mut hessian = Curvature::<f64>::new(&net, BnMode::Full, x.view(), &y).unwrap();
        let mut e = for_net::<f64>(&net, Options::once(BnMode::Full)).unwrap();
        let mut obj = EngineLoss::new(e.as_mut(), x, y, BnMode::Full).unwrap();
        let theta = obj.origin().to_vec();
        assert_eq!(hessian.parameters(), theta, "{arch}: one parameter order");
        let d = filter_normalised(obj.layout(), &theta, 9);
        // dᵀHd from the exact Hessian-vector product the study uses.
        let kappa = dot(&d, &hessian.hvp(&d).unwrap());
        let errs: Vec<f64> = [1e-1, 1e-2, 1e-3, 1e-4]
            .iter()
            .map(|&h| (second_difference(&mut obj, &theta, &d, h).unwrap() - kappa).abs())
            .collect();
        assert!(kappa.abs() > 1e-3, "{arch}: κ = {kappa}");
        // O(h²): a decade of h takes about two decades off the error.
        for k in 1..3 {
            assert!(errs[k] < errs[k - 1] / 30.0, "{arch}: {errs:?} κ = {kappa}");
        }
        assert!(errs[3] < 1e-6 * kappa.abs(), "{arch}: {errs:?} κ = {kappa}");
    }
}

#[test]
fn a_measured_run_ends_with_the_weights_of_the_training_codes_run() {
    let data = digits();
    let small = data.select(&(0..200).collect::<Vec<_>>());
    let params = TrainParams {
        epochs: 2,
        batch_size: 64,
        probe_points: 0,
        similarity_examples: 0,
        ..TrainParams::default()
    };
    let config = params.check(small.len()).unwrap();
    for arch in [Arch::PLAIN, Arch::RESNET_BN] {
        let (a, b) = (
            net(arch, Activation::Relu, Precision::F64, 11),
            net(arch, Activation::Relu, Precision::F64, 11),
        );
        Trainer {
            model: &a,
            label: "a".into(),
            config: &config,
            train: &small,
            test: &small,
            checkpoint: None,
            cancel: None,
            observer: None,
        }
        .run()
        .unwrap();
        let mut e = for_net::<f64>(&b, Options::repeated(BnMode::Train)).unwrap();
        let run = train_measured(e.as_mut(), &small, &config, 2, &[0.05, 0.2]).unwrap();
        e.sync().unwrap();
        assert_eq!(run.measured_at, vec![0, 2, 4, 6]);
        assert_eq!(run.step_losses.len(), 8);
        assert!(run.measures.iter().all(|m| m.loss.is_finite()
            && m.grad_norm > 0.0
            && m.gradient_changes.iter().all(|c| *c > 0.0)));
        // The measured loss is the step's own: its batch, BN on its statistics.
        for (m, &s) in run.measures.iter().zip(&run.measured_at) {
            assert_eq!(m.loss, run.step_losses[s], "{arch} step {s}");
        }
        for ((na, va), (nb, vb)) in a.parameters().iter().zip(b.parameters().iter()) {
            assert_eq!(na, nb);
            let (va, vb) = (
                va.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                vb.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            );
            assert_eq!(va, vb, "{arch}: {na}");
        }
    }
}
