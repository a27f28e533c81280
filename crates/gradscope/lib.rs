//! gradscope: a research workbench for the gradients of deep networks.
//!
//! The pipeline, one crate per stage, re-exported here:
//! [`spec`] (descriptions of nets and runs, parsed and checked, no candle) →
//! [`nets`] (one description of a net: candle models from a validated spec) →
//! [`engine`] (per-op kernels, or candle's autograd where they do not reach) →
//! [`probe`] (gradient capture) → [`stats`] (correlation, spectra, fits) →
//! [`train`] (training loops, losses, checkpoints) and [`data`] (the data
//! sets: embedded digits, MNIST, CIFAR-10) →
//! [`studies`] (config in, results out) → [`contract`] (the files of
//! `notebooks-data/<study>/`: schemas, writers, validating readers) →
//! [`report`] (figures, HTML, Markdown, from the contract alone).
//!
//! A measurement in a few lines: the lag-1 correlation r₁ and spectral slope of
//! df/dx for a 16-block resnet with BN (Balduzzi et al. 2017).
//!
//! ```
//! use gradscope::nets::{Arch, Mlp, Net, NetParams};
//! use gradscope::probe::{capture, scalar_grid, CaptureOpts};
//! use gradscope::stats::{adjacent_correlation, power_spectrum, spectral_slope, Band};
//!
//! let spec = NetParams { arch: Arch::RESNET_BN, depth: 16, ..Default::default() }.check()?;
//! let net = Net::Mlp(Mlp::new(&spec)?);
//! let cap = capture(&net, scalar_grid(256, -2.0, 2.0).view(), &CaptureOpts::default())?;
//! let g = cap.input_grads.column(0);
//! let r1 = adjacent_correlation(g)?;
//! let slope = spectral_slope(power_spectrum(g)?.view(), Band::default_for(256))?.slope;
//! assert!(r1 > 0.0 && r1 < 1.0 && slope < 0.5);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use gradscope_contract as contract;
pub use gradscope_data as data;
pub use gradscope_engine as engine;
pub use gradscope_nets as nets;
pub use gradscope_probe as probe;
pub use gradscope_report as report;
pub use gradscope_spec as spec;
pub use gradscope_stats as stats;
pub use gradscope_studies as studies;
pub use gradscope_train as train;
