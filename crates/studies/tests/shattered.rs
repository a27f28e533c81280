//! The shattered-gradients study reproduces the paper's orderings, is
//! deterministic, and refuses bad configurations.

use gradscope_nets::{Arch, BnMode, DepthNets, Mlp, Net, NetParams, derive_seed};
use gradscope_stats::{DecayLaw, ExclusionReason};
use gradscope_studies::Params;
use gradscope_studies::RunOptions;
use gradscope_studies::shattered::{ShatteredData, ShatteredParams};

fn paper_setup() -> ShatteredParams {
    // The paper's sizes (width 200, 256 points) on the two BN nets it contrasts.
    ShatteredParams {
        archs: vec![Arch::PLAIN_BN, Arch::RESNET_BN],
        depths: vec![1, 16],
        seeds: 4,
        image_archs: vec![],
        ..Default::default()
    }
}

#[test]
fn feedforward_bn_shatters_and_resnet_bn_decays_far_slower() {
    let res = paper_setup()
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    let r1 = |arch: &str, depth: usize| {
        res.summary
            .results
            .iter()
            .find(|r| r.arch == arch && r.depth == depth)
            .unwrap()
            .adjacent_correlation
    };
    // Reference (theory sheet): plain-bn 0.992 at L = 1, ≈ 0 at L = 16; resnet-bn 0.406 at L = 16.
    assert!(r1("plain-bn", 1).mean > 0.95, "{:?}", r1("plain-bn", 1));
    assert!(
        r1("plain-bn", 16).mean.abs() < 0.15,
        "{:?}",
        r1("plain-bn", 16)
    );
    assert!(r1("resnet-bn", 1).mean > 0.9, "{:?}", r1("resnet-bn", 1));
    let res16 = r1("resnet-bn", 16);
    assert!(res16.mean > 0.25 && res16.mean < 0.6, "{res16:?}");
    assert!(res16.mean - r1("plain-bn", 16).mean > 0.2);
    // The calibration signals land where they should.
    let (white, brown) = (&res.summary.references[0], &res.summary.references[1]);
    assert!(white.adjacent_correlation.mean.abs() < 0.15);
    assert!(brown.adjacent_correlation.mean > 0.9);
    assert!(brown.spectral_slope.mean < -1.4 && white.spectral_slope.mean.abs() < 0.5);
    // Shattered feedforward gradients are white: flat spectrum.
    let slope = res
        .summary
        .results
        .iter()
        .find(|r| r.arch == "plain-bn" && r.depth == 16)
        .unwrap()
        .spectral_slope;
    assert!(slope.mean.abs() < 0.5, "{slope:?}");
}

#[test]
fn decay_fits_leave_out_white_noise_depths_and_say_why() {
    // plain-bn is white noise from about depth 16 on: its r₁ there is not 2
    // standard errors above 0, and 1 − r₁ is saturated at 1.
    let res = ShatteredParams {
        archs: vec![Arch::PLAIN_BN],
        depths: vec![1, 2, 4, 8, 24],
        seeds: 4,
        points: 128,
        image_archs: vec![],
        ..Default::default()
    }
    .check()
    .unwrap()
    .run(&RunOptions::with_threads(2))
    .unwrap();
    let fits = &res.summary.fits[0];
    let r1 = fits.adjacent_correlation.as_ref().unwrap();
    let at_24 = res.summary.results.iter().find(|r| r.depth == 24).unwrap();
    let floor = 2.0 * at_24.adjacent_correlation.sem();
    assert!(at_24.adjacent_correlation.mean < floor, "{at_24:?}");
    for fit in [&r1.exponential, &r1.power_law] {
        assert_eq!(fit.line.n, 4);
        assert_eq!(fit.excluded.len(), 1);
        let e = fit.excluded[0];
        assert_eq!(e.x, 24.0);
        assert_eq!(e.reason, ExclusionReason::BelowNoiseFloor { floor });
        assert!(fit.rate_lo <= fit.rate && fit.rate <= fit.rate_hi);
    }
    let rough = fits.roughness.as_ref().unwrap();
    let e = rough.best().excluded[0];
    assert_eq!(e.x, 24.0);
    assert_eq!(
        e.reason,
        ExclusionReason::AboveCeiling {
            ceiling: 1.0 - floor
        }
    );
    // Before it whitens, r₁ falls faster than any power law of depth: the
    // exponential fits ln r₁ better, with a base below 1.
    assert_eq!(r1.better, DecayLaw::Exponential);
    assert!(r1.exponential.rate_hi < 1.0, "{:?}", r1.exponential);
}

#[test]
fn full_bn_gradients_decorrelate_faster_than_per_sample_ones() {
    let base = ShatteredParams {
        archs: vec![Arch::RESNET_BN],
        depths: vec![16],
        seeds: 4,
        width: 128,
        image_archs: vec![],
        ..Default::default()
    };
    let run = |bn_mode| {
        let p = ShatteredParams {
            bn_mode,
            ..base.clone()
        };
        p.check()
            .unwrap()
            .run(&RunOptions::with_threads(2))
            .unwrap()
            .summary
            .results[0]
            .adjacent_correlation
            .mean
    };
    let (per_sample, full) = (run(BnMode::PerSample), run(BnMode::Full));
    assert!(
        full < per_sample - 0.1,
        "full {full} vs per-sample {per_sample}"
    );
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let p = ShatteredParams::quick().check().unwrap();
    let a = p.run(&RunOptions::with_threads(1)).unwrap();
    let b = p.run(&RunOptions::with_threads(3)).unwrap();
    assert_eq!(a.summary.results, b.summary.results);
    assert_eq!(a.input_gradients, b.input_gradients);
    // Another base seed gives other nets.
    let c = ShatteredParams {
        seed: 1,
        ..ShatteredParams::quick()
    }
    .check()
    .unwrap()
    .run(&RunOptions::with_threads(2))
    .unwrap();
    assert_ne!(a.input_gradients, c.input_gradients);
}

#[test]
fn a_written_folder_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let res = ShatteredParams::quick()
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    res.write(dir.path()).unwrap();
    let back = ShatteredData::read(dir.path()).unwrap();
    // Compared field by field: a failure should not print the whole summary.
    assert!(
        back.summary == res.summary,
        "summary differs after a round trip"
    );
    assert_eq!(back.input_gradients, res.input_gradients);
    assert_eq!(back.noise, res.noise);
    let csv = std::fs::read_to_string(dir.path().join("per_seed.csv")).unwrap();
    let p = ShatteredParams::quick();
    assert_eq!(
        csv.lines().count(),
        1 + p.archs.len() * p.depths.len() * p.seeds
    );
    // Nothing but the documented files (no temporaries).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "autocorrelation.npy",
            "correlation_matrices.npy",
            "fits.csv",
            "grid.npy",
            "images_autocorrelation.npy",
            "images_endpoints.npy",
            "images_gradients.npy",
            "images_layer_norms.csv",
            "images_path.npy",
            "images_per_seed.csv",
            "images_plane_corners.npy",
            "images_plane_per_seed.csv",
            "images_plane_pictures.npy",
            "images_plane_spectra.npy",
            "images_plane_summary.csv",
            "images_power_spectra.npy",
            "images_summary.csv",
            "input_gradients.npy",
            "layer_norms.csv",
            "noise.npy",
            "per_seed.csv",
            "power_spectra.npy",
            "summary.csv",
            "summary.json"
        ]
    );
}

#[test]
fn params_round_trip_through_toml_and_unknown_keys_are_refused() {
    let p = ShatteredParams {
        archs: vec!["resnet-bn:alpha=0.5".parse().unwrap(), Arch::PLAIN],
        depths: vec![3, 7],
        ..Default::default()
    };
    let text = toml::to_string(&p).unwrap();
    assert!(text.contains("\"resnet-bn:alpha=0.5\""), "{text}");
    assert_eq!(toml::from_str::<ShatteredParams>(&text).unwrap(), p);
    let partial: ShatteredParams = toml::from_str("depths = [2, 4]\nbn_mode = \"full\"\n").unwrap();
    assert_eq!(
        (partial.depths, partial.bn_mode, partial.width),
        (vec![2, 4], BnMode::Full, 200)
    );
    let e = toml::from_str::<ShatteredParams>("widht = 3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `widht`"), "{e}");
    let e = toml::from_str::<ShatteredParams>("archs = [\"mlp\"]")
        .unwrap_err()
        .to_string();
    assert!(e.contains("mlp"), "{e}");
}

#[test]
fn bad_configurations_are_clear_errors() {
    let ok = ShatteredParams::quick();
    let cases: Vec<(ShatteredParams, &str)> = vec![
        (
            ShatteredParams {
                archs: vec![],
                ..ok.clone()
            },
            "archs",
        ),
        (
            ShatteredParams {
                archs: vec![Arch::PLAIN, Arch::PLAIN],
                ..ok.clone()
            },
            "twice",
        ),
        (
            ShatteredParams {
                depths: vec![],
                ..ok.clone()
            },
            "depths",
        ),
        (
            ShatteredParams {
                depths: vec![0, 2],
                ..ok.clone()
            },
            "depth",
        ),
        (
            ShatteredParams {
                width: 0,
                ..ok.clone()
            },
            "width",
        ),
        (
            ShatteredParams {
                points: 3,
                ..ok.clone()
            },
            "points",
        ),
        (
            ShatteredParams {
                seeds: 0,
                ..ok.clone()
            },
            "seeds",
        ),
        (
            ShatteredParams {
                x_min: 1.0,
                x_max: -1.0,
                ..ok.clone()
            },
            "x range",
        ),
        (
            ShatteredParams {
                x_min: f64::NAN,
                ..ok.clone()
            },
            "x range",
        ),
        (
            ShatteredParams {
                max_lag: Some(0),
                ..ok.clone()
            },
            "max_lag",
        ),
        (
            ShatteredParams {
                max_lag: Some(128),
                ..ok.clone()
            },
            "max_lag",
        ),
        (
            ShatteredParams {
                band: Some(gradscope_stats::Band { lo: 0, hi: 3 }),
                ..ok.clone()
            },
            "band",
        ),
        (
            ShatteredParams {
                width: 60_000,
                depths: vec![500],
                ..ok.clone()
            },
            "parameters",
        ),
        (
            ShatteredParams {
                width: 4000,
                depths: vec![40],
                points: 60_000,
                ..ok.clone()
            },
            "GiB",
        ),
        (
            ShatteredParams {
                load_weights: Some("w.safetensors".into()),
                ..ok.clone()
            },
            "one arch",
        ),
        (
            ShatteredParams {
                depth_nets: DepthNets::Independent,
                save_weights: Some("w".into()),
                ..ok.clone()
            },
            "depth_nets = nested",
        ),
    ];
    for (p, needle) in cases {
        let e = p.check().unwrap_err().to_string();
        assert!(
            e.contains(needle) && !e.contains('\n'),
            "expected `{needle}` in: {e}"
        );
    }
}

/// A shared draw cache changes no number, and what it holds after the run
/// is within the memory estimate's share for it (and not far below it).
#[test]
fn shared_draws_give_the_same_results_within_their_memory_estimate() {
    let p = ShatteredParams::quick().check().unwrap();
    let alone = p.run(&RunOptions::with_threads(2)).unwrap();
    let cache = std::sync::Arc::new(gradscope_nets::DrawCache::new());
    let shared = p.clone().sharing_draws(cache.clone());
    assert_eq!(p.draws_estimate_gib(), 0.0);
    let bound = shared.draws_estimate_gib() * (1u64 << 30) as f64;
    assert!(
        (shared.memory_estimate_gib(1) - p.memory_estimate_gib(1)) * (1u64 << 30) as f64 - bound
            < 1.0
    );
    let res = shared.run(&RunOptions::with_threads(2)).unwrap();
    assert_eq!(alone.summary.results, res.summary.results);
    assert_eq!(alone.input_gradients, res.input_gradients);
    let held = cache.bytes() as f64;
    assert!(
        held > 0.0 && held <= bound,
        "{held} B held, bound {bound} B"
    );
    assert!(
        held >= 0.25 * bound,
        "{held} B held, bound {bound} B: too loose"
    );
}

/// With `depth_nets = independent`, the gradient at each depth is that of a
/// net of exactly that depth, drawn from its own seed (derived from the
/// seed index's and the depth), measured here through the probe alone; the
/// nested default's shallow nets are other nets (prefixes of the deepest).
#[test]
fn independent_depth_nets_are_nets_of_their_own_depth_and_seed() {
    let base = ShatteredParams {
        archs: vec![Arch::PLAIN_BN, Arch::RESNET],
        depths: vec![1, 3, 6],
        width: 16,
        points: 64,
        seeds: 2,
        image_archs: vec![],
        ..Default::default()
    };
    let independent = ShatteredParams {
        depth_nets: DepthNets::Independent,
        ..base.clone()
    };
    let config = independent.check().unwrap();
    let res = config.run(&RunOptions::with_threads(2)).unwrap();
    let nested = base
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    let grid = gradscope_probe::scalar_grid(base.points, base.x_min, base.x_max);
    for (a, &arch) in base.archs.iter().enumerate() {
        for (d, &depth) in base.depths.iter().enumerate() {
            for s in 0..base.seeds {
                let spec = NetParams {
                    arch,
                    depth,
                    width: base.width,
                    input_dim: 1,
                    output_dim: 1,
                    activation: Default::default(),
                    weight_init: base.weight_init,
                    bias_init: base.bias_init,
                    precision: base.dtype,
                    seed: 0,
                }
                .check()
                .unwrap()
                .with_seed(derive_seed(config.net_seed(s), &format!("depth{depth}")));
                let net = Net::Mlp(Mlp::new(&spec).unwrap());
                let cap =
                    gradscope_probe::capture_depths(&net, grid.view(), &[depth], base.bn_mode)
                        .unwrap();
                let g = res.input_gradients.slice(ndarray::s![a, d, s, ..]);
                assert_eq!(g, cap[0].input_grads.column(0), "{arch} L={depth} seed {s}");
                let prefix = nested.input_gradients.slice(ndarray::s![a, d, s, ..]);
                assert_ne!(g, prefix, "{arch} L={depth} seed {s}: the nested net's");
            }
        }
    }
}
