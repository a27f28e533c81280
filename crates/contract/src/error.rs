use std::path::PathBuf;

/// A study folder that cannot be written, or read back as the contract says.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but is not what this version expects: another schema,
    /// a broken file, or shapes and counts that disagree with the summary.
    #[error("{}: {reason}", path.display())]
    Data {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the folder's lock.
    #[error("{} is in use by {holder}; wait for it to finish or stop it", path.display())]
    Busy {
        /// The locked folder.
        path: PathBuf,
        /// Who holds it (`pid N (command)`), as it recorded itself.
        holder: String,
    },
}

impl ContractError {
    /// A [`ContractError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ContractError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`ContractError::Data`] for `path`.
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        ContractError::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Result with a [`ContractError`].
pub type Result<T> = std::result::Result<T, ContractError>;
