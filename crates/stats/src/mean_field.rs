//! Mean-field references for random nets at initialisation: the correlation
//! map of ReLU layers, the backward rate χ₁ and its critical line, and the
//! gradient growth of BN–ReLU nets. Infinite width throughout: a measurement
//! at width N differs by O(1/√N) in one net, O(1/N) on average.
//!
//! Setting (Poole et al. 2016, "Exponential expressivity in deep neural
//! networks through transient chaos"; Schoenholz et al. 2017, "Deep
//! Information Propagation"): hˡ⁺¹ = Wˡ⁺¹ φ(hˡ) + bˡ⁺¹ with
//! Wᵢⱼ ~ N(0, σ_w²/N), bᵢ ~ N(0, σ_b²). The pre-activation variance follows
//! qˡ⁺¹ = σ_w² E[φ(√qˡ z)²] + σ_b² (z ~ N(0, 1)) to a fixed point q*, and the
//! squared norm of a backpropagated gradient changes per layer by
//! χ₁ = σ_w² E[φ'(√q* z)²]: it vanishes for χ₁ < 1, explodes for χ₁ > 1.

use crate::quadrature::gaussian_expectation;
use crate::{Result, StatsError};

/// A nonlinearity of the mean-field recursions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// tanh x.
    Tanh,
}

/// The ReLU correlation map of the arc-cosine kernel of degree 1 (Cho and
/// Saul 2009; Poole et al. 2016): for He-initialised ReLU layers without
/// bias (σ_w² = 2, σ_b² = 0), pre-activations of two inputs with correlation
/// c have, one layer up, correlation
///
///   f(c) = (√(1 − c²) + (π − arccos c)·c)/π.
///
/// f(1) = 1 (the fixed point), f(0) = 1/π, f(−1) = 0, f(c) ≥ c: depth pulls
/// every pair of inputs towards correlation 1.
pub fn relu_correlation_map(c: f64) -> f64 {
    let c = c.clamp(-1.0, 1.0);
    ((1.0 - c * c).sqrt() + (std::f64::consts::PI - c.acos()) * c) / std::f64::consts::PI
}

/// The slope of [`relu_correlation_map`], f'(c) = (π − arccos c)/π = 1 − arccos(c)/π,
/// which is also the ratio χ_c = σ_w² E[φ'(u_a) φ'(u_b)] by which the
/// covariance of two backpropagated gradients changes per layer (Poole et
/// al. 2016): ½ at c = 0, 1 at c = 1.
pub fn relu_correlation_slope(c: f64) -> f64 {
    1.0 - c.clamp(-1.0, 1.0).acos() / std::f64::consts::PI
}

/// The correlation after `layers` ReLU layers: f applied `layers` times to `c`.
pub fn relu_correlation_after(c: f64, layers: usize) -> f64 {
    (0..layers).fold(c.clamp(-1.0, 1.0), |c, _| relu_correlation_map(c))
}

/// The correlation of the gradients ∂f/∂h¹ of two inputs through `layers`
/// He-initialised ReLU layers without bias and a random readout, when their
/// first-layer pre-activations have correlation c₁ (the cosine of the
/// inputs):
///
///   ρ_L = Π_{l=1}^{L} χ_c(c_l),  c_{l+1} = f(c_l),
///
/// under the gradient-independence assumption of mean-field theory
/// (Schoenholz et al. 2017), exact at infinite width with a random readout
/// (Yang 2019, arXiv:1902.04760). Balduzzi
/// et al.'s 2^−L is this product with every c_l = 0, inputs whose ReLU
/// patterns stay decoupled at every layer; the map's pull towards c = 1
/// makes the decay of a fixed pair slower.
pub fn relu_gradient_correlation(c1: f64, layers: usize) -> f64 {
    let mut c = c1.clamp(-1.0, 1.0);
    let mut rho = 1.0;
    for _ in 0..layers {
        rho *= relu_correlation_slope(c);
        c = relu_correlation_map(c);
    }
    rho
}

/// Per-layer growth of the gradient norm in a deep feedforward BN–ReLU net,
/// √(π/(π − 1)) ≈ 1.2112 (Yang et al. 2019, "A Mean Field Theory of Batch
/// Normalization": the squared norm grows by π/(π − 1) per layer for large
/// batches). Applies to: Linear → BN → ReLU layers at initialisation,
/// infinite width, batch size B → ∞, layers deep enough that the batch
/// has reached BN's fixed point, where the normalised pre-activations are
/// uncorrelated N(0, 1) across examples (a net of width and batch 256 on
/// Gaussian inputs is there after two layers and grows at 1.216 per layer),
/// gradients of the loss with respect to the pre-activations. It is
/// E[φ'(z)²]/Var[φ(z)] = ½/((π − 1)/(2π)) of [`bn_gradient_growth`]; finite
/// batches change it by O(1/B), and the batch statistics' own gradient
/// (left out when they are held constant) by O(1/B) too.
pub fn bn_relu_gradient_growth() -> f64 {
    let pi = std::f64::consts::PI;
    (pi / (pi - 1.0)).sqrt()
}

/// Per-layer growth of the gradient norm of a deep Linear → BN → φ net in the
/// large-batch limit (the setting of [`bn_relu_gradient_growth`]):
///
///   √(E[φ'(z)²]/Var[φ(z)]),  z ~ N(0, 1).
///
/// BN divides by the batch's standard deviation √(σ_w² Var φ), the backward
/// pass multiplies by σ_w² E[φ'²]; σ_w² cancels, so no initialisation removes
/// the explosion (Yang et al. 2019). By the Gaussian Poincaré inequality the
/// ratio is ≥ 1, with equality only for linear φ. ReLU: √(π/(π − 1)) ≈ 1.2112;
/// tanh: ≈ 1.0853.
pub fn bn_gradient_growth(activation: Activation) -> f64 {
    match activation {
        Activation::Relu => bn_relu_gradient_growth(),
        Activation::Tanh => {
            let d2 = gaussian_expectation(1.0, |u| sech2(u).powi(2));
            let var = gaussian_expectation(1.0, |u| u.tanh().powi(2));
            (d2 / var).sqrt()
        }
    }
}

fn sech2(x: f64) -> f64 {
    let c = x.cosh();
    if c.is_finite() { 1.0 / (c * c) } else { 0.0 }
}

fn check_variances(sigma_w2: f64, sigma_b2: f64) -> Result<()> {
    if !(sigma_w2.is_finite() && sigma_w2 > 0.0) {
        return Err(StatsError::Parameter {
            name: "σ_w²",
            value: sigma_w2,
            expected: "finite and > 0",
        });
    }
    if !(sigma_b2.is_finite() && sigma_b2 >= 0.0) {
        return Err(StatsError::Parameter {
            name: "σ_b²",
            value: sigma_b2,
            expected: "finite and ≥ 0",
        });
    }
    Ok(())
}

/// The fixed point q* of qˡ⁺¹ = σ_w² E[φ(√qˡ z)²] + σ_b².
///
/// ReLU: q* = σ_b²/(1 − σ_w²/2), which exists for σ_w² < 2 (at σ_w² = 2,
/// σ_b² = 0 every q is fixed; above, q grows without bound: an error).
/// Tanh: the root of σ_w² E[tanh²(√q z)] + σ_b² − q by bisection and
/// Newton steps on [0, σ_w² + σ_b²], expectations by Gauss–Hermite
/// quadrature; with σ_b² = 0 it is 0 for σ_w² ≤ 1 and the positive root above.
pub fn fixed_point_variance(activation: Activation, sigma_w2: f64, sigma_b2: f64) -> Result<f64> {
    check_variances(sigma_w2, sigma_b2)?;
    match activation {
        Activation::Relu if sigma_w2 < 2.0 => Ok(sigma_b2 / (1.0 - 0.5 * sigma_w2)),
        Activation::Relu => Err(StatsError::Parameter {
            name: "σ_w² (ReLU)",
            value: sigma_w2,
            expected: "< 2 for a finite fixed point of the variance",
        }),
        Activation::Tanh => Ok(tanh_fixed_point(sigma_w2, sigma_b2)),
    }
}

fn tanh_fixed_point(sigma_w2: f64, sigma_b2: f64) -> f64 {
    if sigma_b2 == 0.0 && sigma_w2 <= 1.0 {
        return 0.0;
    }
    // g(q) = σ_w² E[tanh²(√q z)] + σ_b² − q is concave with g(0) = σ_b² ≥ 0
    // and g(σ_w² + σ_b²) < 0: one positive root.
    let g = |q: f64| sigma_w2 * gaussian_expectation(q.sqrt(), |u| u.tanh().powi(2)) + sigma_b2 - q;
    // d/dq E[tanh²(√q z)] = E[tanh(u)·sech²(u)·u]/q with u = √q z.
    let dg =
        |q: f64| sigma_w2 * gaussian_expectation(q.sqrt(), |u| u.tanh() * sech2(u) * u) / q - 1.0;
    let mut hi = sigma_w2 + sigma_b2;
    let mut lo = if sigma_b2 > 0.0 { 0.0 } else { hi };
    if sigma_b2 == 0.0 {
        // g > 0 just above 0 when σ_w² > 1: halve until inside.
        while g(lo) <= 0.0 && lo > 1e-300 {
            lo *= 0.5;
        }
    }
    let mut q = 0.5 * (lo + hi);
    for _ in 0..200 {
        let v = g(q);
        if v > 0.0 {
            lo = q;
        } else {
            hi = q;
        }
        let newton = q - v / dg(q);
        let next = if newton > lo && newton < hi {
            newton
        } else {
            0.5 * (lo + hi)
        };
        if (next - q).abs() <= 1e-15 * q || hi - lo <= 1e-15 * hi {
            return next;
        }
        q = next;
    }
    q
}

/// χ₁ = σ_w² E[φ'(√q* z)²], the per-layer factor of a backpropagated
/// gradient's squared norm at the variance fixed point (Schoenholz et al. 2017).
/// ReLU: σ_w²/2 whatever q* (critical at σ_w² = 2, He initialisation; the
/// same for every σ_b², though q* then exists only below 2). Tanh: by
/// quadrature at q* of [`fixed_point_variance`]; χ₁ = σ_w² at σ_b² = 0,
/// σ_w² ≤ 1.
pub fn chi1(activation: Activation, sigma_w2: f64, sigma_b2: f64) -> Result<f64> {
    check_variances(sigma_w2, sigma_b2)?;
    match activation {
        Activation::Relu => Ok(0.5 * sigma_w2),
        Activation::Tanh => {
            let r = tanh_fixed_point(sigma_w2, sigma_b2).sqrt();
            Ok(sigma_w2 * gaussian_expectation(r, |u| sech2(u).powi(2)))
        }
    }
}

/// The σ_w² of the order–chaos boundary χ₁ = 1 at bias variance σ_b²
/// (Schoenholz et al. 2017, Fig. 1): 2 for ReLU; for tanh 1 at σ_b² = 0,
/// rising with σ_b² as 1 + 2·(¾σ_b²)^{1/3} for small σ_b² (from the series of
/// the fixed point and of χ₁ in q*) and ≈ 1.761 at σ_b² = 0.05; found by
/// bisection of χ₁ − 1 on [1, 1 + 4·σ_b^{2/3} + 10σ_b²], where it changes sign once.
pub fn critical_weight_variance(activation: Activation, sigma_b2: f64) -> Result<f64> {
    check_variances(1.0, sigma_b2)?;
    match activation {
        Activation::Relu => Ok(2.0),
        Activation::Tanh if sigma_b2 == 0.0 => Ok(1.0),
        Activation::Tanh => {
            let (mut lo, mut hi) = (1.0, 1.0 + 4.0 * sigma_b2.cbrt() + 10.0 * sigma_b2);
            if chi1(Activation::Tanh, hi, sigma_b2)? < 1.0 {
                return Err(StatsError::Parameter {
                    name: "σ_b²",
                    value: sigma_b2,
                    expected: "small enough for a critical σ_w² in the search range",
                });
            }
            while hi - lo > 1e-13 * hi {
                let mid = 0.5 * (lo + hi);
                if chi1(Activation::Tanh, mid, sigma_b2)? < 1.0 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            Ok(0.5 * (lo + hi))
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, Axis};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    const PI: f64 = std::f64::consts::PI;

    fn gaussian_matrix(rows: usize, cols: usize, var: f64, rng: &mut StdRng) -> Array2<f64> {
        let sd = var.sqrt();
        Array2::from_shape_simple_fn((rows, cols), || sd * rng.sample::<f64, _>(StandardNormal))
    }

    fn cosine(a: &Array1<f64>, b: &Array1<f64>) -> f64 {
        a.dot(b) / (a.dot(a) * b.dot(b)).sqrt()
    }

    #[test]
    fn relu_map_fixed_point_values_and_slope() {
        assert_eq!(relu_correlation_map(1.0), 1.0);
        assert!((relu_correlation_map(0.0) - 1.0 / PI).abs() < 1e-16);
        assert!(relu_correlation_map(-1.0).abs() < 1e-16);
        assert_eq!(relu_correlation_slope(1.0), 1.0);
        assert!((relu_correlation_slope(0.0) - 0.5).abs() < 1e-16);
        // Slope → 1 at c → 1 as 1 − √(2(1 − c))/π.
        let c = 1.0 - 1e-10;
        assert!((relu_correlation_slope(c) - (1.0 - (2e-10f64).sqrt() / PI)).abs() < 1e-12);
        // The slope is the map's derivative (central differences).
        for c in [-0.9, -0.3, 0.0, 0.4, 0.95] {
            let h = 1e-6;
            let fd = (relu_correlation_map(c + h) - relu_correlation_map(c - h)) / (2.0 * h);
            assert!((fd - relu_correlation_slope(c)).abs() < 1e-8, "c = {c}");
        }
        // Iterates rise monotonically towards 1 and stay below it.
        let path: Vec<f64> = (0..50).map(|l| relu_correlation_after(-0.5, l)).collect();
        assert!(path.windows(2).all(|p| p[1] > p[0] && p[1] < 1.0));
        assert!(path[49] > 0.98 && path[49] < 0.99, "{}", path[49]);
        assert_eq!(relu_correlation_after(0.3, 0), 0.3);
        assert_eq!(
            relu_correlation_after(0.0, 2),
            relu_correlation_map(1.0 / PI)
        );
    }

    #[test]
    fn relu_gradient_correlation_is_the_product_of_slopes() {
        assert!((relu_gradient_correlation(0.0, 1) - 0.5).abs() < 1e-16);
        let two = 0.5 * relu_correlation_slope(1.0 / PI);
        assert!((relu_gradient_correlation(0.0, 2) - two).abs() < 1e-16);
        assert_eq!(relu_gradient_correlation(1.0, 30), 1.0);
        // The pull towards c = 1 keeps the decay well above 2^−L: 0.0337 at L = 10.
        assert!((relu_gradient_correlation(0.0, 10) - 0.033_652_150_976_631_8).abs() < 1e-15);
    }

    /// (cosine of the layer-`layers` pre-activations, cosine of ∂f/∂h¹) of two
    /// inputs through one He-initialised ReLU net of the given width.
    fn wide_relu_net(c1: f64, width: usize, layers: usize, rng: &mut StdRng) -> (f64, f64, f64) {
        let u = gaussian_matrix(width, 1, 1.0, rng).remove_axis(Axis(1));
        let v = gaussian_matrix(width, 1, 1.0, rng).remove_axis(Axis(1));
        let (mut ha, mut hb) = (u.clone(), c1 * &u + (1.0 - c1 * c1).sqrt() * &v);
        let start = cosine(&ha, &hb);
        let mut stack = vec![(ha.clone(), hb.clone())];
        let weights: Vec<Array2<f64>> = (1..layers)
            .map(|_| gaussian_matrix(width, width, 2.0 / width as f64, rng))
            .collect();
        for w in &weights {
            ha = w.dot(&ha.mapv(|x| x.max(0.0)));
            hb = w.dot(&hb.mapv(|x| x.max(0.0)));
            stack.push((ha.clone(), hb.clone()));
        }
        let top = cosine(&ha, &hb);
        let readout = gaussian_matrix(width, 1, 1.0, rng).remove_axis(Axis(1));
        let step = |h: &Array1<f64>| h.mapv(|x| f64::from(u8::from(x > 0.0)));
        let (mut da, mut db) = (step(&ha) * &readout, step(&hb) * &readout);
        for (l, w) in weights.iter().enumerate().rev() {
            let (ga, gb) = &stack[l];
            da = step(ga) * &w.t().dot(&da);
            db = step(gb) * &w.t().dot(&db);
        }
        (start, top, cosine(&da, &db))
    }

    #[test]
    fn a_wide_relu_net_follows_the_map_and_the_gradient_product() {
        // Width 1000: one net's cosines scatter by O(1/√1000) ≈ 0.03; the
        // mean of 6 nets by about 0.013.
        let mut rng = StdRng::seed_from_u64(17);
        let layers = 5;
        let (mut top, mut grad, mut want_top, mut want_grad) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..6 {
            let (c1, t, g) = wide_relu_net(0.2, 1000, layers, &mut rng);
            top += t / 6.0;
            grad += g / 6.0;
            want_top += relu_correlation_after(c1, layers - 1) / 6.0;
            want_grad += relu_gradient_correlation(c1, layers) / 6.0;
        }
        assert!((top - want_top).abs() < 0.03, "forward {top} vs {want_top}");
        assert!(
            (grad - want_grad).abs() < 0.04,
            "gradient {grad} vs {want_grad}"
        );
        // And far from Balduzzi's decoupled 2^−L (0.031 at L = 5): 0.136 from c₁ = 0.2.
        assert!(grad > 3.0 * 2f64.powi(-5), "gradient correlation {grad}");
    }

    /// E[f(z)], z ~ N(0, 1), by the trapezoid rule with step 10⁻³ on [−12, 12]:
    /// another kind of quadrature than the Gauss–Hermite rule under test.
    fn trapezoid(f: impl Fn(f64) -> f64) -> f64 {
        let h = 1e-3;
        let sum: f64 = (-12_000..=12_000)
            .map(|k| {
                let z = f64::from(k) * h;
                f(z) * (-0.5 * z * z).exp()
            })
            .sum();
        sum * h / (2.0 * PI).sqrt()
    }

    /// q* by plain fixed-point iteration and χ₁, both with the trapezoid rule.
    fn tanh_by_trapezoid(sigma_w2: f64, sigma_b2: f64) -> (f64, f64) {
        let mut q: f64 = 1.0;
        for _ in 0..2000 {
            let next = sigma_w2 * trapezoid(|z| (q.sqrt() * z).tanh().powi(2)) + sigma_b2;
            let done = (next - q).abs() < 1e-15;
            q = next;
            if done {
                break;
            }
        }
        let chi = sigma_w2 * trapezoid(|z| (q.sqrt() * z).cosh().powi(-4));
        (q, chi)
    }

    #[test]
    fn tanh_fixed_point_and_chi1_agree_with_a_trapezoid_rule() {
        for (w2, b2) in [(1.5, 0.05), (2.0, 0.05), (1.2, 0.01), (3.0, 0.3)] {
            let (q, chi) = tanh_by_trapezoid(w2, b2);
            let q_gh = fixed_point_variance(Activation::Tanh, w2, b2).unwrap();
            let chi_gh = chi1(Activation::Tanh, w2, b2).unwrap();
            assert!(
                (q_gh - q).abs() < 1e-12 * q,
                "q*({w2}, {b2}): {q_gh} vs {q}"
            );
            assert!(
                (chi_gh - chi).abs() < 1e-12,
                "χ₁({w2}, {b2}): {chi_gh} vs {chi}"
            );
        }
        // A 30-digit reference: q*(2, 0.05) = 0.72176187265207143, χ₁ = 1.0476659995757353.
        assert!(
            (fixed_point_variance(Activation::Tanh, 2.0, 0.05).unwrap() - 0.721_761_872_652_071_4)
                .abs()
                < 1e-14
        );
        assert!(
            (chi1(Activation::Tanh, 2.0, 0.05).unwrap() - 1.047_665_999_575_735_3).abs() < 1e-13
        );
        // No bias, σ_w² ≤ 1: q* = 0 and χ₁ = σ_w².
        assert_eq!(
            fixed_point_variance(Activation::Tanh, 0.8, 0.0).unwrap(),
            0.0
        );
        assert_eq!(chi1(Activation::Tanh, 0.8, 0.0).unwrap(), 0.8);
        // No bias, σ_w² > 1: the positive root.
        let q = fixed_point_variance(Activation::Tanh, 1.5, 0.0).unwrap();
        assert!((tanh_by_trapezoid(1.5, 0.0).0 - q).abs() < 1e-12 && q > 0.1);
    }

    #[test]
    fn tanh_critical_line() {
        // Schoenholz et al. 2017: σ_w² = 1 at σ_b² → 0.
        assert_eq!(
            critical_weight_variance(Activation::Tanh, 0.0).unwrap(),
            1.0
        );
        // Close to 0: 1 + 2·(¾σ_b²)^{1/3} + O(σ_b^{4/3}).
        for b2 in [1e-9, 1e-6] {
            let near = critical_weight_variance(Activation::Tanh, b2).unwrap();
            let series = 1.0 + 2.0 * (0.75f64 * b2).cbrt();
            assert!(
                (near - series).abs() < 2.0 * (0.75f64 * b2).cbrt().powi(2),
                "{near} vs {series}"
            );
        }
        // σ_b² = 0.05: 1.7609546396067391 (30-digit reference); there the
        // trapezoid rule's χ₁ is 1.
        let w2 = critical_weight_variance(Activation::Tanh, 0.05).unwrap();
        assert!((w2 - 1.760_954_639_606_739).abs() < 1e-10, "{w2}");
        assert!((tanh_by_trapezoid(w2, 0.05).1 - 1.0).abs() < 1e-11);
        // Ordered below, chaotic above.
        assert!(chi1(Activation::Tanh, w2 - 0.1, 0.05).unwrap() < 1.0);
        assert!(chi1(Activation::Tanh, w2 + 0.1, 0.05).unwrap() > 1.0);
    }

    #[test]
    fn relu_chi1_and_fixed_point() {
        assert_eq!(chi1(Activation::Relu, 2.0, 0.3).unwrap(), 1.0);
        assert_eq!(chi1(Activation::Relu, 1.5, 0.0).unwrap(), 0.75);
        assert_eq!(
            critical_weight_variance(Activation::Relu, 0.1).unwrap(),
            2.0
        );
        // q* = σ_b²/(1 − σ_w²/2), and the recursion's fixed point.
        let q = fixed_point_variance(Activation::Relu, 1.5, 0.1).unwrap();
        assert!((q - 0.4).abs() < 1e-15 && (1.5 * q / 2.0 + 0.1 - q).abs() < 1e-15);
        assert!(fixed_point_variance(Activation::Relu, 2.0, 0.1).is_err());
        assert!(chi1(Activation::Tanh, -1.0, 0.0).is_err());
        assert!(chi1(Activation::Tanh, 1.0, f64::NAN).is_err());
    }

    #[test]
    fn bn_growth_closed_form_and_quadrature() {
        // √(π/(π − 1)) = 1.2111738962363166 (30-digit reference).
        assert!((bn_relu_gradient_growth() - 1.211_173_896_236_316_6).abs() < 1e-15);
        let mean = trapezoid(|z| z.max(0.0));
        let var = trapezoid(|z| z.max(0.0).powi(2)) - mean * mean;
        // E[φ'²] = P(z > 0) = ½; Var φ by the trapezoid rule (the kink
        // sits on a node: error O(h²)).
        assert!(((0.5 / var).sqrt() - bn_relu_gradient_growth()).abs() < 1e-6);
        // tanh: 1.0852682766506075 (30-digit reference), above 1 (Poincaré).
        let tanh = bn_gradient_growth(Activation::Tanh);
        assert!((tanh - 1.085_268_276_650_607_5).abs() < 1e-13, "{tanh}");
        let by_trapezoid =
            (trapezoid(|z| z.cosh().powi(-4)) / trapezoid(|z| z.tanh().powi(2))).sqrt();
        assert!((tanh - by_trapezoid).abs() < 1e-12);
    }

    /// Per-layer growth of ‖∂L/∂h‖ between layers 3 and `depth` − 1 of a
    /// Linear → BN → ReLU net on Gaussian inputs, batch statistics held
    /// constant in the backward pass, random readout.
    fn bn_relu_net_growth(width: usize, batch: usize, depth: usize, rng: &mut StdRng) -> f64 {
        let mut x = gaussian_matrix(batch, width, 1.0, rng);
        let mut layers = Vec::new();
        for _ in 0..depth {
            let w = gaussian_matrix(width, width, 1.0 / width as f64, rng);
            let h = x.dot(&w.t());
            let mean = h.mean_axis(Axis(0)).unwrap();
            let sd = h.std_axis(Axis(0), 0.0);
            let y = (&h - &mean) / &sd;
            x = y.mapv(|v| v.max(0.0));
            layers.push((w, y, sd));
        }
        let mut dx = gaussian_matrix(batch, width, 1.0, rng);
        let mut norms = vec![0.0; depth];
        for (l, (w, y, sd)) in layers.iter().enumerate().rev() {
            let dh = &(&dx * &y.mapv(|v| f64::from(u8::from(v > 0.0)))) / sd;
            norms[l] = dh.iter().map(|v| v * v).sum::<f64>().sqrt();
            dx = dh.dot(w);
        }
        (norms[2] / norms[depth - 2]).powf(1.0 / (depth - 4) as f64)
    }

    #[test]
    fn a_wide_bn_relu_net_grows_its_gradient_at_the_predicted_rate() {
        // Width = batch = 256, 14 layers, 2 nets: finite batch and width
        // move the rate by O(1/256) per layer.
        let mut rng = StdRng::seed_from_u64(23);
        let growth = (0..2)
            .map(|_| bn_relu_net_growth(256, 256, 14, &mut rng))
            .sum::<f64>()
            / 2.0;
        // 1.2160 here against 1.2112.
        assert!(
            (growth / bn_relu_gradient_growth() - 1.0).abs() < 0.01,
            "growth {growth}"
        );
    }
}
