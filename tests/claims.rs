//! The claims of every report of a fresh `reproduce --quick`, re-decided from
//! its data files by the same independent checks as the committed reports
//! (crates/report/tests/claims.rs): a caption written for the default run
//! that the quick run's numbers contradict fails here.

mod common;

#[path = "../crates/report/tests/claims/verify.rs"]
mod verify;

#[path = "../crates/report/tests/claims/decide.rs"]
mod decide;

use common::{assert_ok, gradscope, path};

#[test]
fn every_claim_of_a_quick_reproduce_holds_on_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, reports) = (tmp.path().join("data"), tmp.path().join("reports"));
    assert_ok(&gradscope(&[
        "reproduce",
        "--quick",
        "-q",
        "--out",
        path(&out),
        "--reports",
        path(&reports),
    ]));
    // The arrays are there, so every claim is re-decided, those from NPY files too.
    assert!(out.join("shattered").join("grid.npy").exists());
    for study in gradscope_cli::registry::STUDIES {
        let name = study.name();
        let n = verify::verify_all(&out.join(name), &reports.join(name), &decide::decide);
        assert!(n > 0, "{name}: the report makes no claims");
    }
    let index = std::fs::read_to_string(reports.join("index.md")).unwrap();
    assert!(
        index.contains(&format!("{}/", out.display())),
        "the index names the data folder it was drawn from"
    );
}

#[test]
fn a_run_too_shallow_to_shatter_does_not_say_it_shatters() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, reports) = (tmp.path().join("data"), tmp.path().join("reports"));
    assert_ok(&gradscope(&[
        "shattered",
        "--quick",
        "-q",
        "--archs",
        "plain,plain-bn",
        "--depths",
        "1,2,4",
        "--out",
        path(&out),
        "--reports",
        path(&reports),
    ]));
    let name = gradscope_contract::shattered::NAME;
    verify::verify_all(&out.join(name), &reports.join(name), &decide::decide);
    let claims = verify::claims(&reports.join(name));
    let shatters = claims
        .iter()
        .find(|c| c.id == "shattered/feedforward-shatters")
        .unwrap();
    assert!(!shatters.holds, "{}", shatters.test);
    assert!(
        shatters
            .sentence
            .starts_with("Feedforward nets have not shattered by depth 4")
    );
    // No residual net: nothing is compared with one.
    assert!(!claims.iter().any(|c| c.sentence.contains("Residual")));
}
