//! The blocks a net stacks between its stem and head: plain chains of ops,
//! and residual blocks y = post(s(x) + α·c·F(x)), then yᵢ = Nᵢ(x + yᵢ₋₁) for
//! each recursion (Liu et al. 2020's rSkip), with the shortcut s an identity
//! or a scaling λx (xSkip), a gate (highway layers), a projection or dropout
//! (He et al. 2016b, Table 1), and c an optional trainable branch gain
//! (SkipInit, ReZero, Fixup).

use gradscope_nets::{Block, BnMode, ResidualShortcut, ShortcutDropout};
use ndarray::{Array2, ArrayView2, CowArray, Zip};

use crate::chain::{self, Cur};
use crate::kernels::add_skip;
use crate::ops::{Op, Saved, Sink, Writer, gate::Gate, linear::Linear, scale::Scale};
use crate::{Real, Result};

/// One block of the engine's net.
#[derive(Clone, Debug)]
pub(crate) enum Unit<T> {
    Plain(Vec<Op<T>>),
    Residual(Box<Residual<T>>),
}

/// A residual block.
#[derive(Clone, Debug)]
pub(crate) struct Residual<T> {
    branch: Vec<Op<T>>,
    gain: Option<Scale<T>>,
    pub(crate) alpha: T,
    shortcut: Shortcut<T>,
    after: Vec<Op<T>>,
    recursions: Vec<Vec<Op<T>>>,
}

/// The shortcut s(x).
#[derive(Clone, Debug)]
enum Shortcut<T> {
    /// λx (λ = 1: the identity, x exactly).
    Scaled(T),
    Gate(Gate<T>),
    /// W_s x.
    Projection(Linear<T>),
    /// m⊙x with a Bernoulli(1 − p) mask m, (1 − p)·x in eval mode.
    Dropout(ShortcutDropout),
}

/// What a block's backward pass needs from its forward pass.
#[derive(Clone, Debug)]
pub(crate) enum UnitSaved<T> {
    Plain(Vec<Saved<T>>),
    Residual(Box<ResidualSaved<T>>),
}

/// A residual block's saved entries, part by part.
#[derive(Clone, Debug)]
pub(crate) struct ResidualSaved<T> {
    branch: Vec<Saved<T>>,
    /// The branch output F, the gain's input, when its gradient is wanted.
    gain_input: Option<Array2<T>>,
    shortcut: ShortcutSaved<T>,
    after: Vec<Saved<T>>,
    recursions: Vec<Vec<Saved<T>>>,
}

#[derive(Clone, Debug)]
enum ShortcutSaved<T> {
    None,
    Gate(crate::ops::gate::Saved<T>),
    /// The block input, for W_s's gradient.
    Projection(Option<Array2<T>>),
    /// The mask (`None`: the eval-mode factor 1 − p).
    Dropout(Option<Array2<T>>),
}

impl<T: Real> Unit<T> {
    /// The engine's copy of nets block `block`, named `prefix` (`layers.l`).
    pub(crate) fn from_block(prefix: &str, block: &Block, keep_wt: bool) -> Result<Self> {
        let chain = |seq: &gradscope_nets::Sequential| -> Result<Vec<Op<T>>> {
            seq.layers()
                .iter()
                .map(|(name, layer)| Op::from_layer(format!("{prefix}.{name}"), layer, keep_wt))
                .collect()
        };
        Ok(match block {
            Block::Dense(d) => Unit::Plain(chain(d.body())?),
            Block::Residual(r) => {
                let shortcut =
                    match r.shortcut() {
                        ResidualShortcut::Identity => Shortcut::Scaled(T::one()),
                        ResidualShortcut::Scale(l) => Shortcut::Scaled(T::of(*l)),
                        ResidualShortcut::Gate { gate, exclusive } => {
                            Shortcut::Gate(Gate::from_layer(prefix, gate, *exclusive, keep_wt)?)
                        }
                        ResidualShortcut::Projection(p) => Shortcut::Projection(
                            Linear::from_layer(format!("{prefix}.proj"), p, keep_wt)?,
                        ),
                        ResidualShortcut::Dropout(d) => Shortcut::Dropout(d.clone()),
                    };
                Unit::Residual(Box::new(Residual {
                    branch: chain(r.branch())?,
                    gain: r
                        .gain()
                        .map(|c| Scale::from_var(format!("{prefix}.gain"), c))
                        .transpose()?,
                    alpha: T::of(r.alpha()),
                    shortcut,
                    after: chain(r.after())?,
                    recursions: r.recursions().iter().map(chain).collect::<Result<_>>()?,
                }))
            }
        })
    }

    /// Every trainable parameter, in state-dict order (branch, shortcut,
    /// gain, after the sum, recursions).
    pub(crate) fn params_mut<'a>(&'a mut self, out: &mut Vec<(String, &'a mut [T])>) {
        match self {
            Unit::Plain(ops) => ops.iter_mut().for_each(|op| op.params_mut(out)),
            Unit::Residual(r) => {
                r.branch.iter_mut().for_each(|op| op.params_mut(out));
                match &mut r.shortcut {
                    Shortcut::Gate(g) => g.ops.iter_mut().for_each(|op| op.params_mut(out)),
                    Shortcut::Projection(p) => p.params_mut(out),
                    Shortcut::Scaled(_) | Shortcut::Dropout(_) => {}
                }
                if let Some(c) = &mut r.gain {
                    c.params_mut(out);
                }
                r.after.iter_mut().for_each(|op| op.params_mut(out));
                r.recursions
                    .iter_mut()
                    .flatten()
                    .for_each(|op| op.params_mut(out));
            }
        }
    }

    /// [`params_mut`](Self::params_mut), read-only.
    pub(crate) fn params<'a>(&'a self, out: &mut Vec<(String, &'a [T])>) {
        match self {
            Unit::Plain(ops) => ops.iter().for_each(|op| op.params(out)),
            Unit::Residual(r) => {
                r.branch.iter().for_each(|op| op.params(out));
                match &r.shortcut {
                    Shortcut::Gate(g) => g.ops.iter().for_each(|op| op.params(out)),
                    Shortcut::Projection(p) => p.params(out),
                    Shortcut::Scaled(_) | Shortcut::Dropout(_) => {}
                }
                if let Some(c) = &r.gain {
                    c.params(out);
                }
                r.after.iter().for_each(|op| op.params(out));
                r.recursions.iter().flatten().for_each(|op| op.params(out));
            }
        }
    }

    /// Write the block's parameters and BN statistics into the net's variables.
    pub(crate) fn write(&self, w: &Writer<'_>) -> Result<()> {
        match self {
            Unit::Plain(ops) => ops.iter().try_for_each(|op| op.write(w)),
            Unit::Residual(r) => {
                r.branch.iter().try_for_each(|op| op.write(w))?;
                match &r.shortcut {
                    Shortcut::Gate(g) => g.ops.iter().try_for_each(|op| op.write(w))?,
                    Shortcut::Projection(p) => p.write(w)?,
                    Shortcut::Scaled(_) | Shortcut::Dropout(_) => {}
                }
                if let Some(c) = &r.gain {
                    c.write(w)?;
                }
                r.after.iter().try_for_each(|op| op.write(w))?;
                r.recursions.iter().flatten().try_for_each(|op| op.write(w))
            }
        }
    }

    /// After a forward pass in training mode: every BN of the block moves
    /// its running statistics towards its batch's (n samples).
    pub(crate) fn update_running_stats(&mut self, saved: &UnitSaved<T>, n: usize) {
        match (self, saved) {
            (Unit::Plain(ops), UnitSaved::Plain(s)) => chain::update_running_stats(ops, s, n),
            (Unit::Residual(r), UnitSaved::Residual(s)) => {
                chain::update_running_stats(&mut r.branch, &s.branch, n);
                chain::update_running_stats(&mut r.after, &s.after, n);
                for (ops, s) in r.recursions.iter_mut().zip(&s.recursions) {
                    chain::update_running_stats(ops, s, n);
                }
            }
            _ => unreachable!("saved entries follow the block"),
        }
    }

    /// The block's output for input h, with what its backward pass needs.
    pub(crate) fn forward(
        &self,
        h: &Array2<T>,
        inputs: bool,
        mode: BnMode,
    ) -> (Array2<T>, UnitSaved<T>) {
        match self {
            Unit::Plain(ops) => {
                let mut saved = Vec::new();
                let y = chain::forward(ops, Cur::In(h.view()), &mut saved, inputs, mode);
                (y, UnitSaved::Plain(saved))
            }
            Unit::Residual(r) => {
                let (y, s) = r.forward(h, inputs, mode);
                (y, UnitSaved::Residual(Box::new(s)))
            }
        }
    }

    /// ∂L/∂x from ∂L/∂y = g.
    pub(crate) fn backward(
        &self,
        saved: &UnitSaved<T>,
        g: ArrayView2<T>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        match (self, saved) {
            (Unit::Plain(ops), UnitSaved::Plain(s)) => chain::backward(ops, s, g, sink),
            (Unit::Residual(r), UnitSaved::Residual(s)) => r.backward(s, g, sink),
            _ => unreachable!("saved entries follow the block"),
        }
    }

    /// Forward mode: (h, t) ↦ (y, ∂y·t).
    pub(crate) fn tangent(
        &self,
        h: Array2<T>,
        t: Array2<T>,
        mode: BnMode,
    ) -> (Array2<T>, Array2<T>) {
        match self {
            Unit::Plain(ops) => chain::tangent(ops, h, t, mode),
            Unit::Residual(r) => r.tangent(h, t, mode),
        }
    }

    /// The residual block, when it is exactly x + α·c·F(x): identity
    /// shortcut, nothing after the sum (what the path view needs).
    pub(crate) fn plain_sum(&self) -> Option<&Residual<T>> {
        match self {
            Unit::Residual(r)
                if matches!(r.shortcut, Shortcut::Scaled(l) if l == T::one())
                    && r.after.is_empty()
                    && r.recursions.is_empty() =>
            {
                Some(r)
            }
            _ => None,
        }
    }
}

impl<T: Real> Residual<T> {
    fn forward(&self, h: &Array2<T>, inputs: bool, mode: BnMode) -> (Array2<T>, ResidualSaved<T>) {
        let mut branch = Vec::new();
        let mut f = chain::forward(&self.branch, Cur::In(h.view()), &mut branch, inputs, mode);
        let mut gain_input = None;
        if let Some(c) = &self.gain {
            let y = c.forward(f.view());
            gain_input = inputs.then_some(f);
            f = y;
        }
        let (sum, shortcut) = match &self.shortcut {
            Shortcut::Scaled(lambda) => (add_skip(f, h, self.alpha, *lambda), ShortcutSaved::None),
            Shortcut::Gate(gate) => {
                let (sum, s) = gate.forward(f, h, self.alpha, inputs, mode);
                (sum, ShortcutSaved::Gate(s))
            }
            Shortcut::Projection(p) => {
                let s = p.forward(h.view());
                (
                    add_skip(f, &s, self.alpha, T::one()),
                    ShortcutSaved::Projection(inputs.then(|| h.clone())),
                )
            }
            Shortcut::Dropout(d) => {
                let (s, mask) = dropout(d, h, mode);
                (
                    add_skip(f, &s, self.alpha, T::one()),
                    ShortcutSaved::Dropout(mask),
                )
            }
        };
        let mut after = Vec::new();
        let mut y = chain::forward(&self.after, Cur::Own(sum), &mut after, inputs, mode);
        let mut recursions = Vec::with_capacity(self.recursions.len());
        for n in &self.recursions {
            let mut s = Vec::new();
            let one = T::one();
            y = chain::forward(n, Cur::Own(add_skip(y, h, one, one)), &mut s, inputs, mode);
            recursions.push(s);
        }
        (
            y,
            ResidualSaved {
                branch,
                gain_input,
                shortcut,
                after,
                recursions,
            },
        )
    }

    /// ∂L/∂x from ∂L/∂y = g: through each recursion Nᵢ(x + yᵢ₋₁) (to x and
    /// to yᵢ₋₁), the layers after the sum, then the shortcut and α·c·F.
    /// Parameter gradients are pushed in reverse state-dict order:
    /// recursions, after, gain, shortcut, branch.
    fn backward(&self, s: &ResidualSaved<T>, g: ArrayView2<T>, sink: &mut Sink<T>) -> Array2<T> {
        let mut to_x: Option<Array2<T>> = None;
        let mut g_sum = CowArray::from(g);
        for (n, s_n) in self.recursions.iter().zip(&s.recursions).rev() {
            let g_in = chain::backward(n, s_n, g_sum, sink);
            match &mut to_x {
                Some(acc) => *acc += &g_in,
                None => to_x = Some(g_in.clone()),
            }
            g_sum = CowArray::from(g_in);
        }
        if !self.after.is_empty() {
            g_sum = CowArray::from(chain::backward(&self.after, &s.after, g_sum, sink));
        }
        let mut through = match (&self.shortcut, &s.shortcut) {
            (Shortcut::Gate(gate), ShortcutSaved::Gate(sg)) => {
                let df = gate.branch_grad(sg, g_sum.view(), self.alpha);
                let df = self.gain_backward(s, CowArray::from(df), sink);
                let mut through = gate.vjp(sg, g_sum.view(), sink);
                through += &chain::backward(&self.branch, &s.branch, df, sink);
                gate.add_carry(sg, &mut through, g_sum.view());
                through
            }
            (shortcut, saved) => {
                let scaled = if self.alpha == T::one() {
                    CowArray::from(g_sum.view())
                } else {
                    CowArray::from(g_sum.mapv(|v| v * self.alpha))
                };
                let df = self.gain_backward(s, scaled, sink);
                let to_input = match (shortcut, saved) {
                    (Shortcut::Projection(p), ShortcutSaved::Projection(x)) => {
                        Some(p.vjp(x.as_ref(), CowArray::from(g_sum.view()), sink))
                    }
                    _ => None,
                };
                let mut through = chain::backward(&self.branch, &s.branch, df, sink);
                match (shortcut, saved) {
                    (Shortcut::Scaled(lambda), _) if *lambda == T::one() => through += &g_sum,
                    (Shortcut::Scaled(lambda), _) => through.scaled_add(*lambda, &g_sum),
                    (Shortcut::Dropout(d), ShortcutSaved::Dropout(mask)) => {
                        add_dropout_grad(&mut through, g_sum.view(), mask.as_ref(), d.p())
                    }
                    _ => {}
                }
                if let Some(p) = to_input {
                    through += &p;
                }
                through
            }
        };
        if let Some(acc) = to_x {
            through += &acc;
        }
        through
    }

    /// ∂L/∂F from ∂L/∂(c·F) = g through the gain c (pushing ∂L/∂c), or g itself.
    fn gain_backward<'a>(
        &self,
        s: &ResidualSaved<T>,
        g: CowArray<'a, T, ndarray::Ix2>,
        sink: &mut Sink<T>,
    ) -> CowArray<'a, T, ndarray::Ix2> {
        match &self.gain {
            Some(c) => CowArray::from(c.vjp(s.gain_input.as_ref(), g.view(), sink)),
            None => g,
        }
    }

    /// ∂L/∂x of the depth's input along the branch alone: α·c·∂F/∂x applied
    /// to g (Veit et al. 2016's path view).
    pub(crate) fn branch_vjp(
        &self,
        s: &UnitSaved<T>,
        g: ArrayView2<T>,
        sink: &mut Sink<T>,
    ) -> Array2<T> {
        let UnitSaved::Residual(s) = s else {
            unreachable!("saved entries follow the block")
        };
        let scaled = if self.alpha == T::one() {
            CowArray::from(g)
        } else {
            CowArray::from(g.mapv(|v| v * self.alpha))
        };
        let df = self.gain_backward(s, scaled, sink);
        chain::backward(&self.branch, &s.branch, df, sink)
    }

    /// Forward mode through the block: (h, t) ↦ (y, ∂y·t).
    fn tangent(&self, h: Array2<T>, t: Array2<T>, mode: BnMode) -> (Array2<T>, Array2<T>) {
        let (mut fh, mut ft) = chain::tangent(&self.branch, h.clone(), t.clone(), mode);
        if let Some(c) = &self.gain {
            c.jvp(&mut fh, &mut ft);
        }
        let (alpha, one) = (self.alpha, T::one());
        let (sh, st) = match &self.shortcut {
            Shortcut::Scaled(lambda) => (
                add_skip(fh, &h, alpha, *lambda),
                add_skip(ft, &t, alpha, *lambda),
            ),
            Shortcut::Gate(gate) => gate.jvp((fh, ft), &h, &t, alpha, mode),
            Shortcut::Projection(p) => {
                let (ph, pt) = p.jvp(h.clone(), t.clone());
                (add_skip(fh, &ph, alpha, one), add_skip(ft, &pt, alpha, one))
            }
            Shortcut::Dropout(d) => {
                let (sh, mask) = dropout(d, &h, mode);
                let st = match &mask {
                    Some(m) => &t * m,
                    None => t.mapv(|v| v * T::of(1.0 - d.p())),
                };
                (add_skip(fh, &sh, alpha, one), add_skip(ft, &st, alpha, one))
            }
        };
        let (mut yh, mut yt) = chain::tangent(&self.after, sh, st, mode);
        for n in &self.recursions {
            (yh, yt) = chain::tangent(
                n,
                add_skip(yh, &h, one, one),
                add_skip(yt, &t, one, one),
                mode,
            );
        }
        (yh, yt)
    }
}

/// The dropout shortcut m⊙x (m drawn as the nets layer draws it) and m,
/// or (1 − p)·x in eval mode.
fn dropout<T: Real>(
    d: &ShortcutDropout,
    x: &Array2<T>,
    mode: BnMode,
) -> (Array2<T>, Option<Array2<T>>) {
    match d.mask(x.len(), mode) {
        Some(keep) => {
            let m = Array2::from_shape_vec(x.raw_dim(), keep.into_iter().map(T::of).collect())
                .expect("one value per element");
            (x * &m, Some(m))
        }
        None => (x.mapv(|v| v * T::of(1.0 - d.p())), None),
    }
}

/// through += g ⊙ m (or (1 − p)·g in eval mode): the dropout shortcut's
/// share of ∂L/∂x.
fn add_dropout_grad<T: Real>(
    through: &mut Array2<T>,
    g: ArrayView2<T>,
    mask: Option<&Array2<T>>,
    p: f64,
) {
    match mask {
        Some(m) => Zip::from(through)
            .and(g)
            .and(m)
            .for_each(|t, &g, &m| *t += g * m),
        None => {
            let keep = T::of(1.0 - p);
            Zip::from(through).and(g).for_each(|t, &g| *t += g * keep)
        }
    }
}
