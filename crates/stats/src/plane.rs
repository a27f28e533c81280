//! Statistics of a signal over a 2-D grid (a gradient picture g(x₁, x₂)):
//! the 2-D power spectrum, its radial average and slope, the radially averaged
//! autocorrelation, and lag-1 correlation along both axes.
//!
//! For an isotropic field with power spectrum P(k) ∝ |k|^−β the radial
//! average falls with slope −β on log-log axes: white noise is flat (β = 0);
//! a smooth, brown-like picture has β ≈ 2 or more. Balduzzi et al. 2017 show
//! the pictures of ∂f/∂x₁ over an input plane going from smooth to noise with
//! depth in feedforward nets.

use ndarray::{Array1, Array2, ArrayView2};
use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use crate::fit::{LineFit, linear_fit};
use crate::summary::MeanStd;
use crate::{Result, StatsError, pearson};

/// |FFT₂(g − mean)|² / (H·W), frequencies in FFT order (index 0 = zero frequency).
pub fn power_spectrum_2d(g: ArrayView2<f64>) -> Result<Array2<f64>> {
    let (h, w) = g.dim();
    if h < 4 || w < 4 {
        return Err(StatsError::TooShort {
            what: "2-D power spectrum (each side)",
            need: 4,
            got: h.min(w),
        });
    }
    let mean = g.mean().unwrap_or(0.0);
    let mut data: Vec<Complex<f64>> = g.iter().map(|&v| Complex::new(v - mean, 0.0)).collect();
    let mut planner = FftPlanner::<f64>::new();
    let row_fft = planner.plan_fft_forward(w);
    for row in data.chunks_exact_mut(w) {
        row_fft.process(row);
    }
    let col_fft = planner.plan_fft_forward(h);
    let mut col = vec![Complex::new(0.0, 0.0); h];
    for j in 0..w {
        for i in 0..h {
            col[i] = data[i * w + j];
        }
        col_fft.process(&mut col);
        for i in 0..h {
            data[i * w + j] = col[i];
        }
    }
    let norm = (h * w) as f64;
    Ok(Array2::from_shape_fn((h, w), |(i, j)| {
        data[i * w + j].norm_sqr() / norm
    }))
}

/// Signed frequency of FFT index `i` of `n` (in cycles per side).
fn freq(i: usize, n: usize) -> f64 {
    if i <= n / 2 {
        i as f64
    } else {
        i as f64 - n as f64
    }
}

/// Average of a field given in FFT (or lag) order over rings of integer
/// radius r = round(√(k₁² + k₂²)), r = 0 … min(H, W)/2.
pub fn radial_average(a: ArrayView2<f64>) -> Array1<f64> {
    let (h, w) = a.dim();
    let rmax = h.min(w) / 2;
    let (mut sum, mut count) = (vec![0.0; rmax + 1], vec![0usize; rmax + 1]);
    for ((i, j), &v) in a.indexed_iter() {
        let r = freq(i, h).hypot(freq(j, w)).round() as usize;
        if r <= rmax {
            sum[r] += v;
            count[r] += 1;
        }
    }
    Array1::from_iter(
        sum.iter()
            .zip(&count)
            .map(|(s, &c)| if c > 0 { s / c as f64 } else { f64::NAN }),
    )
}

/// Radially averaged power spectrum of a picture: [`radial_average`] of
/// [`power_spectrum_2d`].
pub fn radial_power_spectrum(g: ArrayView2<f64>) -> Result<Array1<f64>> {
    Ok(radial_average(power_spectrum_2d(g)?.view()))
}

/// Log-log slope of a radial spectrum over radii `lo..=hi` (−β for P ∝ k^−β).
pub fn radial_slope(radial: &Array1<f64>, lo: usize, hi: usize) -> Result<LineFit> {
    if lo == 0 || hi >= radial.len() || lo >= hi {
        return Err(StatsError::Band {
            lo,
            hi,
            bins: radial.len(),
        });
    }
    let (x, y): (Vec<f64>, Vec<f64>) = (lo..=hi)
        .filter(|&k| radial[k] > 0.0 && radial[k].is_finite())
        .map(|k| ((k as f64).ln(), radial[k].ln()))
        .unzip();
    linear_fit(&x, &y)
}

/// The radii of the slope fit over an H × H picture: 2 ..= max(H/4, 3).
/// Radius 1 is a ring of four cells; beyond H/4 the rings reach the grid's
/// corners and the Nyquist frequency, where pixelation bends the spectrum.
pub fn radial_band(side: usize) -> (usize, usize) {
    (2, (side / 4).max(3))
}

/// Circular autocorrelation of the mean-removed picture (inverse FFT of the
/// power spectrum), normalised to 1 at lag 0, radially averaged: the
/// correlation of g at two points as a function of their distance in grid steps.
pub fn radial_autocorrelation(g: ArrayView2<f64>) -> Result<Array1<f64>> {
    let p = power_spectrum_2d(g)?;
    let (h, w) = p.dim();
    let mut data: Vec<Complex<f64>> = p.iter().map(|&v| Complex::new(v, 0.0)).collect();
    let mut planner = FftPlanner::<f64>::new();
    let row_fft = planner.plan_fft_inverse(w);
    for row in data.chunks_exact_mut(w) {
        row_fft.process(row);
    }
    let col_fft = planner.plan_fft_inverse(h);
    let mut col = vec![Complex::new(0.0, 0.0); h];
    for j in 0..w {
        for i in 0..h {
            col[i] = data[i * w + j];
        }
        col_fft.process(&mut col);
        for i in 0..h {
            data[i * w + j] = col[i];
        }
    }
    let zero = data[0].re;
    if zero <= 0.0 || !zero.is_finite() {
        return Err(StatsError::Shape(
            "a constant picture has no autocorrelation".into(),
        ));
    }
    let acf = Array2::from_shape_fn((h, w), |(i, j)| data[i * w + j].re / zero);
    Ok(radial_average(acf.view()))
}

/// Lag-1 correlation of a picture along both axes, averaged: the 2-D
/// counterpart of [`adjacent_correlation`](crate::adjacent_correlation).
pub fn adjacent_correlation_2d(g: ArrayView2<f64>) -> Result<f64> {
    let (h, w) = g.dim();
    if h < 3 || w < 3 {
        return Err(StatsError::TooShort {
            what: "2-D adjacent correlation (each side)",
            need: 3,
            got: h.min(w),
        });
    }
    let along_rows = pearson(
        Array1::from_iter(g.slice(ndarray::s![.., ..w - 1]).iter().copied()).view(),
        Array1::from_iter(g.slice(ndarray::s![.., 1..]).iter().copied()).view(),
    );
    let along_cols = pearson(
        Array1::from_iter(g.slice(ndarray::s![..h - 1, ..]).iter().copied()).view(),
        Array1::from_iter(g.slice(ndarray::s![1.., ..]).iter().copied()).view(),
    );
    Ok((along_rows + along_cols) / 2.0)
}

/// An isotropic random field with power spectrum ∝ |k|^−β (random phases,
/// spectral synthesis): white noise for β = 0, brown-like for β = 2. A
/// calibration reference for [`radial_slope`].
pub fn power_law_field(n: usize, beta: f64, rng: &mut impl rand::Rng) -> Array2<f64> {
    use rand_distr::{Distribution, StandardNormal};
    let mut data: Vec<Complex<f64>> = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            let r = freq(i, n).hypot(freq(j, n));
            let amp = if r == 0.0 { 0.0 } else { r.powf(-beta / 2.0) };
            let (a, b): (f64, f64) = (StandardNormal.sample(rng), StandardNormal.sample(rng));
            Complex::new(a * amp, b * amp)
        })
        .collect();
    let mut planner = FftPlanner::<f64>::new();
    let fft = planner.plan_fft_inverse(n);
    for row in data.chunks_exact_mut(n) {
        fft.process(row);
    }
    let mut col = vec![Complex::new(0.0, 0.0); n];
    for j in 0..n {
        for i in 0..n {
            col[i] = data[i * n + j];
        }
        fft.process(&mut col);
        for i in 0..n {
            data[i * n + j] = col[i];
        }
    }
    // The real part of a complex Gaussian field is a real field with the same spectrum shape.
    Array2::from_shape_fn((n, n), |(i, j)| data[i * n + j].re)
}

/// The statistics of one picture: what a study reports of ∂f/∂x over a plane.
#[derive(Clone, Debug, PartialEq)]
pub struct PictureStats {
    /// Lag-1 correlation along both axes ([`adjacent_correlation_2d`]).
    pub r1: f64,
    /// Log-log slope of the radial spectrum over the band (None where it cannot be fitted).
    pub slope: Option<LineFit>,
    /// Radially averaged power spectrum, radii 0 … H/2 ([`radial_power_spectrum`]).
    pub radial_spectrum: Array1<f64>,
    /// Radially averaged autocorrelation ([`radial_autocorrelation`]); empty for a constant picture.
    pub radial_acf: Array1<f64>,
}

impl PictureStats {
    /// The statistics of `g`, the slope fitted over radii `band` ([`radial_band`]).
    /// A picture with a NaN or infinite value measures nothing: r₁ NaN, no
    /// slope, empty spectrum and ACF.
    pub fn of(g: ArrayView2<f64>, band: (usize, usize)) -> Result<PictureStats> {
        if !g.iter().all(|v| v.is_finite()) {
            return Ok(PictureStats {
                r1: f64::NAN,
                slope: None,
                radial_spectrum: Array1::zeros(0),
                radial_acf: Array1::zeros(0),
            });
        }
        let radial_spectrum = radial_power_spectrum(g)?;
        Ok(PictureStats {
            r1: adjacent_correlation_2d(g)?,
            slope: radial_slope(&radial_spectrum, band.0, band.1).ok(),
            radial_acf: radial_autocorrelation(g).unwrap_or_else(|_| Array1::zeros(0)),
            radial_spectrum,
        })
    }
}

/// r₁ ([`adjacent_correlation_2d`]) and radial slope ([`radial_slope`] over
/// `band`) of `draws` fields of side `n` with power ∝ |k|^−β
/// ([`power_law_field`], drawn first, in order): the white (β = 0) and brown
/// (β = 2) references a picture of that side is set against. A statistic
/// that cannot be computed is NaN (excluded from its summary).
pub fn power_law_reference(
    n: usize,
    beta: f64,
    draws: usize,
    band: (usize, usize),
    rng: &mut impl rand::Rng,
) -> (MeanStd, MeanStd) {
    let fields: Vec<Array2<f64>> = (0..draws).map(|_| power_law_field(n, beta, rng)).collect();
    (
        MeanStd::of(
            fields
                .iter()
                .map(|f| adjacent_correlation_2d(f.view()).unwrap_or(f64::NAN)),
        ),
        MeanStd::of(fields.iter().map(|f| {
            radial_power_spectrum(f.view())
                .and_then(|r| radial_slope(&r, band.0, band.1))
                .map_or(f64::NAN, |l| l.slope)
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parseval_holds_and_a_constant_has_no_power() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let g = power_law_field(32, 1.0, &mut rng);
        let p = power_spectrum_2d(g.view()).unwrap();
        let m = g.mean().unwrap();
        let energy: f64 = g.iter().map(|v| (v - m).powi(2)).sum();
        assert!((p.sum() - energy).abs() < 1e-9 * energy);
        let c = Array2::from_elem((8, 8), 3.0);
        assert!(
            power_spectrum_2d(c.view())
                .unwrap()
                .iter()
                .all(|&v| v < 1e-20)
        );
        assert!(radial_autocorrelation(c.view()).is_err());
    }

    #[test]
    fn white_noise_is_flat_and_power_law_fields_have_their_slope() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (beta, tol) in [(0.0, 0.1), (2.0, 0.15), (3.0, 0.2)] {
            let slopes: Vec<f64> = (0..8)
                .map(|_| {
                    let g = power_law_field(64, beta, &mut rng);
                    radial_slope(&radial_power_spectrum(g.view()).unwrap(), 2, 24)
                        .unwrap()
                        .slope
                })
                .collect();
            let mean = slopes.iter().sum::<f64>() / slopes.len() as f64;
            assert!((mean + beta).abs() < tol, "β = {beta}: slope {mean}");
        }
        // Plain white noise drawn in the pixel domain is flat too.
        use rand_distr::{Distribution, StandardNormal};
        let (mut s, mut r1) = (0.0, 0.0);
        for _ in 0..8 {
            let w = Array2::from_shape_fn((64, 64), |_| StandardNormal.sample(&mut rng));
            s += radial_slope(&radial_power_spectrum(w.view()).unwrap(), 2, 24)
                .unwrap()
                .slope
                / 8.0;
            r1 += adjacent_correlation_2d(w.view()).unwrap() / 8.0;
        }
        assert!(s.abs() < 0.1, "{s}");
        assert!(r1.abs() < 0.02, "{r1}");
    }

    #[test]
    fn picture_stats_of_a_ramp_a_field_and_a_broken_picture() {
        // g = i + j: each step along either axis adds 1, so r₁ = 1 exactly.
        let ramp = Array2::from_shape_fn((16, 16), |(i, j)| (i + j) as f64);
        let st = PictureStats::of(ramp.view(), radial_band(16)).unwrap();
        assert!((st.r1 - 1.0).abs() < 1e-12, "{}", st.r1);
        assert_eq!(st.radial_spectrum.len(), 9);
        // On a field, the same numbers as the functions it gathers.
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let g = power_law_field(32, 2.0, &mut rng);
        let band = radial_band(32);
        assert_eq!(band, (2, 8));
        let st = PictureStats::of(g.view(), band).unwrap();
        let spectrum = radial_power_spectrum(g.view()).unwrap();
        assert_eq!(st.r1, adjacent_correlation_2d(g.view()).unwrap());
        assert_eq!(st.slope, radial_slope(&spectrum, 2, 8).ok());
        assert_eq!(st.radial_acf, radial_autocorrelation(g.view()).unwrap());
        // A NaN anywhere measures nothing.
        let mut broken = g.clone();
        broken[[3, 4]] = f64::NAN;
        let st = PictureStats::of(broken.view(), band).unwrap();
        assert!(st.r1.is_nan() && st.slope.is_none() && st.radial_spectrum.is_empty());
    }

    #[test]
    fn autocorrelation_is_one_at_zero_and_smooth_fields_stay_correlated() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let smooth = power_law_field(64, 4.0, &mut rng);
        let acf = radial_autocorrelation(smooth.view()).unwrap();
        assert!((acf[0] - 1.0).abs() < 1e-12);
        assert!(acf[1] > 0.9, "{}", acf[1]);
        assert!(adjacent_correlation_2d(smooth.view()).unwrap() > 0.9);
        // A checkerboard flips sign at every step.
        let board =
            Array2::from_shape_fn((8, 8), |(i, j)| if (i + j) % 2 == 0 { 1.0 } else { -1.0 });
        assert!((adjacent_correlation_2d(board.view()).unwrap() + 1.0).abs() < 1e-12);
    }
}
