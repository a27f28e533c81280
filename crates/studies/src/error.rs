use std::path::PathBuf;

/// Errors of a study run.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The parameter.
        field: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// A configuration file could not be read or parsed.
    #[error("{}: {reason}", path.display())]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line when known.
        reason: String,
    },
    /// Reading or writing a results file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A results file exists but is not what this version expects.
    #[error("{}: {reason}", path.display())]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A study folder could not be written, or read back as the data
    /// contract says.
    #[error(transparent)]
    Contract(#[from] gradscope_contract::ContractError),
    /// A net or run description refused (a parameter out of range, a spec
    /// string that does not parse).
    #[error(transparent)]
    Spec(#[from] gradscope_spec::SpecError),
    /// Building or loading a net failed.
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    /// A training run failed (its data, a checkpoint, the net or the engine
    /// under it).
    #[error(transparent)]
    Train(#[from] gradscope_train::TrainError),
    /// A gradient capture failed.
    #[error(transparent)]
    Probe(#[from] gradscope_probe::ProbeError),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] gradscope_engine::EngineError),
    /// A statistic failed.
    #[error(transparent)]
    Stats(#[from] gradscope_stats::StatsError),
    /// A numerical fault in a cell, with fatal faults asked for.
    #[error("numerical fault (--fatal-faults): {0}")]
    Fault(String),
    /// The run was interrupted; finished work is kept.
    #[error("interrupted")]
    Interrupted,
}

impl StudyError {
    /// A [`StudyError::Config`] for `field`.
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        StudyError::Config {
            field,
            reason: reason.into(),
        }
    }

    /// A [`StudyError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StudyError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with a [`StudyError`].
pub type Result<T> = std::result::Result<T, StudyError>;

impl From<candle_core::Error> for StudyError {
    fn from(e: candle_core::Error) -> Self {
        StudyError::Net(gradscope_nets::NetError::Candle(e))
    }
}
