/// Errors of the statistics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    #[error("{what} needs at least {need} values, got {got}")]
    TooShort {
        what: &'static str,
        need: usize,
        got: usize,
    },
    #[error("invalid frequency band {lo}..={hi} for a spectrum of {bins} bins")]
    Band { lo: usize, hi: usize, bins: usize },
    #[error("{0}")]
    Shape(String),
}

pub type Result<T> = std::result::Result<T, StatsError>;
