//! Batch normalisation y = (x − μ)/σ·γ + β (Ioffe & Szegedy 2015) in every
//! BN mode: the batch statistics held constant in the gradient
//! ([`BnMode::PerSample`]), the running statistics ([`BnMode::Eval`]), or
//! the gradient through the batch statistics ([`BnMode::Full`], and
//! [`BnMode::Train`], whose forward pass also yields the running-statistics
//! update). Over a batch of vectors the statistics are per feature; over
//! NCHW images (rows of C·H·W values) per channel, over the batch and the
//! pixels, and the per-channel factors are expanded to the pixels so every
//! elementwise loop is the vectors' own.

use gradscope_nets::{BN_MOMENTUM, BnMode};
use ndarray::{Array1, Array2, Zip};

use crate::kernels::{apply_affine, column_means, par_rows, row_major, rows, scale_rows};
use crate::ops::{Sink, Writer, array1, coupled, scale_shift_grads};
use crate::{Real, Result};

/// A BN layer's parameters and running statistics.
#[derive(Clone, Debug)]
pub(crate) struct BatchNorm<T> {
    pub(crate) name: String,
    gamma: Array1<T>,
    beta: Array1<T>,
    /// Running (mean, variance).
    running: (Array1<T>, Array1<T>),
    eps: T,
}

/// What the backward pass needs from the forward pass.
#[derive(Clone, Debug)]
pub(crate) struct Saved<T> {
    /// γ/σ per feature.
    pub(crate) scale: Array1<T>,
    /// x̂ = (x − μ)/σ, when parameter gradients were asked for or the
    /// statistics are in the gradient.
    pub(crate) xhat: Option<Array2<T>>,
    /// The batch (mean, biased variance), in training mode.
    batch: Option<(Array1<T>, Array1<T>)>,
    /// Pixels per channel (1 for vectors).
    spatial: usize,
}

/// Each value repeated `spatial` times: a per-channel factor on every
/// pixel of its channel (the vector itself when `spatial` is 1).
fn expand<T: Real>(v: Array1<T>, spatial: usize) -> Array1<T> {
    if spatial == 1 {
        return v;
    }
    v.iter()
        .flat_map(|&x| std::iter::repeat_n(x, spatial))
        .collect()
}

/// Per-channel sums over `spatial` consecutive features (the features
/// themselves when `spatial` is 1).
fn per_channel<T: Real>(v: Array1<T>, spatial: usize) -> Array1<T> {
    if spatial == 1 {
        return v;
    }
    v.as_slice()
        .expect("contiguous")
        .chunks_exact(spatial)
        .map(|c| c.iter().copied().sum())
        .collect()
}

impl<T: Real> BatchNorm<T> {
    /// The engine's copy of a nets BN layer.
    pub(crate) fn from_layer(name: String, bn: &gradscope_nets::BatchNorm) -> Result<Self> {
        Ok(BatchNorm {
            name,
            gamma: array1(bn.weight().as_tensor())?,
            beta: array1(bn.bias().as_tensor())?,
            running: (
                array1(bn.running_mean().as_tensor())?,
                array1(bn.running_var().as_tensor())?,
            ),
            eps: T::of(bn.eps()),
        })
    }

    /// Pixels per channel of rows `cols` wide (1 for vectors).
    fn spatial(&self, cols: usize) -> usize {
        cols / self.gamma.len().max(1)
    }

    /// Per-channel γ/σ, the shift β − μγ/σ, μ and σ², for the batch
    /// statistics or, in eval mode, the running ones.
    fn scale_shift(
        &self,
        x: &Array2<T>,
        mode: BnMode,
    ) -> (Array1<T>, Array1<T>, Array1<T>, Array1<T>) {
        let spatial = self.spatial(x.ncols());
        let (mean, var) = if mode == BnMode::Eval {
            (self.running.0.clone(), self.running.1.clone())
        } else if spatial == 1 {
            // Two passes for an accurate variance.
            let mean = column_means(x, None);
            let var = column_means(x, mean.as_slice());
            (mean, var)
        } else {
            let n = T::from_usize(spatial).expect("pixels");
            let mean = per_channel(column_means(x, None), spatial).mapv(|v| v / n);
            let centre = expand(mean.clone(), spatial);
            let var = per_channel(column_means(x, centre.as_slice()), spatial).mapv(|v| v / n);
            (mean, var)
        };
        let scale = Zip::from(&var)
            .and(&self.gamma)
            .map_collect(|&v, &g| g / (v + self.eps).sqrt());
        let shift = Zip::from(&self.beta)
            .and(&mean)
            .and(&scale)
            .map_collect(|&b, &m, &s| b - m * s);
        (scale, shift, mean, var)
    }

    /// y = BN(x) then `act` (when given), in place on `h`, one pass for
    /// both; `inputs`: keep x̂ for the parameter gradients.
    pub(crate) fn forward(
        &self,
        h: &mut Array2<T>,
        act: Option<gradscope_nets::Activation>,
        inputs: bool,
        mode: BnMode,
    ) -> Saved<T> {
        let spatial = self.spatial(h.ncols());
        let (scale, shift, mean, var) = self.scale_shift(h, mode);
        // x̂ = (x − μ)/σ, kept for γ's gradient and the coupled backward.
        let xhat = (inputs || coupled(mode)).then(|| {
            let inv = Zip::from(&scale)
                .and(&self.gamma)
                .map_collect(|&s, &g| s / g);
            let neg = Zip::from(&mean)
                .and(&inv)
                .map_collect(|&m, &i| T::zero() - m * i);
            let mut xh = h.clone();
            apply_affine(&mut xh, &expand(inv, spatial), &expand(neg, spatial));
            xh
        });
        let batch = (mode == BnMode::Train).then_some((mean, var));
        let (scale, shift) = (expand(scale, spatial), expand(shift, spatial));
        super::activation::apply_affine(act, h, &scale, &shift);
        Saved {
            scale,
            xhat,
            batch,
            spatial,
        }
    }

    /// ∂L/∂x from g = ∂L/∂y (in place), with γ's and β's gradients or Gram
    /// matrix when asked for.
    pub(crate) fn vjp(&self, s: &Saved<T>, g: &mut Array2<T>, sink: &mut Sink<T>) {
        if let Some(xh) = &s.xhat {
            scale_shift_grads(sink, &self.name, g.view(), xh, true, s.spatial);
        }
        match &s.xhat {
            Some(xh) if coupled(sink.mode) => {
                backward_through_statistics(g, xh, &s.scale, s.spatial)
            }
            _ => scale_rows(g, &s.scale),
        }
    }

    /// Forward mode with the statistics held constant: (h, t) ↦ (BN(h), t·γ/σ).
    pub(crate) fn jvp(&self, h: &mut Array2<T>, t: &mut Array2<T>, mode: BnMode) {
        let spatial = self.spatial(h.ncols());
        let (scale, shift, ..) = self.scale_shift(h, mode);
        let scale = expand(scale, spatial);
        apply_affine(h, &scale, &expand(shift, spatial));
        scale_rows(t, &scale);
    }

    /// running ← (1 − m)·running + m·batch with m = [`BN_MOMENTUM`] and the
    /// unbiased batch variance over the n samples (times their pixels), as
    /// PyTorch does.
    pub(crate) fn update_running_stats(&mut self, s: &Saved<T>, n: usize) {
        let Some((mean, var)) = &s.batch else {
            return;
        };
        let n = n * s.spatial;
        let unbias = if n > 1 {
            T::from_usize(n).expect("n") / T::from_usize(n - 1).expect("n")
        } else {
            T::one()
        };
        let m = T::of(BN_MOMENTUM);
        let (rm, rv) = &mut self.running;
        Zip::from(rm)
            .and(mean)
            .for_each(|r, &b| *r = (T::one() - m) * *r + m * b);
        Zip::from(rv)
            .and(var)
            .for_each(|r, &b| *r = (T::one() - m) * *r + m * b * unbias);
    }

    /// γ (`weight`) and β (`bias`).
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        out.push((
            format!("{}.weight", self.name),
            self.gamma.as_slice_mut().expect("contiguous"),
        ));
        out.push((
            format!("{}.bias", self.name),
            self.beta.as_slice_mut().expect("contiguous"),
        ));
    }

    /// γ and β, read-only.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        out.push((
            format!("{}.weight", self.name),
            self.gamma.as_slice().expect("contiguous"),
        ));
        out.push((
            format!("{}.bias", self.name),
            self.beta.as_slice().expect("contiguous"),
        ));
    }

    /// Write γ, β and the running statistics back into the net's variables.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        let (rm, rv) = &self.running;
        for (part, v) in [
            ("weight", &self.gamma),
            ("bias", &self.beta),
            ("running_mean", rm),
            ("running_var", rv),
        ] {
            w.set1(&format!("{}.{part}", self.name), v)?;
        }
        Ok(())
    }
}

/// The gradient through batch normalisation with the statistics in it:
/// with y = γx̂ + β, x̂ = (x − μ)/σ over a batch of n,
/// ∂L/∂x = (γ/σ)·(g − mean(g) − x̂·mean(g ⊙ x̂)) per feature (per channel
/// over the batch and its pixels for images; Ioffe & Szegedy 2015), in
/// place of g.
fn backward_through_statistics<T: Real>(
    g: &mut Array2<T>,
    xhat: &Array2<T>,
    scale: &Array1<T>,
    spatial: usize,
) {
    let w = g.ncols();
    let nt = T::from_usize(g.nrows().max(1) * spatial).expect("batch size");
    let (mut mg, mut mgx) = (vec![T::zero(); w], vec![T::zero(); w]);
    for (gr, xr) in rows(g).zip(rows(xhat)) {
        for (((a, b), &gv), &xv) in mg.iter_mut().zip(&mut mgx).zip(gr).zip(xr) {
            *a += gv;
            *b += gv * xv;
        }
    }
    if spatial > 1 {
        let spread =
            |v: Vec<T>| expand(per_channel(Array1::from_vec(v), spatial), spatial).to_vec();
        (mg, mgx) = (spread(mg), spread(mgx));
    }
    mg.iter_mut().chain(&mut mgx).for_each(|v| *v /= nt);
    let s = scale.as_slice().expect("contiguous");
    par_rows(g, Some(row_major(xhat)), |gs, xs, w| {
        let xs = xs.expect("paired rows");
        for (gr, xr) in gs.chunks_exact_mut(w).zip(xs.chunks_exact(w)) {
            for ((((gv, &xv), &s), &a), &b) in gr.iter_mut().zip(xr).zip(s).zip(&mg).zip(&mgx) {
                *gv = s * (*gv - a - xv * b);
            }
        }
    });
}
