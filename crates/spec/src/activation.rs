//! Pointwise nonlinearities φ: their names, values, slopes and Gaussian
//! moments (the tensor forward pass is the nets crate's).

use std::fmt;
use std::str::FromStr;

use crate::parse::{finite, no_arg, serde_via_str, split_call};
use crate::{Result, SpecError};

/// SELU's α and λ (Klambauer et al. 2017, "Self-Normalizing Neural Networks").
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
/// SELU's scale λ.
pub const SELU_LAMBDA: f64 = 1.050_700_987_355_480_5;
/// √(2/π), the constant of GELU's tanh form.
pub const GELU_C: f64 = 0.797_884_560_802_865_4;

/// A pointwise activation φ.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// φ(h) = max(h, 0); φ' ∈ {0, 1}.
    #[default]
    Relu,
    /// φ(h) = h for h > 0, a·h otherwise (Maas et al. 2013).
    LeakyRelu {
        /// Slope a for h < 0.
        slope: f64,
    },
    /// φ(h) = h for h > 0, eʰ − 1 otherwise (Clevert et al. 2016).
    Elu,
    /// φ(h) = λ·(h for h > 0, α(eʰ − 1) otherwise), α ≈ 1.673, λ ≈ 1.051
    /// (Klambauer et al. 2017): self-normalising with LeCun init.
    Selu,
    /// φ(h) = ½h(1 + tanh(√(2/π)(h + 0.044715h³))), the tanh form of GELU
    /// (Hendrycks & Gimpel 2016).
    Gelu,
    /// φ(h) = ln(1 + eʰ).
    Softplus,
    /// φ(h) = tanh(h); φ' ≤ 1.
    Tanh,
    /// φ(h) = 1/(1 + e^-h); φ' = φ(1-φ) ≤ 1/4.
    Sigmoid,
    /// φ(h) = h.
    Identity,
}

impl Activation {
    /// Every activation (leaky ReLU with slope 0.01), for listings and tests.
    pub const ALL: [Activation; 9] = [
        Self::Relu,
        Self::LeakyRelu { slope: 0.01 },
        Self::Elu,
        Self::Selu,
        Self::Gelu,
        Self::Softplus,
        Self::Tanh,
        Self::Sigmoid,
        Self::Identity,
    ];

    /// φ(h) for one number, the reference the tensor version is tested against.
    pub fn apply(&self, h: f64) -> f64 {
        match *self {
            Self::Relu => h.max(0.0),
            Self::LeakyRelu { slope } => {
                if h > 0.0 {
                    h
                } else {
                    slope * h
                }
            }
            Self::Elu => {
                if h > 0.0 {
                    h
                } else {
                    h.exp_m1()
                }
            }
            Self::Selu => SELU_LAMBDA * if h > 0.0 { h } else { SELU_ALPHA * h.exp_m1() },
            Self::Gelu => 0.5 * h * (1.0 + (GELU_C * (h + 0.044_715 * h.powi(3))).tanh()),
            Self::Softplus => h.max(0.0) + (-h.abs()).exp().ln_1p(),
            Self::Tanh => h.tanh(),
            Self::Sigmoid => 1.0 / (1.0 + (-h).exp()),
            Self::Identity => h,
        }
    }

    /// φ'(h), used by mean-field predictions and forward-mode paths.
    pub fn derivative(&self, h: f64) -> f64 {
        match *self {
            Self::Relu => f64::from(u8::from(h > 0.0)),
            Self::LeakyRelu { slope } => {
                if h > 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Self::Elu => {
                if h > 0.0 {
                    1.0
                } else {
                    h.exp()
                }
            }
            Self::Selu => SELU_LAMBDA * if h > 0.0 { 1.0 } else { SELU_ALPHA * h.exp() },
            Self::Gelu => {
                let u = GELU_C * (h + 0.044_715 * h.powi(3));
                let t = u.tanh();
                0.5 * (1.0 + t) + 0.5 * h * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044_715 * h * h)
            }
            Self::Softplus => 1.0 / (1.0 + (-h).exp()),
            Self::Tanh => 1.0 - h.tanh().powi(2),
            Self::Sigmoid => {
                let s = self.apply(h);
                s * (1.0 - s)
            }
            Self::Identity => 1.0,
        }
    }

    /// E[φ'(z)²] for z ~ N(0, q), by Gauss–Hermite quadrature (64 nodes): the
    /// factor in the mean-field backward ratio χ₁ = σ_w²·E[φ'(z)²] (Poole et
    /// al. 2016; Schoenholz et al. 2017). ReLU: ½ for any q.
    pub fn mean_squared_slope(&self, q: f64) -> f64 {
        gauss_expectation(q, |z| self.derivative(z).powi(2))
    }

    /// E[φ(z)²] for z ~ N(0, q): the forward variance map's integrand.
    pub fn mean_square(&self, q: f64) -> f64 {
        gauss_expectation(q, |z| self.apply(z).powi(2))
    }
}

/// E[f(z)], z ~ N(0, q), by Gauss–Hermite quadrature on 64 nodes (Golub–Welsch
/// nodes computed once by Newton iteration on the Hermite recurrence).
fn gauss_expectation(q: f64, f: impl Fn(f64) -> f64) -> f64 {
    use std::sync::OnceLock;
    static NODES: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    let nodes = NODES.get_or_init(|| hermite_nodes(64));
    let s = (2.0 * q.max(0.0)).sqrt();
    nodes.iter().map(|&(x, w)| w * f(s * x)).sum::<f64>() / std::f64::consts::PI.sqrt()
}

/// Nodes and weights of n-point Gauss–Hermite quadrature (weight e^{−x²}),
/// as in Numerical Recipes' `gauher`.
fn hermite_nodes(n: usize) -> Vec<(f64, f64)> {
    let pim4 = std::f64::consts::PI.powf(-0.25);
    let mut out = vec![(0.0, 0.0); n];
    let m = n.div_ceil(2);
    let mut z = 0.0f64;
    for i in 0..m {
        z = match i {
            0 => (2.0 * n as f64 + 1.0).sqrt() - 1.85575 * (2.0 * n as f64 + 1.0).powf(-1.0 / 6.0),
            1 => z - 1.14 * (n as f64).powf(0.426) / z,
            2 => 1.86 * z - 0.86 * out[0].0,
            3 => 1.91 * z - 0.91 * out[1].0,
            _ => 2.0 * z - out[i - 2].0,
        };
        let mut pp = 0.0;
        for _ in 0..100 {
            let (mut p1, mut p2) = (pim4, 0.0);
            for j in 0..n {
                let p3 = p2;
                p2 = p1;
                p1 = z * (2.0 / (j + 1) as f64).sqrt() * p2
                    - (j as f64 / (j + 1) as f64).sqrt() * p3;
            }
            pp = (2.0 * n as f64).sqrt() * p2;
            let z1 = z;
            z = z1 - p1 / pp;
            if (z - z1).abs() < 1e-14 {
                break;
            }
        }
        let w = 2.0 / (pp * pp);
        out[i] = (z, w);
        out[n - 1 - i] = (-z, w);
    }
    out
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Relu => f.write_str("relu"),
            Self::LeakyRelu { slope } => write!(f, "leaky-relu({slope})"),
            Self::Elu => f.write_str("elu"),
            Self::Selu => f.write_str("selu"),
            Self::Gelu => f.write_str("gelu"),
            Self::Softplus => f.write_str("softplus"),
            Self::Tanh => f.write_str("tanh"),
            Self::Sigmoid => f.write_str("sigmoid"),
            Self::Identity => f.write_str("identity"),
        }
    }
}

impl FromStr for Activation {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "activation";
        let (name, arg) = split_call(WHAT, s)?;
        let act = match name {
            "relu" => Self::Relu,
            "leaky-relu" | "leaky_relu" => {
                let slope = match arg {
                    Some(a) => finite(WHAT, s, a)?,
                    None => 0.01,
                };
                if !(0.0..1.0).contains(&slope) {
                    return Err(SpecError::parse(WHAT, s, "the slope must be in [0, 1)"));
                }
                return Ok(Self::LeakyRelu { slope });
            }
            "elu" => Self::Elu,
            "selu" => Self::Selu,
            "gelu" => Self::Gelu,
            "softplus" => Self::Softplus,
            "tanh" => Self::Tanh,
            "sigmoid" => Self::Sigmoid,
            "identity" | "linear" => Self::Identity,
            _ => {
                return Err(SpecError::parse(
                    WHAT,
                    s,
                    "unknown name (known: relu, leaky-relu(a), elu, selu, gelu, softplus, tanh, sigmoid, identity)",
                ));
            }
        };
        no_arg(WHAT, s, arg)?;
        Ok(act)
    }
}

serde_via_str!(Activation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_expectations_have_their_closed_forms() {
        for q in [0.1, 1.0, 4.0] {
            // E[z²] = q; ReLU: E[φ'²] = ½, E[φ²] = q/2; identity: E[φ'²] = 1.
            assert!((Activation::Identity.mean_square(q) - q).abs() < 1e-10);
            assert!((Activation::Relu.mean_squared_slope(q) - 0.5).abs() < 0.02);
            assert!((Activation::Relu.mean_square(q) - q / 2.0).abs() < 1e-3 * q.max(1.0));
            assert!((Activation::Identity.mean_squared_slope(q) - 1.0).abs() < 1e-12);
            // Leaky ReLU: (1 + a²)/2.
            let l = Activation::LeakyRelu { slope: 0.2 };
            assert!((l.mean_squared_slope(q) - 0.52).abs() < 0.02);
        }
        // tanh is linear near 0 and saturates: E[φ'²] → 1 as q → 0, below ½ at q = 4.
        assert!((Activation::Tanh.mean_squared_slope(1e-6) - 1.0).abs() < 1e-4);
        assert!(Activation::Tanh.mean_squared_slope(4.0) < 0.5);
        // sigmoid's slope never exceeds ¼.
        assert!(Activation::Sigmoid.mean_squared_slope(1.0) <= 1.0 / 16.0);
    }

    #[test]
    fn names_round_trip_and_bad_ones_are_errors() {
        for a in Activation::ALL {
            assert_eq!(a.to_string().parse::<Activation>().unwrap(), a);
        }
        for bad in ["swish", "leaky-relu(2)", "leaky-relu(nan)", "relu(1)", ""] {
            assert!(bad.parse::<Activation>().is_err(), "{bad}");
        }
    }
}
