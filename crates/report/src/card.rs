//! What the index page shows of a study.

/// A study's entry on `reports/index.html`, also stored as
/// `reports/<study>/card.json` so the index can list a study whose report
/// was not rebuilt this time.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudyCard {
    /// Study folder name (`shattered`, `training`, …).
    pub name: String,
    /// Title shown on the index.
    pub title: String,
    /// Page, relative to the reports root.
    pub href: String,
    /// Thumbnail image, relative to the reports root.
    pub thumbnail: Option<String>,
    /// One paragraph: what the data show.
    pub finding: String,
    /// Key numbers, label → value.
    pub numbers: Vec<(String, String)>,
}
