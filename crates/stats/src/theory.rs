//! Closed-form predictions the measurements are drawn against.
//!
//! Balduzzi et al. 2017, "The Shattered Gradients Problem" (arXiv:1702.08591):
//! the correlation between gradients at inputs whose ReLU patterns have
//! decoupled decays as 2^−L in feedforward nets, as (3/4)^L in resnets
//! without BN (Var ~ 2^L, Cov ~ (3/2)^L), as ((1 + α²/2)/(1 + α²))^L with
//! branch scale α, and sublinearly, ~1/√L, in resnets with BN. They describe
//! decoupled inputs; the lag-1 correlation of a fine grid need not follow them
//! literally.
//!
//! Mean-field references (correlation maps, χ₁, BN gradient growth) are in
//! [`crate::mean_field`], the finite-width spread of a linear net's Jacobian
//! spectrum in [`crate::jacobian_spectrum`].

/// Feedforward ReLU nets: 2^−L.
pub fn feedforward_correlation(depth: f64) -> f64 {
    2f64.powf(-depth)
}

/// Resnets without BN, branch scale α: ((1 + α²/2)/(1 + α²))^L; (3/4)^L at α = 1.
pub fn resnet_correlation(depth: f64, alpha: f64) -> f64 {
    let a2 = alpha * alpha;
    ((1.0 + a2 / 2.0) / (1.0 + a2)).powf(depth)
}

/// Resnets with BN: 1/√L.
pub fn resnet_bn_correlation(depth: f64) -> f64 {
    1.0 / depth.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theory_curves() {
        assert_eq!(feedforward_correlation(3.0), 0.125);
        assert!((resnet_correlation(2.0, 1.0) - 0.5625).abs() < 1e-15);
        assert!((resnet_correlation(5.0, 0.0) - 1.0).abs() < 1e-15);
        assert_eq!(resnet_bn_correlation(4.0), 0.5);
    }
}
