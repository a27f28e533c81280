#![warn(missing_docs)]
//! Figures (PNG + SVG), HTML and Markdown reports, drawn from
//! `notebooks-data/<study>/` alone: a report can be rebuilt without
//! recomputing, or drawn from data made elsewhere.

pub mod axis;
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

/// The file beside a study's report that holds its index card.
pub const CARD_FILE: &str = "card.json";

/// Build the report of study `name` with `build` from `data_root/name`
/// into `reports_root/name`, and store its index card beside it.
pub fn build_study(
    name: &str,
    build: Builder,
    data_root: &Path,
    reports_root: &Path,
) -> Result<StudyCard> {
    let (data, out) = (data_root.join(name), reports_root.join(name));
    let card = build(&data, &out)?;
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

/// Rebuild the reports of the studies in `only` (all with data when `None`)
/// and the index, which lists `studies` (folder name and page builder; the
/// command line's study registry) in their order. A study left out keeps
/// its report and is listed from its stored card; without one, its report
/// is built too.
pub fn rebuild(
    studies: &[(&str, Builder)],
    data_root: &Path,
    reports_root: &Path,
    only: Option<&[&str]>,
) -> Result<Vec<StudyCard>> {
    let mut cards = Vec::new();
    for &(name, build) in studies {
        if !data_root.join(name).join("summary.json").exists() {
            continue;
        }
        let stored = reports_root.join(name).join(CARD_FILE);
        let card = match only {
            Some(only) if !only.contains(&name) && stored.exists() => {
                let text = std::fs::read(&stored).map_err(|e| io_error(&stored, e))?;
                serde_json::from_slice(&text).map_err(|e| io_error(&stored, e.into()))?
            }
            _ => build_study(name, build, data_root, reports_root)?,
        };
        cards.push(card);
    }
    if cards.is_empty() {
        return Err(ReportError::NoData(data_root.to_path_buf()));
    }
    pages::write_index(reports_root, data_root, &cards)?;
    Ok(cards)
}
