//! Per-sample normalisers over the features of each row, in equal groups:
//! layer norm (one group; Ba et al. 2016), group norm (Wu & He 2018) and
//! RMS norm (Zhang & Sennrich 2019):
//! y = γ·x̂ + β, x̂ = (x − μ)/√(σ² + ε) with μ, σ² over the group, or for
//! RMS norm (no centring, no β) x̂ = x/√(mean x² + ε).

use gradscope_nets::FeatureNormKind;
use ndarray::{Array1, Array2};

use crate::kernels::{apply_affine, row_major, scale_rows};
use crate::ops::{Sink, Writer, array1, scale_shift_grads};
use crate::{Real, Result};

/// A per-sample normaliser's parameters.
#[derive(Clone, Debug)]
pub(crate) struct FeatureNorm<T> {
    pub(crate) name: String,
    gamma: Array1<T>,
    beta: Option<Array1<T>>,
    groups: usize,
    centre: bool,
    eps: T,
}

/// x̂ and 1/√(σ² + ε) per row and group (rows × groups).
#[derive(Clone, Debug)]
pub(crate) struct Saved<T> {
    xhat: Array2<T>,
    inv_std: Array2<T>,
}

impl<T: Real> FeatureNorm<T> {
    /// The engine's copy of a nets LN, GN or RMS layer.
    pub(crate) fn from_layer(name: String, n: &gradscope_nets::FeatureNorm) -> Result<Self> {
        let (groups, centre) = match n.kind() {
            FeatureNormKind::Layer => (1, true),
            FeatureNormKind::Group(g) => (g, true),
            FeatureNormKind::Rms => (1, false),
        };
        Ok(FeatureNorm {
            name,
            gamma: array1(n.weight().as_tensor())?,
            beta: n.bias().map(|b| array1(b.as_tensor())).transpose()?,
            groups,
            centre,
            eps: T::of(n.eps()),
        })
    }

    /// A layer norm over each row, from γ, β and ε (a transformer's LN,
    /// run on token rows).
    pub(crate) fn layer(name: String, gamma: Array1<T>, beta: Array1<T>, eps: f64) -> Self {
        FeatureNorm {
            name,
            gamma,
            beta: Some(beta),
            groups: 1,
            centre: true,
            eps: T::of(eps),
        }
    }

    /// y = γ·x̂ + β of x (owned, normalised in place); saves x̂ and 1/σ.
    pub(crate) fn forward(&self, mut xhat: Array2<T>) -> (Array2<T>, Saved<T>) {
        let inv_std = self.normalise(&mut xhat);
        let mut h = xhat.clone();
        self.scale_shift(&mut h);
        (h, Saved { xhat, inv_std })
    }

    /// ∂L/∂x from g = ∂L/∂y, in place; γ's and β's gradients or Gram matrix
    /// when asked for.
    pub(crate) fn vjp(&self, s: &Saved<T>, g: &mut Array2<T>, sink: &mut Sink<T>) {
        scale_shift_grads(sink, &self.name, g.view(), &s.xhat, self.beta.is_some(), 1);
        // ∂L/∂x̂ = g ⊙ γ, then through x ↦ x̂ (its Jacobian is symmetric).
        scale_rows(g, &self.gamma);
        self.jacobian(g, &s.xhat, &s.inv_std);
    }

    /// Forward mode: (h, t) ↦ (N(h), γ ⊙ J·t), in place.
    pub(crate) fn jvp(&self, h: &mut Array2<T>, t: &mut Array2<T>) {
        let inv_std = self.normalise(h);
        self.jacobian(t, h, &inv_std);
        scale_rows(t, &self.gamma);
        self.scale_shift(h);
    }

    /// y = x·γ (+ β) per feature, in place.
    fn scale_shift(&self, h: &mut Array2<T>) {
        match &self.beta {
            Some(b) => apply_affine(h, &self.gamma, b),
            None => scale_rows(h, &self.gamma),
        }
    }

    /// x ← x̂ per row and group; returns 1/√(σ² + ε) (rows × groups).
    fn normalise(&self, x: &mut Array2<T>) -> Array2<T> {
        let n = x.nrows();
        let m = self.group_size(x.ncols());
        let mt = T::from_usize(m).expect("group size");
        let mut inv_std = Array2::zeros((n, self.groups));
        let xs = x.as_slice_mut().expect("row-major");
        for (grp, r) in xs.chunks_exact_mut(m).zip(inv_std.iter_mut()) {
            if self.centre {
                let mu = grp.iter().copied().sum::<T>() / mt;
                grp.iter_mut().for_each(|v| *v -= mu);
            }
            let var = grp.iter().map(|&c| c * c).sum::<T>() / mt;
            // Divided, not multiplied by 1/σ: the candle layer's rounding.
            let sd = (var + self.eps).sqrt();
            grp.iter_mut().for_each(|v| *v /= sd);
            *r = T::one() / sd;
        }
        inv_std
    }

    /// v ← r·(v − mean v − x̂·mean(x̂ ⊙ v)) per row and group (without the
    /// mean v term when not centred): the Jacobian of x ↦ x̂ applied to v.
    /// It is symmetric, so this is both the forward-mode and the
    /// reverse-mode step.
    fn jacobian(&self, v: &mut Array2<T>, xhat: &Array2<T>, inv_std: &Array2<T>) {
        let m = self.group_size(v.ncols());
        let mt = T::from_usize(m).expect("group size");
        let vs = v.as_slice_mut().expect("row-major");
        let xs = row_major(xhat);
        for ((vg, xg), &r) in vs.chunks_exact_mut(m).zip(xs.chunks_exact(m)).zip(inv_std) {
            let mv = if self.centre {
                vg.iter().copied().sum::<T>() / mt
            } else {
                T::zero()
            };
            let mxv = vg.iter().zip(xg).map(|(&a, &b)| a * b).sum::<T>() / mt;
            for (a, &b) in vg.iter_mut().zip(xg) {
                *a = r * (*a - mv - b * mxv);
            }
        }
    }

    fn group_size(&self, width: usize) -> usize {
        (width / self.groups.max(1)).max(1)
    }

    /// γ (`weight`) and β (`bias`, not for RMS norm).
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        out.push((
            format!("{}.weight", self.name),
            self.gamma.as_slice_mut().expect("contiguous"),
        ));
        if let Some(b) = &mut self.beta {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice_mut().expect("contiguous"),
            ));
        }
    }

    /// γ and β, read-only.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        out.push((
            format!("{}.weight", self.name),
            self.gamma.as_slice().expect("contiguous"),
        ));
        if let Some(b) = &self.beta {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice().expect("contiguous"),
            ));
        }
    }

    /// Write γ and β back into the net's variables.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        w.set1(&format!("{}.weight", self.name), &self.gamma)?;
        if let Some(b) = &self.beta {
            w.set1(&format!("{}.bias", self.name), b)?;
        }
        Ok(())
    }
}
