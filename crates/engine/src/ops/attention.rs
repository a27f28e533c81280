//! Multi-head scaled dot-product self-attention (Vaswani et al. 2017) as an
//! engine op: forward, VJP and parameter gradients, per example, on rows of
//! T·d values (token after token).
//!
//! Forward, per example X (T × d) and head h (columns h·d_h … of q, k, v):
//! [Q K V] = X W_inᵀ + b_in, S_h = Q_h K_hᵀ/√d_h (+ −∞ above the diagonal
//! when causal), P_h = softmax_rows(S_h), O_h = P_h V_h, C = [O_1 … O_H],
//! Y = C W_outᵀ + b_out.
//!
//! Backward from G = ∂L/∂Y: ∂W_out = Gᵀ C, ∂b_out = Σ_t G_t, ∂C = G W_out;
//! ∂P_h = ∂O_h V_hᵀ, ∂V_h = P_hᵀ ∂O_h, ∂S_h = P_h ⊙ (∂P_h − rowsum(∂P_h ⊙ P_h)),
//! ∂Q_h = ∂S_h K_h/√d_h, ∂K_h = ∂S_hᵀ Q_h/√d_h; ∂W_in = ∂[Q K V]ᵀ X,
//! ∂b_in = Σ_t ∂[Q K V]_t, ∂X = ∂[Q K V] W_in. Masked scores have P = 0,
//! so they pass no gradient.
//!
//! Not yet wired into [`for_net`](crate::for_net): transformers still run on
//! candle, which is this op's oracle in the tests.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};

use crate::ops::{array1, array2};
use crate::{Real, Result};

/// The attention op's parameters, copied from a net's layer.
#[derive(Clone, Debug)]
pub struct AttentionOp<T> {
    /// W_in (3d × d).
    pub w_in: Array2<T>,
    /// b_in (3d).
    pub b_in: Array1<T>,
    /// W_out (d × d).
    pub w_out: Array2<T>,
    /// b_out (d).
    pub b_out: Array1<T>,
    /// Heads H.
    pub heads: usize,
    /// Whether token t attends to tokens ≤ t only.
    pub causal: bool,
}

/// What the forward pass keeps for the backward pass, per example.
#[derive(Clone, Debug)]
pub struct AttentionSaved<T> {
    /// [Q K V] per example (T × 3d).
    qkv: Vec<Array2<T>>,
    /// P_h per example and head (T × T).
    probs: Vec<Vec<Array2<T>>>,
    /// C per example (T × d).
    concat: Vec<Array2<T>>,
}

/// Parameter gradients of the op, in the layer's shapes.
#[derive(Clone, Debug)]
pub struct AttentionGrads<T> {
    /// ∂L/∂W_in.
    pub w_in: Array2<T>,
    /// ∂L/∂b_in.
    pub b_in: Array1<T>,
    /// ∂L/∂W_out.
    pub w_out: Array2<T>,
    /// ∂L/∂b_out.
    pub b_out: Array1<T>,
}

impl<T: Real> AttentionOp<T> {
    /// The engine's copy of a net's attention layer.
    pub fn from_layer(a: &gradscope_nets::Attention) -> Result<Self> {
        Ok(AttentionOp {
            w_in: array2(a.in_proj_weight.as_tensor())?,
            b_in: array1(a.in_proj_bias.as_tensor())?,
            w_out: array2(a.out_proj_weight.as_tensor())?,
            b_out: array1(a.out_proj_bias.as_tensor())?,
            heads: a.heads,
            causal: a.causal,
        })
    }

    fn width(&self) -> usize {
        self.w_out.nrows()
    }

    /// Y for a batch of rows x (B × T·d), and what the backward pass needs.
    pub fn forward(&self, x: ArrayView2<T>) -> (Array2<T>, AttentionSaved<T>) {
        let d = self.width();
        let t = x.ncols() / d;
        let dh = d / self.heads;
        let scale = T::of(1.0 / (dh as f64).sqrt());
        let mut y = Array2::zeros(x.raw_dim());
        let mut saved = AttentionSaved {
            qkv: Vec::with_capacity(x.nrows()),
            probs: Vec::with_capacity(x.nrows()),
            concat: Vec::with_capacity(x.nrows()),
        };
        for (i, row) in x.rows().into_iter().enumerate() {
            let xi = row
                .to_owned()
                .into_shape_with_order((t, d))
                .expect("T·d values");
            let qkv = xi.dot(&self.w_in.t()) + &self.b_in;
            let mut concat = Array2::zeros((t, d));
            let mut probs = Vec::with_capacity(self.heads);
            for h in 0..self.heads {
                let q = qkv.slice(s![.., h * dh..(h + 1) * dh]);
                let k = qkv.slice(s![.., d + h * dh..d + (h + 1) * dh]);
                let v = qkv.slice(s![.., 2 * d + h * dh..2 * d + (h + 1) * dh]);
                let mut p = q.dot(&k.t()).mapv(|v| v * scale);
                for (r, mut prow) in p.rows_mut().into_iter().enumerate() {
                    let visible = if self.causal { r + 1 } else { t };
                    let m = prow
                        .iter()
                        .take(visible)
                        .fold(T::neg_infinity(), |a, &b| a.max(b));
                    let mut z = T::zero();
                    for (c, e) in prow.iter_mut().enumerate() {
                        *e = if c < visible {
                            (*e - m).exp()
                        } else {
                            T::zero()
                        };
                        z += *e;
                    }
                    prow.mapv_inplace(|e| e / z);
                }
                concat
                    .slice_mut(s![.., h * dh..(h + 1) * dh])
                    .assign(&p.dot(&v));
                probs.push(p);
            }
            let yi = concat.dot(&self.w_out.t()) + &self.b_out;
            y.row_mut(i)
                .assign(&yi.into_shape_with_order(t * d).expect("T·d values"));
            saved.qkv.push(qkv);
            saved.probs.push(probs);
            saved.concat.push(concat);
        }
        (y, saved)
    }

    /// ∂L/∂x (B × T·d) and the parameter gradients (summed over the batch)
    /// from ∂L/∂y = g at the forward pass of x.
    pub fn backward(
        &self,
        x: ArrayView2<T>,
        saved: &AttentionSaved<T>,
        g: ArrayView2<T>,
    ) -> (Array2<T>, AttentionGrads<T>) {
        let d = self.width();
        let t = x.ncols() / d;
        let dh = d / self.heads;
        let scale = T::of(1.0 / (dh as f64).sqrt());
        let mut gx = Array2::zeros(x.raw_dim());
        let mut grads = AttentionGrads {
            w_in: Array2::zeros(self.w_in.raw_dim()),
            b_in: Array1::zeros(self.b_in.raw_dim()),
            w_out: Array2::zeros(self.w_out.raw_dim()),
            b_out: Array1::zeros(self.b_out.raw_dim()),
        };
        for (i, (row, grow)) in x.rows().into_iter().zip(g.rows()).enumerate() {
            let xi = row
                .to_owned()
                .into_shape_with_order((t, d))
                .expect("T·d values");
            let gi = grow
                .to_owned()
                .into_shape_with_order((t, d))
                .expect("T·d values");
            let (qkv, concat) = (&saved.qkv[i], &saved.concat[i]);
            grads.w_out = grads.w_out + gi.t().dot(concat);
            grads.b_out = grads.b_out + gi.sum_axis(Axis(0));
            let gc = gi.dot(&self.w_out);
            let mut gqkv = Array2::zeros((t, 3 * d));
            for h in 0..self.heads {
                let p = &saved.probs[i][h];
                let q = qkv.slice(s![.., h * dh..(h + 1) * dh]);
                let k = qkv.slice(s![.., d + h * dh..d + (h + 1) * dh]);
                let v = qkv.slice(s![.., 2 * d + h * dh..2 * d + (h + 1) * dh]);
                let go = gc.slice(s![.., h * dh..(h + 1) * dh]);
                let gp = go.dot(&v.t());
                let gv = p.t().dot(&go);
                let mut gs = gp;
                for (mut gsr, pr) in gs.rows_mut().into_iter().zip(p.rows()) {
                    let dot = gsr.iter().zip(pr).fold(T::zero(), |a, (&x, &y)| a + x * y);
                    gsr.zip_mut_with(&pr, |a, &pv| *a = pv * (*a - dot));
                }
                let gq = gs.dot(&k).mapv(|v| v * scale);
                let gk = gs.t().dot(&q).mapv(|v| v * scale);
                gqkv.slice_mut(s![.., h * dh..(h + 1) * dh]).assign(&gq);
                gqkv.slice_mut(s![.., d + h * dh..d + (h + 1) * dh])
                    .assign(&gk);
                gqkv.slice_mut(s![.., 2 * d + h * dh..2 * d + (h + 1) * dh])
                    .assign(&gv);
            }
            grads.w_in = grads.w_in + gqkv.t().dot(&xi);
            grads.b_in = grads.b_in + gqkv.sum_axis(Axis(0));
            gx.row_mut(i).assign(
                &gqkv
                    .dot(&self.w_in)
                    .into_shape_with_order(t * d)
                    .expect("T·d values"),
            );
        }
        (gx, grads)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};
    use gradscope_nets::{Precision, Transformer, TransformerParams};
    use ndarray::Array2;

    use super::*;

    fn layer(causal: bool) -> gradscope_nets::Attention {
        let arch = if causal {
            "transformer:causal=on"
        } else {
            "transformer"
        };
        let spec = TransformerParams {
            arch: arch.parse().unwrap(),
            depth: 1,
            width: 8,
            heads: 2,
            seq_len: 5,
            vocab: 4,
            ff_width: 0,
            precision: Precision::F64,
            seed: 2,
        }
        .check()
        .unwrap();
        let a = Transformer::new(&spec).unwrap().blocks()[0].attn.f.clone();
        // Non-zero biases, so their gradients are tested too.
        for v in [&a.in_proj_bias, &a.out_proj_bias] {
            let n = v.elem_count();
            let r: Vec<f64> = (0..n).map(|i| ((i * 7) % 5) as f64 / 10.0 - 0.2).collect();
            v.set(&Tensor::from_vec(r, n, &Device::Cpu).unwrap())
                .unwrap();
        }
        a
    }

    fn inputs() -> Array2<f64> {
        Array2::from_shape_fn((3, 40), |(i, j)| ((i * 13 + j * 7) % 17) as f64 / 8.0 - 1.0)
    }

    fn weights() -> Array2<f64> {
        Array2::from_shape_fn((3, 40), |(i, j)| ((i * 5 + j * 3) % 11) as f64 / 5.0 - 1.0)
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn forward_and_gradients_equal_candle_with_and_without_the_mask() {
        for causal in [false, true] {
            let a = layer(causal);
            let op = AttentionOp::<f64>::from_layer(&a).unwrap();
            let (x, g) = (inputs(), weights());
            let (y, saved) = op.forward(x.view());
            let (gx, grads) = op.backward(x.view(), &saved, g.view());
            // candle: L = Σ y ⊙ g through its autograd.
            let xv = Var::from_tensor(
                &Tensor::from_vec(x.iter().copied().collect(), (3, 5, 8), &Device::Cpu).unwrap(),
            )
            .unwrap();
            let yc = a.forward(xv.as_tensor()).unwrap();
            assert!(max_diff(&values(&yc), y.as_slice().unwrap()) < 1e-12);
            let gt =
                Tensor::from_vec(g.iter().copied().collect(), (3, 5, 8), &Device::Cpu).unwrap();
            let back = (yc * gt).unwrap().sum_all().unwrap().backward().unwrap();
            let of = |v: &Tensor| values(back.get(v).unwrap());
            let pairs = [
                (of(xv.as_tensor()), gx.as_slice().unwrap().to_vec()),
                (
                    of(a.in_proj_weight.as_tensor()),
                    grads.w_in.iter().copied().collect(),
                ),
                (of(a.in_proj_bias.as_tensor()), grads.b_in.to_vec()),
                (
                    of(a.out_proj_weight.as_tensor()),
                    grads.w_out.iter().copied().collect(),
                ),
                (of(a.out_proj_bias.as_tensor()), grads.b_out.to_vec()),
            ];
            for (k, (theirs, ours)) in pairs.iter().enumerate() {
                let e = max_diff(theirs, ours);
                assert!(e < 1e-12, "causal {causal}, gradient {k}: max |Δ| = {e:e}");
            }
        }
    }

    #[test]
    fn gradients_equal_central_differences_in_f64() {
        for causal in [false, true] {
            let op = AttentionOp::<f64>::from_layer(&layer(causal)).unwrap();
            let (x, g) = (inputs(), weights());
            let loss = |op: &AttentionOp<f64>, x: &Array2<f64>| (op.forward(x.view()).0 * &g).sum();
            let (_, saved) = op.forward(x.view());
            let (gx, grads) = op.backward(x.view(), &saved, g.view());
            let h = 1e-6;
            let check = |fd: f64, ours: f64, what: &str| {
                assert!(
                    (fd - ours).abs() <= 1e-7 * (1.0 + ours.abs()),
                    "causal {causal}, {what}: {ours} vs differences {fd}"
                );
            };
            for &(i, j) in &[(0, 0), (1, 17), (2, 39), (2, 8)] {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[[i, j]] += h;
                down[[i, j]] -= h;
                check(
                    (loss(&op, &up) - loss(&op, &down)) / (2.0 * h),
                    gx[[i, j]],
                    "∂x",
                );
            }
            for &(r, c) in &[(0, 0), (9, 3), (17, 7), (23, 5)] {
                let (mut up, mut down) = (op.clone(), op.clone());
                up.w_in[[r, c]] += h;
                down.w_in[[r, c]] -= h;
                check(
                    (loss(&up, &x) - loss(&down, &x)) / (2.0 * h),
                    grads.w_in[[r, c]],
                    "∂W_in",
                );
            }
            for &(r, c) in &[(0, 1), (7, 7)] {
                let (mut up, mut down) = (op.clone(), op.clone());
                up.w_out[[r, c]] += h;
                down.w_out[[r, c]] -= h;
                check(
                    (loss(&up, &x) - loss(&down, &x)) / (2.0 * h),
                    grads.w_out[[r, c]],
                    "∂W_out",
                );
            }
            for r in [0, 12, 20] {
                let (mut up, mut down) = (op.clone(), op.clone());
                up.b_in[r] += h;
                down.b_in[r] -= h;
                check(
                    (loss(&up, &x) - loss(&down, &x)) / (2.0 * h),
                    grads.b_in[r],
                    "∂b_in",
                );
            }
        }
    }
}
