use std::path::PathBuf;

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("invalid {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("data: {0}")]
    Data(String),
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    #[error(transparent)]
    Stats(#[from] gradscope_stats::StatsError),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("interrupted")]
    Interrupted,
}

impl TrainError {
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        TrainError::Config {
            field,
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
