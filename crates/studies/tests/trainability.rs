//! The trainability study's default (what `reproduce` runs) on the
//! embedded digits: a deep plain net without normalisation fails to train
//! while Fixup and ReZero train at the same depth; and a
//! diverging configuration is reported with the step where it diverged.

use gradscope_studies::trainability::TrainabilityParams;
use gradscope_studies::{Params, RunOptions};

#[test]
fn a_deep_plain_net_fails_where_fixup_and_rezero_train() {
    // The default: depths 8 and 32, width 32, lrs 0.03 and 0.1, 3 seeds,
    // 4 epochs on 384 digits, seed 0. Measured at depth 32 (mean final
    // training error at the best stable lr): plain 84.8 % (every seed above
    // 75 %), Fixup 10.4 %, SkipInit 9.4 %, ReZero 9.4 % (without a norm,
    // SkipInit's and ReZero's blocks are the same function); no run diverged.
    let config = TrainabilityParams::default().check().unwrap();
    let res = config.run(&RunOptions::with_threads(2)).unwrap();
    let s = &res.summary;
    let depth = *s.config.depths.last().unwrap();
    assert_eq!(depth, 32);
    let at = |arch: &str| {
        s.verdicts
            .iter()
            .find(|v| v.arch == arch && v.depth == depth)
            .unwrap_or_else(|| panic!("{arch} at depth {depth}"))
            .clone()
    };
    let plain = at("plain");
    // Fails: above 60 % training error (chance 90 %) at every learning rate.
    for r in s
        .results
        .iter()
        .filter(|r| r.arch == "plain" && r.depth == depth)
    {
        assert!(
            r.diverged > 0 || r.final_train_error.mean > 0.6,
            "plain lr {}: {:?}",
            r.lr,
            r.final_train_error
        );
    }
    assert!(plain.best_train_error.mean > 0.6, "{plain:?}");
    // Trains: below 20 %, every seed reaching the 10 %-target or close to it.
    let trained: Vec<_> = ["resnet:init=fixup", "resnet:init=rezero"]
        .into_iter()
        .map(at)
        .filter(|v| v.best_train_error.mean < 0.2)
        .collect();
    assert!(!trained.is_empty(), "neither Fixup nor ReZero trains");
    // The margin between them: at least 40 points of training error.
    for v in &trained {
        assert!(
            plain.best_train_error.mean - v.best_train_error.mean > 0.4,
            "{plain:?} vs {v:?}"
        );
    }
}

#[test]
fn a_diverging_configuration_is_counted_with_its_step() {
    // A learning rate of 50 on a plain net: the loss runs away in the first steps.
    let p = TrainabilityParams {
        archs: vec!["plain".parse().unwrap()],
        depths: vec![4],
        lrs: vec![0.01, 50.0],
        seeds: 2,
        max_train: Some(128),
        train: gradscope_train::TrainParams {
            epochs: 2,
            ..TrainabilityParams::quick().train
        },
        ..TrainabilityParams::quick()
    };
    let res = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    let s = &res.summary;
    let high = s.results.iter().find(|r| r.lr == 50.0).unwrap();
    assert_eq!(high.diverged, 2, "{high:?}");
    for at in &high.diverged_at {
        let step = at.expect("a diverged run has its step");
        assert!(step < 8, "diverged at step {step}");
    }
    assert!(
        high.final_train_error.mean.is_nan(),
        "diverged runs have no final error"
    );
    let low = s.results.iter().find(|r| r.lr == 0.01).unwrap();
    assert_eq!(low.diverged, 0);
    let v = &s.verdicts[0];
    assert_eq!(v.largest_stable_lr, Some(0.01));
    assert_eq!(v.diverged, 2);
    // Every run is kept, diverged ones too.
    assert_eq!(res.runs.len(), 4);
    // Seed 0 records the gradient statistics; other seeds do not.
    for r in &res.runs {
        let recorded = r.seed == 0 && r.history.diverged_at.is_none();
        assert_eq!(!r.history.stats.is_empty(), recorded, "{}", r.key);
    }
}

#[test]
fn a_learned_shortcut_scale_moves_in_training_and_is_recorded_per_block() {
    // Liu et al. 2020's λ learned from 2 under the LN after the sum and from
    // 0.5 without it; a constant λ beside them records none. Measured (depth
    // 4, 2 epochs on 128 digits): λ from 2 ends in 1.99–2.02 per block, λ
    // from 0.5 in −0.05–0.41.
    let archs = [
        "xskip-ln:lambda=learn(2)",
        "xskip:lambda=learn(0.5)",
        "xskip:lambda=0.5",
    ];
    let p = TrainabilityParams {
        archs: archs.iter().map(|a| a.parse().unwrap()).collect(),
        depths: vec![4],
        // At 0.1 xSkip without a norm diverges (λ learned or not) by step 3.
        lrs: vec![0.03],
        seeds: 1,
        ..TrainabilityParams::quick()
    };
    let res = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    for (r, lambda0) in res.runs.iter().zip([Some(2.0), Some(0.5), None]) {
        let l = &r.history.learned_lambda;
        assert!(r.history.diverged_at.is_none(), "{}", r.key);
        let Some(lambda0) = lambda0 else {
            assert!(l.is_empty(), "{}: {l:?}", r.key);
            continue;
        };
        assert_eq!(l.len(), 4, "{}: one λ per block", r.key);
        for v in l {
            assert!(
                v.is_finite() && (v - lambda0).abs() > 1e-3,
                "{}: λ {v} from {lambda0}",
                r.key
            );
        }
    }
    // runs.json carries them, and the reader takes them back.
    let dir = tempfile::tempdir().unwrap();
    res.write(dir.path()).unwrap();
    let back = gradscope_contract::trainability::TrainabilityData::read(dir.path()).unwrap();
    for (a, b) in back.runs.iter().zip(&res.runs) {
        assert_eq!(
            a.history.learned_lambda, b.history.learned_lambda,
            "{}",
            a.key
        );
    }
}
