//! Power spectra of gradient signals, and their log-log slope.
//!
//! White noise has a flat spectrum (slope 0); brown noise, the running sum of
//! white noise, falls as 1/f² (slope −2). Balduzzi et al. 2017: the input
//! gradient of a deep feedforward net looks like white noise, that of a resnet
//! with BN like brown noise.

use std::sync::Arc;

use ndarray::{Array1, ArrayView1};
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::{LineFit, Result, StatsError, linear_fit};

/// Power spectrum of the mean-removed signal: P_k = |Σᵢ (gᵢ − ḡ) e^{−2πi·ik/N}|² / N
/// for k = 0 … ⌊N/2⌋ (so P_0 = 0). Σₖ over the full two-sided spectrum equals Σᵢ (gᵢ − ḡ)².
pub fn power_spectrum(g: ArrayView1<f64>) -> Result<Array1<f64>> {
    Spectrum::new(g.len())?.power(g)
}

/// A reusable FFT plan for signals of one length.
pub struct Spectrum {
    n: usize,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl Spectrum {
    /// A planner for signals of length `n` (at least 4).
    pub fn new(n: usize) -> Result<Self> {
        if n < 4 {
            return Err(StatsError::TooShort {
                what: "power spectrum",
                need: 4,
                got: n,
            });
        }
        Ok(Spectrum {
            n,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(n),
        })
    }

    /// Power spectrum of `g` (length n): see [`power_spectrum`].
    pub fn power(&self, g: ArrayView1<f64>) -> Result<Array1<f64>> {
        if g.len() != self.n {
            return Err(StatsError::Shape(format!(
                "signal of length {} for a plan of {}",
                g.len(),
                self.n
            )));
        }
        let mean = g.mean().unwrap_or(0.0);
        let mut input: Vec<f64> = g.iter().map(|v| v - mean).collect();
        let mut out = self.fft.make_output_vec();
        self.fft
            .process(&mut input, &mut out)
            .map_err(|e| StatsError::Shape(e.to_string()))?;
        Ok(out.iter().map(|c| c.norm_sqr() / self.n as f64).collect())
    }
}

/// An inclusive range of frequency bins lo..=hi for slope fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Band {
    /// First frequency bin of the band.
    pub lo: usize,
    /// Last frequency bin of the band (inclusive).
    pub hi: usize,
}

impl Band {
    /// The default band for an N-point signal: bins N/64 ..= N/4 (4..=64 at
    /// N = 256): above the lowest bins, which a few slow modes dominate, and
    /// below the top octave.
    pub fn default_for(n: usize) -> Band {
        Band {
            lo: (n / 64).max(1),
            hi: (n / 4).max(2),
        }
    }

    /// Check the band against a spectrum of `bins` bins (k = 0 … bins − 1).
    pub fn check(&self, bins: usize) -> Result<()> {
        if self.lo == 0 || self.hi >= bins || self.hi < self.lo + 1 {
            return Err(StatsError::Band {
                lo: self.lo,
                hi: self.hi,
                bins,
            });
        }
        Ok(())
    }
}

/// Least-squares fit of log P_k on log k over the band: P_k ∝ k^slope.
/// Bins with P_k = 0 (or non-finite) are left out of the fit.
pub fn spectral_slope(spectrum: ArrayView1<f64>, band: Band) -> Result<LineFit> {
    band.check(spectrum.len())?;
    let (xs, ys): (Vec<f64>, Vec<f64>) = (band.lo..=band.hi)
        .filter(|&k| spectrum[k] > 0.0 && spectrum[k].is_finite())
        .map(|k| ((k as f64).ln(), spectrum[k].ln()))
        .unzip();
    linear_fit(&xs, &ys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sinusoid_puts_all_power_in_its_bin() {
        let n = 256;
        let g = Array1::from_shape_fn(n, |i| {
            3.0 * (2.0 * std::f64::consts::PI * 10.0 * i as f64 / n as f64).sin()
        });
        let p = power_spectrum(g.view()).unwrap();
        assert_eq!(p.len(), 129);
        // |FFT| at the bin is A·N/2, so P = (A N / 2)² / N = 9·256/4.
        assert!((p[10] - 9.0 * 256.0 / 4.0).abs() < 1e-9);
        assert!(
            p.iter()
                .enumerate()
                .filter(|(k, _)| *k != 10)
                .all(|(_, v)| *v < 1e-18)
        );
    }

    #[test]
    fn parseval_holds() {
        let g = Array1::from_shape_fn(64, |i| ((i * 37 % 11) as f64).sin() + 0.1 * i as f64);
        let p = power_spectrum(g.view()).unwrap();
        let mean = g.mean().unwrap();
        let energy: f64 = g.iter().map(|v| (v - mean).powi(2)).sum();
        // Two-sided sum: bins 1..N/2 appear twice, except the Nyquist bin.
        let two_sided = p[0] + 2.0 * p.slice(ndarray::s![1..32]).sum() + p[32];
        assert!((two_sided - energy).abs() < 1e-9 * energy);
    }

    #[test]
    fn slope_of_a_power_law_spectrum_is_exact() {
        let p = Array1::from_shape_fn(129, |k| {
            if k == 0 {
                0.0
            } else {
                5.0 * (k as f64).powf(-1.5)
            }
        });
        let fit = spectral_slope(p.view(), Band::default_for(256)).unwrap();
        assert!((fit.slope + 1.5).abs() < 1e-12);
        assert!((fit.r2 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn default_band_scales_with_n_and_bad_bands_are_errors() {
        assert_eq!(Band::default_for(256), Band { lo: 4, hi: 64 });
        assert_eq!(Band::default_for(1024), Band { lo: 16, hi: 256 });
        assert!(Band { lo: 0, hi: 10 }.check(129).is_err());
        assert!(Band { lo: 10, hi: 129 }.check(129).is_err());
        assert!(Band { lo: 10, hi: 10 }.check(129).is_err());
        assert!(Band::default_for(256).check(129).is_ok());
    }
}
