#![warn(missing_docs)]
//! Statistics of gradient signals on ndarray views: correlation along a grid
//! and across seeds, power spectra and slopes, decay-law fits, calibration
//! noise and theory curves. Knows nothing of nets: any signal will do.
//!
//! Uncertainty and tests of laws: [`MeanInterval`] (Student's t interval of a
//! mean over seeds) and [`bootstrap_mean_interval`]; [`least_squares_line`]
//! with slope and intercept intervals; [`FitInput`], fits that list every
//! point they leave out with its reason, and [`DecayRateFit`], a·b^L or
//! a·L^−q with intervals on the rate; [`pair_correlation_by_distance`] and
//! [`correlation_decay`], the across-net correlation Balduzzi et al.'s laws
//! are about. References to draw against: [`theory`], [`mean_field`] and
//! [`jacobian_spectrum`]; the measured spectra's [`singular_values`].
//!
//! ```
//! use gradscope_stats::{adjacent_correlation, power_spectrum, spectral_slope, Band, brown_noise};
//! use rand::SeedableRng;
//!
//! let g = brown_noise(256, &mut rand::rngs::StdRng::seed_from_u64(0));
//! let r1 = adjacent_correlation(g.view())?;
//! let slope = spectral_slope(power_spectrum(g.view())?.view(), Band::default_for(256))?.slope;
//! assert!(r1 > 0.8 && slope < -1.0);
//! # Ok::<(), gradscope_stats::StatsError>(())
//! ```
//!
//! A mean over seeds with its interval, and a decay rate tested against a law:
//!
//! ```
//! use gradscope_stats::{Confidence, DecayLaw, ExclusionRule, FitInput, MeanInterval};
//!
//! let r1 = MeanInterval::of([0.61, 0.66, 0.58, 0.70, f64::NAN], Confidence::P95);
//! assert_eq!((r1.n, r1.excluded), (4, 1));
//! assert!(r1.lo < 0.6375 && 0.6375 < r1.hi);
//!
//! let depths = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let corr = [0.51, 0.24, 0.13, 0.061, 0.033, 0.004];
//! let mut input = FitInput::new(&depths, &corr);
//! input.rule = ExclusionRule { noise_floor: Some(0.01), ..ExclusionRule::default() };
//! let fit = input.fit_decay(DecayLaw::Exponential, Confidence::P95)?;
//! assert_eq!(fit.excluded[0].index, 5); // 0.004 is below the floor, and listed
//! assert!(fit.rate_consistent_with(0.5)); // 2^−L is not rejected
//! # Ok::<(), gradscope_stats::StatsError>(())
//! ```

mod correlation;
mod distribution;
mod eigen;
mod error;
mod fit;
mod gram;
mod hessian;
mod interval;
pub mod jacobian_spectrum;
pub mod mean_field;
pub mod nan;
mod noise;
mod pair_correlation;
mod plane;
mod quadrature;
mod regression;
mod screened_fit;
mod special;
mod spectrum;
mod summary;
mod svd;
pub mod theory;
mod training;

pub use correlation::{
    adjacent_correlation, adjacent_correlation_pooled, autocorrelation, autocorrelation_pooled,
    correlation_matrix, covariance_matrix, pearson,
};
pub use distribution::{
    normal_cdf, normal_pdf, normal_quantile, normal_sf, student_t_cdf, student_t_pdf,
    student_t_quantile, student_t_sf,
};
pub use eigen::{SymmetricEigen, symmetric_eigen};
pub use error::{Result, StatsError};
pub use fit::{DecayLaw, LineFit, linear_fit};
pub use gram::{coherence, cosine_from_gram, gradient_snr, mean_off_diagonal};
pub use hessian::{
    Lanczos, RitzStep, SpectralDensity, TraceEstimate, broadened_density, hutchinson_trace,
    lanczos_top, negative_mass, spectral_density,
};
pub use interval::{BootstrapInterval, Confidence, MeanInterval, bootstrap_mean_interval};
pub use noise::{brown_noise, white_noise};
pub use pair_correlation::{
    DistanceBinCorrelation, correlation_decay, pair_correlation_by_distance,
};
pub use plane::{
    PictureStats, adjacent_correlation_2d, power_law_field, power_law_reference, power_spectrum_2d,
    radial_autocorrelation, radial_average, radial_band, radial_power_spectrum, radial_slope,
};
pub use regression::{LineFitInterval, least_squares_line, weighted_least_squares_line};
pub use screened_fit::{
    DecayComparison, DecayRateFit, ExcludedPoint, ExclusionReason, ExclusionRule, FitInput,
    FitScale, Saturation, ScreenedLine, Screening, Weighting,
};
pub use special::{incomplete_beta, ln_beta, ln_gamma, upper_incomplete_gamma};
pub use spectrum::{Band, Spectrum, power_spectrum, spectral_slope};
pub use summary::{MeanStd, quantile};
pub use svd::singular_values;
pub use training::{BinEdges, per_example_gsnr, relative_distance};
