/// Errors of the statistics.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StatsError {
    /// A statistic got fewer values than it needs.
    #[error("{what} needs at least {need} values, got {got}")]
    TooShort {
        /// The statistic.
        what: &'static str,
        /// The fewest values it accepts.
        need: usize,
        /// The values it got.
        got: usize,
    },
    /// A slope-fit band outside the spectrum or empty.
    #[error("invalid frequency band {lo}..={hi} for a spectrum of {bins} bins")]
    Band {
        /// First bin of the band.
        lo: usize,
        /// Last bin of the band (inclusive).
        hi: usize,
        /// Bins in the spectrum.
        bins: usize,
    },
    /// Arrays whose shapes do not fit together.
    #[error("{0}")]
    Shape(String),
    /// A parameter outside the range where it means something.
    #[error("{name} = {value} is out of range: {expected}")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// The value it got.
        value: f64,
        /// The range it must lie in.
        expected: &'static str,
    },
}

/// Result with a [`StatsError`].
pub type Result<T> = std::result::Result<T, StatsError>;
