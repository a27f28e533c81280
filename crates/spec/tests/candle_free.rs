//! The spec crate stays free of candle, so the report (and anything else that
//! only reads descriptions) builds without a tensor library: no candle crate
//! among its dependencies, direct or through others.

use std::collections::BTreeSet;

/// The crate's own manifest names no candle crate in any dependency table.
#[test]
fn the_manifest_names_no_candle_dependency() {
    let manifest: toml::Table = toml::from_str(include_str!("../Cargo.toml")).unwrap();
    let mut names = Vec::new();
    let mut tables: Vec<&toml::Table> = vec![&manifest];
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        tables.extend(targets.values().filter_map(|t| t.as_table()));
    }
    for table in tables {
        for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(deps) = table.get(kind).and_then(|d| d.as_table()) {
                names.extend(deps.keys().cloned());
            }
        }
    }
    assert!(
        names.contains(&"serde".to_string()),
        "read no dependencies: {names:?}"
    );
    assert!(
        names.iter().all(|n| !n.contains("candle")),
        "candle among the dependencies: {names:?}"
    );
}

/// Every package the lock file resolves for gradscope-spec, transitively
/// (dev-dependencies included): none is a candle crate.
#[test]
fn no_candle_crate_is_reachable_in_the_lock_file() {
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
    let mut todo = find("gradscope-spec");
    assert_eq!(todo.len(), 1, "gradscope-spec is not in {path}");
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
    assert!(names.contains(&"rand"), "walked too little: {names:?}");
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("candle") && !n.starts_with("gemm")),
        "gradscope-spec reaches {names:?}"
    );
}
