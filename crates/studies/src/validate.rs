//! Checks shared by the studies' parameters.

use std::fmt::Display;

use crate::{Result, StudyError};

/// At least one architecture; with `unique`, none listed twice (studies
/// whose outputs are keyed by arch need that).
pub(crate) fn check_archs<A: PartialEq + Display>(archs: &[A], unique: bool) -> Result<()> {
    if archs.is_empty() {
        return Err(StudyError::config(
            "archs",
            "list at least one architecture",
        ));
    }
    if unique {
        for (i, a) in archs.iter().enumerate() {
            if archs[..i].contains(a) {
                return Err(StudyError::config(
                    "archs",
                    format!("`{a}` is listed twice"),
                ));
            }
        }
    }
    Ok(())
}

/// At least one depth, every one ≥ 1; sorted ascending without repeats.
pub(crate) fn check_depths(depths: &mut Vec<usize>) -> Result<()> {
    if depths.is_empty() {
        return Err(StudyError::config("depths", "list at least one depth"));
    }
    depths.sort_unstable();
    depths.dedup();
    if depths[0] == 0 {
        return Err(StudyError::config(
            "depths",
            "every depth must be at least 1, got 0",
        ));
    }
    Ok(())
}
