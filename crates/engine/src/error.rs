/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Inputs or requests the engine cannot serve (shape, dtype, depth, mode).
    #[error("invalid input: {0}")]
    Input(String),
    /// A capability the engine does not compute for this kind of net (it
    /// names which), rather than a wrong number.
    #[error("not computed on the engine: {0}")]
    Unsupported(String),
    /// Building or running the net failed.
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    /// A candle tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Result with an [`EngineError`].
pub type Result<T> = std::result::Result<T, EngineError>;
