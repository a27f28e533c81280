/// A description refused: a string that does not parse, or a parameter out of its range.
///
/// The nets and training crates wrap it (`NetError::Spec`, `TrainError::Spec`)
/// with the same message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
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
}

impl SpecError {
    /// A [`SpecError::InvalidParam`] for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        SpecError::InvalidParam {
            field,
            reason: reason.into(),
        }
    }

    /// A [`SpecError::Parse`] of `input` as a `what`.
    pub fn parse(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        SpecError::Parse {
            what,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result with a [`SpecError`].
pub type Result<T> = std::result::Result<T, SpecError>;
