/// Errors of a gradient capture.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Inputs the capture cannot use (shape, dtype, depth).
    #[error("invalid input: {0}")]
    Input(String),
    /// Building or running the net failed.
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    /// A candle tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result with a [`ProbeError`].
pub type Result<T> = std::result::Result<T, ProbeError>;
