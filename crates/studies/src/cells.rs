//! Stored cells: each finished cell of a configuration, kept so that an
//! interrupted, repeated or sharded run reuses it.
//!
//! Layout: `<out>/<study>/cells/<config>/` per configuration, `<config>` a
//! hash of the study's cell identity, holding `params.json` (the parameters
//! that made them, for `merge`) and one `<hash of the cell key>.cell` per
//! cell. Different configurations never share a folder, so shards of one
//! configuration and runs of another cannot mix.
//!
//! A cell file is lossless: the header `gradscope.cell/2\n`, the cell (its
//! study, key and output) in postcard's binary serde format, where every
//! float is its 8 (or 4) bytes, ±inf, NaN and its sign included, then an
//! FNV-1a checksum of all that. A file that is damaged, of another study or
//! key, or undecodable is reported and recomputed, never trusted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use gradscope_contract::transaction::fnv1a64;

use crate::Result;
use crate::output::{create_dir, write_atomic};
use crate::study::Study;

/// The study's parameters, stored beside its cells (for `merge`).
pub const PARAMS_FILE: &str = "params.json";
const HEADER: &[u8] = b"gradscope.cell/2\n";
const SUFFIX: &str = "cell";

#[derive(Serialize, Deserialize)]
struct StoredCell<T> {
    study: String,
    key: String,
    output: T,
}

/// The name of a configuration's cell folder: a hash of its cell identity.
pub fn config_key(identity: &serde_json::Value) -> String {
    format!(
        "{:016x}",
        gradscope_nets::derive_seed(0, &format!("config\n{identity}"))
    )
}

/// `cells/<config>/`: where the cells of this configuration live.
pub fn config_dir(cells: &Path, identity: &serde_json::Value) -> PathBuf {
    cells.join(config_key(identity))
}

/// The file of a cell inside its configuration's folder.
pub fn cell_path(config_dir: &Path, key: &str) -> PathBuf {
    config_dir.join(format!(
        "{:016x}.{SUFFIX}",
        gradscope_nets::derive_seed(0, &format!("cell\n{key}"))
    ))
}

/// The bytes of a stored cell.
pub fn encode<S: Study>(key: &str, output: &S::CellOutput) -> std::result::Result<Vec<u8>, String> {
    let cell = StoredCell {
        study: S::NAME.to_string(),
        key: key.to_string(),
        output,
    };
    let mut bytes = HEADER.to_vec();
    bytes.extend(postcard::to_allocvec(&cell).map_err(|e| e.to_string())?);
    let sum = fnv1a64(&bytes);
    bytes.extend(sum.to_le_bytes());
    Ok(bytes)
}

/// A stored cell decoded and checked, or what is wrong with it.
pub fn decode<S: Study>(key: &str, bytes: &[u8]) -> std::result::Result<S::CellOutput, String> {
    let body = bytes
        .strip_prefix(HEADER)
        .ok_or("not a gradscope.cell/2 file")?;
    if body.len() < 8 {
        return Err("truncated".into());
    }
    let (payload, sum) = bytes.split_at(bytes.len() - 8);
    let sum = u64::from_le_bytes(sum.try_into().map_err(|_| "truncated")?);
    if fnv1a64(payload) != sum {
        return Err("checksum mismatch (damaged or edited)".into());
    }
    let cell: StoredCell<S::CellOutput> =
        postcard::from_bytes(&payload[HEADER.len()..]).map_err(|e| e.to_string())?;
    if cell.study != S::NAME || cell.key != key {
        return Err(format!(
            "holds cell `{}` of study `{}`",
            cell.key, cell.study
        ));
    }
    Ok(cell.output)
}

/// What was found for a cell.
pub enum Stored<T> {
    /// No file.
    Missing,
    /// A file that cannot be used, and why.
    Bad(String),
    /// The cell's output.
    Found(T),
}

/// The stored output of a cell, if a valid one is there.
pub fn load<S: Study>(config_dir: &Path, key: &str) -> Stored<S::CellOutput> {
    let path = cell_path(config_dir, key);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Stored::Missing,
        Err(e) => return Stored::Bad(format!("{}: {e}", path.display())),
    };
    match decode::<S>(key, &bytes) {
        Ok(o) => Stored::Found(o),
        Err(why) => Stored::Bad(format!("{}: {why}", path.display())),
    }
}

/// Store a finished cell (atomically).
pub fn store<S: Study>(config_dir: &Path, key: &str, output: &S::CellOutput) -> Result<()> {
    let bytes = encode::<S>(key, output).map_err(|e| crate::StudyError::Data {
        path: config_dir.to_path_buf(),
        reason: format!("cannot store cell `{key}`: {e}"),
    })?;
    Ok(write_atomic(&cell_path(config_dir, key), &bytes)?)
}

/// Create a configuration's cell folder with its parameters.
pub fn prepare_config_dir(config_dir: &Path, params: &serde_json::Value) -> Result<()> {
    create_dir(config_dir)?;
    let path = config_dir.join(PARAMS_FILE);
    if !path.exists() {
        crate::output::write_json(&path, params)?;
    }
    Ok(())
}

/// A configuration whose cells are stored.
#[derive(Clone, Debug)]
pub struct StoredConfig {
    /// Its folder name (the hash of its cell identity).
    pub key: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Cell files in it.
    pub cells: usize,
}

/// The configurations stored under `cells/`, by folder name.
pub fn stored_configs(cells: &Path) -> std::io::Result<Vec<StoredConfig>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(cells) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in entries {
        let e = e?;
        let dir = e.path();
        if !e.file_type()?.is_dir() || !dir.join(PARAMS_FILE).is_file() {
            continue;
        }
        let cells = std::fs::read_dir(&dir)?
            .filter_map(|f| f.ok())
            .filter(|f| f.path().extension().is_some_and(|x| x == SUFFIX))
            .count();
        out.push(StoredConfig {
            key: e.file_name().to_string_lossy().into_owned(),
            dir,
            cells,
        });
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// The configuration `merge` summarises: `wanted` (a folder name, or a
/// unique prefix of one), or the only one stored. Several stored and none
/// chosen is an error listing them with how many cells each holds.
pub fn select_config<P: crate::Params>(
    cells: &Path,
    wanted: Option<&str>,
) -> Result<(P::Config, StoredConfig)> {
    let data_err = |reason: String| crate::StudyError::Data {
        path: cells.to_path_buf(),
        reason,
    };
    let stored = stored_configs(cells).map_err(|e| crate::StudyError::io(cells, e))?;
    let listing = || {
        stored
            .iter()
            .map(|c| format!("{} ({} cells)", c.key, c.cells))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen = match wanted {
        Some(w) => {
            let matching: Vec<&StoredConfig> =
                stored.iter().filter(|c| c.key.starts_with(w)).collect();
            match matching[..] {
                [one] => one.clone(),
                [] => {
                    return Err(data_err(format!(
                        "no stored configuration `{w}` (stored: {})",
                        listing()
                    )));
                }
                _ => return Err(data_err(format!("`{w}` names several: {}", listing()))),
            }
        }
        None => match &stored[..] {
            [one] => one.clone(),
            [] => {
                return Err(data_err(
                    "no stored cells: run the study (or its shards) first".into(),
                ));
            }
            _ => {
                return Err(data_err(format!(
                    "cells of {} configurations are stored: {}; pick one with --config KEY",
                    stored.len(),
                    listing()
                )));
            }
        },
    };
    let params_path = chosen.dir.join(PARAMS_FILE);
    let params: P = crate::output::read_json(&params_path)?;
    let config = params.check()?;
    let found = config_key(&crate::study::Study::cell_identity(&config));
    if found != chosen.key {
        return Err(crate::StudyError::Data {
            path: params_path,
            reason: format!(
                "describes configuration {found}, not {} (its folder): refusing to merge a mismatch",
                chosen.key
            ),
        });
    }
    Ok((config, chosen))
}
