//! The shattered study over a plane of images: the grid's corners are the
//! three test images exactly, its pictures are the directional derivatives
//! of f (central finite differences), the plane's files read back with
//! their shapes, and bad plane settings are one-line errors.

use gradscope_nets::{Arch, BnMode};
use gradscope_probe::{CaptureOpts, capture};
use gradscope_spec::{ConvArch, DataSource, ModelArch};
use gradscope_studies::Params;
use gradscope_studies::RunOptions;
use gradscope_studies::shattered::{ShatteredData, ShatteredParams, images};
use ndarray::{Array2, s};

const PLAIN: ModelArch = ModelArch::Conv(ConvArch::PLAIN);
const RESNET: ModelArch = ModelArch::Conv(ConvArch::RESNET);

/// A small 1-D part and path (the study needs them) beside an 8 × 8 plane.
fn on_plane(seeds: usize) -> ShatteredParams {
    ShatteredParams {
        archs: vec![Arch::PLAIN],
        depths: vec![1],
        width: 8,
        points: 16,
        seeds,
        image_archs: vec![PLAIN, RESNET],
        image_depths: vec![8],
        image_points: 16,
        image_plane_side: 8,
        image_plane_third: 2,
        image_plane_seeds: seeds,
        ..Default::default()
    }
}

#[test]
fn the_planes_corners_are_the_three_images_exactly() {
    let config = on_plane(1).check().unwrap();
    let plane = config.images().unwrap().plane().unwrap();
    let (_, test) = gradscope_studies::data::load(&DataSource::Digits).unwrap();
    let (want, _) = test.matrix::<f64>(&[0, 1, 2]);
    let grid = plane.grid();
    let h = plane.side();
    // (a, b) = (0, 0), (1, 0), (0, 1): rows 0, H − 1 and (H − 1)·H.
    for (row, corner) in [(0, 0), (h - 1, 1), ((h - 1) * h, 2)] {
        assert_eq!(grid.row(row), want.row(corner), "corner {corner}");
    }
    // Inside, x₀ + a·(x₁ − x₀) + b·(x₂ − x₀) up to rounding.
    for (i, j) in [(0, 3), (5, 0), (2, 6), (h - 1, h - 1)] {
        let (a, b) = (plane.coordinate(j), plane.coordinate(i));
        for (p, &v) in grid.row(i * h + j).iter().enumerate() {
            assert!(
                (v - x_at(&want, a, b, p)).abs() < 1e-12,
                "({i}, {j}) pixel {p}"
            );
        }
    }
}

fn x_at(x: &Array2<f64>, a: f64, b: f64, p: usize) -> f64 {
    x[[0, p]] + a * (x[[1, p]] - x[[0, p]]) + b * (x[[2, p]] - x[[0, p]])
}

/// With BN's gradient through the plane's statistics (`full`), picture k at
/// grid point (i, j) is the derivative of L = Σ f over the grid when point
/// (i, j) alone moves along x₁ − x₀ (k = a) or x₂ − x₀ (k = b): the central
/// difference of that sum (per-sample mode holds the statistics constant,
/// which no difference of f reproduces; see shattered_images.rs).
#[test]
fn the_pictures_are_the_directional_derivatives_of_f() {
    let config = ShatteredParams {
        bn_mode: BnMode::Full,
        ..on_plane(1)
    }
    .check()
    .unwrap();
    let res = config.run(&RunOptions::with_threads(2)).unwrap();
    let pictures = &res
        .images
        .as_ref()
        .unwrap()
        .plane
        .as_ref()
        .unwrap()
        .pictures;
    let setup = config.images().unwrap();
    let plane = setup.plane().unwrap();
    let (grid, h) = (plane.grid(), plane.side());
    let p = config.params();
    let opts = CaptureOpts {
        bn_mode: BnMode::Full,
        param_grads: false,
        ..Default::default()
    };
    for (a, &arch) in p.image_archs.iter().enumerate() {
        let net = images::net(p, arch, 8, setup.shape(), config.net_seed(0)).unwrap();
        let total = |x: &Array2<f64>| capture(&net, x.view(), &opts).unwrap().output.sum();
        for (k, direction) in plane.directions().iter().enumerate() {
            for (i, j) in [(0, 0), (0, h - 1), (3, 5), (h - 1, 2), (h - 1, h - 1)] {
                // The path's test's step: small enough that no ReLU input crosses 0.
                let step = 1e-7;
                let (mut up, mut down) = (grid.clone(), grid.clone());
                up.row_mut(i * h + j).scaled_add(step, direction);
                down.row_mut(i * h + j).scaled_add(-step, direction);
                let fd = (total(&up) - total(&down)) / (2.0 * step);
                let want = pictures[[a, 0, 0, k, i, j]];
                assert!(
                    (fd - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{arch} picture {k} at ({i}, {j}): finite difference {fd} vs {want}"
                );
            }
        }
    }
}

#[test]
fn the_planes_files_read_back_and_no_plane_writes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let res = on_plane(2)
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    res.write(tmp.path()).unwrap();
    let d = ShatteredData::read(tmp.path()).unwrap();
    let plane = d.images.as_ref().unwrap().plane.as_ref().unwrap();
    assert_eq!(plane.pictures.shape(), &[2, 1, 2, 2, 8, 8]);
    assert_eq!(plane.radial_spectra.shape(), &[2, 1, 2, 2, 5]);
    let summary = d.summary.images.as_ref().unwrap().plane.as_ref().unwrap();
    assert_eq!(
        (summary.side, summary.third, summary.radial_band),
        (8, 2, [2, 3])
    );
    // The summary's r₁ is the mean over seeds of the pictures' own r₁.
    for k in 0..2 {
        let r1: Vec<f64> = (0..2)
            .map(|seed| {
                gradscope_stats::adjacent_correlation_2d(plane.pictures.slice(s![
                    1,
                    0,
                    seed,
                    k,
                    ..,
                    ..
                ]))
                .unwrap()
            })
            .collect();
        let got = summary.results[1].pictures[k].adjacent_correlation.mean;
        assert!(
            (got - (r1[0] + r1[1]) / 2.0).abs() < 1e-12,
            "{got} vs {r1:?}"
        );
    }
    // Written again without a plane: the plane's files go.
    let res = ShatteredParams {
        image_plane_side: 0,
        ..on_plane(2)
    }
    .check()
    .unwrap()
    .run(&RunOptions::with_threads(2))
    .unwrap();
    res.write(tmp.path()).unwrap();
    assert!(!tmp.path().join("images_plane_pictures.npy").exists());
    assert!(!tmp.path().join("images_plane_summary.csv").exists());
    let d = ShatteredData::read(tmp.path()).unwrap();
    assert!(d.summary.images.as_ref().unwrap().plane.is_none());
}

/// More plane seeds than seeds means every seed: the validated config says so.
#[test]
fn plane_seeds_beyond_the_seeds_are_all_the_seeds() {
    let p = ShatteredParams {
        seeds: 2,
        image_plane_seeds: 4,
        ..ShatteredParams::quick()
    };
    let config = p.check().unwrap();
    assert_eq!(config.params().image_plane_seeds, 2);
}

#[test]
fn bad_plane_settings_are_one_line_errors() {
    let ok = ShatteredParams::quick();
    let cases: Vec<(ShatteredParams, &str)> = vec![
        (
            ShatteredParams {
                image_plane_seeds: 0,
                ..ok.clone()
            },
            "image_plane_seeds",
        ),
        (
            ShatteredParams {
                image_plane_side: 4,
                ..ok.clone()
            },
            "image_plane_side",
        ),
        (
            ShatteredParams {
                image_plane_side: 100_000,
                ..ok.clone()
            },
            "image_plane_side",
        ),
        (
            ShatteredParams {
                image_plane_third: 1,
                ..ok.clone()
            },
            "third image",
        ),
        (
            ShatteredParams {
                image_plane_third: 100_000,
                ..ok.clone()
            },
            "below",
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
