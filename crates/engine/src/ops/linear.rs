//! Linear layers y = x Wᵀ + b: forward, ∂L/∂x = g W, ∂L/∂W = gᵀ x,
//! ∂L/∂b = Σᵢ gᵢ, the per-example Gram contribution and the tangent map.

use std::sync::OnceLock;

use ndarray::{Array1, Array2, ArrayView2, Axis, CowArray, Ix2};

use crate::kernels::{affine, matmul, matmul_on, to_f64, transposed};
use crate::ops::{Sink, Writer, array1, array2};
use crate::pool::{self, product_threads};
use crate::{Real, Result};

/// y = x Wᵀ + b, W (out × in) in the tensor's own layout.
#[derive(Clone, Debug)]
pub(crate) struct Linear<T> {
    /// State-dict prefix (`stem`, `layers.3.fc1`, …).
    pub(crate) name: String,
    pub(crate) w: Array2<T>,
    pub(crate) b: Option<Array1<T>>,
    /// Wᵀ row-major, made with the net and again on the first forward
    /// pass after W changes: gemm packs a row-major right factor 15–35 %
    /// faster than a transposed one at widths 256–512. `None` in a net
    /// built for one pass, which packs W's transposed view instead of
    /// paying for a copy it would use once.
    wt: Option<OnceLock<Array2<T>>>,
}

impl<T: Real> Linear<T> {
    /// The engine's copy of a nets layer; `keep_wt`: with its row-major Wᵀ, made now.
    pub(crate) fn from_layer(
        name: String,
        l: &gradscope_nets::Linear,
        keep_wt: bool,
    ) -> Result<Self> {
        let w = array2::<T>(l.weight().as_tensor())?;
        Ok(Linear {
            name,
            wt: keep_wt.then(|| OnceLock::from(transposed(&w))),
            w,
            b: l.bias().map(|b| array1(b.as_tensor())).transpose()?,
        })
    }

    /// y = x Wᵀ + b from its arrays; `keep_wt`: with its row-major Wᵀ.
    pub(crate) fn new(name: String, w: Array2<T>, b: Option<Array1<T>>, keep_wt: bool) -> Self {
        Linear {
            name,
            wt: keep_wt.then(|| OnceLock::from(transposed(&w))),
            w,
            b,
        }
    }

    /// Output features.
    pub(crate) fn outputs(&self) -> usize {
        self.w.nrows()
    }

    /// Whether as many features come out as go in.
    pub(crate) fn keeps_shape(&self) -> bool {
        self.w.nrows() == self.w.ncols()
    }

    /// The right factor Wᵀ: the row-major copy (made again here after W
    /// changed), or W's transposed view in a net built for one pass.
    fn right(&self) -> ArrayView2<'_, T> {
        match &self.wt {
            Some(wt) => wt.get_or_init(|| transposed(&self.w)).view(),
            None => self.w.t(),
        }
    }

    /// y = x Wᵀ + b.
    pub(crate) fn forward(&self, x: ArrayView2<T>) -> Array2<T> {
        affine(x, self.right(), self.b.as_ref())
    }

    /// (h, t) ↦ (h Wᵀ + b, t Wᵀ).
    pub(crate) fn jvp(&self, h: Array2<T>, t: Array2<T>) -> (Array2<T>, Array2<T>) {
        let right = self.right();
        (
            affine(h.view(), right, self.b.as_ref()),
            matmul(t.view(), right),
        )
    }

    /// ∂L/∂x = g W from g = ∂L/∂y; with the layer's input `x` kept, also
    /// the parameter gradients and Gram matrix the sink asks for.
    pub(crate) fn vjp(
        &self,
        x: Option<&Array2<T>>,
        g: CowArray<'_, T, Ix2>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        let Some(a) = x else {
            return matmul(g.view(), self.w.view());
        };
        let mut dx = None;
        if sink.want.params {
            if self.b.is_some() {
                sink.params
                    .push((format!("{}.bias", self.name), g.sum_axis(Axis(0)).to_vec()));
            }
            // ∂L/∂W = gᵀ a, stored (out × in) as the weight is; with product
            // threads it runs beside ∂L/∂x = g W, two whole products instead
            // of four halves.
            let dw = if product_threads() > 1 {
                let (dw, d) = pool::join(
                    || matmul_on(g.t(), a.view(), None, 1),
                    || matmul_on(g.view(), self.w.view(), None, 1),
                );
                dx = Some(d);
                dw
            } else {
                matmul(g.t(), a.view())
            };
            sink.params.push((
                format!("{}.weight", self.name),
                dw.into_raw_vec_and_offset().0,
            ));
        }
        if sink.want.gram {
            // Per-example gradient of W is δᵢ aᵢᵀ: ⟨gᵢ, gⱼ⟩ = (aᵢ·aⱼ)(δᵢ·δⱼ), plus δᵢ·δⱼ for b.
            let (aa, dd) = (
                to_f64(&matmul(a.view(), a.t())),
                to_f64(&matmul(g.view(), g.t())),
            );
            let bias = if self.b.is_some() { 1.0 } else { 0.0 };
            sink.gram.push((self.name.clone(), (aa + bias) * dd));
        }
        dx.unwrap_or_else(|| matmul(g.view(), self.w.view()))
    }

    /// Σ over outputs of each input's weight column: Σₖ W_kj, the head's
    /// map from a tangent to the tangent of the output sum.
    pub(crate) fn column_sums(&self) -> Array1<T> {
        self.w.sum_axis(Axis(0))
    }

    /// The weight and bias as (name, values), clearing the Wᵀ copy: the
    /// caller may change W through the slice.
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        if let Some(wt) = &mut self.wt {
            wt.take();
        }
        out.push((
            format!("{}.weight", self.name),
            self.w.as_slice_mut().expect("row-major"),
        ));
        if let Some(b) = &mut self.b {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice_mut().expect("contiguous"),
            ));
        }
    }

    /// The weight and bias as (name, values), read-only.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        out.push((
            format!("{}.weight", self.name),
            self.w.as_slice().expect("row-major"),
        ));
        if let Some(b) = &self.b {
            out.push((
                format!("{}.bias", self.name),
                b.as_slice().expect("contiguous"),
            ));
        }
    }

    /// Write W and b back into the net's variables.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        w.set(&format!("{}.weight", self.name), &self.w)?;
        if let Some(b) = &self.b {
            w.set1(&format!("{}.bias", self.name), b)?;
        }
        Ok(())
    }
}
