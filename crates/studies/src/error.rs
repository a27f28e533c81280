use std::path::PathBuf;

/// Errors of a study run.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid {field}: {reason}")]
    Config { field: &'static str, reason: String },
    /// A configuration file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    ConfigFile { path: PathBuf, reason: String },
    /// Reading or writing a results file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A results file exists but is not what this version expects.
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    #[error(transparent)]
    Probe(#[from] gradscope_probe::ProbeError),
    #[error(transparent)]
    Stats(#[from] gradscope_stats::StatsError),
    /// The run was interrupted; finished work is kept.
    #[error("interrupted")]
    Interrupted,
}

impl StudyError {
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        StudyError::Config {
            field,
            reason: reason.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StudyError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, StudyError>;

impl From<candle_core::Error> for StudyError {
    fn from(e: candle_core::Error) -> Self {
        StudyError::Net(gradscope_nets::NetError::Candle(e))
    }
}
