/// Errors of a gradient capture.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Inputs the capture cannot use (shape, dtype, depth).
    #[error("invalid input: {0}")]
    Input(String),
    /// Building or running the net failed.
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] gradscope_engine::EngineError),
}

/// Result with a [`ProbeError`].
pub type Result<T> = std::result::Result<T, ProbeError>;
