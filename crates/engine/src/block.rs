//! The blocks a net stacks between its stem and head: plain chains of ops,
//! and residual blocks y = post(s(x) + α·c·F(x)), then yᵢ = Nᵢ(x + yᵢ₋₁) for
//! each recursion (Liu et al. 2020's rSkip), with the shortcut s an identity
//! or a scaling λx (xSkip; λ constant or trained), a gate (highway layers), a projection or dropout
//! (He et al. 2016b, Table 1), and c an optional trainable branch gain
//! (SkipInit, ReZero, Fixup).

use gradscope_nets::{
    Activation, Block, BnMode, ConvUnit, Downsample, ResidualShortcut, ShortcutDropout,
};
use ndarray::{Array2, ArrayView2, CowArray, Zip};

use crate::chain::{self, Cur};
use crate::kernels::add_skip;
use crate::ops::batch_norm::BatchNorm;
use crate::ops::conv::Conv;
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
    /// λx with λ a trainable parameter: ∂L/∂λ = Σᵢⱼ gᵢⱼxᵢⱼ, g = ∂L/∂(the sum).
    Learned(Scale<T>),
    Gate(Gate<T>),
    /// A learnt projection of x: W_s x (MLPs), or a strided 1×1
    /// convolution and BN (He et al. 2016a's option B).
    Projection(Vec<Op<T>>),
    /// Option A of He et al. 2016a: every `stride`-th pixel of each of the
    /// `c_in` channels, `extra` zero channels padded (half before).
    Pad {
        stride: usize,
        extra: usize,
        c_in: usize,
    },
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
    /// The projection's saved entries.
    Projection(Vec<Saved<T>>),
    /// The mask (`None`: the eval-mode factor 1 − p).
    Dropout(Option<Array2<T>>),
    /// The input's width, for option A's adjoint.
    Pad(usize),
    /// The block input x, when λ's gradient is wanted.
    Learned(Option<Array2<T>>),
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
                let shortcut = match r.shortcut() {
                    ResidualShortcut::Identity => Shortcut::Scaled(T::one()),
                    ResidualShortcut::Scale(l) => Shortcut::Scaled(T::of(*l)),
                    ResidualShortcut::LearnedScale(l) => {
                        Shortcut::Learned(Scale::from_var(format!("{prefix}.skip.lambda"), l)?)
                    }
                    ResidualShortcut::Gate { gate, exclusive } => {
                        Shortcut::Gate(Gate::from_layer(prefix, gate, *exclusive, keep_wt)?)
                    }
                    ResidualShortcut::Projection(p) => Shortcut::Projection(vec![Op::Linear(
                        Linear::from_layer(format!("{prefix}.proj"), p, keep_wt)?,
                    )]),
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

    /// The engine's copy of a conv net's block `unit`, named `prefix`
    /// (`layer{s}.{b}`): conv → BN (→ ReLU) per convolution; a residual
    /// block adds its shortcut and ends in a ReLU after the sum, a plain
    /// block in a ReLU.
    pub(crate) fn from_conv(prefix: &str, unit: &ConvUnit) -> Result<Self> {
        let conv_bn = |conv: &gradscope_nets::Conv2d,
                       bn: &gradscope_nets::BatchNorm,
                       c: &str,
                       b: &str|
         -> Result<[Op<T>; 2]> {
            Ok([
                Op::Conv(Conv::from_layer(format!("{prefix}.{c}"), conv)?),
                Op::BatchNorm(BatchNorm::from_layer(format!("{prefix}.{b}"), bn)?),
            ])
        };
        let mut branch = Vec::new();
        for (i, (conv, bn)) in unit.convs().iter().enumerate() {
            if i > 0 {
                branch.push(Op::Act(Activation::Relu));
            }
            let n = i + 1;
            branch.extend(conv_bn(conv, bn, &format!("conv{n}"), &format!("bn{n}"))?);
        }
        let c_in = unit.convs()[0].0.weight().dims()[1];
        let shortcut = match unit.shortcut() {
            None => {
                branch.push(Op::Act(Activation::Relu));
                return Ok(Unit::Plain(branch));
            }
            Some(Downsample::Identity) => Shortcut::Scaled(T::one()),
            Some(&Downsample::Pad { stride, extra }) => Shortcut::Pad {
                stride,
                extra,
                c_in,
            },
            Some(Downsample::Project(conv, bn)) => {
                Shortcut::Projection(conv_bn(conv, bn, "downsample.0", "downsample.1")?.into())
            }
        };
        Ok(Unit::Residual(Box::new(Residual {
            branch,
            gain: None,
            alpha: T::one(),
            shortcut,
            after: vec![Op::Act(Activation::Relu)],
            recursions: Vec::new(),
        })))
    }

    /// What the block passes on when it is deleted (Veit et al. 2016): its
    /// output with the branch F set to 0 (x itself for x + α·F(x)); a
    /// plain block is left out, which only a block that keeps its input's
    /// shape can be (`None` otherwise).
    pub(crate) fn bypass(&self, h: Array2<T>, mode: BnMode) -> Option<Array2<T>> {
        let Unit::Residual(r) = self else {
            let Unit::Plain(ops) = self else {
                unreachable!("a unit is plain or residual")
            };
            let keeps = ops.iter().all(|op| match op {
                Op::Linear(l) => l.keeps_shape(),
                Op::Conv(c) => c.keeps_shape(),
                Op::CRelu | Op::Pool { .. } => false,
                _ => true,
            });
            return keeps.then_some(h);
        };
        if self.plain_sum().is_some() {
            return Some(h);
        }
        let zero = Array2::zeros(h.raw_dim());
        let sum = match &r.shortcut {
            Shortcut::Scaled(lambda) => add_skip(zero, &h, r.alpha, *lambda),
            Shortcut::Learned(lambda) => add_skip(zero, &h, r.alpha, lambda.value()),
            Shortcut::Gate(gate) => gate.forward(zero, &h, r.alpha, false, mode).0,
            Shortcut::Projection(p) => {
                chain::forward(p, Cur::In(h.view()), &mut Vec::new(), false, mode)
            }
            &Shortcut::Pad {
                stride,
                extra,
                c_in,
            } => pad_channels(h.view(), stride, extra, c_in),
            Shortcut::Dropout(d) => dropout(d, &h, mode).0,
        };
        let mut y = chain::forward(&r.after, Cur::Own(sum), &mut Vec::new(), false, mode);
        for n in &r.recursions {
            let one = T::one();
            y = chain::forward(
                n,
                Cur::Own(add_skip(y, &h, one, one)),
                &mut Vec::new(),
                false,
                mode,
            );
        }
        Some(y)
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
                    Shortcut::Projection(p) => p.iter_mut().for_each(|op| op.params_mut(out)),
                    Shortcut::Learned(lambda) => lambda.params_mut(out),
                    Shortcut::Scaled(_) | Shortcut::Dropout(_) | Shortcut::Pad { .. } => {}
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
                    Shortcut::Projection(p) => p.iter().for_each(|op| op.params(out)),
                    Shortcut::Learned(lambda) => lambda.params(out),
                    Shortcut::Scaled(_) | Shortcut::Dropout(_) | Shortcut::Pad { .. } => {}
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
                    Shortcut::Projection(p) => p.iter().try_for_each(|op| op.write(w))?,
                    Shortcut::Learned(lambda) => lambda.write(w)?,
                    Shortcut::Scaled(_) | Shortcut::Dropout(_) | Shortcut::Pad { .. } => {}
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
                if let (Shortcut::Projection(p), ShortcutSaved::Projection(sp)) =
                    (&mut r.shortcut, &s.shortcut)
                {
                    chain::update_running_stats(p, sp, n);
                }
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

    /// ∂L/∂x from ∂L/∂y = g along one branch of the block (Veit et al.
    /// 2016's path view): back through the layers after the sum at their
    /// actual input, then through the branch α·c·F or through the shortcut
    /// alone. `None` for a block with no path expansion (plain blocks,
    /// gated or dropout shortcuts, recursions).
    pub(crate) fn path_vjp(
        &self,
        s: &UnitSaved<T>,
        g: ArrayView2<T>,
        through_branch: bool,
        sink: &mut Sink<T>,
    ) -> Option<Array2<T>> {
        let (Unit::Residual(r), UnitSaved::Residual(rs)) = (self, s) else {
            return None;
        };
        if !r.recursions.is_empty()
            || matches!(r.shortcut, Shortcut::Gate(_) | Shortcut::Dropout(_))
        {
            return None;
        }
        let g = if r.after.is_empty() {
            CowArray::from(g)
        } else {
            CowArray::from(chain::backward(&r.after, &rs.after, g, sink))
        };
        if through_branch {
            return Some(r.branch_vjp(rs, g.view(), sink));
        }
        Some(match (&r.shortcut, &rs.shortcut) {
            (Shortcut::Scaled(l), _) if *l == T::one() => g.into_owned(),
            (Shortcut::Scaled(l), _) => g.mapv(|v| v * *l),
            (Shortcut::Learned(l), ShortcutSaved::Learned(x)) => l.vjp(x.as_ref(), g.view(), sink),
            (
                &Shortcut::Pad {
                    stride,
                    extra,
                    c_in,
                },
                &ShortcutSaved::Pad(cols),
            ) => unpad_channels(g.view(), stride, extra, c_in, cols),
            (Shortcut::Projection(p), ShortcutSaved::Projection(sp)) => {
                chain::backward(p, sp, g, sink)
            }
            _ => return None,
        })
    }

    /// The residual block, when it is exactly x + α·c·F(x): identity
    /// shortcut, nothing after the sum.
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
            Shortcut::Learned(lambda) => (
                add_skip(f, h, self.alpha, lambda.value()),
                ShortcutSaved::Learned(inputs.then(|| h.clone())),
            ),
            Shortcut::Gate(gate) => {
                let (sum, s) = gate.forward(f, h, self.alpha, inputs, mode);
                (sum, ShortcutSaved::Gate(s))
            }
            Shortcut::Projection(p) => {
                let mut saved = Vec::new();
                let s = chain::forward(p, Cur::In(h.view()), &mut saved, inputs, mode);
                (
                    add_skip(f, &s, self.alpha, T::one()),
                    ShortcutSaved::Projection(saved),
                )
            }
            &Shortcut::Pad {
                stride,
                extra,
                c_in,
            } => (
                add_skip(
                    f,
                    &pad_channels(h.view(), stride, extra, c_in),
                    self.alpha,
                    T::one(),
                ),
                ShortcutSaved::Pad(h.ncols()),
            ),
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
                    (Shortcut::Projection(p), ShortcutSaved::Projection(sp)) => {
                        Some(chain::backward(p, sp, g_sum.view(), sink))
                    }
                    (
                        &Shortcut::Pad {
                            stride,
                            extra,
                            c_in,
                        },
                        &ShortcutSaved::Pad(cols),
                    ) => Some(unpad_channels(g_sum.view(), stride, extra, c_in, cols)),
                    // λ·g, pushing ∂L/∂λ = Σ ⟨g, x⟩ after the gain's, before the branch's.
                    (Shortcut::Learned(lambda), ShortcutSaved::Learned(x)) => {
                        Some(lambda.vjp(x.as_ref(), g_sum.view(), sink))
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

    /// ∂L/∂x of the block's input along the branch alone: α·c·∂F/∂x applied
    /// to g.
    fn branch_vjp(&self, s: &ResidualSaved<T>, g: ArrayView2<T>, sink: &mut Sink<T>) -> Array2<T> {
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
            Shortcut::Learned(lambda) => (
                add_skip(fh, &h, alpha, lambda.value()),
                add_skip(ft, &t, alpha, lambda.value()),
            ),
            Shortcut::Gate(gate) => gate.jvp((fh, ft), &h, &t, alpha, mode),
            Shortcut::Projection(p) => {
                let (ph, pt) = chain::tangent(p, h.clone(), t.clone(), mode);
                (add_skip(fh, &ph, alpha, one), add_skip(ft, &pt, alpha, one))
            }
            &Shortcut::Pad {
                stride,
                extra,
                c_in,
            } => (
                add_skip(fh, &pad_channels(h.view(), stride, extra, c_in), alpha, one),
                add_skip(ft, &pad_channels(t.view(), stride, extra, c_in), alpha, one),
            ),
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

/// Option A: every `stride`-th pixel of each of the `c_in` channels of the
/// NCHW rows `x`, with `extra` zero channels padded, ⌊extra/2⌋ before.
fn pad_channels<T: Real>(x: ArrayView2<T>, stride: usize, extra: usize, c_in: usize) -> Array2<T> {
    let h = ((x.ncols() / c_in) as f64).sqrt().round() as usize;
    let ho = h.div_ceil(stride);
    let before = extra / 2;
    let mut y = Array2::zeros((x.nrows(), (c_in + extra) * ho * ho));
    for (xr, mut yr) in x.rows().into_iter().zip(y.rows_mut()) {
        for c in 0..c_in {
            for oy in 0..ho {
                for ox in 0..ho {
                    yr[((before + c) * ho + oy) * ho + ox] =
                        xr[(c * h + oy * stride) * h + ox * stride];
                }
            }
        }
    }
    y
}

/// The adjoint of [`pad_channels`]: ∂L/∂x from ∂L/∂y, the input's own
/// channels' values back at the pixels they came from, 0 elsewhere.
fn unpad_channels<T: Real>(
    g: ArrayView2<T>,
    stride: usize,
    extra: usize,
    c_in: usize,
    cols_in: usize,
) -> Array2<T> {
    let ho = ((g.ncols() / (c_in + extra)) as f64).sqrt().round() as usize;
    let h = ((cols_in / c_in) as f64).sqrt().round() as usize;
    let before = extra / 2;
    let mut dx = Array2::zeros((g.nrows(), c_in * h * h));
    for (gr, mut dr) in g.rows().into_iter().zip(dx.rows_mut()) {
        for c in 0..c_in {
            for oy in 0..ho {
                for ox in 0..ho {
                    dr[(c * h + oy * stride) * h + ox * stride] =
                        gr[((before + c) * ho + oy) * ho + ox];
                }
            }
        }
    }
    dx
}
