#![warn(missing_docs)]
//! Figures (PNG + SVG), HTML and Markdown reports, drawn from
//! `notebooks-data/<study>/` alone: a report can be rebuilt without
//! recomputing, or drawn from data made elsewhere.

pub mod axis;
mod card;
pub mod claims;
pub mod correlation;
pub mod curvature;
pub mod doc;
pub mod ensemble;
mod error;
pub mod figure;
pub mod format;
pub mod landscape;
pub mod norms;
pub mod pages;
pub mod shattered;
pub mod skips;
pub mod style;
pub mod train_stats;
pub mod trainability;
pub mod training;
pub mod transformers;

use std::path::Path;

use gradscope_contract::lock::{FolderLock, LockKind};
use gradscope_contract::transaction::{Transaction, recover};

pub use card::StudyCard;
pub use error::{ReportError, Result};

/// Builds a study's pages from its data folder into its report folder.
pub type Builder = fn(&Path, &Path) -> Result<StudyCard>;

/// The file beside a study's report that holds its index card.
pub const CARD_FILE: &str = "card.json";

/// The suffixes of a report folder's files (for folders written before manifests).
const REPORT_SUFFIXES: &[&str] = &["png", "svg", "html", "md", "json"];

/// This process's command line, recorded as the holder of the locks it takes.
fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// Build the report of study `name` with `build` from `data_root/name` into
/// `reports_root/name`, and store its index card beside it. The data folder
/// is locked for reading and the report folder for writing; the report is
/// built aside and replaces the old one in one step, so the folder holds the
/// old report or the new one, never a mix.
pub fn build_study(
    name: &str,
    build: Builder,
    data_root: &Path,
    reports_root: &Path,
) -> Result<StudyCard> {
    let (data, out) = (data_root.join(name), reports_root.join(name));
    let command = command_line();
    let data_lock = FolderLock::for_reading(&data, &command)?;
    if let Some(lock) = &data_lock {
        recover(lock)?;
    }
    let out_lock = FolderLock::acquire(&out, LockKind::Exclusive, &command)?;
    let tx = Transaction::begin(&out_lock, REPORT_SUFFIXES)?;
    let card = build(&data, tx.path())?;
    let card_path = tx.path().join(CARD_FILE);
    let json = serde_json::to_vec_pretty(&card).map_err(|e| io_error(&card_path, e.into()))?;
    gradscope_contract::io::write_atomic(&card_path, &json)?;
    tx.commit()?;
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
/// is built too. One rebuild at a time per report folder; its index changes
/// as one transaction.
pub fn rebuild(
    studies: &[(&str, Builder)],
    data_root: &Path,
    reports_root: &Path,
    only: Option<&[&str]>,
) -> Result<Vec<StudyCard>> {
    let with_data: Vec<(&str, Builder)> = studies
        .iter()
        .copied()
        .filter(|(name, _)| data_root.join(name).join("summary.json").exists())
        .collect();
    if with_data.is_empty() {
        return Err(ReportError::NoData(data_root.to_path_buf()));
    }
    let root_lock = FolderLock::acquire(reports_root, LockKind::Exclusive, &command_line())?;
    let mut cards = Vec::new();
    for (name, build) in with_data {
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
    let tx = Transaction::begin(&root_lock, &[])?;
    pages::write_index(tx.path(), data_root, &cards)?;
    tx.commit()?;
    Ok(cards)
}
