/// Errors of a gradient capture.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid input: {0}")]
    Input(String),
    #[error(transparent)]
    Net(#[from] gradscope_nets::NetError),
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, ProbeError>;
