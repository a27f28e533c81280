//! Small, hand-made study folders: the contract's tests build results by
//! hand, write them, read them back, and break them.

#![allow(dead_code)]

use gradscope_contract::Provenance;
use gradscope_contract::shattered::{
    ArchFits, DepthSummary, NoiseReference, SCHEMA, ShatteredParams, ShatteredResults,
    ShatteredSummary,
};
use gradscope_spec::Arch;
use gradscope_stats::{Band, MeanStd};
use ndarray::{Array1, Array3, Array4};

pub fn provenance() -> Provenance {
    Provenance {
        version: "0.1.0".into(),
        git_commit: None,
        started: "2026-01-01T00:00:00Z".into(),
        seconds: 1.5,
        threads: 2,
        command: None,
        engine_fallbacks: vec![],
    }
}

/// A summary over three finite values.
pub fn stat(v: f64) -> MeanStd {
    MeanStd::of([v - 0.1, v, v + 0.1])
}

/// A shattered run of `archs` × `depths`, 2 seeds, 16 grid points, with
/// arrays that are their own index (so a mix-up shows).
pub fn shattered(archs: &[Arch], depths: &[usize], correlation: bool) -> ShatteredResults {
    let (na, nd, ns, n, lags) = (archs.len(), depths.len(), 2, 16, 5);
    let config = ShatteredParams {
        archs: archs.to_vec(),
        depths: depths.to_vec(),
        points: n,
        seeds: ns,
        max_lag: Some(lags - 1),
        band: Some(Band::default_for(n)),
        ..ShatteredParams::default()
    };
    let results = archs
        .iter()
        .flat_map(|a| {
            depths.iter().map(move |&d| DepthSummary {
                arch: a.to_string(),
                depth: d,
                adjacent_correlation: stat(0.5),
                spectral_slope: stat(-1.0),
                gradient_growth: stat(1.1),
                layer_grad_norm_mean: (0..=d).map(|l| 1.0 + l as f64).collect(),
                layer_grad_norm_std: vec![0.1; d + 1],
                activation_norm_mean: vec![2.0; d + 1],
                faults: vec![],
            })
        })
        .collect();
    let reference = |name: &str| NoiseReference {
        name: name.into(),
        adjacent_correlation: stat(0.0),
        spectral_slope: stat(0.0),
    };
    let index4 = |shape: (usize, usize, usize, usize)| {
        Array4::from_shape_fn(shape, |(a, b, c, d)| {
            (((a * 10 + b) * 10 + c) * 100 + d) as f64
        })
    };
    ShatteredResults {
        summary: ShatteredSummary {
            schema: SCHEMA.into(),
            study: "shattered".into(),
            provenance: provenance(),
            band: Band::default_for(n),
            config,
            references: vec![reference("white"), reference("brown")],
            results,
            fits: archs
                .iter()
                .map(|a| ArchFits {
                    arch: a.to_string(),
                    adjacent_correlation: None,
                    roughness: None,
                    input_grad_norm: None,
                })
                .collect(),
            images: None,
        },
        per_seed: vec![],
        grid: Array1::linspace(-2.0, 2.0, n),
        input_gradients: index4((na, nd, ns, n)),
        power_spectra: index4((na, nd, ns, n / 2 + 1)),
        autocorrelation: index4((na, nd, ns, lags)),
        correlation: correlation.then(|| Array4::from_elem((na, nd, n, n), 0.25f32)),
        noise: Array3::from_shape_fn((2, ns, n), |(k, s, i)| (k * 100 + s * 10 + i) as f64),
        images: None,
    }
}

/// The error of a read that must fail, as one line.
pub fn refusal<T: std::fmt::Debug>(r: gradscope_contract::Result<T>) -> String {
    let e = r.expect_err("the folder should be refused").to_string();
    assert!(!e.contains('\n'), "{e}");
    e
}
