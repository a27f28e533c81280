//! Filter-normalised random directions (Li et al. 2018, "Visualizing the
//! Loss Landscape of Neural Nets", §4): a direction drawn at the scale of
//! the weights it moves, so that plots of nets with different weight scales
//! (BN makes a net invariant to the scale of the weights feeding it) can be
//! compared.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

use super::objective::ParamLayout;

/// A direction d in parameter space for the weights θ laid out as
/// `layout`: d ~ N(0, I) drawn from `seed`, then each filter rescaled,
/// d_{i,j} ← d_{i,j} · ‖θ_{i,j}‖ / ‖d_{i,j}‖, where a filter j of tensor i
/// is one slice along its first axis (a row of a linear weight, the
/// neuron's incoming weights; one output channel of a conv kernel).
///
/// Tensors with one axis — biases and BN's γ and β — get d = 0, Li et
/// al.'s choice (their code's `ignore='biasbn'`): the plots move the
/// weights only. A filter whose draw is exactly zero stays zero.
pub fn filter_normalised(layout: &ParamLayout, theta: &[f64], seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut d: Vec<f64> = (0..layout.dim())
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    for slot in &layout.slots {
        let r = slot.range();
        if slot.shape.len() < 2 {
            d[r].fill(0.0);
            continue;
        }
        let per = slot.len() / slot.shape[0].max(1);
        for (df, wf) in d[r.clone()]
            .chunks_mut(per.max(1))
            .zip(theta[r].chunks(per.max(1)))
        {
            let (nd, nw) = (super::objective::norm(df), super::objective::norm(wf));
            if nd > 0.0 {
                df.iter_mut().for_each(|v| *v *= nw / nd);
            }
        }
    }
    d
}

/// ‖slice‖ of every filter of `v` (one entry per filter of each tensor
/// with two or more axes, in layout order): what filter normalisation
/// equalises between a direction and the weights.
pub fn filter_norms(layout: &ParamLayout, v: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    for slot in layout.slots.iter().filter(|s| s.shape.len() >= 2) {
        let per = slot.len() / slot.shape[0].max(1);
        out.extend(
            v[slot.range()]
                .chunks(per.max(1))
                .map(super::objective::norm),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> ParamLayout {
        ParamLayout::new([
            ("stem.weight".to_string(), vec![4, 3]),
            ("stem.bias".to_string(), vec![4]),
            ("conv.weight".to_string(), vec![2, 3, 3, 3]),
            ("bn.weight".to_string(), vec![2]),
            ("bn.bias".to_string(), vec![2]),
        ])
    }

    #[test]
    fn each_filter_takes_the_norm_of_the_weights_filter_and_biases_stay_still() {
        let l = layout();
        let theta: Vec<f64> = (0..l.dim())
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.1 + 0.01)
            .collect();
        let d = filter_normalised(&l, &theta, 7);
        let (got, want) = (filter_norms(&l, &d), filter_norms(&l, &theta));
        assert_eq!(got.len(), 4 + 2);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-12 * w, "{g} vs {w}");
        }
        // The norms differ between filters, so this is no global rescaling.
        assert!((want[0] - want[1]).abs() > 1e-3);
        for s in l.slots.iter().filter(|s| s.shape.len() == 1) {
            assert!(d[s.range()].iter().all(|&v| v == 0.0), "{}", s.name);
        }
        // Seeded: the same seed draws the same direction, another does not.
        assert_eq!(d, filter_normalised(&l, &theta, 7));
        let other = filter_normalised(&l, &theta, 8);
        assert_ne!(d, other);
        assert!(
            filter_norms(&l, &other)
                .iter()
                .zip(&want)
                .all(|(g, w)| (g - w).abs() <= 1e-12 * w)
        );
    }

    #[test]
    fn a_zero_filter_of_the_weights_gives_a_zero_filter() {
        let l = ParamLayout::new([("w".to_string(), vec![2, 2])]);
        let d = filter_normalised(&l, &[0.0, 0.0, 3.0, 4.0], 1);
        assert_eq!(&d[..2], &[0.0, 0.0]);
        assert!((super::super::objective::norm(&d[2..]) - 5.0).abs() < 1e-12);
    }
}
