//! The skips study end to end on small nets: the λ sweep follows the
//! mean-field factor √(λ² + 2α²) without LN and stays at 1 with it, and bad
//! parameters are one-line errors.

use gradscope_studies::Params;
use gradscope_studies::RunOptions;
use gradscope_studies::skips::SkipsParams;

fn small() -> SkipsParams {
    SkipsParams {
        archs: [
            "plain-bn",
            "resnet-bn",
            "xskip-ln",
            "resnet:init=fixup",
            "highway:bias=-100",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect(),
        depths: vec![1, 8],
        width: 96,
        points: 64,
        seeds: 3,
        lambdas: vec![0.5, 1.0, 2.0],
        recursions: vec![1, 4],
        sweep_depth: 16,
        ..Default::default()
    }
}

#[test]
fn the_lambda_sweep_follows_mean_field_without_ln_and_holds_at_one_with_it() {
    let p = small();
    let r = p
        .check()
        .unwrap()
        .run(&RunOptions {
            threads: 2,
            ..Default::default()
        })
        .unwrap();
    let s = &r.summary;
    assert_eq!(s.sweep.len(), 3 + 3 + 2);
    for row in &s.sweep {
        let g = row.gradient_growth.mean;
        match row.family.as_str() {
            "xskip" => {
                let theory = (row.lambda.powi(2) + 2.0 * p.sweep_alpha.powi(2)).sqrt();
                assert!((row.mean_field_growth - theory).abs() < 1e-12);
                // Width 96, 3 seeds: a few per cent of sampling noise.
                assert!(
                    (g / theory - 1.0).abs() < 0.06,
                    "{}: {g} vs {theory}",
                    row.arch
                );
                // Over 16 blocks: ~10^(16·log10 0.866) = 10^-1.0 at λ = ½, 10^5.2 at λ = 2.
                let want = 16.0 * theory.log10();
                assert!(
                    (row.log10_gradient_ratio - want).abs() < 0.5,
                    "{}",
                    row.arch
                );
            }
            _ => assert!((g - 1.0).abs() < 0.03, "{}: factor {g}", row.arch),
        }
    }
    // rSkip+LN at λ = 1 is the post-LN block with α = 1: the sweep reuses its net.
    assert_eq!(s.sweep[6].arch, "xskip-ln");
    // The comparison: a Fixup net is its shortcut at init (flat df/dx, r₁ = 1,
    // equal gradient norms at every block), and so is a highway net with a closed gate.
    let nd = s.config.depths.len();
    for a in [3, 4] {
        for d in 0..nd {
            let row = &s.compare[a * nd + d];
            assert!(
                (row.adjacent_correlation.mean - 1.0).abs() < 1e-9,
                "{}",
                row.arch
            );
            let g = &row.layer_grad_norm_mean;
            assert!(
                g.iter().all(|v| (v / g[0] - 1.0).abs() < 1e-9),
                "{}",
                row.arch
            );
        }
    }
    // Plain BN nets shatter faster than pre-activation ResNets.
    let r1 = |a: usize| s.compare[a * nd + 1].adjacent_correlation.mean;
    assert!(r1(0) < r1(1), "plain-bn {} vs resnet-bn {}", r1(0), r1(1));
    assert!(r.compare.correlation.is_none() && r.sweep.correlation.is_none());
}

#[test]
fn bad_sweeps_are_one_line_errors() {
    let cases: Vec<(SkipsParams, &str)> = vec![
        (
            SkipsParams {
                lambdas: vec![],
                ..small()
            },
            "lambdas",
        ),
        (
            SkipsParams {
                lambdas: vec![0.0],
                ..small()
            },
            "(0, 10]",
        ),
        (
            SkipsParams {
                lambdas: vec![f64::NAN],
                ..small()
            },
            "(0, 10]",
        ),
        (
            SkipsParams {
                lambdas: vec![0.5, 0.5],
                ..small()
            },
            "twice",
        ),
        (
            SkipsParams {
                recursions: vec![0],
                ..small()
            },
            "whole number",
        ),
        (
            SkipsParams {
                recursions: vec![65],
                ..small()
            },
            "1..=64",
        ),
        (
            SkipsParams {
                recursions: vec![2, 2],
                ..small()
            },
            "twice",
        ),
        (
            SkipsParams {
                sweep_alpha: -1.0,
                ..small()
            },
            "sweep_alpha",
        ),
        (
            SkipsParams {
                sweep_depth: 0,
                ..small()
            },
            "sweep_depth",
        ),
        (
            SkipsParams {
                archs: vec![],
                ..small()
            },
            "archs",
        ),
    ];
    for (p, needle) in cases {
        let e = p.check().map(|_| ()).unwrap_err().to_string();
        assert!(e.contains(needle) && !e.contains('\n'), "{needle}: {e}");
    }
}
