use std::path::PathBuf;

/// Errors while drawing figures or writing report pages.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing {}: {reason}", path.display())]
    Draw { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no study data under {}: run a study first (e.g. `gradscope reproduce`)", .0.display())]
    NoData(PathBuf),
    #[error(transparent)]
    Study(#[from] gradscope_studies::StudyError),
}

pub type Result<T> = std::result::Result<T, ReportError>;
