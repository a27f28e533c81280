use std::path::PathBuf;

/// Errors while drawing figures or writing report pages.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// plotters could not draw a figure.
    #[error("drawing {}: {reason}", path.display())]
    Draw {
        /// The figure file.
        path: PathBuf,
        /// plotters' message.
        reason: String,
    },
    /// Reading data or writing a report file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// The data folder holds no study results.
    #[error("no study data under {}: run a study first (e.g. `gradscope reproduce`)", .0.display())]
    NoData(PathBuf),
    /// A study's data folder could not be read, or is not what the data
    /// contract says.
    #[error(transparent)]
    Contract(#[from] gradscope_contract::ContractError),
}

/// Result with a [`ReportError`].
pub type Result<T> = std::result::Result<T, ReportError>;
