use std::path::PathBuf;

/// Errors raised while validating a net spec, building a net or moving its weights.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A spec refused: a parameter out of its range, or a string that does not parse.
    #[error(transparent)]
    Spec(#[from] gradscope_spec::SpecError),
    /// A weights file could not be read, or does not match the net.
    #[error("weights file {}: {reason}", path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An error from candle's tensor operations.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl NetError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        NetError::Spec(gradscope_spec::SpecError::invalid(field, reason))
    }
}

/// Result with a [`NetError`].
pub type Result<T> = std::result::Result<T, NetError>;
