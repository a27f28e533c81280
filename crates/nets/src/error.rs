use std::path::PathBuf;

/// Errors raised while validating a net spec, building a net or moving its weights.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A parameter is out of its valid range.
    #[error("invalid {field}: {reason}")]
    InvalidParam { field: &'static str, reason: String },
    /// A spec string (architecture, init, activation …) could not be parsed.
    #[error("cannot parse {what} `{input}`: {reason}")]
    Parse {
        what: &'static str,
        input: String,
        reason: String,
    },
    /// A weights file could not be read, or does not match the net.
    #[error("weights file {}: {reason}", path.display())]
    Weights { path: PathBuf, reason: String },
    /// An error from candle's tensor operations.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl NetError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        NetError::InvalidParam {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn parse(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        NetError::Parse {
            what,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, NetError>;
