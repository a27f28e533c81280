//! Weight and bias initialisations, drawn from a seeded stream per tensor.
//!
//! The CPU device cannot be seeded, so every initial value is drawn here with
//! `rand` from [`derive_seed`](crate::derive_seed)`(seed, tensor name)`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::parse::{finite, no_arg, serde_via_str, split_call};
use crate::{Result, SpecError};

/// How the weight matrix W (fan_out × fan_in) of a linear layer is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum WeightInit {
    /// Kaiming/He normal, fan-in: W ~ N(0, 2/fan_in) (He et al. 2015). Critical for ReLU.
    #[default]
    He,
    /// LeCun normal: W ~ N(0, 1/fan_in).
    LeCun,
    /// Xavier/Glorot normal: W ~ N(0, 2/(fan_in + fan_out)) (Glorot & Bengio 2010).
    Xavier,
    /// W ~ N(0, σ_w²/fan_in), the mean-field parametrisation (Poole et al. 2016).
    Normal {
        /// σ_w², the weight variance times fan_in.
        sigma_w2: f64,
    },
    /// W ~ U(−b, b) with the same variance σ_w²/fan_in (b = √(3σ_w²/fan_in)).
    Uniform {
        /// σ_w², the weight variance times fan_in.
        sigma_w2: f64,
    },
    /// Xavier/Glorot uniform: U(±√(6/(fan_in + fan_out))).
    XavierUniform,
    /// Kaiming/He normal, fan-out: W ~ N(0, 2/fan_out) (preserves the backward pass).
    HeFanOut,
    /// A random (semi-)orthogonal matrix times `gain` (Saxe et al. 2014): all
    /// singular values equal `gain`. Gain 1 for linear and tanh nets, √2 for ReLU.
    Orthogonal {
        /// Scale of the orthogonal matrix.
        gain: f64,
    },
}

impl WeightInit {
    /// Variance of each weight entry.
    pub fn variance(&self, fan_in: usize, fan_out: usize) -> f64 {
        let (fi, fo) = (fan_in as f64, fan_out as f64);
        match *self {
            Self::He => 2.0 / fi,
            Self::LeCun => 1.0 / fi,
            Self::Xavier => 2.0 / (fi + fo),
            Self::Normal { sigma_w2 } | Self::Uniform { sigma_w2 } => sigma_w2 / fi,
            Self::XavierUniform => 2.0 / (fi + fo),
            Self::HeFanOut => 2.0 / fo,
            // Rows (or columns) of unit norm: each entry has variance 1/max(fan_in, fan_out).
            Self::Orthogonal { gain } => gain * gain / fi.max(fo),
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        match *self {
            Self::Normal { sigma_w2 } | Self::Uniform { sigma_w2 }
                if !(sigma_w2.is_finite() && sigma_w2 > 0.0) =>
            {
                Err(SpecError::invalid(
                    "weight_init",
                    format!("σ_w² must be a positive finite number, got {sigma_w2}"),
                ))
            }
            Self::Orthogonal { gain } if !(gain.is_finite() && gain > 0.0) => {
                Err(SpecError::invalid(
                    "weight_init",
                    format!("the orthogonal gain must be a positive finite number, got {gain}"),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Whether a draw is σ·z with z ~ N(0, I), σ the init's standard
    /// deviation: the same z serve every such init of a tensor.
    pub fn is_gaussian(&self) -> bool {
        !matches!(
            self,
            Self::Uniform { .. } | Self::XavierUniform | Self::Orthogonal { .. }
        )
    }

    /// Draw a row-major fan_out × fan_in matrix.
    pub fn draw(&self, fan_out: usize, fan_in: usize, rng: &mut impl Rng) -> Vec<f64> {
        let var = self.variance(fan_in, fan_out);
        match *self {
            Self::Uniform { .. } | Self::XavierUniform => {
                let b = (3.0 * var).sqrt();
                (0..fan_out * fan_in)
                    .map(|_| rng.random_range(-b..b))
                    .collect()
            }
            Self::Orthogonal { gain } => orthogonal(fan_out, fan_in, gain, rng),
            _ => normal(fan_out * fan_in, var.sqrt(), rng),
        }
    }
}

impl fmt::Display for WeightInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::He => f.write_str("he"),
            Self::LeCun => f.write_str("lecun"),
            Self::Xavier => f.write_str("xavier"),
            Self::Normal { sigma_w2 } => write!(f, "normal({sigma_w2})"),
            Self::Uniform { sigma_w2 } => write!(f, "uniform({sigma_w2})"),
            Self::XavierUniform => f.write_str("xavier-uniform"),
            Self::HeFanOut => f.write_str("he-fan-out"),
            Self::Orthogonal { gain } => write!(f, "orthogonal({gain})"),
        }
    }
}

impl FromStr for WeightInit {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "weight init";
        let (name, arg) = split_call(WHAT, s)?;
        let init = match name {
            "he" | "kaiming" => Self::He,
            "lecun" => Self::LeCun,
            "xavier" | "glorot" => Self::Xavier,
            "xavier-uniform" | "glorot-uniform" => Self::XavierUniform,
            "he-fan-out" | "kaiming-fan-out" => Self::HeFanOut,
            "uniform" | "orthogonal" => {
                let v = match arg {
                    Some(a) => finite(WHAT, s, a)?,
                    None if name == "orthogonal" => 1.0,
                    None => {
                        return Err(SpecError::parse(
                            WHAT,
                            s,
                            "write uniform(σ_w²), e.g. uniform(2)",
                        ));
                    }
                };
                return Ok(if name == "uniform" {
                    Self::Uniform { sigma_w2: v }
                } else {
                    Self::Orthogonal { gain: v }
                });
            }
            "normal" => {
                let Some(arg) = arg else {
                    return Err(SpecError::parse(
                        WHAT,
                        s,
                        "write normal(σ_w²), e.g. normal(2)",
                    ));
                };
                return Ok(Self::Normal {
                    sigma_w2: finite(WHAT, s, arg)?,
                });
            }
            _ => {
                return Err(SpecError::parse(
                    WHAT,
                    s,
                    "unknown name (known: he, he-fan-out, lecun, xavier, xavier-uniform, normal(σ_w²), uniform(σ_w²), orthogonal(gain))",
                ));
            }
        };
        no_arg(WHAT, s, arg)?;
        Ok(init)
    }
}

serde_via_str!(WeightInit);

/// A fan_out × fan_in matrix (row-major) with orthonormal rows or columns,
/// whichever are fewer, times `gain`: Gram–Schmidt on a Gaussian matrix,
/// with signs fixed so the draw is Haar-distributed.
fn orthogonal(fan_out: usize, fan_in: usize, gain: f64, rng: &mut impl Rng) -> Vec<f64> {
    let (long, short) = (fan_out.max(fan_in), fan_out.min(fan_in));
    // `short` orthonormal vectors of length `long`.
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(short);
    while q.len() < short {
        let mut v = normal(long, 1.0, rng);
        for _ in 0..2 {
            // Classical Gram–Schmidt, twice for orthogonality to rounding
            // (Giraud et al. 2005): the projections are independent dot
            // products, not a chain as in the modified form.
            let d: Vec<f64> = q.iter().map(|u| dot(&v, u)).collect();
            for (u, d) in q.iter().zip(d) {
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= d * b);
            }
        }
        let norm = dot(&v, &v).sqrt();
        if norm > 1e-8 {
            q.push(v.into_iter().map(|a| a / norm).collect());
        }
    }
    let mut w = vec![0.0; fan_out * fan_in];
    for (k, u) in q.iter().enumerate() {
        for (l, &x) in u.iter().enumerate() {
            // Rows of W when fan_out ≤ fan_in, columns otherwise.
            let (i, j) = if fan_out <= fan_in { (k, l) } else { (l, k) };
            w[i * fan_in + j] = gain * x;
        }
    }
    w
}

/// How biases are drawn.
///
/// With zero biases a ReLU MLP is positively homogeneous, f(a·x) = a·f(x) for
/// a > 0, so on a scalar input its gradient takes exactly two values (one for
/// x < 0, one for x > 0) at every depth: it cannot shatter.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum BiasInit {
    /// b = 0.
    #[default]
    Zero,
    /// b ~ N(0, σ²).
    Normal {
        /// Standard deviation σ.
        std: f64,
    },
    /// b ~ U(-bound, bound).
    Uniform {
        /// Half-width of the interval.
        bound: f64,
    },
    /// PyTorch's `nn.Linear` default: b ~ U(-1/√fan_in, 1/√fan_in).
    Torch,
}

impl BiasInit {
    pub(crate) fn check(&self) -> Result<()> {
        let v = match *self {
            Self::Normal { std } => std,
            Self::Uniform { bound } => bound,
            Self::Zero | Self::Torch => return Ok(()),
        };
        if !(v.is_finite() && v >= 0.0) {
            return Err(SpecError::invalid(
                "bias_init",
                format!("scale must be a finite number ≥ 0, got {v}"),
            ));
        }
        Ok(())
    }

    /// Draw `n` values for a layer with `fan_in` inputs.
    pub fn draw(&self, n: usize, fan_in: usize, rng: &mut impl Rng) -> Vec<f64> {
        match *self {
            Self::Zero => vec![0.0; n],
            Self::Normal { std } => normal(n, std, rng),
            Self::Uniform { bound } => uniform(n, bound, rng),
            Self::Torch => uniform(n, 1.0 / (fan_in as f64).sqrt(), rng),
        }
    }
}

impl fmt::Display for BiasInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero => f.write_str("zero"),
            Self::Normal { std } => write!(f, "normal({std})"),
            Self::Uniform { bound } => write!(f, "uniform({bound})"),
            Self::Torch => f.write_str("torch"),
        }
    }
}

impl FromStr for BiasInit {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self> {
        const WHAT: &str = "bias init";
        let (name, arg) = split_call(WHAT, s)?;
        let need = |form: &str| SpecError::parse(WHAT, s, format!("write {form}"));
        Ok(match name {
            "zero" | "zeros" => {
                no_arg(WHAT, s, arg)?;
                Self::Zero
            }
            "torch" => {
                no_arg(WHAT, s, arg)?;
                Self::Torch
            }
            "normal" => Self::Normal {
                std: finite(
                    WHAT,
                    s,
                    arg.ok_or_else(|| need("normal(σ_b), e.g. normal(0.1)"))?,
                )?,
            },
            "uniform" => Self::Uniform {
                bound: finite(
                    WHAT,
                    s,
                    arg.ok_or_else(|| need("uniform(bound), e.g. uniform(0.1)"))?,
                )?,
            },
            _ => {
                return Err(SpecError::parse(
                    WHAT,
                    s,
                    "unknown name (known: zero, normal(σ_b), uniform(bound), torch)",
                ));
            }
        })
    }
}

serde_via_str!(BiasInit);

/// The seeded stream for the tensor called `name` in a net with seed `seed`.
pub fn tensor_rng(seed: u64, name: &str) -> StdRng {
    StdRng::seed_from_u64(crate::derive_seed(seed, name))
}

/// x·y in four running sums, so that the loop vectorises.
fn dot(x: &[f64], y: &[f64]) -> f64 {
    let mut s = [0.0f64; 4];
    let (xs, ys) = (x.chunks_exact(4), y.chunks_exact(4));
    let tail: f64 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xs.zip(ys) {
        for k in 0..4 {
            s[k] += a[k] * b[k];
        }
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

fn normal(n: usize, std: f64, rng: &mut impl Rng) -> Vec<f64> {
    (0..n)
        .map(|_| std * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng))
        .collect()
}

/// z ~ N(0, I) per (seed, tensor name).
type Draws = HashMap<(u64, String), Arc<[f64]>>;

/// The standard normal draws of weight tensors, kept per (seed, tensor name)
/// for building many nets that differ only in a Gaussian init's scale or in
/// their activation (the nets crate's `Mlp::with_draws`): each gets
/// σ·z from the same z, bitwise the weights it would draw alone, and the
/// draws (the bulk of building a net) are made once.
#[derive(Default)]
pub struct DrawCache {
    draws: Mutex<Draws>,
}

// The count only: a config holding a cache may be printed.
impl fmt::Debug for DrawCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DrawCache({} tensors)", self.len())
    }
}

impl DrawCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The fan_out × fan_in weight of tensor `name` of the net seeded
    /// `seed` under `init`, as [`WeightInit::draw`] with
    /// [`tensor_rng`]`(seed, name)` gives it.
    pub fn weight(
        &self,
        init: &WeightInit,
        fan_out: usize,
        fan_in: usize,
        seed: u64,
        name: &str,
    ) -> Vec<f64> {
        if !init.is_gaussian() {
            return init.draw(fan_out, fan_in, &mut tensor_rng(seed, name));
        }
        let n = fan_out * fan_in;
        let key = (seed, name.to_string());
        let cached = self.lock().get(&key).filter(|z| z.len() == n).cloned();
        let z = cached.unwrap_or_else(|| {
            let z: Arc<[f64]> = normal(n, 1.0, &mut tensor_rng(seed, name)).into();
            self.lock().insert(key, z.clone());
            z
        });
        // σ·z, as `normal` computes it.
        let std = init.variance(fan_in, fan_out).sqrt();
        z.iter().map(|&z| std * z).collect()
    }

    /// Tensors whose draws are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Bytes of the kept draws (f64 each).
    pub fn bytes(&self) -> usize {
        self.lock().values().map(|z| z.len() * 8).sum()
    }

    /// Whether no draws are kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Draws> {
        // A panic elsewhere leaves the map whole: every entry is inserted complete.
        self.draws.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn uniform(n: usize, bound: f64, rng: &mut impl Rng) -> Vec<f64> {
    (0..n)
        .map(|_| rng.random_range(-1.0..=1.0) * bound)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn he_draws_have_variance_two_over_fan_in() {
        let mut rng = tensor_rng(1, "w");
        let w = WeightInit::He.draw(400, 100, &mut rng);
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        // 40 000 draws: the sample variance is within ~1.5 % (3σ) of 0.02.
        assert!((var - 0.02).abs() < 0.02 * 0.03, "var = {var}");
    }

    #[test]
    fn torch_bias_is_bounded_by_inverse_sqrt_fan_in() {
        let mut rng = tensor_rng(1, "b");
        let b = BiasInit::Torch.draw(1000, 100, &mut rng);
        assert!(b.iter().all(|v| v.abs() <= 0.1));
        assert!(b.iter().any(|v| v.abs() > 0.09));
    }

    #[test]
    fn init_strings_round_trip() {
        for s in ["he", "lecun", "xavier", "normal(1.5)"] {
            assert_eq!(s.parse::<WeightInit>().unwrap().to_string(), s);
        }
        for s in ["zero", "normal(0.1)", "uniform(0.5)", "torch"] {
            assert_eq!(s.parse::<BiasInit>().unwrap().to_string(), s);
        }
        assert!("normal".parse::<WeightInit>().is_err());
        assert!("he(2)".parse::<WeightInit>().is_err());
        assert!("normal(nan)".parse::<BiasInit>().is_err());
        assert!("gauss".parse::<BiasInit>().is_err());
    }

    #[test]
    fn orthogonal_draws_are_orthogonal_and_other_inits_have_their_variance() {
        let mut rng = StdRng::seed_from_u64(5);
        for (out, inp) in [(64, 64), (32, 64), (64, 32)] {
            let w = WeightInit::Orthogonal { gain: 1.5 }.draw(out, inp, &mut rng);
            // The smaller Gram matrix (W Wᵀ or Wᵀ W) is gain² I.
            let (rows, by_rows) = if out <= inp {
                (out, true)
            } else {
                (inp, false)
            };
            for a in 0..rows {
                for b in 0..rows {
                    let dot: f64 = if by_rows {
                        (0..inp).map(|j| w[a * inp + j] * w[b * inp + j]).sum()
                    } else {
                        (0..out).map(|i| w[i * inp + a] * w[i * inp + b]).sum()
                    };
                    let want = if a == b { 2.25 } else { 0.0 };
                    assert!((dot - want).abs() < 1e-10, "{out}×{inp} ({a}, {b}): {dot}");
                }
            }
        }
        for init in [
            WeightInit::Uniform { sigma_w2: 2.0 },
            WeightInit::XavierUniform,
            WeightInit::HeFanOut,
        ] {
            let w = init.draw(300, 100, &mut rng);
            let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
            let want = init.variance(100, 300);
            assert!((var / want - 1.0).abs() < 0.03, "{init}: {var} vs {want}");
            assert_eq!(init.to_string().parse::<WeightInit>().unwrap(), init);
        }
        let b = (3.0f64 * 2.0 / 100.0).sqrt();
        assert!(
            WeightInit::Uniform { sigma_w2: 2.0 }
                .draw(100, 100, &mut rng)
                .iter()
                .all(|x| x.abs() <= b)
        );
        for bad in [
            "orthogonal(0)",
            "uniform",
            "uniform(-1)",
            "orthogonal(nan)",
            "he(2)",
        ] {
            let parsed = bad.parse::<WeightInit>();
            assert!(parsed.is_err() || parsed.unwrap().check().is_err(), "{bad}");
        }
    }
}
