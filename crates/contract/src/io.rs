//! Files of a study folder: every file is written to a temporary file in its
//! target folder, flushed to disk and renamed into place, so a reader (or a
//! crash) never sees half a file; every file read back names itself in its
//! errors, and arrays are checked against the shapes the summary implies.

use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::{Array, ArrayBase, Data, Dimension};
use ndarray_npy::WriteNpyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::temp::{create_new, remove_dead_temporaries, temp_name};
use crate::{ContractError, Result, fault};

/// Write `bytes` to `path` atomically: a new temporary file in the same
/// folder (an unpredictable name, created exclusively, never through a
/// symlink), flushed to disk, then renamed over `path` (and the folder synced
/// so the rename lasts). On error the temporary file is removed and `path`
/// is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| ContractError::io(path, std::io::Error::other("not a file path")))?;
    fault::point(path).map_err(|e| ContractError::io(path, e))?;
    let tmp: PathBuf = dir.join(temp_name(&name.to_string_lossy()));
    let result = (|| {
        let mut f = create_new(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| ContractError::io(path, e))
}

/// Flush a folder's entries (renames, removals) to disk; best effort, as
/// some file systems refuse to sync a folder.
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Create a folder (and its parents), with the path in the error.
pub fn create_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| ContractError::io(path, e))
}

/// Remove a file a previous run left that this one does not write.
pub fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ContractError::io(path, e)),
        _ => Ok(()),
    }
}

/// [`remove_stale`] for each of `names` in `dir`.
pub fn remove_stale_files(dir: &Path, names: &[&str]) -> Result<()> {
    names.iter().try_for_each(|f| remove_stale(&dir.join(f)))
}

/// Pretty JSON, written atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| ContractError::io(path, e.into()))?;
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
        .map_err(|e| ContractError::io(path, std::io::Error::other(e.to_string())))?;
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
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| ContractError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ContractError::data(path, e.to_string()))
}

/// Read a study's `summary.json`, refusing any schema but `want` (a folder
/// written by another version, or by another study), and a folder that
/// does not match its manifest ([`verify`](crate::transaction::verify)).
pub fn read_summary<T: DeserializeOwned>(
    path: &Path,
    want: &str,
    schema_of: impl Fn(&T) -> &str,
) -> Result<T> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::transaction::verify(dir)?;
    }
    let summary: T = read_json(path)?;
    let found = schema_of(&summary);
    if found != want {
        return Err(ContractError::data(
            path,
            format!("schema `{found}`, this version reads `{want}`"),
        ));
    }
    Ok(summary)
}

/// Read an NPY file, naming it in the error.
pub fn read_npy<T: ndarray_npy::ReadableElement, D: Dimension>(path: &Path) -> Result<Array<T, D>> {
    let f = std::fs::File::open(path).map_err(|e| ContractError::io(path, e))?;
    ndarray_npy::ReadNpyExt::read_npy(f)
        .map_err(|e: ndarray_npy::ReadNpyError| ContractError::data(path, e.to_string()))
}

/// Read an NPY file whose shape must be `want` (what the summary implies).
pub fn read_npy_shaped<T: ndarray_npy::ReadableElement, D: Dimension>(
    path: &Path,
    want: &[usize],
) -> Result<Array<T, D>> {
    let a: Array<T, D> = read_npy(path)?;
    if a.shape() != want {
        return Err(ContractError::data(
            path,
            format!(
                "shape {:?} does not match the summary's {want:?}",
                a.shape()
            ),
        ));
    }
    Ok(a)
}

/// `Ok` when `holds`, else a [`ContractError::Data`] for `path` saying `what`
/// (a check of a folder read back).
pub fn ensure(holds: bool, path: &Path, what: impl FnOnce() -> String) -> Result<()> {
    if holds {
        Ok(())
    } else {
        Err(ContractError::data(path, what()))
    }
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
    fn arrays_of_the_wrong_shape_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        write_npy(&p, &ndarray::Array2::<f64>::zeros((2, 3))).unwrap();
        let a: ndarray::Array2<f64> = read_npy_shaped(&p, &[2, 3]).unwrap();
        assert_eq!(a.dim(), (2, 3));
        let e = read_npy_shaped::<f64, ndarray::Ix2>(&p, &[3, 2]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: shape [2, 3] does not match the summary's [3, 2]",
                p.display()
            )
        );
        // A three-dimensional file where two dimensions are expected.
        let e = read_npy::<f64, ndarray::Ix3>(&p).unwrap_err();
        assert!(matches!(e, ContractError::Data { .. }), "{e}");
    }

    #[test]
    fn another_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.json");
        write_json(&p, &serde_json::json!({ "schema": "gradscope.other/9" })).unwrap();
        let e = read_summary(&p, "gradscope.shattered/1", |v: &serde_json::Value| {
            v["schema"].as_str().unwrap_or_default()
        })
        .unwrap_err();
        assert!(
            e.to_string().ends_with(
                "schema `gradscope.other/9`, this version reads `gradscope.shattered/1`"
            ),
            "{e}"
        );
    }
}
