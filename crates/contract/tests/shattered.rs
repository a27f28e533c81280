//! Shattered and skips folders round-trip, and a folder whose files disagree
//! with its summary is a typed error naming the file, never a panic.

mod common;

use common::{refusal, shattered};
use gradscope_contract::ContractError;
use gradscope_contract::io::{write_json, write_npy};
use gradscope_contract::shattered::{ShatteredData, files};
use gradscope_contract::skips::{self, SkipsData, SkipsParams, SkipsResults, SkipsSummary};
use gradscope_spec::Arch;

#[test]
fn a_shattered_folder_reads_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let r = shattered(&[Arch::PLAIN_BN, Arch::RESNET_BN], &[1, 3], true);
    r.write(dir.path()).unwrap();
    let d = ShatteredData::read(dir.path()).unwrap();
    assert_eq!(d.summary, r.summary);
    assert_eq!(d.grid, r.grid);
    assert_eq!(d.input_gradients, r.input_gradients);
    assert_eq!(d.power_spectra, r.power_spectra);
    assert_eq!(d.autocorrelation, r.autocorrelation);
    assert_eq!(d.correlation, r.correlation);
    assert_eq!(d.noise, r.noise);
    assert_eq!(d.arch_index("resnet-bn"), Some(1));
    assert_eq!(d.result("resnet-bn", 3).map(|x| x.depth), Some(3));
    // Written without its correlation matrices, the stale file goes.
    let r = shattered(&[Arch::PLAIN_BN, Arch::RESNET_BN], &[1, 3], false);
    r.write(dir.path()).unwrap();
    assert!(!dir.path().join(files::CORRELATION).exists());
    assert_eq!(ShatteredData::read(dir.path()).unwrap().correlation, None);
}

#[test]
fn a_shattered_folder_that_disagrees_with_its_summary_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let r = shattered(&[Arch::PLAIN_BN], &[1, 3], true);
    let write = || r.write(dir.path()).unwrap();

    // An array of another shape than the summary implies.
    write();
    let short = r.input_gradients.slice(ndarray::s![.., .., .., ..15]);
    write_npy(&dir.path().join(files::INPUT_GRADIENTS), &short).unwrap();
    let e = refusal(ShatteredData::read(dir.path()));
    assert!(
        e.contains(
            "input_gradients.npy: shape [1, 2, 2, 15] does not match the summary's [1, 2, 2, 16]"
        ),
        "{e}"
    );

    // Correlation matrices of the wrong size.
    write();
    write_npy(
        &dir.path().join(files::CORRELATION),
        &ndarray::Array4::<f32>::zeros((1, 2, 8, 8)),
    )
    .unwrap();
    assert!(refusal(ShatteredData::read(dir.path())).contains("correlation_matrices.npy"));

    // A summary missing a row, or with rows out of order, or short norms.
    let broken = |f: &dyn Fn(&mut gradscope_contract::shattered::ShatteredSummary)| {
        write();
        let mut s = r.summary.clone();
        f(&mut s);
        write_json(&dir.path().join(files::SUMMARY), &s).unwrap();
        refusal(ShatteredData::read(dir.path()))
    };
    let e = broken(&|s| {
        s.results.pop();
    });
    assert!(e.ends_with("1 results for 1 archs × 2 depths"), "{e}");
    let e = broken(&|s| s.results.swap(0, 1));
    assert!(e.contains("where (plain-bn, depth 1) belongs"), "{e}");
    let e = broken(&|s| {
        s.results[1].layer_grad_norm_mean.pop();
    });
    assert!(e.contains("needs 4 per-layer norms"), "{e}");
    let e = broken(&|s| {
        s.references.pop();
    });
    assert!(e.contains("expected 2 (white, brown)"), "{e}");
    let e = broken(&|s| s.config.depths.clear());
    assert!(e.contains("no arch or no depth"), "{e}");

    // A missing file is an I/O error naming it; a broken summary a data error.
    write();
    std::fs::remove_file(dir.path().join(files::NOISE)).unwrap();
    let e = ShatteredData::read(dir.path()).unwrap_err();
    assert!(matches!(e, ContractError::Io { .. }), "{e}");
    assert!(e.to_string().contains("noise.npy"), "{e}");
    write();
    std::fs::write(dir.path().join(files::SUMMARY), b"{\"schema\": ").unwrap();
    let e = ShatteredData::read(dir.path()).unwrap_err();
    assert!(matches!(e, ContractError::Data { .. }), "{e}");
}

fn skips_results(params: &SkipsParams) -> SkipsResults {
    let compare = shattered(&params.archs, &params.depths, false);
    let sweep = shattered(&params.archs[..1], &[params.sweep_depth], false);
    SkipsResults {
        summary: SkipsSummary {
            schema: skips::SCHEMA.into(),
            study: skips::NAME.into(),
            provenance: common::provenance(),
            config: params.clone(),
            band: compare.summary.band,
            compare: compare.summary.results.clone(),
            sweep: vec![],
        },
        compare,
        sweep,
    }
}

#[test]
fn a_skips_folder_reads_back_with_its_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let params = SkipsParams {
        archs: vec![Arch::PLAIN, Arch::RESNET_BN],
        depths: vec![1, 2],
        ..SkipsParams::quick()
    };
    let r = skips_results(&params);
    r.write(dir.path()).unwrap();
    let d = SkipsData::read(dir.path()).unwrap();
    assert_eq!(d.compare.summary, r.compare.summary);
    assert_eq!(d.summary.compare, r.summary.compare);
    assert!(
        dir.path()
            .join(skips::files::SWEEP_DIR)
            .join("summary.json")
            .exists()
    );

    // A comparison folder of other variants than the summary lists.
    let other = shattered(&[Arch::PLAIN, Arch::PLAIN_BN], &[1, 2], false);
    other
        .write(&dir.path().join(skips::files::COMPARE_DIR))
        .unwrap();
    let e = refusal(SkipsData::read(dir.path()));
    assert!(e.contains("are not the skips summary's"), "{e}");

    // A summary with a comparison row too few.
    let mut r = skips_results(&params);
    r.summary.compare.pop();
    r.write(dir.path()).unwrap();
    let e = refusal(skips::read_summary(dir.path()));
    assert!(e.ends_with("3 results for 2 archs × 2 depths"), "{e}");
}
