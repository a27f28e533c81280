//! The degradation study on the embedded digits.

use gradscope_studies::Params;
use gradscope_studies::RunOptions;
use gradscope_studies::training::{DEGRADATION_MARGIN, TrainingParams};

#[test]
fn a_deeper_plain_net_trains_worse_and_a_deeper_resnet_does_not() {
    // Quick sizes: depths 2 and 16, width 32, 6 epochs, seed 0. Measured:
    // plain-bn 4.0 % → 24.5 % training error, resnet-bn 1.5 % → 1.5 %.
    let res = TrainingParams::quick()
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    let cmp = |arch: &str| {
        res.summary
            .comparisons
            .iter()
            .find(|c| c.arch == arch)
            .unwrap()
            .clone()
    };
    let (plain, resnet) = (cmp("plain-bn"), cmp("resnet-bn"));
    assert!(
        plain.degrades && plain.deep_train_error - plain.shallow_train_error > 0.1,
        "{plain:?}"
    );
    assert!(
        !resnet.degrades
            && resnet.deep_train_error < resnet.shallow_train_error + DEGRADATION_MARGIN,
        "{resnet:?}"
    );
    // Every run logged its gradients at step 0 and after every epoch.
    for c in &res.cells {
        let h = &c.output.history;
        assert_eq!(h.epochs.len(), 6);
        assert_eq!(h.logs.len(), 7);
        assert!(h.diverged_at.is_none());
    }
}

#[test]
fn conv_nets_train_on_the_digit_images() {
    let p = TrainingParams {
        archs: vec![
            "conv-plain".parse().unwrap(),
            "conv-resnet:shortcut=b".parse().unwrap(),
        ],
        depths: vec![8],
        max_train: Some(256),
        // 32 steps: enough for BN's running statistics (momentum 0.1) to settle for eval mode.
        train: gradscope_train::TrainParams {
            epochs: 4,
            batch_size: 32,
            probe_points: 32,
            similarity_examples: 4,
            ..TrainingParams::quick().train
        },
        ..TrainingParams::quick()
    };
    let res = p
        .check()
        .unwrap()
        .run(&RunOptions::with_threads(2))
        .unwrap();
    for r in &res.summary.results {
        // Chance is 90 % error; both nets learn something in 32 steps.
        assert!(r.final_train_error.mean < 0.7, "{r:?}");
        assert_eq!(r.diverged, 0);
    }
    assert!(
        res.summary.results[1].parameters > res.summary.results[0].parameters,
        "option B adds projections"
    );
}

#[test]
fn bad_training_configurations_are_clear_errors() {
    let ok = TrainingParams::quick();
    let cases: Vec<(TrainingParams, &str)> = vec![
        (
            TrainingParams {
                archs: vec![],
                ..ok.clone()
            },
            "archs",
        ),
        (
            TrainingParams {
                depths: vec![],
                ..ok.clone()
            },
            "depths",
        ),
        (
            TrainingParams {
                depths: vec![0],
                ..ok.clone()
            },
            "depth",
        ),
        (
            TrainingParams {
                seeds: 0,
                ..ok.clone()
            },
            "seeds",
        ),
        (
            TrainingParams {
                max_train: Some(0),
                ..ok.clone()
            },
            "max_train",
        ),
        (
            TrainingParams {
                archs: vec!["conv-resnet".parse().unwrap()],
                depths: vec![21],
                ..ok.clone()
            },
            "6n + 2",
        ),
        (
            TrainingParams {
                train: gradscope_train::TrainParams {
                    epochs: 0,
                    ..ok.train.clone()
                },
                ..ok.clone()
            },
            "epochs",
        ),
    ];
    for (p, needle) in cases {
        let e = p.check().unwrap_err().to_string();
        assert!(
            e.contains(needle) && !e.contains('\n'),
            "expected `{needle}` in: {e}"
        );
    }
    let e = toml::from_str::<TrainingParams>("data = \"imagenet\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("imagenet"), "{e}");
    let p: TrainingParams = toml::from_str("archs = [\"plain-bn\", \"conv-resnet:shortcut=b\"]\n[train]\nepochs = 3\n[train.optimizer]\nkind = \"adam\"\nlr = 0.001\n").unwrap();
    assert_eq!(p.archs[1].to_string(), "conv-resnet:shortcut=b");
    assert_eq!(p.train.epochs, 3);
    assert_eq!(
        toml::from_str::<TrainingParams>(&toml::to_string(&p).unwrap()).unwrap(),
        p
    );
}
