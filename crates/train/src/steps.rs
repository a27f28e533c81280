//! The numeric work of a training run, written once against the engine
//! ([`gradscope_engine::Engine`]): an optimiser step, evaluation, and the
//! gradients the logs record. Which kernels run them is the engine's choice.

use gradscope_engine::{Engine, Real, Want};
use gradscope_nets::BnMode;
use gradscope_stats::cosine_from_gram;
use ndarray::{Array2, Axis};

use crate::Result;
use crate::examples::Examples;
use crate::loss::{cross_entropy_gradient, misclassified};
use crate::optim::Optimizer;

/// A mean batch loss past this counts as divergence: the true logits
/// trail the largest by a million on average, so the net's outputs have
/// run away whatever the arithmetic can still represent.
pub const DIVERGENCE_LOSS: f64 = 1e6;

/// The mean cross-entropy of batch `idx` with BN in `mode` and every
/// parameter's gradient. Train mode also updates the running statistics,
/// and takes no gradient of a loss that is not finite or passes
/// [`DIVERGENCE_LOSS`] (no step is taken).
fn mean_loss_gradient<T: Real>(
    engine: &mut dyn Engine<T>,
    set: &Examples,
    idx: &[usize],
    mode: BnMode,
) -> Result<(f64, Option<gradscope_engine::Grads<T>>)> {
    let (x, y) = set.matrix::<T>(idx);
    engine.set_mode(mode);
    let fwd = engine.forward(x.view(), true)?;
    if mode == BnMode::Train {
        engine.update_running_stats(&fwd);
    }
    let depth = engine.depth();
    let mut g = engine.output(&fwd, depth)?;
    let losses = cross_entropy_gradient(&mut g, &y);
    let loss = losses.iter().sum::<f64>() / losses.len() as f64;
    if mode == BnMode::Train && (!loss.is_finite() || loss > DIVERGENCE_LOSS) {
        return Ok((loss, None));
    }
    let inv_n = T::one() / T::of(idx.len() as f64);
    g.mapv_inplace(|v| v * inv_n);
    let want = Want {
        params: true,
        ..Want::default()
    };
    let grads = engine.backward(&fwd, depth, Some(g.view()), want)?;
    Ok((loss, Some(grads)))
}

/// Hears a parameter's name, its values before and after an update, and
/// the gradient the update used.
pub(crate) type ParamHook<'a, T> = dyn FnMut(&str, &[T], &[T], &[T]) + 'a;

/// What one optimiser step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Step {
    /// The parameters moved; the batch's mean loss before the step.
    Taken(f64),
    /// The run diverged at this step.
    Diverged,
}

/// One optimiser step on the batch `idx` of `set` (BN in training mode).
/// Divergence is a mean loss that is not finite or passes
/// [`DIVERGENCE_LOSS`], or a non-finite gradient (no step is taken then),
/// or a parameter the step left non-finite.
/// `hook`, when given, hears each parameter's name, its values before and
/// after the update, and the gradient (the statistics of the step).
pub(crate) fn step<T: Real>(
    engine: &mut dyn Engine<T>,
    set: &Examples,
    idx: &[usize],
    opt: &mut Optimizer,
    lr: f64,
    mut hook: Option<&mut ParamHook<'_, T>>,
) -> Result<Step> {
    let (loss, grads) = mean_loss_gradient(engine, set, idx, BnMode::Train)?;
    let Some(grads) = grads else {
        return Ok(Step::Diverged);
    };
    if grads
        .params
        .iter()
        .any(|(_, g)| g.iter().any(|v| !v.is_finite()))
    {
        return Ok(Step::Diverged);
    }
    opt.begin_step();
    let mut finite = true;
    engine.update_params(&grads, &mut |name, dims, w, g| {
        let before = hook.as_ref().map(|_| w.to_vec());
        opt.update(name, dims, w, g, lr);
        finite &= w.iter().all(|v| v.is_finite());
        if let (Some(h), Some(b)) = (hook.as_mut(), before) {
            h(name, &b, w, g);
        }
    })?;
    Ok(if finite {
        Step::Taken(loss)
    } else {
        Step::Diverged
    })
}

/// Mean loss and error over a set, BN in eval mode.
pub(crate) fn evaluate<T: Real>(engine: &mut dyn Engine<T>, set: &Examples) -> Result<(f64, f64)> {
    engine.set_mode(BnMode::Eval);
    let (mut loss, mut wrong) = (0.0, 0);
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(256) {
        let (x, y) = set.matrix::<T>(chunk);
        let mut z = engine.predict(x.view())?;
        wrong += misclassified(&z, &y);
        loss += cross_entropy_gradient(&mut z, &y).iter().sum::<f64>();
    }
    let n = set.len() as f64;
    Ok((loss / n, wrong as f64 / n))
}

/// ‖∂L/∂θ‖² per parameter (state-dict name) of the batch's mean loss, BN
/// in full mode (the training gradient, running statistics untouched).
pub(crate) fn param_sq_norms<T: Real>(
    engine: &mut dyn Engine<T>,
    set: &Examples,
    idx: &[usize],
) -> Result<Vec<(String, f64)>> {
    let (_, grads) = mean_loss_gradient(engine, set, idx, BnMode::Full)?;
    Ok(grads
        .expect("outside training mode the gradient is always taken")
        .params
        .into_iter()
        .map(|(name, g)| (name, g.iter().map(|&v| v.f64().powi(2)).sum()))
        .collect())
}

/// ∂f_class/∂x at every point (rows of `points`, flattened examples), BN in
/// eval mode.
pub(crate) fn input_gradients<T: Real>(
    engine: &mut dyn Engine<T>,
    points: Array2<f64>,
    class: usize,
) -> Result<Array2<f64>> {
    engine.set_mode(BnMode::Eval);
    let x = points.mapv(T::of);
    let fwd = engine.forward(x.view(), false)?;
    let depth = engine.depth();
    let classes = engine.output(&fwd, depth)?.ncols();
    let seed = Array2::from_shape_fn((x.nrows(), classes), |(_, k)| {
        if k == class { T::one() } else { T::zero() }
    });
    let grads = engine.backward(&fwd, depth, Some(seed.view()), Want::default())?;
    Ok(grads.input.mapv(Real::f64))
}

/// Cosines ⟨gᵢ, gⱼ⟩/(‖gᵢ‖‖gⱼ‖) of the per-example loss gradients (all
/// parameters) of examples `idx`, BN in eval mode; NaN where a gradient is zero.
pub(crate) fn example_cosines<T: Real>(
    engine: &mut dyn Engine<T>,
    set: &Examples,
    idx: &[usize],
) -> Result<Array2<f64>> {
    let (x, y) = set.matrix::<T>(idx);
    engine.set_mode(BnMode::Eval);
    let fwd = engine.forward(x.view(), true)?;
    let depth = engine.depth();
    let mut g = engine.output(&fwd, depth)?;
    cross_entropy_gradient(&mut g, &y);
    // Example i's parameter gradient is linear in row i, so scaling the
    // row leaves the cosines alone; at unit size the f32 products of a
    // well-fitted example (gradients near 1e-20) stay out of the
    // subnormal range.
    for mut row in g.axis_iter_mut(Axis(0)) {
        let top = row.fold(T::zero(), |m, &v| num_traits::Float::max(m, v.abs()));
        if top > T::zero() {
            row.mapv_inplace(|v| v / top);
        }
    }
    let want = Want {
        gram: true,
        ..Want::default()
    };
    let grads = engine.backward(&fwd, depth, Some(g.view()), want)?;
    let gram = grads
        .gram
        .into_iter()
        .fold(Array2::zeros((idx.len(), idx.len())), |acc, (_, m)| acc + m);
    Ok(cosine_from_gram(gram.view())?)
}
