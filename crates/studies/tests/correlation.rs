//! The correlation study end to end on small sizes: pictures shatter in plain
//! nets and stay correlated in resnets; cosine matrices are symmetric with a
//! unit diagonal; per-example gradients decorrelate with depth.

use gradscope_nets::Arch;
use gradscope_studies::Params;
use gradscope_studies::RunOptions;
use gradscope_studies::correlation::{CorrelationData, CorrelationParams};

#[test]
fn pictures_shatter_in_plain_nets_and_cosines_are_well_formed() {
    let p = CorrelationParams {
        archs: vec![Arch::PLAIN_BN, Arch::RESNET_BN],
        depths: vec![1, 20],
        width: 64,
        side: 32,
        examples: 40,
        distance_bins: 4,
        seeds: 3,
        ..Default::default()
    };
    let results = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    let r = |arch: &str, depth: usize| {
        results
            .summary
            .results
            .iter()
            .find(|r| r.arch == arch && r.depth == depth)
            .unwrap()
    };
    // Shallow pictures are smooth; the deep plain-bn one is white noise, the resnet's is not.
    assert!(
        r("plain-bn", 1).adjacent_correlation.mean > 0.7,
        "{:?}",
        r("plain-bn", 1).adjacent_correlation
    );
    assert!(
        r("plain-bn", 20).adjacent_correlation.mean.abs() < 0.2,
        "{:?}",
        r("plain-bn", 20).adjacent_correlation
    );
    assert!(
        r("plain-bn", 20).radial_slope.mean.abs() < 0.5,
        "{:?}",
        r("plain-bn", 20).radial_slope
    );
    assert!(r("plain-bn", 1).radial_slope.mean < -1.5);
    assert!(
        r("resnet-bn", 20).adjacent_correlation.mean
            > r("plain-bn", 20).adjacent_correlation.mean + 0.2
    );
    // The calibration fields come out where they should.
    let white = results
        .summary
        .references
        .iter()
        .find(|x| x.name == "white")
        .unwrap();
    assert!(white.radial_slope.mean.abs() < 0.3 && white.adjacent_correlation.mean.abs() < 0.1);
    // Per-example gradients: coherence in [1/B-ish, 1], falling with depth in the plain net.
    for x in &results.summary.results {
        assert!(x.coherence.mean > 0.0 && x.coherence.mean <= 1.0, "{x:?}");
        assert_eq!(x.layer_cosine_mean.len(), x.layer_names.len());
    }
    assert!(r("plain-bn", 20).mean_cosine.mean < r("plain-bn", 1).mean_cosine.mean);
    // Written and read back: the cosine matrices are symmetric with unit diagonal.
    let tmp = tempfile::tempdir().unwrap();
    results.write(tmp.path()).unwrap();
    let d = CorrelationData::read(tmp.path()).unwrap();
    assert_eq!(d.cosines.shape(), &[2, 2, 40, 40]);
    assert_eq!(d.pictures.shape(), &[2, 2, 3, 32, 32]);
    for a in 0..2 {
        for k in 0..2 {
            let m = d.cosines.slice(ndarray::s![a, k, .., ..]);
            for i in 0..40usize {
                assert!((m[[i, i]] - 1.0).abs() < 1e-6);
                for j in 0..40usize {
                    assert!((m[[i, j]] - m[[j, i]]).abs() < 1e-6);
                    assert!(m[[i, j]].abs() <= 1.0 + 1e-5);
                }
            }
        }
    }
}

#[test]
fn bad_parameters_are_clear_errors() {
    for (p, field) in [
        (
            CorrelationParams {
                side: 4,
                ..Default::default()
            },
            "side",
        ),
        (
            CorrelationParams {
                examples: 1,
                ..Default::default()
            },
            "examples",
        ),
        (
            CorrelationParams {
                extent: f64::NAN,
                ..Default::default()
            },
            "extent",
        ),
        (
            CorrelationParams {
                depths: vec![0],
                ..Default::default()
            },
            "depth",
        ),
        (
            CorrelationParams {
                archs: vec![],
                ..Default::default()
            },
            "archs",
        ),
        (
            CorrelationParams {
                distance_bins: 0,
                ..Default::default()
            },
            "distance_bins",
        ),
    ] {
        let e = p.check().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
}
