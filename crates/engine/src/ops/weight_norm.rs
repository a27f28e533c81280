//! Weight-normalised linear layers y = x Wᵀ + b with W_k = g_k·v_k/‖v_k‖
//! row by row (Salimans & Kingma 2016): the gradient of W is passed on to
//! the length g and the direction v,
//! ∂L/∂g_k = ∂L/∂W_k · u_k and ∂L/∂v_k = (g_k/‖v_k‖)(∂L/∂W_k − ∂L/∂g_k·u_k),
//! u_k = v_k/‖v_k‖.

use ndarray::{Array1, Array2, ArrayView2, Axis, CowArray, Ix2, Zip};

use crate::kernels::{affine, matmul, to_f64};
use crate::ops::{Sink, Writer, array1, array2};
use crate::{Real, Result};

/// A weight-normalised layer's v (out × in), g (out) and bias.
#[derive(Clone, Debug)]
pub(crate) struct WeightNorm<T> {
    pub(crate) name: String,
    v: Array2<T>,
    g: Array1<T>,
    b: Option<Array1<T>>,
}

impl<T: Real> WeightNorm<T> {
    /// The engine's copy of a nets weight-normalised layer.
    pub(crate) fn from_layer(name: String, l: &gradscope_nets::WeightNormLinear) -> Result<Self> {
        Ok(WeightNorm {
            name,
            v: array2(l.weight_v().as_tensor())?,
            g: array1(l.weight_g().as_tensor())?,
            b: l.bias().map(|b| array1(b.as_tensor())).transpose()?,
        })
    }

    /// ‖v_k‖ per row.
    fn row_norms(&self) -> Array1<T> {
        self.v
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|&x| x * x).sum::<T>().sqrt())
            .collect()
    }

    /// W = v·(g/‖v‖) row by row, as the nets layer computes it.
    fn weight(&self) -> Array2<T> {
        let s = Zip::from(&self.g)
            .and(&self.row_norms())
            .map_collect(|&g, &n| g / n);
        let mut w = self.v.clone();
        for (mut row, &s) in w.rows_mut().into_iter().zip(&s) {
            row.mapv_inplace(|x| x * s);
        }
        w
    }

    /// y = x Wᵀ + b.
    pub(crate) fn forward(&self, x: ArrayView2<T>) -> Array2<T> {
        affine(x, self.weight().t(), self.b.as_ref())
    }

    /// (h, t) ↦ (h Wᵀ + b, t Wᵀ).
    pub(crate) fn jvp(&self, h: Array2<T>, t: Array2<T>) -> (Array2<T>, Array2<T>) {
        let w = self.weight();
        (
            affine(h.view(), w.t(), self.b.as_ref()),
            matmul(t.view(), w.t()),
        )
    }

    /// ∂L/∂x = g W; with the input `x` kept, the gradients of b, g and v
    /// (pushed in reverse state-dict order: v, g, b) and the Gram matrix
    /// of the per-example gradients, as asked for.
    pub(crate) fn vjp(
        &self,
        x: Option<&Array2<T>>,
        g: CowArray<'_, T, Ix2>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        let w = self.weight();
        if let Some(a) = x {
            let norms = self.row_norms();
            if sink.want.params {
                let dw = matmul(g.t(), a.view());
                // ∂L/∂g_k = Σⱼ ∂L/∂W_kj v_kj/‖v_k‖.
                let dg: Array1<T> = Zip::from(dw.rows())
                    .and(self.v.rows())
                    .and(&norms)
                    .map_collect(|d, v, &n| d.dot(&v) / n);
                let mut dv = dw;
                for (((mut d, v), &n), (&gk, &dgk)) in dv
                    .rows_mut()
                    .into_iter()
                    .zip(self.v.rows())
                    .zip(&norms)
                    .zip(self.g.iter().zip(&dg))
                {
                    let s = gk / n;
                    Zip::from(&mut d)
                        .and(&v)
                        .for_each(|d, &v| *d = s * (*d - v * dgk / n));
                }
                sink.params.push((
                    format!("{}.weight_v", self.name),
                    dv.into_raw_vec_and_offset().0,
                ));
                sink.params
                    .push((format!("{}.weight_g", self.name), dg.to_vec()));
                if self.b.is_some() {
                    sink.params
                        .push((format!("{}.bias", self.name), g.sum_axis(Axis(0)).to_vec()));
                }
            }
            if sink.want.gram {
                sink.gram
                    .push((self.name.clone(), self.gram(a, g.view(), &norms)));
            }
        }
        matmul(g.view(), w.view())
    }

    /// ⟨θᵢ, θⱼ⟩ over b, g and v of examples i, j with δ = ∂L/∂y and input a:
    /// Σₖ δᵢₖδⱼₖ[PᵢₖPⱼₖ(1 − sₖ²) + sₖ²(aᵢ·aⱼ)] (+ δᵢ·δⱼ for b), with
    /// Pᵢₖ = aᵢ·uₖ and sₖ = gₖ/‖vₖ‖.
    fn gram(&self, a: &Array2<T>, d: ArrayView2<T>, norms: &Array1<T>) -> Array2<f64> {
        let u = {
            let mut u = self.v.clone();
            for (mut row, &n) in u.rows_mut().into_iter().zip(norms) {
                row.mapv_inplace(|x| x / n);
            }
            u
        };
        let (a64, d64) = (to_f64(a), d.mapv(Real::f64));
        let p = a64.dot(&to_f64(&u).t());
        let s2: Array1<f64> = Zip::from(&self.g)
            .and(norms)
            .map_collect(|&g, &n| (g / n).f64().powi(2));
        let q = &d64 * &p;
        let q_scaled = &q * &s2.mapv(|s| 1.0 - s);
        let d_scaled = &d64 * &s2;
        let mut gram = q_scaled.dot(&q.t()) + a64.dot(&a64.t()) * d_scaled.dot(&d64.t());
        if self.b.is_some() {
            gram = gram + d64.dot(&d64.t());
        }
        gram
    }

    /// b, g and v, in state-dict order.
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        if let Some(b) = &mut self.b {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice_mut().expect("contiguous"),
            ));
        }
        out.push((
            format!("{}.weight_g", self.name),
            self.g.as_slice_mut().expect("contiguous"),
        ));
        out.push((
            format!("{}.weight_v", self.name),
            self.v.as_slice_mut().expect("row-major"),
        ));
    }

    /// b, g and v, read-only.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        if let Some(b) = &self.b {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice().expect("contiguous"),
            ));
        }
        out.push((
            format!("{}.weight_g", self.name),
            self.g.as_slice().expect("contiguous"),
        ));
        out.push((
            format!("{}.weight_v", self.name),
            self.v.as_slice().expect("row-major"),
        ));
    }

    /// Write b, g and v back into the net's variables.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        if let Some(b) = &self.b {
            w.set1(&format!("{}.bias", self.name), b)?;
        }
        w.set1(&format!("{}.weight_g", self.name), &self.g)?;
        w.set(&format!("{}.weight_v", self.name), &self.v)
    }
}
