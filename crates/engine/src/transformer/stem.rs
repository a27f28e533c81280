//! The embedding stem h₀ = E[ids] + P: the token ids checked, each token
//! row the sum of its id's row of E and its position's row of P, and the
//! gradients of both tables (each token row of ∂L/∂h₀ added to the rows it
//! came from). Token ids are not differentiable: no VJP to the input.

use ndarray::{Array2, ArrayView2};

use crate::{EngineError, Real, Result};

/// The token table E (V × d) and the position table P (T × d).
pub(super) struct Stem<T> {
    pub(super) embed: Array2<T>,
    pub(super) pos: Array2<T>,
}

impl<T: Real> Stem<T> {
    /// The token ids of x (B × T), checked.
    pub(super) fn ids(&self, x: ArrayView2<T>) -> Result<Vec<usize>> {
        let (seq_len, vocab) = (self.pos.nrows(), self.embed.nrows());
        if x.ncols() != seq_len {
            return Err(EngineError::Input(format!(
                "{} tokens per example, the net takes {}",
                x.ncols(),
                seq_len
            )));
        }
        x.iter()
            .map(|&r| {
                let v = r.f64();
                if v >= 0.0 && v < vocab as f64 && v.fract() == 0.0 {
                    Ok(v as usize)
                } else {
                    Err(EngineError::Input(format!(
                        "token id {v} is not one of 0 … {}",
                        vocab - 1
                    )))
                }
            })
            .collect()
    }

    /// h₀ = E[ids] + P as token rows.
    pub(super) fn forward(&self, ids: &[usize]) -> Array2<T> {
        let t = self.pos.nrows();
        let mut h = Array2::zeros((ids.len(), self.embed.ncols()));
        for (k, (mut row, &id)) in h.rows_mut().into_iter().zip(ids).enumerate() {
            let (e, p) = (self.embed.row(id), self.pos.row(k % t));
            row.iter_mut()
                .zip(e.iter().zip(p))
                .for_each(|(h, (&e, &p))| *h = e + p);
        }
        h
    }

    /// ∂L/∂E and ∂L/∂P (state-dict names and values) from ∂L/∂h₀ as token
    /// rows of the sequences `ids`.
    pub(super) fn grads(&self, g: ArrayView2<T>, ids: &[usize]) -> [(String, Vec<T>); 2] {
        let t = self.pos.nrows();
        let mut ge = Array2::<T>::zeros(self.embed.raw_dim());
        let mut gp = Array2::<T>::zeros(self.pos.raw_dim());
        for (k, (row, &id)) in g.rows().into_iter().zip(ids).enumerate() {
            ge.row_mut(id).zip_mut_with(&row, |a, &v| *a += v);
            gp.row_mut(k % t).zip_mut_with(&row, |a, &v| *a += v);
        }
        [
            ("embed.weight".into(), ge.into_raw_vec_and_offset().0),
            ("pos_embed.weight".into(), gp.into_raw_vec_and_offset().0),
        ]
    }

    /// Both tables as (state-dict name, values).
    pub(super) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        out.push((
            "embed.weight".into(),
            self.embed.as_slice_mut().expect("row-major"),
        ));
        out.push((
            "pos_embed.weight".into(),
            self.pos.as_slice_mut().expect("row-major"),
        ));
    }

    /// Both tables as (state-dict name, a copy of the values).
    pub(super) fn param_values(&self, out: &mut Vec<(String, Vec<T>)>) {
        out.push(("embed.weight".into(), self.embed.iter().copied().collect()));
        out.push((
            "pos_embed.weight".into(),
            self.pos.iter().copied().collect(),
        ));
    }
}
