//! Calibration signals: white noise (shattered) and brown noise (smooth).

use ndarray::Array1;
use rand::Rng;
use rand_distr::StandardNormal;

/// N independent standard normal values: flat spectrum, r₁ ≈ 0.
pub fn white_noise(n: usize, rng: &mut impl Rng) -> Array1<f64> {
    Array1::from_shape_fn(n, |_| rng.sample::<f64, _>(StandardNormal))
}

/// Brown noise, the running sum of white noise: spectrum ∝ 1/f², r₁ ≈ 0.97 at N = 256.
pub fn brown_noise(n: usize, rng: &mut impl Rng) -> Array1<f64> {
    let mut acc = 0.0;
    white_noise(n, rng).mapv(|v| {
        acc += v;
        acc
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Band, adjacent_correlation, power_spectrum, spectral_slope};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn mean_over<F: Fn(&mut StdRng) -> f64>(seeds: u64, f: F) -> f64 {
        (0..seeds)
            .map(|s| f(&mut StdRng::seed_from_u64(s)))
            .sum::<f64>()
            / seeds as f64
    }

    #[test]
    fn white_noise_is_flat_and_uncorrelated() {
        let band = Band::default_for(256);
        let slope = mean_over(64, |r| {
            spectral_slope(
                power_spectrum(white_noise(256, r).view()).unwrap().view(),
                band,
            )
            .unwrap()
            .slope
        });
        // One 256-point slope has sd ≈ 0.2 → the mean of 64 has sd ≈ 0.025.
        assert!(slope.abs() < 0.1, "white slope {slope}");
        let r1 = mean_over(64, |r| {
            adjacent_correlation(white_noise(256, r).view()).unwrap()
        });
        assert!(r1.abs() < 0.03, "white r1 {r1}");
    }

    #[test]
    fn brown_noise_falls_as_one_over_f_squared() {
        let band = Band::default_for(256);
        let slope = mean_over(64, |r| {
            spectral_slope(
                power_spectrum(brown_noise(256, r).view()).unwrap().view(),
                band,
            )
            .unwrap()
            .slope
        });
        assert!((slope + 2.0).abs() < 0.15, "brown slope {slope}");
        let r1 = mean_over(64, |r| {
            adjacent_correlation(brown_noise(256, r).view()).unwrap()
        });
        assert!((r1 - 0.97).abs() < 0.02, "brown r1 {r1}");
    }
}
