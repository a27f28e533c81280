//! Norms, training, correlation and ensemble folders round-trip, and a folder
//! whose rows disagree with its config is a typed error, never a panic.

mod common;

use common::{provenance, refusal, stat};
use gradscope_contract::correlation::{
    self, CorrelationData, CorrelationParams, CorrelationResults, CorrelationSummary,
};
use gradscope_contract::ensemble::{
    self, ArchEnsemble, EnsembleParams, EnsembleResults, EnsembleSummary, LesionCurve,
};
use gradscope_contract::io::write_npy;
use gradscope_contract::norms::{self, NormsParams, NormsResults, NormsSummary, PhaseRow};
use gradscope_contract::training::{
    self, ArchDepthResult, CellRecord, DataInfo, RunOutput, TrainingData, TrainingParams,
    TrainingResults, TrainingSummary,
};
use gradscope_contract::{GradLog, History};
use ndarray::{Array1, Array4, Array5};

fn norms_results() -> NormsResults {
    let config = NormsParams::quick();
    let mut phase = vec![];
    for residual in [false, true] {
        for &activation in &config.phase_activations {
            for &sigma_w2 in &config.phase_sigma_w2 {
                phase.push(PhaseRow {
                    residual,
                    activation,
                    sigma_w2,
                    log10_ratio: (1..=config.depth).map(|l| 0.1 * l as f64).collect(),
                });
            }
        }
    }
    NormsResults {
        summary: NormsSummary {
            schema: norms::SCHEMA.into(),
            study: norms::NAME.into(),
            provenance: provenance(),
            config,
            layers: vec![],
            chains: vec![],
            phase,
            jacobian: vec![],
            images: None,
        },
    }
}

#[test]
fn a_norms_summary_reads_back_and_a_short_phase_row_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = norms_results();
    r.write(dir.path()).unwrap();
    assert_eq!(norms::read_summary(dir.path()).unwrap(), r.summary);
    r.summary.phase[3].log10_ratio.pop();
    r.write(dir.path()).unwrap();
    let e = refusal(norms::read_summary(dir.path()));
    assert!(e.contains("has 11 depths, expected 12"), "{e}");
    r.summary.phase.pop();
    r.write(dir.path()).unwrap();
    let e = refusal(norms::read_summary(dir.path()));
    assert!(e.contains("15 phase rows, expected 16"), "{e}");
}

fn training_results() -> TrainingResults {
    let config = TrainingParams::quick();
    let mut results = vec![];
    let mut cells = vec![];
    for arch in &config.archs {
        for &depth in &config.depths {
            results.push(ArchDepthResult {
                arch: arch.to_string(),
                depth,
                residual: arch.is_residual(),
                parameters: 100,
                final_train_error: stat(0.2),
                final_test_error: stat(0.3),
                final_train_loss: stat(0.5),
                diverged: 0,
                train_error_curve: vec![0.5, 0.2],
                test_error_curve: vec![0.5, 0.3],
                train_loss_curve: vec![1.0, 0.5],
            });
            let log = |step| GradLog {
                step,
                layer_grad_norms: vec![1.0, 2.0],
                line_r1: 0.5,
                line_slope: -1.0,
                mean_cosine: 0.1,
            };
            cells.push(CellRecord {
                key: format!("arch={arch},depth={depth},seed=0"),
                arch: arch.to_string(),
                depth,
                seed: 0,
                output: RunOutput {
                    history: History {
                        layers: vec!["stem".into(), "head".into()],
                        epochs: vec![],
                        logs: vec![log(0), log(10)],
                        diverged_at: None,
                        ..Default::default()
                    },
                    parameters: 100,
                },
            });
        }
    }
    TrainingResults {
        summary: TrainingSummary {
            schema: training::SCHEMA.into(),
            study: training::NAME.into(),
            provenance: provenance(),
            data: DataInfo {
                source: config.data.to_string(),
                train: 8,
                test: 4,
                shape: vec![1, 8, 8],
                classes: 10,
            },
            config,
            results,
            comparisons: vec![],
        },
        cells,
    }
}

#[test]
fn a_training_folder_reads_back_and_a_log_short_of_its_layers_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = training_results();
    r.write(dir.path()).unwrap();
    let d = TrainingData::read(dir.path()).unwrap();
    assert_eq!(d.summary, r.summary);
    assert_eq!(d.runs.len(), 4);
    assert_eq!(d.runs[3].output.history, r.cells[3].output.history);
    r.cells[2].output.history.logs[1].layer_grad_norms.pop();
    r.write(dir.path()).unwrap();
    let e = refusal(TrainingData::read(dir.path()));
    assert!(
        e.contains("runs.json: arch=resnet-bn,depth=2,seed=0"),
        "{e}"
    );
    r.summary.results.swap(0, 1);
    r.write(dir.path()).unwrap();
    let e = refusal(TrainingData::read(dir.path()));
    assert!(e.contains("where (plain-bn, depth 2) belongs"), "{e}");
}

fn correlation_results() -> CorrelationResults {
    let config = CorrelationParams {
        depths: vec![1, 4],
        side: 8,
        examples: 6,
        distance_bins: 3,
        seeds: 1,
        ..CorrelationParams::quick()
    };
    let (na, nd, ns, n, b) = (config.archs.len(), 2, 1, 8, 6);
    let results = config
        .archs
        .iter()
        .flat_map(|a| {
            config
                .depths
                .iter()
                .map(move |&depth| correlation::DepthSummary {
                    arch: a.to_string(),
                    depth,
                    adjacent_correlation: stat(0.5),
                    radial_slope: stat(-2.0),
                    radial_acf_mean: vec![1.0, 0.5, 0.2],
                    mean_cosine: stat(0.1),
                    layer_names: vec!["stem".into()],
                    layer_cosine_mean: vec![0.2],
                    coherence: stat(0.3),
                    snr: stat(1.0),
                    cosine_by_distance_mean: vec![0.3, 0.2, 0.1],
                })
        })
        .collect();
    CorrelationResults {
        summary: CorrelationSummary {
            schema: correlation::SCHEMA.into(),
            study: correlation::NAME.into(),
            provenance: provenance(),
            config,
            radial_band: [2, 3],
            distance_edges: vec![0.0, 1.0, 2.0, 3.0],
            references: vec![],
            results,
            images: None,
        },
        per_seed: vec![],
        axis: Array1::linspace(-2.0, 2.0, n),
        pictures: Array5::from_elem((na, nd, ns, n, n), 0.5),
        norm_pictures: Array5::from_elem((na, nd, ns, n, n), 1.5),
        radial_spectra: Array4::from_elem((na, nd, ns, n / 2 + 1), 0.1),
        cosines: Array4::from_elem((na, nd, b, b), 0.25f32),
        image_cosines: Array4::zeros((0, 0, 0, 0)),
    }
}

#[test]
fn a_correlation_folder_reads_back_and_wrong_shapes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = correlation_results();
    r.write(dir.path()).unwrap();
    let d = CorrelationData::read(dir.path()).unwrap();
    assert_eq!(d.summary, r.summary);
    assert_eq!(d.pictures, r.pictures);
    assert_eq!(d.cosines, r.cosines);
    write_npy(
        &dir.path().join(correlation::files::COSINES),
        &Array4::<f32>::zeros((2, 2, 5, 5)),
    )
    .unwrap();
    let e = refusal(CorrelationData::read(dir.path()));
    assert!(e.contains("cosine_matrices.npy: shape [2, 2, 5, 5]"), "{e}");
    r.write(dir.path()).unwrap();
    r.summary.distance_edges.pop();
    let summary = dir.path().join(correlation::files::SUMMARY);
    gradscope_contract::io::write_json(&summary, &r.summary).unwrap();
    let e = refusal(CorrelationData::read(dir.path()));
    assert!(e.contains("3 distance edges for 3 bins"), "{e}");
}

/// The image part: written, read back, and refused when its labels or a
/// seed's block cosines disagree with the config; written without it, no
/// image file is left.
#[test]
fn a_correlation_image_part_reads_back_and_bad_rows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = correlation_results();
    let c = r.summary.config.clone();
    let (na, nd, b) = (c.image_archs.len(), c.image_depths.len(), c.image_batch);
    let seed = || correlation::ImageSeed {
        mean_cosine: 0.1,
        same_class: 0.3,
        different_class: 0.0,
        coherence: 0.05,
        block_cosine: vec![0.1, 0.2],
    };
    let results = c
        .image_archs
        .iter()
        .flat_map(|a| {
            c.image_depths
                .iter()
                .map(move |&depth| correlation::ImageDepthSummary {
                    arch: a.to_string(),
                    depth,
                    mean_cosine: stat(0.1),
                    same_class: stat(0.3),
                    different_class: stat(0.0),
                    coherence: stat(0.05),
                    block_names: vec!["stem".into(), "head".into()],
                    block_cosine: vec![stat(0.1), stat(0.2)],
                    per_seed: vec![seed()],
                })
        })
        .collect();
    r.summary.images = Some(correlation::ImageSummary {
        image_shape: vec![1, 8, 8],
        classes: 10,
        labels: (0..b as u32).map(|i| i % 10).collect(),
        results,
    });
    r.image_cosines = Array4::from_elem((na, nd, b, b), 0.5f32);
    r.write(dir.path()).unwrap();
    let d = CorrelationData::read(dir.path()).unwrap();
    assert_eq!(d.summary, r.summary);
    assert_eq!(d.image_cosines.as_ref(), Some(&r.image_cosines));
    let summary = dir.path().join(correlation::files::SUMMARY);
    let mut bad = r.summary.clone();
    bad.images.as_mut().unwrap().labels.pop();
    gradscope_contract::io::write_json(&summary, &bad).unwrap();
    let e = refusal(CorrelationData::read(dir.path()));
    assert!(
        e.contains(&format!("{} image labels for a batch of {b}", b - 1)),
        "{e}"
    );
    let mut bad = r.summary.clone();
    bad.images.as_mut().unwrap().results[1].per_seed[0]
        .block_cosine
        .pop();
    gradscope_contract::io::write_json(&summary, &bad).unwrap();
    let e = refusal(CorrelationData::read(dir.path()));
    assert!(e.contains("does not hold 2 block cosines"), "{e}");
    r.summary.images = None;
    r.write(dir.path()).unwrap();
    assert!(
        correlation::images::files::ALL
            .iter()
            .all(|f| !dir.path().join(f).exists())
    );
    assert!(
        CorrelationData::read(dir.path())
            .unwrap()
            .image_cosines
            .is_none()
    );
}

fn ensemble_results(blocks: usize) -> EnsembleResults {
    let curve = || LesionCurve {
        count: vec![0, 1],
        error: vec![stat(0.1), stat(0.2)],
    };
    EnsembleResults {
        summary: EnsembleSummary {
            schema: ensemble::SCHEMA.into(),
            study: ensemble::NAME.into(),
            provenance: provenance(),
            config: EnsembleParams::quick(),
            archs: vec![ArchEnsemble {
                arch: "resnet-bn".into(),
                residual: true,
                blocks,
                intact_error: stat(0.1),
                single_deletion: vec![0.15; blocks],
                random_deletion: curve(),
                reordering: curve(),
                path_length_share: vec![0.25, 0.5, 0.25],
                path_gradient: vec![1.0, 0.5, 0.25],
                total_gradient: vec![1.0, 1.0, 0.25],
                effective_range: Some((0, 1)),
            }],
        },
        nets: vec![],
    }
}

#[test]
fn an_ensemble_summary_reads_back_and_curves_of_another_length_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = ensemble_results(2);
    r.write(dir.path()).unwrap();
    assert_eq!(ensemble::read_summary(dir.path()).unwrap(), r.summary);
    ensemble_results(3).write(dir.path()).unwrap();
    let e = refusal(ensemble::read_summary(dir.path()));
    assert!(
        e.contains("resnet-bn: path curves of lengths [3, 3, 3] for 3 blocks"),
        "{e}"
    );
}
