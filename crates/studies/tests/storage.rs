//! Stored cells are lossless, validated and kept per configuration; results
//! are published as one transaction; saved weights survive a rerun.

use std::path::Path;
use std::sync::{Arc, Mutex};

use gradscope_studies::cells::{config_dir, select_config, stored_configs};
use gradscope_studies::shattered::ShatteredParams;
use gradscope_studies::{
    CellCache, LockKind, Params, RunOptions, Study, StudyFolder, merge_study, run_study,
};

/// The reproduction of lost infinities: f32, weights ~ N(0, 10²), depth 60.
fn exploding() -> ShatteredParams {
    ShatteredParams {
        dtype: "f32".parse().unwrap(),
        weight_init: "normal(10)".parse().unwrap(),
        depths: vec![1, 30, 60],
        ..ShatteredParams::quick()
    }
}

fn options(cells: &Path, log: &Arc<Mutex<Vec<String>>>) -> RunOptions {
    let log = log.clone();
    RunOptions {
        threads: 2,
        cache: Some(CellCache {
            dir: cells.to_path_buf(),
            resume: true,
        }),
        log: Some(Arc::new(move |m: &str| log.lock().unwrap().push(m.into()))),
        ..Default::default()
    }
}

/// Run and publish into `out/shattered`; the published files, by name.
fn run_into(
    p: &ShatteredParams,
    out: &Path,
    opts: &RunOptions,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let study = p.check().unwrap();
    let dir = out.join("shattered");
    let folder = StudyFolder::open(&dir, LockKind::Exclusive, "test", &|_| {}).unwrap();
    folder.publish(&run_study(&study, opts).unwrap()).unwrap();
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.ends_with(".npy") || n.ends_with(".csv")
        })
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn infinities_survive_storage_and_a_rerun_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let p = exploding();
    let log = Arc::new(Mutex::new(Vec::new()));
    // Fresh, without a cache: the reference.
    let fresh = run_into(&p, &tmp.path().join("fresh"), &RunOptions::with_threads(2));
    let out = tmp.path().join("out");
    let cells = out.join("shattered/cells");
    let first = run_into(&p, &out, &options(&cells, &log));
    let again = run_into(&p, &out, &options(&cells, &log));
    assert!(
        log.lock().unwrap().iter().any(|m| m.contains("resumed")),
        "{:?}",
        log.lock().unwrap()
    );
    // The case is real: some input gradients overflowed to ±inf or NaN.
    let g: ndarray::Array4<f64> =
        gradscope_studies::shattered::read_npy(&out.join("shattered/input_gradients.npy")).unwrap();
    let non_finite = g.iter().filter(|v| !v.is_finite()).count();
    assert!(non_finite > 0, "no overflow: the test would prove nothing");
    // Overflow shows as ±inf where it first happens and as NaN once inf − inf
    // or 0·inf follows (NaN propagates through ReLU); the byte-identity below
    // covers both.
    assert_eq!(
        fresh.keys().collect::<Vec<_>>(),
        again.keys().collect::<Vec<_>>()
    );
    for (name, bytes) in &fresh {
        assert_eq!(
            bytes, &first[name],
            "{name}: stored run differs from a fresh one"
        );
        assert_eq!(
            bytes, &again[name],
            "{name}: rerun from stored cells differs"
        );
    }
}

#[test]
fn a_damaged_cell_is_recomputed_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let p = ShatteredParams::quick();
    let study = p.check().unwrap();
    let cells = tmp.path().join("shattered/cells");
    let log = Arc::new(Mutex::new(Vec::new()));
    let opts = options(&cells, &log);
    let first = run_into(&p, tmp.path(), &opts);
    let dir = config_dir(&cells, &study.cell_identity());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cell"))
        .collect();
    files.sort();
    assert_eq!(files.len(), study.cells().len());
    // One cell edited (a byte flipped: same length, wrong data), one cut
    // short, one replaced by another cell's file.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&files[0], &bytes).unwrap();
    let cut = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &cut[..cut.len() / 3]).unwrap();
    std::fs::copy(&files[3], &files[2]).unwrap();
    log.lock().unwrap().clear();
    let again = run_into(&p, tmp.path(), &opts);
    let msgs = log.lock().unwrap().clone();
    let recomputed: Vec<_> = msgs
        .iter()
        .filter(|m| m.contains("recomputing cell"))
        .collect();
    assert_eq!(recomputed.len(), 3, "{msgs:?}");
    assert!(
        recomputed.iter().any(|m| m.contains("checksum")),
        "{msgs:?}"
    );
    assert!(
        recomputed.iter().any(|m| m.contains("holds cell")),
        "{msgs:?}"
    );
    assert_eq!(first, again);
}

#[test]
fn configurations_keep_their_own_cells_and_merge_picks_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cells = tmp.path().join("shattered/cells");
    let log = Arc::new(Mutex::new(Vec::new()));
    let four = ShatteredParams {
        seeds: 4,
        ..ShatteredParams::quick()
    };
    let two = ShatteredParams {
        seeds: 2,
        ..ShatteredParams::quick()
    };
    run_into(&four, tmp.path(), &options(&cells, &log));
    let one_config = select_config::<ShatteredParams>(&cells, None).unwrap();
    assert_eq!(one_config.1.cells, four.check().unwrap().cells().len());
    run_into(&two, tmp.path(), &options(&cells, &log));
    let stored = stored_configs(&cells).unwrap();
    assert_eq!(stored.len(), 2);
    for c in &stored {
        assert!(c.dir.join("params.json").is_file());
    }
    // Two stored: merge must be told which.
    let e = select_config::<ShatteredParams>(&cells, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cells of 2 configurations are stored") && e.contains("--config"),
        "{e}"
    );
    let key = config_dir(&cells, &four.check().unwrap().cell_identity());
    let key = key.file_name().unwrap().to_string_lossy().into_owned();
    let (study, chosen) = select_config::<ShatteredParams>(&cells, Some(&key[..6])).unwrap();
    assert_eq!(chosen.key, key);
    assert_eq!(study.params().seeds, 4);
    let merged = merge_study(&study, &options(&cells, &log)).unwrap();
    assert_eq!(merged.summary.config.seeds, 4);
    // A params.json that does not describe its folder is refused.
    std::fs::copy(
        stored
            .iter()
            .find(|c| c.key != key)
            .unwrap()
            .dir
            .join("params.json"),
        chosen.dir.join("params.json"),
    )
    .unwrap();
    let e = select_config::<ShatteredParams>(&cells, Some(&key))
        .unwrap_err()
        .to_string();
    assert!(e.contains("refusing to merge a mismatch"), "{e}");
}

#[test]
fn saved_weights_are_written_on_a_rerun_from_stored_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let weights = tmp.path().join("weights");
    // The MLPs on the grid only: the image nets save no weights yet.
    let p = ShatteredParams {
        save_weights: Some(weights.clone()),
        image_archs: vec![],
        ..ShatteredParams::quick()
    };
    let cells = tmp.path().join("shattered/cells");
    let log = Arc::new(Mutex::new(Vec::new()));
    run_into(&p, tmp.path(), &options(&cells, &log));
    let read = || -> std::collections::BTreeMap<_, _> {
        std::fs::read_dir(&weights)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
            .collect()
    };
    let saved = read();
    // One file per cell: the deepest net of each (arch, seed).
    assert_eq!(saved.len(), p.check().unwrap().cells().len());
    std::fs::remove_dir_all(&weights).unwrap();
    log.lock().unwrap().clear();
    run_into(&p, tmp.path(), &options(&cells, &log));
    assert!(log.lock().unwrap().iter().any(|m| m.contains("resumed")));
    assert_eq!(read(), saved);
}

#[test]
fn a_second_writer_of_a_study_folder_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shattered");
    let held = StudyFolder::open(
        &dir,
        LockKind::Exclusive,
        "gradscope shattered --seeds 4",
        &|_| {},
    )
    .unwrap();
    let e = StudyFolder::open(&dir, LockKind::Exclusive, "gradscope shattered", &|_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!(
            "in use by pid {} (gradscope shattered --seeds 4)",
            std::process::id()
        )),
        "{e}"
    );
    let e = StudyFolder::open(&dir, LockKind::Shared, "shard", &|_| {}).unwrap_err();
    assert!(e.to_string().contains("in use"));
    drop(held);
    let a = StudyFolder::open(&dir, LockKind::Shared, "shard 1/2", &|_| {}).unwrap();
    let _b = StudyFolder::open(&dir, LockKind::Shared, "shard 2/2", &|_| {}).unwrap();
    let e = a.publish(
        &run_study(
            &ShatteredParams::quick().check().unwrap(),
            &RunOptions::with_threads(1),
        )
        .unwrap(),
    );
    assert!(e.unwrap_err().to_string().contains("exclusive lock"));
}

/// A run's history survives the cell store with and without its optional
/// parts: the statistics (off for every seed but the first of the
/// trainability study) and the learned shortcut scales λ (NaN once
/// diverged). The compact format reads fields by position, so a part left
/// out would read as the end of the input and the cell be recomputed, or
/// refused by `merge`.
#[test]
fn histories_without_their_optional_parts_round_trip_through_the_cell_store() {
    use gradscope_studies::cells::{decode, encode};
    use gradscope_studies::trainability::TrainabilityConfig;
    use gradscope_train::History;
    let base = History {
        layers: vec!["stem".into(), "head".into()],
        diverged_at: Some(3),
        ..Default::default()
    };
    let learned = History {
        learned_lambda: vec![0.5, f64::NAN],
        ..base.clone()
    };
    for h in [base, learned] {
        let bytes = encode::<TrainabilityConfig>("k", &h).unwrap();
        let back = decode::<TrainabilityConfig>("k", &bytes).unwrap();
        assert_eq!(back.layers, h.layers);
        assert_eq!(back.diverged_at, h.diverged_at);
        assert!(back.stats.is_empty());
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.learned_lambda), bits(&h.learned_lambda));
        // In JSON the empty parts are left out, and NaN is null.
        let json = serde_json::to_string(&h).unwrap();
        assert!(!json.contains("stats"), "{json}");
        assert_eq!(
            json.contains("learned_lambda"),
            !h.learned_lambda.is_empty()
        );
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back.learned_lambda.len(), h.learned_lambda.len());
    }
}
