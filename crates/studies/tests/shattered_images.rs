//! The shattered study on images: conv nets' ∂f/∂x along the path between
//! two embedded digits is the derivative of f (finite differences), the
//! plain net's r₁ falls with depth faster than the residual net's, and bad
//! image settings are one-line errors.

use gradscope_nets::{Arch, BnMode};
use gradscope_probe::{CaptureOpts, capture};
use gradscope_spec::{ConvArch, DataSource, ModelArch};
use gradscope_studies::Params;
use gradscope_studies::RunOptions;
use gradscope_studies::shattered::{ShatteredParams, images};
use ndarray::Array2;

const PLAIN: ModelArch = ModelArch::Conv(ConvArch::PLAIN);
const RESNET: ModelArch = ModelArch::Conv(ConvArch::RESNET);

/// A small 1-D part (the study needs one) beside the nets on images.
fn on_images(depths: Vec<usize>, seeds: usize) -> ShatteredParams {
    ShatteredParams {
        archs: vec![Arch::PLAIN],
        depths: vec![1],
        width: 8,
        points: 16,
        seeds,
        image_archs: vec![PLAIN, RESNET],
        image_depths: depths,
        image_points: 128,
        image_plane_side: 0,
        ..Default::default()
    }
}

/// With BN's gradient taken through the path's statistics (`full`), the
/// run's ∂f/∂x at point i is ∂/∂xᵢ of Σⱼ f(xⱼ) over the path: the central
/// difference of that sum. (Per-sample mode holds the statistics constant,
/// which no finite difference of f reproduces; eval mode's fixed statistics
/// leave ReLU inputs at exactly 0 on the digits' blank border, where f has a
/// kink.)
#[test]
fn path_gradients_are_the_derivatives_of_f() {
    let config = ShatteredParams {
        bn_mode: BnMode::Full,
        ..on_images(vec![8], 1)
    }
    .check()
    .unwrap();
    let res = config.run(&RunOptions::with_threads(2)).unwrap();
    let g = &res.images.as_ref().unwrap().gradients;
    let setup = config.images().unwrap();
    let (_, path) = setup.path(128);
    let p = config.params();
    let opts = CaptureOpts {
        bn_mode: BnMode::Full,
        param_grads: false,
        ..Default::default()
    };
    for (a, &arch) in p.image_archs.iter().enumerate() {
        let net = images::net(p, arch, 8, setup.shape(), config.net_seed(0)).unwrap();
        let total = |x: &Array2<f64>| capture(&net, x.view(), &opts).unwrap().output.sum();
        for i in [0, 37, 127] {
            // Pixels of the digits' strokes and of their blank border.
            for j in [0, 19, 27, 36, 63] {
                // Small enough that no ReLU input crosses 0 (1e-5 met a kink);
                // measured errors ≤ 1.7e-7.
                let h = 1e-7;
                let (mut up, mut down) = (path.clone(), path.clone());
                up[[i, j]] += h;
                down[[i, j]] -= h;
                let fd = (total(&up) - total(&down)) / (2.0 * h);
                let want = g[[a, 0, i, j]];
                assert!(
                    (fd - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{arch} point {i} pixel {j}: finite difference {fd} vs gradient {want}"
                );
            }
        }
    }
}

#[test]
fn on_digits_the_plain_conv_net_shatters_with_depth_faster_than_the_residual_one() {
    let res = on_images(vec![8, 20, 56], 4)
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    let summary = res.summary.images.as_ref().unwrap();
    let r1 = |arch: ModelArch, depth: usize| {
        summary
            .results
            .iter()
            .find(|r| r.arch == arch.to_string() && r.depth == depth)
            .unwrap()
            .adjacent_correlation
    };
    // Measured (4 seeds, 128 points between digits 0 and 1 of the test split):
    // r₁ plain 0.934 / 0.573 / 0.017 and resnet 0.948 / 0.887 / 0.783 at
    // depths 8 / 20 / 56, so the plain net falls by 0.92 and the resnet by 0.17.
    let fall = |arch| r1(arch, 8).mean - r1(arch, 56).mean;
    assert!(
        fall(PLAIN) > fall(RESNET) + 0.5,
        "falls: plain {} vs resnet {}",
        fall(PLAIN),
        fall(RESNET)
    );
    // The plain net is white noise by depth 56 (white noise's r₁ ≈ 0); the resnet is not.
    assert!(r1(PLAIN, 56).mean.abs() < 0.1, "{:?}", r1(PLAIN, 56));
    assert!(r1(RESNET, 56).mean > 0.6, "{:?}", r1(RESNET, 56));
    // Both start smooth.
    for arch in [PLAIN, RESNET] {
        assert!(r1(arch, 8).mean > 0.85, "{arch}: {:?}", r1(arch, 8));
    }
}

#[test]
fn bad_image_settings_are_one_line_errors() {
    let ok = ShatteredParams::quick();
    let cases: Vec<(ShatteredParams, &str)> = vec![
        (
            ShatteredParams {
                image_depths: vec![8, 9],
                ..ok.clone()
            },
            "6n + 2",
        ),
        (
            ShatteredParams {
                image_pair: vec![3, 3],
                ..ok.clone()
            },
            "image_pair",
        ),
        (
            ShatteredParams {
                image_pair: vec![0, 100_000],
                ..ok.clone()
            },
            "below",
        ),
        (
            ShatteredParams {
                image_pair: vec![0],
                ..ok.clone()
            },
            "two image indices",
        ),
        (
            ShatteredParams {
                image_points: 4,
                ..ok.clone()
            },
            "image_points",
        ),
        (
            ShatteredParams {
                image_data: DataSource::Mnist("/nonexistent/mnist".into()),
                ..ok.clone()
            },
            "nonexistent",
        ),
        (
            ShatteredParams {
                image_archs: vec![PLAIN, PLAIN],
                ..ok.clone()
            },
            "twice",
        ),
    ];
    for (p, needle) in cases {
        let e = p.check().map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains(needle) && !e.contains('\n'),
            "expected `{needle}` in: {e}"
        );
    }
}
