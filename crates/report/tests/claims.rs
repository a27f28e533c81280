//! Every claim of every committed report, re-decided from the study's CSV files.
//!
//! Each report lists the sentences it chose by a test on the data in
//! `claims.json`. Here each claim is decided again from the data files alone,
//! by code that shares nothing with the report but its tolerances: a sentence
//! the data contradict, a sentence missing from the page, or a new claim
//! without a check here fails. This file checks the committed `reports/`
//! against the committed `notebooks-data/`; the workflow tests run the same
//! checks on a fresh `reproduce --quick`.
//!
//! With `GRADSCOPE_CLAIMS_DATA=DIR` the reports are built from `DIR` into a
//! temporary folder (or `GRADSCOPE_CLAIMS_OUT`) and checked there instead.

#[path = "claims/verify.rs"]
mod verify;

#[path = "claims/decide.rs"]
mod decide;

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Check every claim of study `name`'s report (built by `build`).
fn check(name: &str, build: gradscope_report::Builder) {
    let tmp = tempfile::tempdir().unwrap();
    let (data, reports) = match std::env::var_os("GRADSCOPE_CLAIMS_DATA") {
        Some(data) => {
            let data = PathBuf::from(data);
            let out = std::env::var_os("GRADSCOPE_CLAIMS_OUT")
                .map_or(tmp.path().to_path_buf(), PathBuf::from);
            gradscope_report::build_study(name, build, &data, &out).unwrap();
            (data, out)
        }
        None => (root().join("notebooks-data"), root().join("reports")),
    };
    let n = verify::verify_all(&data.join(name), &reports.join(name), &decide::decide);
    assert!(n > 0, "{name}: the report makes no claims");
}

#[test]
fn norms_claims_hold() {
    check(
        gradscope_contract::norms::NAME,
        gradscope_report::norms::build,
    );
}

#[test]
fn shattered_claims_hold() {
    check(
        gradscope_contract::shattered::NAME,
        gradscope_report::shattered::build,
    );
}

#[test]
fn skips_claims_hold() {
    check(
        gradscope_contract::skips::NAME,
        gradscope_report::skips::build,
    );
}

#[test]
fn ensemble_claims_hold() {
    check(
        gradscope_contract::ensemble::NAME,
        gradscope_report::ensemble::build,
    );
}

#[test]
fn training_claims_hold() {
    check(
        gradscope_contract::training::NAME,
        gradscope_report::training::build,
    );
}

#[test]
fn correlation_claims_hold() {
    check(
        gradscope_contract::correlation::NAME,
        gradscope_report::correlation::build,
    );
}

#[test]
fn landscape_claims_hold() {
    check(
        gradscope_contract::landscape::NAME,
        gradscope_report::landscape::build,
    );
}

#[test]
fn transformers_claims_hold() {
    check(
        gradscope_contract::transformers::NAME,
        gradscope_report::transformers::build,
    );
}

#[test]
fn curvature_claims_hold() {
    check(
        gradscope_contract::curvature::NAME,
        gradscope_report::curvature::build,
    );
}

#[test]
fn trainability_claims_hold() {
    check(
        gradscope_contract::trainability::NAME,
        gradscope_report::trainability::build,
    );
}
