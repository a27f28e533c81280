#![warn(missing_docs)]
//! Figures (PNG + SVG), HTML and Markdown reports, drawn from
//! `notebooks-data/<study>/` alone: a report can be rebuilt without
//! recomputing, or drawn from data made elsewhere.

mod card;
pub mod claims;
pub mod correlation;
pub mod doc;
pub mod ensemble;
mod error;
pub mod figure;
pub mod format;
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
    (gradscope_contract::shattered::NAME, shattered::build),
    (gradscope_contract::norms::NAME, norms::build),
    (gradscope_contract::skips::NAME, skips::build),
    (gradscope_contract::training::NAME, training::build),
    (gradscope_contract::ensemble::NAME, ensemble::build),
    (gradscope_contract::correlation::NAME, correlation::build),
];

/// The file beside a study's report that holds its index card.
pub const CARD_FILE: &str = "card.json";

/// Build the report of study `name` from `data_root/name` into `reports_root/name`.
pub fn build_study(name: &str, data_root: &Path, reports_root: &Path) -> Result<StudyCard> {
    let (data, out) = (data_root.join(name), reports_root.join(name));
    let card = match STUDIES.iter().find(|(n, _)| *n == name) {
        Some((_, build)) => build(&data, &out)?,
        None => return Err(ReportError::NoData(data)),
    };
    let json =
        serde_json::to_vec_pretty(&card).map_err(|e| io_error(&out.join(CARD_FILE), e.into()))?;
    gradscope_contract::io::write_atomic(&out.join(CARD_FILE), &json)?;
    Ok(card)
}

fn io_error(path: &Path, source: std::io::Error) -> ReportError {
    ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Rebuild the report of every study that has data, and the index.
pub fn rebuild_all(data_root: &Path, reports_root: &Path) -> Result<Vec<StudyCard>> {
    rebuild(data_root, reports_root, None)
}

/// Rebuild the reports of the studies in `only` (all with data when `None`)
/// and the index. A study left out keeps its report and is listed from its
/// stored card; without one, its report is built too.
pub fn rebuild(
    data_root: &Path,
    reports_root: &Path,
    only: Option<&[&str]>,
) -> Result<Vec<StudyCard>> {
    let mut cards = Vec::new();
    for (name, _) in STUDIES {
        if !data_root.join(name).join("summary.json").exists() {
            continue;
        }
        let stored = reports_root.join(name).join(CARD_FILE);
        let card = match only {
            Some(only) if !only.contains(name) && stored.exists() => {
                let text = std::fs::read(&stored).map_err(|e| io_error(&stored, e))?;
                serde_json::from_slice(&text).map_err(|e| io_error(&stored, e.into()))?
            }
            _ => build_study(name, data_root, reports_root)?,
        };
        cards.push(card);
    }
    if cards.is_empty() {
        return Err(ReportError::NoData(data_root.to_path_buf()));
    }
    pages::write_index(reports_root, data_root, &cards)?;
    Ok(cards)
}
