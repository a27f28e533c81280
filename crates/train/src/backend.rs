//! The numeric work of a training run, on one of two paths: candle's autograd
//! for every model, or the dense fast path
//! ([`gradscope_probe::dense`]) for the MLPs it covers, which computes the same
//! numbers (tested to rounding) without per-op overhead.

use candle_core::{DType, Device, Tensor, Var};
use gradscope_nets::{BnMode, Mlp, Model};
use gradscope_probe::dense::{DenseMlp, Real, Want};
use gradscope_stats::cosine_from_gram;
use ndarray::{Array2, Axis};

use crate::Result;
use crate::examples::Examples;
use crate::loss::{cross_entropy, cross_entropy_gradient, error_rate, misclassified};
use crate::optim::{Optimizer, Scalar};

/// What the trainer asks of a path.
pub(crate) trait Backend {
    /// One optimiser step on the batch `idx` of `set` (BN in training mode);
    /// returns the batch's mean loss. A non-finite loss takes no step.
    fn step(&mut self, set: &Examples, idx: &[usize], opt: &mut Optimizer, lr: f64) -> Result<f64>;
    /// Mean loss and error over a set, BN in eval mode.
    fn evaluate(&mut self, set: &Examples) -> Result<(f64, f64)>;
    /// ‖∂L/∂θ‖² per parameter (state-dict name) of the batch's mean loss, BN
    /// in full mode (the training gradient, running statistics untouched).
    fn param_sq_norms(&mut self, set: &Examples, idx: &[usize]) -> Result<Vec<(String, f64)>>;
    /// ∂f_class/∂x at every point (rows of `points`, flattened examples of
    /// shape `dims`), BN in eval mode.
    fn input_gradients(
        &mut self,
        points: Array2<f64>,
        dims: &[usize],
        class: usize,
    ) -> Result<Array2<f64>>;
    /// Cosines ⟨gᵢ, gⱼ⟩/(‖gᵢ‖‖gⱼ‖) of the per-example loss gradients (all
    /// parameters) of examples `idx`, BN in eval mode; NaN where a gradient
    /// is zero.
    fn example_cosines(&mut self, set: &Examples, idx: &[usize]) -> Result<Array2<f64>>;
    /// Write the path's parameters back into the model.
    fn sync(&mut self) -> Result<()>;
}

/// The path for `model`: dense when it is an MLP the fast path covers (and
/// `dense` allows it), candle otherwise.
pub(crate) fn backend_for<'a>(model: &'a dyn Model, dense: bool) -> Box<dyn Backend + 'a> {
    if let Some(mlp) = model.as_mlp().filter(|_| dense) {
        let fast: Option<Box<dyn Backend + 'a>> = match mlp.dtype() {
            DType::F32 => DenseBackend::<f32>::new(mlp).map(|b| Box::new(b) as _),
            DType::F64 => DenseBackend::<f64>::new(mlp).map(|b| Box::new(b) as _),
            _ => None,
        };
        if let Some(b) = fast {
            return b;
        }
    }
    Box::new(CandleBackend {
        model,
        params: model.parameters(),
    })
}

struct CandleBackend<'a> {
    model: &'a dyn Model,
    params: Vec<(String, Var)>,
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

impl CandleBackend<'_> {
    /// Every parameter's gradient of `loss`, flattened in f64 (zeros where none).
    fn flat_gradient(&self, loss: &Tensor) -> Result<Vec<f64>> {
        let g = loss.backward()?;
        let mut flat = Vec::new();
        for (_, v) in &self.params {
            match g.get(v.as_tensor()) {
                Some(t) => flat.extend(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?),
                None => flat.extend(std::iter::repeat_n(0.0, v.elem_count())),
            }
        }
        Ok(flat)
    }
}

impl Backend for CandleBackend<'_> {
    fn step(&mut self, set: &Examples, idx: &[usize], opt: &mut Optimizer, lr: f64) -> Result<f64> {
        let (x, y) = set.batch(idx, self.model.dtype())?;
        let loss = cross_entropy(&self.model.forward(&x, BnMode::Train)?, &y)?;
        let value = scalar(&loss)?;
        if value.is_finite() {
            opt.step(&self.params, &loss.backward()?, lr)?;
        }
        Ok(value)
    }

    fn evaluate(&mut self, set: &Examples) -> Result<(f64, f64)> {
        let (mut loss, mut wrong) = (0.0, 0.0);
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in idx.chunks(256) {
            let (x, y) = set.batch(chunk, self.model.dtype())?;
            let logits = self.model.forward(&x, BnMode::Eval)?;
            loss += scalar(&cross_entropy(&logits, &y)?)? * chunk.len() as f64;
            wrong += error_rate(&logits, &y)? * chunk.len() as f64;
        }
        Ok((loss / set.len() as f64, wrong / set.len() as f64))
    }

    fn param_sq_norms(&mut self, set: &Examples, idx: &[usize]) -> Result<Vec<(String, f64)>> {
        let (x, y) = set.batch(idx, self.model.dtype())?;
        let grads = cross_entropy(&self.model.forward(&x, BnMode::Full)?, &y)?.backward()?;
        self.params
            .iter()
            .map(|(name, var)| {
                let sq = match grads.get(var.as_tensor()) {
                    Some(g) => scalar(&g.to_dtype(DType::F64)?.sqr()?.sum_all()?)?,
                    None => 0.0,
                };
                Ok((name.clone(), sq))
            })
            .collect()
    }

    fn input_gradients(
        &mut self,
        points: Array2<f64>,
        dims: &[usize],
        class: usize,
    ) -> Result<Array2<f64>> {
        let n = points.nrows();
        let mut shape = vec![n];
        shape.extend_from_slice(dims);
        let data = points.into_raw_vec_and_offset().0;
        let x = Var::from_tensor(
            &Tensor::from_vec(data, shape, &Device::Cpu)?.to_dtype(self.model.dtype())?,
        )?;
        let logits = self.model.forward(x.as_tensor(), BnMode::Eval)?;
        let grads = logits.narrow(1, class, 1)?.sum_all()?.backward()?;
        let gx = match grads.get(x.as_tensor()) {
            Some(g) => g.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?,
            None => vec![0.0; x.elem_count()],
        };
        Ok(Array2::from_shape_vec((n, gx.len() / n.max(1)), gx).expect("one row per point"))
    }

    fn example_cosines(&mut self, set: &Examples, idx: &[usize]) -> Result<Array2<f64>> {
        let grads = idx
            .iter()
            .map(|&i| {
                let (x, y) = set.batch(&[i], self.model.dtype())?;
                self.flat_gradient(&cross_entropy(&self.model.forward(&x, BnMode::Eval)?, &y)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let m = grads.len();
        let gram = Array2::from_shape_fn((m, m), |(i, j)| {
            grads[i].iter().zip(&grads[j]).map(|(a, b)| a * b).sum()
        });
        Ok(cosine_from_gram(gram.view())?)
    }

    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
}

struct DenseBackend<'a, T> {
    mlp: &'a Mlp,
    net: DenseMlp<T>,
    /// Parameter shapes in state-dict order (the optimiser's slots keep them).
    shapes: Vec<Vec<usize>>,
}

impl<'a, T: Real + Scalar> DenseBackend<'a, T> {
    fn new(mlp: &'a Mlp) -> Option<Self> {
        let net = DenseMlp::from_mlp(mlp, BnMode::Train).ok()?;
        let shapes = mlp
            .parameters()
            .iter()
            .map(|(_, v)| v.dims().to_vec())
            .collect();
        Some(DenseBackend { mlp, net, shapes })
    }

    /// The mean cross-entropy of batch `idx` with BN in `mode` and every
    /// parameter's gradient. Train mode also updates the running statistics,
    /// and skips the gradient of a non-finite loss (no step is taken).
    fn mean_loss_gradient(
        &mut self,
        set: &Examples,
        idx: &[usize],
        mode: BnMode,
    ) -> (f64, Option<gradscope_probe::dense::DenseGrads<T>>) {
        let (x, y) = set.matrix::<T>(idx);
        self.net.set_mode(mode);
        let fwd = self.net.forward_keeping(x.view(), true);
        if mode == BnMode::Train {
            self.net.update_running_stats(&fwd);
        }
        let depth = self.net.depth();
        let mut g = self.net.output(&fwd, depth);
        let losses = cross_entropy_gradient(&mut g, &y);
        let loss = losses.iter().sum::<f64>() / losses.len() as f64;
        if mode == BnMode::Train && !loss.is_finite() {
            return (loss, None);
        }
        let inv_n = T::one() / <T as candle_core::WithDType>::from_f64(idx.len() as f64);
        g.mapv_inplace(|v| v * inv_n);
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = self.net.backward_with(&fwd, depth, Some(g.view()), want);
        (loss, Some(grads))
    }

    /// Logits of the whole net.
    fn logits(&self, x: &Array2<T>) -> Array2<T> {
        let fwd = self.net.forward(x.view());
        self.net.output(&fwd, self.net.depth())
    }
}

impl<T: Real + Scalar> Backend for DenseBackend<'_, T> {
    fn step(&mut self, set: &Examples, idx: &[usize], opt: &mut Optimizer, lr: f64) -> Result<f64> {
        let (loss, grads) = self.mean_loss_gradient(set, idx, BnMode::Train);
        let Some(grads) = grads else {
            return Ok(loss);
        };
        opt.begin_step();
        let params = self.net.params_mut();
        for (((name, w), (_, g)), dims) in params.into_iter().zip(&grads.params).zip(&self.shapes) {
            opt.update(&name, dims, w, g, lr);
        }
        Ok(loss)
    }

    fn evaluate(&mut self, set: &Examples) -> Result<(f64, f64)> {
        self.net.set_mode(BnMode::Eval);
        let (mut loss, mut wrong) = (0.0, 0);
        let idx: Vec<usize> = (0..set.len()).collect();
        for chunk in idx.chunks(256) {
            let (x, y) = set.matrix::<T>(chunk);
            let mut z = self.logits(&x);
            wrong += misclassified(&z, &y);
            loss += cross_entropy_gradient(&mut z, &y).iter().sum::<f64>();
        }
        let n = set.len() as f64;
        Ok((loss / n, wrong as f64 / n))
    }

    fn param_sq_norms(&mut self, set: &Examples, idx: &[usize]) -> Result<Vec<(String, f64)>> {
        let (_, grads) = self.mean_loss_gradient(set, idx, BnMode::Full);
        Ok(grads
            .expect("outside training mode the gradient is always taken")
            .params
            .into_iter()
            .map(|(name, g)| {
                let sq = g
                    .iter()
                    .map(|&v| <T as candle_core::WithDType>::to_f64(v).powi(2))
                    .sum();
                (name, sq)
            })
            .collect())
    }

    fn input_gradients(
        &mut self,
        points: Array2<f64>,
        _dims: &[usize],
        class: usize,
    ) -> Result<Array2<f64>> {
        self.net.set_mode(BnMode::Eval);
        let x = points.mapv(<T as candle_core::WithDType>::from_f64);
        let fwd = self.net.forward(x.view());
        let depth = self.net.depth();
        let classes = self.net.output(&fwd, depth).ncols();
        let seed = Array2::from_shape_fn((x.nrows(), classes), |(_, k)| {
            if k == class { T::one() } else { T::zero() }
        });
        let grads = self
            .net
            .backward_with(&fwd, depth, Some(seed.view()), Want::default());
        Ok(grads.input.mapv(<T as candle_core::WithDType>::to_f64))
    }

    fn example_cosines(&mut self, set: &Examples, idx: &[usize]) -> Result<Array2<f64>> {
        let (x, y) = set.matrix::<T>(idx);
        self.net.set_mode(BnMode::Eval);
        let fwd = self.net.forward_keeping(x.view(), true);
        let depth = self.net.depth();
        let mut g = self.net.output(&fwd, depth);
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
        let grads = self.net.backward_with(
            &fwd,
            depth,
            Some(g.view()),
            Want {
                gram: true,
                ..Want::default()
            },
        );
        let gram = grads
            .gram
            .into_iter()
            .fold(Array2::zeros((idx.len(), idx.len())), |acc, (_, m)| acc + m);
        Ok(cosine_from_gram(gram.view())?)
    }

    fn sync(&mut self) -> Result<()> {
        self.net.write_to(self.mlp)?;
        Ok(())
    }
}
