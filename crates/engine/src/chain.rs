//! A chain of ops run in order: the forward pass (keeping what the backward
//! pass needs), the backward pass from ∂L/∂output, and forward mode.
//!
//! Two fusions save passes over memory without changing a single rounding:
//! a BN followed by an activation runs as one loop both ways (when x̂ is not
//! needed), and a ReLU's output y is kept once, as the next op's input or as
//! a byte mask, never copied.

use gradscope_nets::{Activation, BnMode};
use ndarray::{Array2, ArrayView2, CowArray, Ix2};

use crate::Real;
use crate::ops::{Op, Saved, Sink, activation, coupled, crelu, pool};

/// The array flowing through a chain of ops in the forward pass: the
/// caller's (read, copied only when an op works in place), one of our own,
/// or the output of the activation saved last (read where it is kept).
pub(crate) enum Cur<'a, T> {
    In(ArrayView2<'a, T>),
    Own(Array2<T>),
    Saved,
}

impl<T: Real> Cur<'_, T> {
    fn view<'s>(&'s self, saved: &'s [Saved<T>]) -> ArrayView2<'s, T> {
        match self {
            Cur::In(v) => v.view(),
            Cur::Own(a) => a.view(),
            Cur::Saved => saved_post(saved).view(),
        }
    }

    /// A row-major array of our own (the elementwise loops rely on that layout).
    fn into_owned(self, saved: &[Saved<T>]) -> Array2<T> {
        match self {
            Cur::In(v) => v.as_standard_layout().into_owned(),
            Cur::Own(a) => a,
            Cur::Saved => saved_post(saved).clone(),
        }
    }
}

/// The output y = φ(z) of the activation saved last.
pub(crate) fn saved_post<T>(saved: &[Saved<T>]) -> &Array2<T> {
    match saved.last() {
        Some(Saved::Act { kept }) => kept,
        _ => unreachable!("an activation that keeps its output was saved last"),
    }
}

/// Replaces the ReLU output saved last by where it is positive, and
/// returns the output itself when `keep` (the next op's saved input).
fn keep_relu_mask<T: Real>(saved: &mut Vec<Saved<T>>, keep: bool) -> Option<Array2<T>> {
    let Some(Saved::Act { kept: post }) = saved.pop() else {
        unreachable!("an activation was saved last")
    };
    saved.push(Saved::Relu {
        positive: activation::relu_mask(&post),
    });
    keep.then_some(post)
}

/// An activation whose output the next ops read in place (not GELU or leaky
/// ReLU, which keep their input).
fn keeps_output(op: Option<&Op<impl Real>>) -> Option<Activation> {
    match op {
        Some(Op::Act(a)) if !activation::keeps_input(*a) => Some(*a),
        _ => None,
    }
}

/// The forward pass of `ops` on `x`, each op's saved entry pushed onto
/// `saved`; `inputs`: keep each parametrised op's input (for parameter
/// gradients and Grams).
pub(crate) fn forward<T: Real>(
    ops: &[Op<T>],
    x: Cur<'_, T>,
    saved: &mut Vec<Saved<T>>,
    inputs: bool,
    mode: BnMode,
) -> Array2<T> {
    let mut cur = x;
    let mut i = 0;
    while i < ops.len() {
        match &ops[i] {
            Op::Linear(_) | Op::WeightNorm(_) | Op::Conv(_) => {
                let cols = cur.view(saved).ncols();
                let y = match &ops[i] {
                    Op::Linear(l) => l.forward(cur.view(saved)),
                    Op::WeightNorm(l) => l.forward(cur.view(saved)),
                    Op::Conv(c) => c.forward(cur.view(saved)),
                    _ => unreachable!("matched above"),
                };
                let relu_before = i > 0 && matches!(ops[i - 1], Op::Act(Activation::Relu));
                let input = match cur {
                    Cur::Saved if relu_before => keep_relu_mask(saved, inputs),
                    // Our own input is kept as it is, not copied.
                    cur => inputs.then(|| cur.into_owned(saved)),
                };
                saved.push(match &ops[i] {
                    Op::Linear(_) => Saved::Linear { input },
                    Op::Conv(_) => Saved::Conv { input, cols },
                    _ => Saved::WeightNorm { input },
                });
                cur = Cur::Own(y);
            }
            Op::BatchNorm(bn) => {
                let mut h = cur.into_owned(saved);
                // BN followed by φ: one pass over h for both.
                let act = keeps_output(ops.get(i + 1));
                let s = bn.forward(&mut h, act, inputs, mode);
                saved.push(Saved::BatchNorm(s));
                if act.is_some() {
                    saved.push(Saved::Act { kept: h });
                    cur = Cur::Saved;
                    i += 1;
                } else {
                    cur = Cur::Own(h);
                }
            }
            Op::FeatureNorm(n) => {
                let (h, s) = n.forward(cur.into_owned(saved));
                saved.push(Saved::FeatureNorm(s));
                cur = Cur::Own(h);
            }
            Op::Act(a) => {
                let mut h = cur.into_owned(saved);
                if activation::keeps_input(*a) {
                    let z = h.clone();
                    activation::apply(*a, &mut h);
                    saved.push(Saved::Act { kept: z });
                    cur = Cur::Own(h);
                } else {
                    activation::apply(*a, &mut h);
                    saved.push(Saved::Act { kept: h });
                    cur = Cur::Saved;
                }
            }
            Op::CRelu => {
                let (y, sign) = crelu::forward(cur.view(saved));
                saved.push(Saved::CRelu { sign });
                cur = Cur::Own(y);
            }
            Op::Pool { channels } => {
                let x = cur.view(saved);
                let pixels = x.ncols() / channels;
                let y = pool::forward(x, *channels);
                saved.push(Saved::Pool { pixels });
                cur = Cur::Own(y);
            }
        }
        i += 1;
    }
    match cur {
        // A chain ending in ReLU hands its output on and keeps the mask.
        Cur::Saved if matches!(ops.last(), Some(Op::Act(Activation::Relu))) => {
            keep_relu_mask(saved, true).expect("kept when asked")
        }
        cur => cur.into_owned(saved),
    }
}

/// The backward pass through `ops` from ∂L/∂output = `g` (read in place
/// when borrowed, copied only when an op works in place).
pub(crate) fn backward<'a, T: Real>(
    ops: &[Op<T>],
    saved: &[Saved<T>],
    g: impl Into<CowArray<'a, T, Ix2>>,
    sink: &mut Sink<T>,
) -> Array2<T> {
    let coupled = coupled(sink.mode);
    let mut g: CowArray<'a, T, Ix2> = g.into();
    let mut i = ops.len();
    while i > 0 {
        i -= 1;
        match (&ops[i], &saved[i]) {
            (Op::Linear(l), Saved::Linear { input }) => {
                g = CowArray::from(l.vjp(input.as_ref(), g, sink));
            }
            (Op::WeightNorm(l), Saved::WeightNorm { input }) => {
                g = CowArray::from(l.vjp(input.as_ref(), g, sink));
            }
            (Op::BatchNorm(bn), Saved::BatchNorm(s)) => {
                let mut g_own = g.into_owned();
                bn.vjp(s, &mut g_own, sink);
                g = CowArray::from(g_own);
            }
            (Op::FeatureNorm(n), Saved::FeatureNorm(s)) => {
                let mut g_own = g.into_owned();
                n.vjp(s, &mut g_own, sink);
                g = CowArray::from(g_own);
            }
            (Op::Act(a), slope @ (Saved::Act { .. } | Saved::Relu { .. })) => {
                // φ after a BN that only rescales (x̂ unused): one pass for both.
                let bn_scale = match i.checked_sub(1).map(|j| (&ops[j], &saved[j])) {
                    Some((Op::BatchNorm(_), Saved::BatchNorm(s)))
                        if s.xhat.is_none() || !(coupled || sink.want.params || sink.want.gram) =>
                    {
                        Some(&s.scale)
                    }
                    _ => None,
                };
                let mut g_own = g.into_owned();
                match slope {
                    Saved::Relu { positive } => {
                        activation::mul_relu_mask(&mut g_own, positive, bn_scale)
                    }
                    Saved::Act { kept } => activation::mul_slope(*a, &mut g_own, kept, bn_scale),
                    _ => unreachable!("matched above"),
                }
                if bn_scale.is_some() {
                    i -= 1;
                }
                g = CowArray::from(g_own);
            }
            (Op::CRelu, Saved::CRelu { sign }) => {
                g = CowArray::from(crelu::vjp(sign, g.view()));
            }
            (Op::Conv(c), Saved::Conv { input, cols }) => {
                g = CowArray::from(c.vjp(input.as_ref(), *cols, g, sink));
            }
            (Op::Pool { .. }, Saved::Pool { pixels }) => {
                g = CowArray::from(pool::vjp(g.view(), *pixels));
            }
            _ => unreachable!("saved entries follow the ops"),
        }
    }
    g.into_owned()
}

/// Forward mode through `ops`: (h, t) ↦ (y, ∂y·t).
pub(crate) fn tangent<T: Real>(
    ops: &[Op<T>],
    mut h: Array2<T>,
    mut t: Array2<T>,
    mode: BnMode,
) -> (Array2<T>, Array2<T>) {
    for op in ops {
        match op {
            Op::Linear(l) => (h, t) = l.jvp(h, t),
            Op::WeightNorm(l) => (h, t) = l.jvp(h, t),
            Op::BatchNorm(bn) => bn.jvp(&mut h, &mut t, mode),
            Op::FeatureNorm(n) => n.jvp(&mut h, &mut t),
            Op::Act(a) => activation::jvp(*a, &mut h, &mut t),
            Op::CRelu => (h, t) = crelu::jvp(h, t),
            Op::Conv(c) => (h, t) = c.jvp(h, t),
            Op::Pool { channels } => {
                (h, t) = (
                    pool::forward(h.view(), *channels),
                    pool::forward(t.view(), *channels),
                )
            }
        }
    }
    (h, t)
}

/// After a forward pass in training mode: each BN of `ops` moves its
/// running statistics towards its batch's (n samples).
pub(crate) fn update_running_stats<T: Real>(ops: &mut [Op<T>], saved: &[Saved<T>], n: usize) {
    for (op, s) in ops.iter_mut().zip(saved) {
        if let (Op::BatchNorm(bn), Saved::BatchNorm(s)) = (op, s) {
            bn.update_running_stats(s, n);
        }
    }
}
