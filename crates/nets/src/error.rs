use std::path::PathBuf;

/// Errors raised while validating a net spec, building a net or moving its weights.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A parameter is out of its valid range.
    #[error("invalid {field}: {reason}")]
    InvalidParam {
        /// The parameter.
        field: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// A spec string (architecture, init, activation …) could not be parsed.
    #[error("cannot parse {what} `{input}`: {reason}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The text given.
        input: String,
        /// Why it does not parse.
        reason: String,
    },
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

/// Result with a [`NetError`].
pub type Result<T> = std::result::Result<T, NetError>;
