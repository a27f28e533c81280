//! The report reads the data contract and nothing that computes: it builds
//! without candle, gemm, or the crates that make the data (nets, engine,
//! probe, train, studies), so a report can be rebuilt, or drawn from data
//! made elsewhere, with a small build.

use std::collections::BTreeSet;

/// The crates no report may reach, by name prefix.
const COMPUTE: [&str; 7] = [
    "candle",
    "gemm",
    "gradscope-nets",
    "gradscope-engine",
    "gradscope-probe",
    "gradscope-train",
    "gradscope-studies",
];

/// The names in a manifest's `[dependencies]` table.
fn dependencies(manifest: &str) -> BTreeSet<String> {
    let manifest: toml::Table = toml::from_str(manifest).unwrap();
    manifest["dependencies"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn the_report_depends_on_the_contract_spec_stats_and_drawing_only() {
    let names = dependencies(include_str!("../Cargo.toml"));
    let want = [
        "dejavu",
        "gradscope-contract",
        "gradscope-spec",
        "gradscope-stats",
        "ndarray",
        "plotters",
        "serde",
        "serde_json",
        "svg2pdf",
        "thiserror",
    ];
    assert_eq!(
        names,
        want.map(String::from).into(),
        "report's dependencies"
    );
}

#[test]
fn the_contract_depends_on_no_compute_crate() {
    let names = dependencies(include_str!("../../contract/Cargo.toml"));
    assert!(
        names.contains("gradscope-spec"),
        "read too little: {names:?}"
    );
    for n in &names {
        assert!(
            COMPUTE.iter().all(|c| !n.starts_with(c)),
            "the contract depends on {n}"
        );
    }
}

/// Every package the lock file resolves for gradscope-report, transitively:
/// none is a compute crate.
#[test]
fn no_compute_crate_is_reachable_from_the_report() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock");
    let lock: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let packages = lock["package"].as_array().unwrap();
    let field = |p: &toml::Value, k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
    // A dependency is written `name`, or `name version` when several versions are locked.
    let find = |dep: &str| -> Vec<&toml::Value> {
        let mut words = dep.split_whitespace();
        let (name, version) = (words.next().unwrap(), words.next());
        packages
            .iter()
            .filter(|p| field(p, "name").as_deref() == Some(name))
            .filter(|p| version.is_none() || field(p, "version").as_deref() == version)
            .collect()
    };
    let mut seen = BTreeSet::new();
    let mut todo = find("gradscope-report");
    assert_eq!(todo.len(), 1, "gradscope-report is not in {path}");
    while let Some(p) = todo.pop() {
        let id = (field(p, "name").unwrap(), field(p, "version"));
        if !seen.insert(id) {
            continue;
        }
        for dep in p
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            let found = find(dep.as_str().unwrap());
            assert!(!found.is_empty(), "{dep} is not in the lock file");
            todo.extend(found);
        }
    }
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"gradscope-contract") && names.contains(&"plotters"),
        "walked too little: {names:?}"
    );
    let reached: Vec<&&str> = names
        .iter()
        .filter(|n| COMPUTE.iter().any(|c| n.starts_with(c)))
        .collect();
    assert!(reached.is_empty(), "the report reaches {reached:?}");
}
