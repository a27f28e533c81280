//! Statistics of a training run's gradients and weights, the quantities
//! Cockpit (Schneider et al. 2021) and TensorBoard show per layer and step:
//! the gradient signal-to-noise ratio across a batch's examples, relative
//! sizes of updates and of the distance travelled, and histograms on fixed
//! bin edges so that counts at different steps can be compared.

use ndarray::ArrayView2;

use crate::{Result, StatsError};

/// Gradient signal-to-noise ratio of one layer across the B examples of a
/// batch, from the Gram matrix G_ij = ⟨g_i, g_j⟩ of their per-example
/// gradients: ‖E g‖² / E‖g − E g‖², with E the mean over examples, so
/// ‖E g‖² = Σ_ij G_ij / B² and E‖g − E g‖² = Σ_i G_ii / B − ‖E g‖².
/// This is the layer-level ratio (the norms of the whole layer's vectors),
/// not Liu et al. 2020's per-parameter GSNR averaged over the layer; it is
/// B times [`gradient_snr`](crate::gradient_snr), which is the ratio of the
/// batch mean. 1/(B − 1) when the gradients are orthogonal and of equal
/// size; NaN when every gradient is zero; +∞ when all are equal and nonzero.
pub fn per_example_gsnr(g: ArrayView2<f64>) -> Result<f64> {
    let (n, m) = g.dim();
    if n != m || n < 2 {
        return Err(StatsError::Shape(format!(
            "a Gram matrix must be square with at least 2 rows, got {n} × {m}"
        )));
    }
    let b = n as f64;
    let signal = g.sum() / (b * b);
    // Rounding can leave a tiny negative variance when all gradients agree.
    let noise = (g.diag().sum() / b - signal).max(0.0);
    Ok(if signal == 0.0 && noise == 0.0 {
        f64::NAN
    } else {
        signal / noise
    })
}

/// ‖a − b‖ / ‖b‖ over paired slices (an update's size relative to the
/// weights, ‖Δθ‖/‖θ‖, or the distance from initialisation ‖θ − θ₀‖/‖θ₀‖),
/// summed in f64. NaN when ‖b‖ = 0 (a layer initialised at zero, as
/// Fixup's last layers and ReZero's gains are).
pub fn relative_distance<T: Into<f64> + Copy>(a: &[T], b: &[T]) -> f64 {
    let (mut diff, mut base) = (0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y): (f64, f64) = (x.into(), y.into());
        diff += (x - y) * (x - y);
        base += y * y;
    }
    if base == 0.0 {
        f64::NAN
    } else {
        (diff / base).sqrt()
    }
}

/// Histogram bin edges that stay fixed over a run, so counts at different
/// steps are comparable. Values below the first edge fall into the first
/// bin and values past the last into the last bin (the end bins hold the
/// tails); NaN values are counted apart by [`BinEdges::count`].
#[derive(Clone, Debug, PartialEq)]
pub struct BinEdges {
    edges: Vec<f64>,
    log_magnitude: bool,
}

impl BinEdges {
    /// `bins` equal bins on [−half_width, half_width] (weights: the
    /// half-width is chosen once from the initial weights).
    pub fn symmetric(half_width: f64, bins: usize) -> Result<Self> {
        if !(half_width.is_finite() && half_width > 0.0) || bins == 0 {
            return Err(StatsError::Shape(format!(
                "bins on ±{half_width} with {bins} bins"
            )));
        }
        let step = 2.0 * half_width / bins as f64;
        Ok(BinEdges {
            edges: (0..=bins).map(|k| -half_width + k as f64 * step).collect(),
            log_magnitude: false,
        })
    }

    /// Bins of log₁₀|v| from `lo` to `hi` decades, `per_decade` a decade
    /// (gradients, whose size changes by orders of magnitude in training;
    /// a zero falls into the first bin).
    pub fn log_magnitude(lo: i32, hi: i32, per_decade: usize) -> Result<Self> {
        if hi <= lo || per_decade == 0 {
            return Err(StatsError::Shape(format!(
                "log bins from 1e{lo} to 1e{hi} with {per_decade} a decade"
            )));
        }
        let bins = (hi - lo) as usize * per_decade;
        Ok(BinEdges {
            edges: (0..=bins)
                .map(|k| lo as f64 + k as f64 / per_decade as f64)
                .collect(),
            log_magnitude: true,
        })
    }

    /// The edges (for log-magnitude bins, in decades: log₁₀|v|).
    pub fn edges(&self) -> &[f64] {
        &self.edges
    }

    /// Whether the edges are of log₁₀|v|.
    pub fn is_log_magnitude(&self) -> bool {
        self.log_magnitude
    }

    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.edges.len() - 1
    }

    /// Counts of `values` per bin (tails into the end bins), and the
    /// number of NaN values, which no bin holds.
    pub fn count<T: Into<f64> + Copy>(&self, values: &[T]) -> (Vec<u64>, u64) {
        let bins = self.bins();
        let (lo, hi) = (self.edges[0], self.edges[bins]);
        let width = (hi - lo) / bins as f64;
        let mut counts = vec![0u64; bins];
        let mut nan = 0;
        for &v in values {
            let v: f64 = v.into();
            if v.is_nan() {
                nan += 1;
                continue;
            }
            let x = if self.log_magnitude {
                v.abs().log10()
            } else {
                v
            };
            // −∞ (a zero on log bins) and +∞ land in the end bins.
            let k = ((x - lo) / width).floor();
            let k = if k.is_nan() || k < 0.0 {
                0
            } else {
                (k as usize).min(bins - 1)
            };
            counts[k] += 1;
        }
        (counts, nan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn gram(v: &[Vec<f64>]) -> Array2<f64> {
        Array2::from_shape_fn((v.len(), v.len()), |(i, j)| {
            v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum()
        })
    }

    #[test]
    fn gsnr_is_the_squared_mean_over_the_spread_of_the_vectors() {
        let v = vec![vec![1.0, 2.0], vec![3.0, 0.0], vec![2.0, 1.0]];
        // Mean (2, 1): ‖E g‖² = 5; deviations (−1, 1), (1, −1), (0, 0): E‖·‖² = 4/3.
        let got = per_example_gsnr(gram(&v).view()).unwrap();
        assert!((got - 5.0 / (4.0 / 3.0)).abs() < 1e-12, "{got}");
        // Orthonormal: ‖E g‖² = 1/B, spread 1 − 1/B.
        let eye = Array2::<f64>::eye(4);
        assert!((per_example_gsnr(eye.view()).unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!(
            per_example_gsnr(Array2::zeros((3, 3)).view())
                .unwrap()
                .is_nan()
        );
        assert_eq!(
            per_example_gsnr(Array2::from_elem((3, 3), 2.0).view()).unwrap(),
            f64::INFINITY
        );
        assert!(per_example_gsnr(Array2::zeros((1, 1)).view()).is_err());
    }

    #[test]
    fn relative_distance_is_the_norm_of_the_difference_over_the_base() {
        let d = relative_distance(&[3.0f64, 4.0], &[0.0, 1.0]);
        assert!((d - (9.0f64 + 9.0).sqrt()).abs() < 1e-12);
        assert!(relative_distance(&[1.0f32], &[0.0f32]).is_nan());
        assert_eq!(relative_distance(&[0.5f64, -2.0], &[0.5, -2.0]), 0.0);
    }

    #[test]
    fn fixed_bins_count_tails_into_the_end_bins() {
        let e = BinEdges::symmetric(1.0, 4).unwrap();
        assert_eq!(e.edges(), &[-1.0, -0.5, 0.0, 0.5, 1.0]);
        let (c, nan) = e.count(&[-3.0f64, -0.75, -0.1, 0.0, 0.2, 0.99, 7.0, f64::NAN]);
        assert_eq!((c, nan), (vec![2, 1, 2, 2], 1));
        let g = BinEdges::log_magnitude(-3, 0, 2).unwrap();
        assert_eq!(g.bins(), 6);
        // log₁₀: 0 → −∞ (first), 1e-5 (first), 0.002 (−2.7: first),
        // −0.02 (−1.7: third), 0.5 (−0.3: last), 30 (past: last).
        let (c, _) = g.count(&[0.0f64, 1e-5, 0.002, -0.02, 0.5, 30.0]);
        assert_eq!(c, vec![3, 0, 1, 0, 0, 2]);
        assert!(BinEdges::symmetric(0.0, 3).is_err());
        assert!(BinEdges::log_magnitude(2, 1, 2).is_err());
    }
}
