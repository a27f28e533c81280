//! What the index page shows of a study.

/// A study's entry on `reports/index.html`.
#[derive(Clone, Debug)]
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
