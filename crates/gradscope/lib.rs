//! gradscope: a research workbench for the gradients of deep networks.
//!
//! The pipeline, one crate per stage, re-exported here:
//! [`nets`] (candle models from a validated spec) → [`probe`] (gradient capture)
//! → [`stats`] (correlation, spectra, fits) → [`studies`] (config in, results
//! out) → [`report`] (figures, HTML, Markdown).

pub use gradscope_nets as nets;
pub use gradscope_probe as probe;
pub use gradscope_report as report;
pub use gradscope_stats as stats;
pub use gradscope_studies as studies;
