//! The docs and examples against the repository: what they cite exists,
//! and the data files have their fields where docs/data.md says.

mod common;

use std::path::Path;

#[test]
fn examples_and_docs_cite_only_files_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = common::walk(&root.join("examples"));
    files.extend(common::walk(&root.join("docs")));
    files.push(root.join("README.md"));
    let mut missing = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        // Every word naming a Markdown file: relative to the repository or to the citing file.
        for word in text.split(|c: char| !(c.is_alphanumeric() || "._/-".contains(c))) {
            let word = word.trim_start_matches("./");
            // report.md and index.md are pages the reports write.
            if word.ends_with(".md")
                && !["report.md", "index.md"].contains(&word)
                && !root.join(word).exists()
                && !f.parent().unwrap().join(word).exists()
            {
                missing.push(format!("{}: {word}", f.display()));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn runs_json_has_its_fields_where_the_docs_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/data.md")).unwrap();
    assert!(
        docs.contains("`output` {`parameters`, `history`}"),
        "docs/data.md changed"
    );
    let text = std::fs::read_to_string(root.join("notebooks-data/degradation/runs.json")).unwrap();
    let runs: serde_json::Value = serde_json::from_str(&text).unwrap();
    let runs = runs.as_array().unwrap();
    assert!(!runs.is_empty());
    for r in runs {
        for key in ["key", "arch", "depth", "seed"] {
            assert!(r.get(key).is_some(), "{key}");
        }
        assert!(r["output"]["parameters"].as_u64().unwrap() > 0);
        let h = &r["output"]["history"];
        for key in ["layers", "epochs", "logs", "diverged_at"] {
            assert!(h.get(key).is_some(), "history.{key}");
        }
        let e = &h["epochs"][0];
        for key in [
            "epoch",
            "step",
            "lr",
            "train_loss",
            "train_error",
            "test_loss",
            "test_error",
        ] {
            assert!(e.get(key).is_some(), "epochs[].{key}");
        }
    }
}
