//! Writing pages, the provenance block, and the index of all studies.

use std::path::Path;

use gradscope_contract::Provenance;
use gradscope_contract::io::{create_dir, write_atomic};

use crate::Result;
use crate::card::StudyCard;
use crate::claims::Claims;
use crate::doc::{Block, Doc};
use crate::format::decimals;

/// Write `index.html` and `report.md` of a page into `dir`.
pub fn write(doc: &Doc, dir: &Path) -> Result<()> {
    write_atomic(&dir.join("index.html"), doc.to_html().as_bytes())?;
    write_atomic(&dir.join("report.md"), doc.to_markdown().as_bytes())?;
    Ok(())
}

/// The provenance section every study page ends with.
pub fn provenance(doc: &mut Doc, p: &Provenance, config_json: &str) {
    doc.heading("Provenance");
    doc.push(Block::Facts(vec![
        ("gradscope".into(), p.version.clone()),
        (
            "git commit".into(),
            p.git_commit
                .clone()
                .unwrap_or_else(|| "not recorded (not run from a git checkout)".into()),
        ),
        ("started (UTC)".into(), p.started.clone()),
        ("run time".into(), format!("{} s", decimals(p.seconds, 1))),
        ("threads".into(), p.threads.to_string()),
        (
            "command".into(),
            p.command.clone().unwrap_or_else(|| "library call".into()),
        ),
    ]));
    doc.paragraph("Configuration:");
    doc.push(Block::Code(config_json.to_string()));
    doc.paragraph("Data files:");
}

/// End a study page and write it: the claims it made with their tests
/// (and `claims.json`), the provenance with the configuration, the data
/// files behind it, then `index.html` and `report.md` in `dir`.
pub fn finish(
    doc: &mut Doc,
    claims: &Claims,
    p: &Provenance,
    config: &impl serde::Serialize,
    data_files: Block,
    dir: &Path,
) -> Result<()> {
    claims.finish(doc, dir)?;
    provenance(
        doc,
        p,
        &serde_json::to_string_pretty(config).unwrap_or_default(),
    );
    doc.push(data_files);
    write(doc, dir)
}

/// Write `reports/index.html` and `reports/index.md` linking every study,
/// naming `data_root` as the folder the figures were drawn from.
pub fn write_index(root: &Path, data_root: &Path, cards: &[StudyCard]) -> Result<()> {
    create_dir(root)?;
    let mut doc = Doc::new("gradscope reports");
    doc.paragraph(format!(
        "Why plain deep nets are hard to train and residual nets are not, measured. Each study below links to its page \
         (figures as PNG and SVG, tables, provenance, and the claims it makes with the test behind each); the data behind every \
         figure is in {}/.",
        data_root.display()
    ));
    for c in cards {
        doc.push(Block::Card {
            title: c.title.clone(),
            href: c.href.clone(),
            thumbnail: c.thumbnail.clone(),
            finding: c.finding.clone(),
            numbers: c.numbers.clone(),
        });
    }
    write_atomic(&root.join("index.html"), doc.to_html().as_bytes())?;
    write_atomic(&root.join("index.md"), doc.to_markdown().as_bytes())?;
    Ok(())
}
