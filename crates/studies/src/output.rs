//! Results on disk: the data contract's file helpers (every file written
//! atomically, read back naming itself), and the check that an output name
//! stays inside its folder.

use std::path::{Path, PathBuf};

pub use gradscope_contract::io::{
    Csv, create_dir, create_new, num, read_json, read_summary, temp_name, write_atomic, write_json,
    write_npy,
};

use crate::{Result, StudyError};

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
    fn names_cannot_escape_the_folder() {
        let d = Path::new("out");
        assert!(inside(d, "shattered").is_ok());
        assert!(inside(d, "../etc").is_err());
        assert!(inside(d, "/etc").is_err());
        assert!(inside(d, "a/../../b").is_err());
    }
}
