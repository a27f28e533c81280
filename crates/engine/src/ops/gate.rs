//! Gated shortcuts (Srivastava et al. 2015; He et al. 2016b, Table 1):
//! G = σ(W_g x + b_g), and the block's sum is G⊙αF + (1 − G)⊙x (exclusive
//! gating, a highway layer) or αF + (1 − G)⊙x (shortcut-only gating).

use gradscope_nets::{Activation, BnMode};
use ndarray::{Array2, ArrayView2, Zip};

use crate::chain::{self, Cur, saved_post};
use crate::ops::{self, Op, Sink, linear::Linear};
use crate::{Real, Result};

/// The gate's ops (linear, sigmoid) and whether it also scales the branch.
#[derive(Clone, Debug)]
pub(crate) struct Gate<T> {
    pub(crate) ops: Vec<Op<T>>,
    pub(crate) exclusive: bool,
}

/// What the gated sum's backward pass needs: the gate ops' entries, the
/// block input x and, when the gate is exclusive, the scaled branch αF
/// (∂sum/∂G = αF − x). G itself is the sigmoid's saved output.
#[derive(Clone, Debug)]
pub(crate) struct Saved<T> {
    pub(crate) ops: Vec<ops::Saved<T>>,
    input: Array2<T>,
    branch: Option<Array2<T>>,
}

impl<T: Real> Gate<T> {
    /// The gate of a nets gated shortcut, named `{prefix}.gate`.
    pub(crate) fn from_layer(
        prefix: &str,
        gate: &gradscope_nets::Linear,
        exclusive: bool,
        keep_wt: bool,
    ) -> Result<Self> {
        Ok(Gate {
            ops: vec![
                Op::Linear(Linear::from_layer(format!("{prefix}.gate"), gate, keep_wt)?),
                Op::Act(Activation::Sigmoid),
            ],
            exclusive,
        })
    }

    /// The gated sum of the branch output `f` (written over) and the block
    /// input `x`, with what its backward pass needs.
    pub(crate) fn forward(
        &self,
        f: Array2<T>,
        x: &Array2<T>,
        alpha: T,
        inputs: bool,
        mode: BnMode,
    ) -> (Array2<T>, Saved<T>) {
        let mut ops: Vec<ops::Saved<T>> = Vec::new();
        let g = chain::forward(&self.ops, Cur::In(x.view()), &mut ops, inputs, mode);
        let branch = self.exclusive.then(|| f.mapv(|v| v * alpha));
        let sum = self.sum(f, &g, x, alpha);
        (
            sum,
            Saved {
                ops,
                input: x.clone(),
                branch,
            },
        )
    }

    /// G⊙αF + (1 − G)⊙x (or αF + (1 − G)⊙x), written over F.
    fn sum(&self, mut f: Array2<T>, g: &Array2<T>, x: &Array2<T>, alpha: T) -> Array2<T> {
        let excl = self.exclusive;
        Zip::from(&mut f).and(g).and(x).for_each(|f, &gate_v, &x| {
            let fa = alpha * *f;
            *f = if excl { gate_v * fa } else { fa } + (T::one() - gate_v) * x;
        });
        f
    }

    /// ∂L/∂F from g = ∂L/∂sum: αG⊙g (exclusive) or αg.
    pub(crate) fn branch_grad(&self, s: &Saved<T>, g: ArrayView2<T>, alpha: T) -> Array2<T> {
        if self.exclusive {
            Zip::from(g)
                .and(saved_post(&s.ops))
                .map_collect(|&g, &gate_v| g * gate_v * alpha)
        } else {
            g.mapv(|g| g * alpha)
        }
    }

    /// ∂L/∂x through the gate, ∂sum/∂G = αF − x (or −x), from g = ∂L/∂sum;
    /// pushes the gate's parameter gradients.
    pub(crate) fn vjp(&self, s: &Saved<T>, g: ArrayView2<T>, sink: &mut Sink<T>) -> Array2<T> {
        let mut dg = Array2::zeros(g.raw_dim());
        match &s.branch {
            Some(f) => Zip::from(&mut dg)
                .and(g)
                .and(f)
                .and(&s.input)
                .for_each(|d, &g, &f, &x| *d = g * (f - x)),
            None => Zip::from(&mut dg)
                .and(g)
                .and(&s.input)
                .for_each(|d, &g, &x| *d = T::zero() - g * x),
        }
        chain::backward(&self.ops, &s.ops, dg, sink)
    }

    /// through += g ⊙ (1 − G): the carry's share of ∂L/∂x.
    pub(crate) fn add_carry(&self, s: &Saved<T>, through: &mut Array2<T>, g: ArrayView2<T>) {
        Zip::from(through)
            .and(g)
            .and(saved_post(&s.ops))
            .for_each(|t, &g, &gate_v| *t += g * (T::one() - gate_v));
    }

    /// Forward mode: the gated sum and its tangent from the branch's (F, ∂F)
    /// and the block input's (x, ∂x):
    /// ∂s = G⊙α∂F + ∂G⊙(αF − x) + (1 − G)⊙∂x (exclusive), else
    /// α∂F − ∂G⊙x + (1 − G)⊙∂x.
    pub(crate) fn jvp(
        &self,
        (fh, ft): (Array2<T>, Array2<T>),
        h: &Array2<T>,
        t: &Array2<T>,
        alpha: T,
        mode: BnMode,
    ) -> (Array2<T>, Array2<T>) {
        let (g, tg) = chain::tangent(&self.ops, h.clone(), t.clone(), mode);
        let excl = self.exclusive;
        let mut st = ft;
        Zip::from(&mut st)
            .and(&fh)
            .and(&g)
            .and(&tg)
            .and(h)
            .and(t)
            .for_each(|st, &f, &gate_v, &tgate, &x, &tx| {
                let (fa, tfa) = (alpha * f, alpha * *st);
                let branch = if excl { gate_v * tfa + tgate * fa } else { tfa };
                *st = branch - tgate * x + (T::one() - gate_v) * tx;
            });
        (self.sum(fh, &g, h, alpha), st)
    }
}
