//! Results on disk: every file is written to a temporary file in its target
//! folder, flushed to disk and renamed into place, so a reader (or a crash)
//! never sees half a file.

use std::path::{Path, PathBuf};

use ndarray::{ArrayBase, Data, Dimension};
use ndarray_npy::WriteNpyExt;
use serde::Serialize;

use crate::{Result, StudyError};

/// Write `bytes` to `path` atomically: temp file in the same folder, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    gradscope_nets::fs::write_atomic(path, bytes).map_err(|e| StudyError::io(path, e))
}

/// Create a folder (and its parents), with the path in the error.
pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| StudyError::io(path, e))
}

/// Pretty JSON, written atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| StudyError::io(path, e.into()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// An NPY array (readable by `numpy.load`), written atomically.
pub fn write_npy<S, D>(path: &Path, array: &ArrayBase<S, D>) -> Result<()>
where
    S: Data,
    S::Elem: ndarray_npy::WritableElement,
    D: Dimension,
{
    let mut bytes = Vec::new();
    array
        .write_npy(&mut bytes)
        .map_err(|e| StudyError::io(path, std::io::Error::other(e.to_string())))?;
    write_atomic(path, &bytes)
}

/// A CSV table built row by row. Numbers print in Rust's shortest
/// round-trip form; NaN and inf print as `NaN`, `inf`, `-inf` (pandas reads them).
#[derive(Debug, Default)]
pub struct Csv {
    text: String,
    columns: usize,
}

impl Csv {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        let mut c = Csv {
            text: String::new(),
            columns: header.len(),
        };
        c.text.push_str(&header.join(","));
        c.text.push('\n');
        c
    }

    /// Append a row; cells are quoted when they hold a comma, quote or newline.
    pub fn row(&mut self, cells: &[String]) {
        debug_assert_eq!(cells.len(), self.columns);
        let quoted: Vec<String> = cells
            .iter()
            .map(|c| {
                if c.contains([',', '"', '\n']) {
                    format!("\"{}\"", c.replace('"', "\"\""))
                } else {
                    c.clone()
                }
            })
            .collect();
        self.text.push_str(&quoted.join(","));
        self.text.push('\n');
    }

    /// The CSV text so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Write the table to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.text.as_bytes())
    }
}

/// Format a number for CSV/Markdown: shortest round-trip form.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

/// Read and parse a JSON file, naming the file in the error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| StudyError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StudyError::Data {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Read a study's `summary.json`, refusing any schema but `want` (a folder
/// written by another version, or by another study).
pub fn read_summary<T: serde::de::DeserializeOwned>(
    path: &Path,
    want: &str,
    schema_of: impl Fn(&T) -> &str,
) -> Result<T> {
    let summary: T = read_json(path)?;
    let found = schema_of(&summary);
    if found != want {
        return Err(StudyError::Data {
            path: path.to_path_buf(),
            reason: format!("schema `{found}`, this version reads `{want}`"),
        });
    }
    Ok(summary)
}

/// `dir/name`, refusing names that would leave `dir` (absolute paths, `..`).
pub fn inside(dir: &Path, name: &str) -> Result<PathBuf> {
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(StudyError::config(
            "output name",
            format!("`{name}` would leave {}", dir.display()),
        ));
    }
    Ok(dir.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn writing_into_a_missing_folder_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing").join("a.json");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
        assert!(!dir.path().join("missing").exists());
    }

    #[test]
    fn csv_quotes_awkward_cells() {
        let mut c = Csv::new(&["a", "b"]);
        c.row(&["x,y".into(), num(f64::NAN)]);
        c.row(&["say \"hi\"".into(), num(0.1)]);
        assert_eq!(c.as_str(), "a,b\n\"x,y\",NaN\n\"say \"\"hi\"\"\",0.1\n");
    }

    #[test]
    fn names_cannot_escape_the_folder() {
        let d = Path::new("out");
        assert!(inside(d, "shattered").is_ok());
        assert!(inside(d, "../etc").is_err());
        assert!(inside(d, "/etc").is_err());
        assert!(inside(d, "a/../../b").is_err());
    }
}
