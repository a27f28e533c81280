use std::path::PathBuf;

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A training parameter is out of its valid range (a config error), or
    /// a spec string does not parse.
    #[error(transparent)]
    Spec(#[from] gradscope_spec::SpecError),
    /// Examples that do not fit the net or each other.
    #[error("data: {0}")]
    Data(String),
    /// A checkpoint could not be written, read, or does not match the run.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Building or loading the net failed.
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    /// A gradient statistic failed.
    #[error(transparent)]
    Stats(#[from] gradscope_stats::StatsError),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] gradscope_engine::EngineError),
    /// A candle tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The run was asked to stop (Ctrl-C); its last checkpoint stands.
    #[error("interrupted")]
    Interrupted,
}

impl TrainError {
    /// The config error for `field`: a [`TrainError::Spec`] holding
    /// [`SpecError::InvalidParam`](gradscope_spec::SpecError::InvalidParam).
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        TrainError::Spec(gradscope_spec::SpecError::invalid(field, reason))
    }
}

/// Result with a [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
