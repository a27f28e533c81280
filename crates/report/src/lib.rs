#![warn(missing_docs)]
//! Figures (PNG + SVG), HTML and Markdown reports, drawn from
//! `notebooks-data/<study>/` alone: a report can be rebuilt without
//! recomputing, or drawn from data made elsewhere.

mod card;
pub mod correlation;
pub mod doc;
pub mod ensemble;
mod error;
pub mod figure;
pub mod norms;
pub mod pages;
pub mod shattered;
pub mod skips;
pub mod style;
pub mod training;

use std::path::Path;

pub use card::StudyCard;
pub use error::{ReportError, Result};

/// Builds a study's pages from its data folder into its report folder.
pub type Builder = fn(&Path, &Path) -> Result<StudyCard>;

/// Every study with a report: its folder name and page builder, in index order.
pub const STUDIES: &[(&str, Builder)] = &[
    (gradscope_studies::shattered::NAME, shattered::build),
    (gradscope_studies::norms::NAME, norms::build),
    (gradscope_studies::skips::NAME, skips::build),
    (gradscope_studies::training::NAME, training::build),
    (gradscope_studies::ensemble::NAME, ensemble::build),
    (gradscope_studies::correlation::NAME, correlation::build),
];

/// Build the report of study `name` from `data_root/name` into `reports_root/name`.
pub fn build_study(name: &str, data_root: &Path, reports_root: &Path) -> Result<StudyCard> {
    let (data, out) = (data_root.join(name), reports_root.join(name));
    match STUDIES.iter().find(|(n, _)| *n == name) {
        Some((_, build)) => build(&data, &out),
        None => Err(ReportError::NoData(data)),
    }
}

/// Rebuild the report of every study that has data, and the index.
pub fn rebuild_all(data_root: &Path, reports_root: &Path) -> Result<Vec<StudyCard>> {
    let mut cards = Vec::new();
    for (name, _) in STUDIES {
        if data_root.join(name).join("summary.json").exists() {
            cards.push(build_study(name, data_root, reports_root)?);
        }
    }
    if cards.is_empty() {
        return Err(ReportError::NoData(data_root.to_path_buf()));
    }
    pages::write_index(reports_root, &cards)?;
    Ok(cards)
}
