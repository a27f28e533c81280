//! The training loss of one fixed batch as a function of a flat parameter
//! vector θ (f64, state-dict order), evaluated on a net's engine: the
//! parameters are set through the engine's update hook
//! ([`Engine::update_params`]), so every architecture the engine covers
//! takes part, and the loss is the mean cross-entropy the training step
//! computes.

use gradscope_engine::{Engine, Grads, Real, Want};
use gradscope_nets::BnMode;
use gradscope_train::cross_entropy_gradient;
use ndarray::Array2;

use crate::{Result, StudyError};

/// A scalar loss of θ with its gradient: what curves, surfaces and the
/// smoothness measures are written against (the engine's loss, or a
/// closed form in tests).
pub trait Objective {
    /// Number of parameters.
    fn dim(&self) -> usize;
    /// L(θ).
    fn loss(&mut self, theta: &[f64]) -> Result<f64>;
    /// L(θ) and ∇L(θ).
    fn loss_gradient(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)>;
}

/// One parameter tensor's place in the flat vector.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSlot {
    /// State-dict name.
    pub name: String,
    /// The tensor's shape (a linear weight: out × in; a conv kernel:
    /// C_out × C_in × k × k; biases and BN parameters: one axis).
    pub shape: Vec<usize>,
    /// First index in the flat vector.
    pub offset: usize,
}

impl ParamSlot {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The index range in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Every trainable parameter of a net in state-dict order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamLayout {
    /// The tensors.
    pub slots: Vec<ParamSlot>,
}

impl ParamLayout {
    /// A layout from (name, shape) pairs in order.
    pub fn new(tensors: impl IntoIterator<Item = (String, Vec<usize>)>) -> Self {
        let mut offset = 0;
        let slots = tensors
            .into_iter()
            .map(|(name, shape)| {
                let s = ParamSlot {
                    name,
                    shape,
                    offset,
                };
                offset += s.len();
                s
            })
            .collect();
        ParamLayout { slots }
    }

    /// Total number of parameters.
    pub fn dim(&self) -> usize {
        self.slots.last().map_or(0, |s| s.offset + s.len())
    }
}

/// The mean cross-entropy of a fixed batch on a net's engine, with BN in a
/// stated mode ([`BnMode::Full`] gives the loss a training step computes,
/// from the batch's own statistics, without moving the running ones).
pub struct EngineLoss<'e, T: Real> {
    engine: &'e mut dyn Engine<T>,
    x: Array2<T>,
    labels: Vec<u32>,
    layout: ParamLayout,
    origin: Vec<f64>,
    /// A whole-net backward pass with parameters: what the update hook
    /// walks (its gradient values are not used).
    template: Grads<T>,
    /// The parameters the engine holds now (None once set to a θ not kept).
    current: Option<Vec<f64>>,
}

impl<'e, T: Real> EngineLoss<'e, T> {
    /// The loss of batch (`x`, `labels`) on `engine` in BN mode `mode`,
    /// around the parameters the engine holds now (the origin).
    pub fn new(
        engine: &'e mut dyn Engine<T>,
        x: Array2<T>,
        labels: Vec<u32>,
        mode: BnMode,
    ) -> Result<Self> {
        if x.nrows() != labels.len() || labels.is_empty() {
            return Err(StudyError::config(
                "examples",
                format!("{} rows for {} labels", x.nrows(), labels.len()),
            ));
        }
        engine.set_mode(mode);
        let fwd = engine.forward(x.view(), true)?;
        let depth = engine.depth();
        let out = engine.output(&fwd, depth)?;
        let want = Want {
            params: true,
            ..Want::default()
        };
        let template = engine.backward(&fwd, depth, Some(out.view()), want)?;
        let mut tensors = Vec::new();
        let mut origin = Vec::new();
        engine.update_params(&template, &mut |name, dims, w, _| {
            tensors.push((name.to_string(), dims.to_vec()));
            origin.extend(w.iter().map(|v| v.f64()));
        })?;
        let layout = ParamLayout::new(tensors);
        Ok(EngineLoss {
            engine,
            x,
            labels,
            layout,
            current: Some(origin.clone()),
            origin,
            template,
        })
    }

    /// The parameters at construction, θ₀.
    pub fn origin(&self) -> &[f64] {
        &self.origin
    }

    /// Where each parameter tensor lies in θ.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Put θ into the engine's parameters (rounded to T).
    fn set(&mut self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.layout.dim() {
            return Err(StudyError::config(
                "parameters",
                format!(
                    "θ has {} entries, the net {}",
                    theta.len(),
                    self.layout.dim()
                ),
            ));
        }
        if self.current.as_deref() == Some(theta) {
            return Ok(());
        }
        let mut at = 0;
        self.engine
            .update_params(&self.template, &mut |_, _, w, _| {
                for (v, &t) in w.iter_mut().zip(&theta[at..]) {
                    *v = T::of(t);
                }
                at += w.len();
            })?;
        self.current = Some(theta.to_vec());
        Ok(())
    }

    /// Put θ₀ back into the engine, bit for bit.
    pub fn restore(&mut self) -> Result<()> {
        let origin = std::mem::take(&mut self.origin);
        let r = self.set(&origin);
        self.origin = origin;
        r
    }

    /// Mean cross-entropy of the batch at the engine's current parameters,
    /// and, when asked, ∂L/∂output = (softmax − onehot)/B.
    fn mean_loss(&mut self, gradient: bool) -> Result<(f64, Option<Vec<f64>>)> {
        let fwd = self.engine.forward(self.x.view(), gradient)?;
        let depth = self.engine.depth();
        let mut g = self.engine.output(&fwd, depth)?;
        let losses = cross_entropy_gradient(&mut g, &self.labels);
        let loss = losses.iter().sum::<f64>() / losses.len() as f64;
        if !gradient {
            return Ok((loss, None));
        }
        let inv_n = T::one() / T::of(self.labels.len() as f64);
        g.mapv_inplace(|v| v * inv_n);
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = self.engine.backward(&fwd, depth, Some(g.view()), want)?;
        let mut flat = Vec::with_capacity(self.layout.dim());
        for (_, p) in &grads.params {
            flat.extend(p.iter().map(|v| v.f64()));
        }
        Ok((loss, Some(flat)))
    }
}

impl<T: Real> Objective for EngineLoss<'_, T> {
    fn dim(&self) -> usize {
        self.layout.dim()
    }

    fn loss(&mut self, theta: &[f64]) -> Result<f64> {
        self.set(theta)?;
        Ok(self.mean_loss(false)?.0)
    }

    fn loss_gradient(&mut self, theta: &[f64]) -> Result<(f64, Vec<f64>)> {
        self.set(theta)?;
        let (loss, g) = self.mean_loss(true)?;
        Ok((loss, g.expect("asked for")))
    }
}

/// θ + Σ cᵢ·dᵢ.
pub fn displaced(theta: &[f64], moves: &[(f64, &[f64])]) -> Vec<f64> {
    let mut out = theta.to_vec();
    for &(c, d) in moves {
        if c != 0.0 {
            for (o, v) in out.iter_mut().zip(d) {
                *o += c * v;
            }
        }
    }
    out
}

/// ⟨a, b⟩.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// ‖a‖₂.
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}
