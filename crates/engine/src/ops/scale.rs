//! y = c·x with c a trainable scalar: the branch multiplier of SkipInit
//! (De & Smith 2020), ReZero (Bachlechner et al. 2020) and Fixup (Zhang et
//! al. 2019), at the end of a residual branch; and the trainable shortcut
//! scale λ of s(x) = λx (Liu et al. 2020).

use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};

use crate::kernels::to_f64;
use crate::ops::{Sink, Writer, array1};
use crate::{Real, Result};

/// The multiplier c, a (1)-shaped parameter named `name` in the state dict.
#[derive(Clone, Debug)]
pub(crate) struct Scale<T> {
    pub(crate) name: String,
    c: Array1<T>,
}

impl<T: Real> Scale<T> {
    /// The engine's copy of a block's gain variable.
    pub(crate) fn from_var(name: String, c: &candle_core::Var) -> Result<Self> {
        Ok(Scale {
            name,
            c: array1(c.as_tensor())?,
        })
    }

    /// c.
    pub(crate) fn value(&self) -> T {
        self.c[0]
    }

    /// y = c·x.
    pub(crate) fn forward(&self, x: ArrayView2<T>) -> Array2<T> {
        x.mapv(|v| v * self.c[0])
    }

    /// ∂L/∂x = c·g; with the input x kept, ∂L/∂c = Σᵢⱼ gᵢⱼxᵢⱼ and its
    /// per-example Gram matrix, as asked for.
    pub(crate) fn vjp(
        &self,
        x: Option<&Array2<T>>,
        g: ArrayView2<T>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        if let Some(x) = x {
            // Example i's ∂L/∂c is Σⱼ g_ij x_ij.
            let per_example = Zip::from(g.rows())
                .and(x.rows())
                .map_collect(|g, x| g.dot(&x));
            if sink.want.params {
                sink.params
                    .push((self.name.clone(), vec![per_example.sum()]));
            }
            if sink.want.gram {
                // Keyed by the layer, as the other entries are: `layers.l`.
                let layer = self
                    .name
                    .rsplit_once('.')
                    .map_or(self.name.as_str(), |(l, _)| l);
                let e = to_f64(&per_example.insert_axis(Axis(1)));
                sink.gram.push((layer.to_string(), e.dot(&e.t())));
            }
        }
        let c = self.c[0];
        g.mapv(|v| v * c)
    }

    /// Forward mode: (h, t) ↦ (c·h, c·t), in place.
    pub(crate) fn jvp(&self, h: &mut Array2<T>, t: &mut Array2<T>) {
        h.mapv_inplace(|v| v * self.c[0]);
        t.mapv_inplace(|v| v * self.c[0]);
    }

    /// c, under its own name.
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        out.push((
            self.name.clone(),
            self.c.as_slice_mut().expect("contiguous"),
        ));
    }

    /// c, read-only.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        out.push((self.name.clone(), self.c.as_slice().expect("contiguous")));
    }

    /// Write c back into the net's variable.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        w.set1(&self.name, &self.c)
    }
}
