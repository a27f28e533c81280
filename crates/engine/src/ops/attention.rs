//! Multi-head scaled dot-product self-attention (Vaswani et al. 2017) as an
//! engine op: forward, VJP, JVP and parameter gradients, on rows of T·d
//! values (token after token).
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
//! The projections run as GEMMs over all B·T tokens of the batch; only the
//! T × T products run per example and head (split between the product
//! threads). Forward mode: [`AttentionOp::jvp_tokens`]. candle's layer is
//! the oracle in the tests.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};

use crate::kernels::{matmul, matmul_on};
use crate::ops::{array1, array2};
use crate::pool::{self, product_threads};
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

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct AttentionSaved<T> {
    /// [Q K V] of every token (B·T × 3d).
    qkv: Array2<T>,
    /// P_h per example and head (T × T).
    probs: Vec<Vec<Array2<T>>>,
    /// C of every token (B·T × d).
    concat: Array2<T>,
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

/// Rows (B × T·d) as token rows (B·T × d), sharing memory when row-major.
fn tokens<T: Real>(x: ArrayView2<'_, T>, d: usize) -> ndarray::CowArray<'_, T, ndarray::Ix2> {
    let n = x.len() / d;
    match x.to_slice() {
        Some(s) => ArrayView2::from_shape((n, d), s)
            .expect("T·d values")
            .into(),
        None => x
            .to_owned()
            .into_shape_with_order((n, d))
            .expect("T·d values")
            .into(),
    }
}

/// Token rows (B·T × d) as rows (B × T·d).
fn per_example<T: Real>(y: Array2<T>, b: usize) -> Array2<T> {
    let n = y.len() / b.max(1);
    y.into_shape_with_order((b, n)).expect("B·T·d values")
}

/// `f(b)` for every example b, split between the product threads.
fn per_examples<R: Send>(b: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    if product_threads() > 1 {
        pool::map(b, f)
    } else {
        (0..b).map(f).collect()
    }
}

/// Copies per-example blocks (T × w) into one array (B·T × w).
fn stack<T: Real>(blocks: &[Array2<T>], w: usize) -> Array2<T> {
    let t = blocks.first().map_or(0, |a| a.nrows());
    let mut out = Array2::zeros((blocks.len() * t, w));
    for (i, a) in blocks.iter().enumerate() {
        out.slice_mut(s![i * t..(i + 1) * t, ..]).assign(a);
    }
    out
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

    /// The width d.
    pub fn width(&self) -> usize {
        self.w_out.nrows()
    }

    /// √d_h, the scores' divisor (divided, as the candle layer does).
    fn root(&self) -> T {
        T::from_usize(self.width() / self.heads)
            .expect("head width")
            .sqrt()
    }

    /// Q_h, K_h, V_h of one example's [Q K V] (T × 3d).
    fn head<'a>(&self, qkv: ArrayView2<'a, T>, h: usize) -> [ArrayView2<'a, T>; 3] {
        let (d, dh) = (self.width(), self.width() / self.heads);
        [0, 1, 2].map(|i| qkv.slice_move(s![.., i * d + h * dh..i * d + (h + 1) * dh]))
    }

    /// P = softmax_rows(S) in place (the masked scores 0).
    fn softmax(&self, p: &mut Array2<T>) {
        let t = p.ncols();
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
    }

    /// One example's P_h (per head) and C (T × d) from its [Q K V].
    fn core(&self, qkv: ArrayView2<T>) -> (Vec<Array2<T>>, Array2<T>) {
        let (t, d) = (qkv.nrows(), self.width());
        let dh = d / self.heads;
        let root = self.root();
        let mut concat = Array2::zeros((t, d));
        let mut probs = Vec::with_capacity(self.heads);
        for h in 0..self.heads {
            let [q, k, v] = self.head(qkv, h);
            let mut p = matmul_on(q, k.t(), None, 1);
            p.mapv_inplace(|e| e / root);
            self.softmax(&mut p);
            concat
                .slice_mut(s![.., h * dh..(h + 1) * dh])
                .assign(&matmul_on(p.view(), v, None, 1));
            probs.push(p);
        }
        (probs, concat)
    }

    /// Y for token rows x (B·T × d, `t` tokens per example), and what the
    /// backward pass needs: the projections are GEMMs over all B·T tokens,
    /// only the T × T products run per example and head.
    pub fn forward_tokens(&self, x: ArrayView2<T>, t: usize) -> (Array2<T>, AttentionSaved<T>) {
        let b = x.nrows() / t.max(1);
        let d = self.width();
        let qkv = matmul_on(x, self.w_in.t(), self.b_in.as_slice(), product_threads());
        let parts = per_examples(b, |i| self.core(qkv.slice(s![i * t..(i + 1) * t, ..])));
        let mut probs = Vec::with_capacity(b);
        let mut blocks = Vec::with_capacity(b);
        for (p, c) in parts {
            probs.push(p);
            blocks.push(c);
        }
        let concat = stack(&blocks, d);
        let y = matmul_on(
            concat.view(),
            self.w_out.t(),
            self.b_out.as_slice(),
            product_threads(),
        );
        (y, AttentionSaved { qkv, probs, concat })
    }

    /// Y for a batch of rows x (B × T·d), and what the backward pass needs.
    pub fn forward(&self, x: ArrayView2<T>) -> (Array2<T>, AttentionSaved<T>) {
        let d = self.width();
        let t = x.ncols() / d;
        let (y, saved) = self.forward_tokens(tokens(x, d).view(), t);
        (per_example(y, x.nrows()), saved)
    }

    /// One example's ∂[Q K V] (T × 3d) from its ∂C (T × d).
    fn core_vjp(&self, qkv: ArrayView2<T>, probs: &[Array2<T>], gc: ArrayView2<T>) -> Array2<T> {
        let (t, d) = (qkv.nrows(), self.width());
        let dh = d / self.heads;
        let root = self.root();
        let mut gqkv = Array2::zeros((t, 3 * d));
        for (h, p) in probs.iter().enumerate() {
            let [q, k, v] = self.head(qkv, h);
            let go = gc.slice(s![.., h * dh..(h + 1) * dh]);
            let mut gs = matmul_on(go, v.t(), None, 1);
            let gv = matmul_on(p.t(), go, None, 1);
            for (mut gsr, pr) in gs.rows_mut().into_iter().zip(p.rows()) {
                let dot = gsr.iter().zip(pr).fold(T::zero(), |a, (&x, &y)| a + x * y);
                gsr.zip_mut_with(&pr, |a, &pv| *a = pv * (*a - dot) / root);
            }
            let gq = matmul_on(gs.view(), k, None, 1);
            let gk = matmul_on(gs.t(), q, None, 1);
            gqkv.slice_mut(s![.., h * dh..(h + 1) * dh]).assign(&gq);
            gqkv.slice_mut(s![.., d + h * dh..d + (h + 1) * dh])
                .assign(&gk);
            gqkv.slice_mut(s![.., 2 * d + h * dh..2 * d + (h + 1) * dh])
                .assign(&gv);
        }
        gqkv
    }

    /// ∂L/∂x for token rows (B·T × d) from ∂L/∂y = g at the forward pass of
    /// x, and with `params` the parameter gradients (summed over tokens).
    pub fn backward_tokens(
        &self,
        x: ArrayView2<T>,
        saved: &AttentionSaved<T>,
        g: ArrayView2<T>,
        params: bool,
    ) -> (Array2<T>, Option<AttentionGrads<T>>) {
        let b = saved.probs.len();
        let t = x.nrows() / b.max(1);
        let gc = matmul(g, self.w_out.view());
        let parts = per_examples(b, |i| {
            let rows = s![i * t..(i + 1) * t, ..];
            self.core_vjp(saved.qkv.slice(rows), &saved.probs[i], gc.slice(rows))
        });
        let gqkv = stack(&parts, 3 * self.width());
        let grads = params.then(|| AttentionGrads {
            w_in: matmul(gqkv.t(), x),
            b_in: gqkv.sum_axis(Axis(0)),
            w_out: matmul(g.t(), saved.concat.view()),
            b_out: g.sum_axis(Axis(0)),
        });
        (matmul(gqkv.view(), self.w_in.view()), grads)
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
        let (gx, grads) =
            self.backward_tokens(tokens(x, d).view(), saved, tokens(g, d).view(), true);
        (
            per_example(gx, x.nrows()),
            grads.expect("asked for the parameters"),
        )
    }

    /// Forward mode on token rows (`t` tokens per example): (x, ẋ) ↦ (y, ẏ),
    /// ẏ = Ċ W_outᵀ with, per head, [Q̇ K̇ V̇] = ẋ W_inᵀ,
    /// Ṡ = (Q̇ Kᵀ + Q K̇ᵀ)/√d_h, Ṗ = P ⊙ (Ṡ − rowsum(P ⊙ Ṡ)), Ȯ = Ṗ V + P V̇.
    pub fn jvp_tokens(
        &self,
        x: ArrayView2<T>,
        tx: ArrayView2<T>,
        t: usize,
    ) -> (Array2<T>, Array2<T>) {
        let (y, saved) = self.forward_tokens(x, t);
        let (d, dh) = (self.width(), self.width() / self.heads);
        let root = self.root();
        let tqkv = matmul(tx, self.w_in.t());
        let b = saved.probs.len();
        let parts = per_examples(b, |i| {
            let rows = s![i * t..(i + 1) * t, ..];
            let (qkv, tq) = (saved.qkv.slice(rows), tqkv.slice(rows));
            let mut tc = Array2::zeros((t, d));
            for (h, p) in saved.probs[i].iter().enumerate() {
                let [q, k, v] = self.head(qkv, h);
                let [dq, dk, dv] = self.head(tq, h);
                let mut ts = matmul_on(dq, k.t(), None, 1) + matmul_on(q, dk.t(), None, 1);
                for (mut tsr, pr) in ts.rows_mut().into_iter().zip(p.rows()) {
                    let dot = tsr.iter().zip(pr).fold(T::zero(), |a, (&x, &y)| a + x * y);
                    tsr.zip_mut_with(&pr, |a, &pv| *a = pv * (*a - dot) / root);
                }
                let to = matmul_on(ts.view(), v, None, 1) + matmul_on(p.view(), dv, None, 1);
                tc.slice_mut(s![.., h * dh..(h + 1) * dh]).assign(&to);
            }
            tc
        });
        let tc = stack(&parts, d);
        (y, matmul(tc.view(), self.w_out.t()))
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
    #[test]
    fn forward_mode_equals_central_differences_in_f64() {
        for causal in [false, true] {
            let op = AttentionOp::<f64>::from_layer(&layer(causal)).unwrap();
            let x = inputs().into_shape_with_order((15, 8)).unwrap();
            let v = weights().into_shape_with_order((15, 8)).unwrap();
            let (y, ty) = op.jvp_tokens(x.view(), v.view(), 5);
            assert!(
                (&y - &op.forward_tokens(x.view(), 5).0)
                    .iter()
                    .all(|d| *d == 0.0)
            );
            let h = 1e-6;
            let up = op.forward_tokens((&x + &(&v * h)).view(), 5).0;
            let down = op.forward_tokens((&x - &(&v * h)).view(), 5).0;
            let fd = (up - down) / (2.0 * h);
            let e = max_diff(fd.as_slice().unwrap(), ty.as_slice().unwrap());
            let scale = ty.iter().fold(0.0f64, |a, b| a.max(b.abs()));
            assert!(
                scale > 0.1 && e < 1e-7 * (1.0 + scale),
                "causal {causal}: max |Δ| = {e:e}"
            );
        }
    }
}
