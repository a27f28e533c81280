//! Residual nets as ensembles of relatively shallow paths (Veit, Wilber &
//! Belongie 2016, "Residual Networks Behave Like Ensembles of Relatively
//! Shallow Networks", NeurIPS).
//!
//! Unrolled, a resnet of n blocks x_{l+1} = x_l + F_l(x_l) is a sum over 2^n
//! paths, each taking the branch F_l or the shortcut at every block; path
//! lengths (branches taken) follow Binomial(n, ½). Two views of a trained net:
//! **lesions** — test error after deleting one block, k random blocks, or
//! swapping blocks (a resnet degrades smoothly, a plain net collapses) — and
//! **gradient by path length** — sample paths through exactly k branches,
//! back-propagate only along them, and weigh the gradient reaching the input
//! by the C(n, k) paths of that length: most gradient comes from short paths.

use candle_core::Tensor;
use gradscope_engine::{Engine, Options, Real, Task, frobenius};
use gradscope_nets::{BlockNet, BnMode, Model, Net, derive_seed};
use gradscope_stats::MeanStd;
use gradscope_train::{
    Examples, TrainParams, cross_entropy_gradient, epoch_batches, misclassified,
};
use ndarray::Array2;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::index::sample;

use crate::output::create_dir;
use crate::provenance::Provenance;
use crate::study::{Study, StudyResults};
use crate::training::{ModelArch, build_net, check_net, train_net, view_for};
use crate::{Result, StudyError};

pub use gradscope_contract::ensemble::{
    ArchEnsemble, EnsembleParams, EnsembleResults, EnsembleSummary, LesionCurve, NAME, NetOutput,
    SCHEMA, files, read_summary,
};

impl crate::Params for EnsembleParams {
    type Config = EnsembleConfig;
    fn quick() -> Self {
        EnsembleParams::quick()
    }
    fn check(&self) -> Result<EnsembleConfig> {
        check(self)
    }
    fn infer_from_weights(&mut self, given: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let Some(path) = &self.load_weights else {
            return Ok(Vec::new());
        };
        let Some(spec) = gradscope_nets::read_spec(path)? else {
            return Ok(Vec::new());
        };
        let (arch, width) = match &spec {
            gradscope_nets::WeightsSpec::Mlp(n) => (ModelArch::Mlp(n.arch), Some(n.width)),
            gradscope_nets::WeightsSpec::Conv(c) => (ModelArch::Conv(c.arch), None),
        };
        let mut took = Vec::new();
        if !given("archs") {
            self.archs = vec![arch];
            took.push(format!("archs {arch}"));
        }
        if !given("depth") {
            self.depth = spec.depth();
            took.push(format!("depth {}", spec.depth()));
        }
        if let Some(w) = width.filter(|_| !given("width")) {
            self.width = w;
            took.push(format!("width {w}"));
        }
        if !given("seeds") {
            self.seeds = 1;
            took.push("seeds 1".into());
        }
        Ok(took)
    }
}

/// Validate `params` and load the data: the only way to a runnable study.
pub fn check(params: &EnsembleParams) -> Result<EnsembleConfig> {
    let p = params.clone();
    if p.archs.is_empty() {
        return Err(StudyError::config(
            "archs",
            "list at least one architecture",
        ));
    }
    if !(1..=1000).contains(&p.seeds) {
        return Err(StudyError::config(
            "seeds",
            format!("must be 1..=1000, got {}", p.seeds),
        ));
    }
    for (field, v) in [
        ("lesion_draws", p.lesion_draws),
        ("path_samples", p.path_samples),
        ("path_batch", p.path_batch),
    ] {
        if !(1..=100_000).contains(&v) {
            return Err(StudyError::config(
                field,
                format!("must be 1..=100000, got {v}"),
            ));
        }
    }
    if p.load_weights.is_some() && (p.archs.len() != 1 || p.seeds != 1) {
        return Err(StudyError::config(
            "load_weights",
            "a weights file is one net: give exactly one arch and seeds = 1",
        ));
    }
    let (train, test) = crate::data::load(&p.data)?;
    let train = crate::data::subset(train, p.max_train, p.seed)?;
    p.train
        .check(train.len())
        .map_err(|e| StudyError::config("train", e.to_string()))?;
    for arch in &p.archs {
        check_net(*arch, p.depth, p.width, p.dtype, &train)?;
    }
    Ok(EnsembleConfig {
        params: p,
        train,
        test,
    })
}

#[derive(Clone, Debug)]
/// A validated ensemble study with its data loaded.
pub struct EnsembleConfig {
    params: EnsembleParams,
    train: Examples,
    test: Examples,
}

#[derive(Clone, Debug)]
/// One trained net: (arch, seed).
pub struct Cell {
    /// Index into the configured archs.
    pub arch: usize,
    /// Seed index.
    pub seed: usize,
}

impl EnsembleConfig {
    /// The validated parameters.
    pub fn params(&self) -> &EnsembleParams {
        &self.params
    }

    /// Run every cell and summarise (see [`run_study`](crate::run_study)).
    pub fn run(&self, opts: &crate::RunOptions) -> Result<EnsembleResults> {
        crate::run_study(self, opts)
    }

    fn key(&self, c: &Cell) -> String {
        format!(
            "arch={},depth={},seed={}",
            self.params.archs[c.arch], self.params.depth, c.seed
        )
    }
}

/// Test error with a lesion plan, BN in eval mode: blocks applied in
/// `order`; a block in `deleted` passes on only its shortcut (Veit et al.'s
/// deletion: post(s(h)); a block without one is left out).
pub fn lesioned_error(
    net: &Net,
    data: &Examples,
    order: &[usize],
    deleted: &[bool],
) -> Result<f64> {
    let task = Lesion {
        data,
        order,
        deleted,
    };
    gradscope_engine::run(net, Options::repeated(BnMode::Eval), task)?
}

struct Lesion<'a> {
    data: &'a Examples,
    order: &'a [usize],
    deleted: &'a [bool],
}

impl Task for Lesion<'_> {
    type Output = Result<f64>;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Result<f64>> {
        Ok(lesioned_error_on(
            engine,
            self.data,
            self.order,
            self.deleted,
        ))
    }
}

/// [`lesioned_error`] on an engine.
pub fn lesioned_error_on<T: Real>(
    engine: &mut dyn Engine<T>,
    data: &Examples,
    order: &[usize],
    deleted: &[bool],
) -> Result<f64> {
    engine.set_mode(BnMode::Eval);
    let idx: Vec<usize> = (0..data.len()).collect();
    let mut wrong = 0;
    for chunk in idx.chunks(256) {
        let (x, y) = data.matrix::<T>(chunk);
        let mut h = engine.stem(x.view())?;
        for &b in order {
            h = if deleted[b] {
                engine.bypass(b, h)?
            } else {
                engine.block(b, &h)?
            };
        }
        wrong += misclassified(&engine.head(&h)?, &y);
    }
    Ok(wrong as f64 / data.len() as f64)
}

/// Blocks that can be deleted: every residual block; plain blocks that keep their shape.
fn deletable(net: &Net, h0: &Tensor) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    let mut h = h0.clone();
    for b in 0..net.num_blocks() {
        if net.block_parts(b, &h, BnMode::Eval)?.is_some() || net.keeps_shape(b) {
            out.push(b);
        }
        h = net.block_forward(b, &h, BnMode::Eval)?;
    }
    Ok(out)
}

/// ∂L/∂x carried by each path, L the mean cross-entropy of examples `x`
/// (rows) with labels `y`, BN in eval mode (so the net is a fixed function
/// of each example): at each block where the path's entry is true the
/// gradient goes through the branch F_b only, at the others through the
/// shortcut only (Veit et al. 2016, §6). Every block must be residual.
pub fn path_input_gradients<T: Real>(
    engine: &mut dyn Engine<T>,
    x: ndarray::ArrayView2<T>,
    y: &[u32],
    paths: &[Vec<bool>],
) -> Result<Vec<Array2<T>>> {
    engine.set_mode(BnMode::Eval);
    let fwd = engine.forward(x, false)?;
    let mut g = engine.output(&fwd, engine.depth())?;
    cross_entropy_gradient(&mut g, y);
    let inv_n = T::one() / T::of(x.nrows() as f64);
    g.mapv_inplace(|v| v * inv_n);
    let at_top = engine.head_vjp(&fwd, g.view())?;
    paths
        .iter()
        .map(|branch| {
            let mut g = at_top.clone();
            for b in (0..engine.depth()).rev() {
                g = engine.path_vjp(&fwd, b, g.view(), branch[b])?;
            }
            Ok(engine.stem_vjp(&fwd, g.view())?)
        })
        .collect()
}

/// ‖∂L/∂x‖_F along each path (see [`path_input_gradients`]) for the mean
/// cross-entropy of examples `idx`: one forward pass and a backward pass per path.
pub fn path_gradient_norms<T: Real>(
    engine: &mut dyn Engine<T>,
    data: &Examples,
    idx: &[usize],
    paths: &[Vec<bool>],
) -> Result<Vec<f64>> {
    let (x, y) = data.matrix::<T>(idx);
    Ok(path_input_gradients(engine, x.view(), &y, paths)?
        .iter()
        .map(frobenius)
        .collect())
}

/// The lesions and path gradients of one trained net, on its engine.
struct Analysis<'a> {
    study: &'a EnsembleConfig,
    net: &'a Net,
    arch: ModelArch,
    key: &'a str,
    train: &'a Examples,
    test: &'a Examples,
}

impl Task for Analysis<'_> {
    type Output = Result<NetOutput>;
    fn run<T: Real>(
        self,
        engine: &mut dyn Engine<T>,
    ) -> gradscope_engine::Result<Result<NetOutput>> {
        Ok(self.measure(engine))
    }
}

impl Analysis<'_> {
    fn measure<T: Real>(&self, engine: &mut dyn Engine<T>) -> Result<NetOutput> {
        let (p, net, arch, key) = (&self.study.params, self.net, self.arch, self.key);
        let (train, test) = (self.train, self.test);
        let n = net.num_blocks();
        let order: Vec<usize> = (0..n).collect();
        let none = vec![false; n];
        let intact_error = lesioned_error_on(engine, test, &order, &none)?;
        let (x1, _) = test.batch(&[0], net.dtype())?;
        let can_delete = deletable(net, &net.stem_forward(&x1, BnMode::Eval)?)?;

        let mut single_deletion = vec![f64::NAN; n];
        for &b in &can_delete {
            let mut del = none.clone();
            del[b] = true;
            single_deletion[b] = lesioned_error_on(engine, test, &order, &del)?;
        }

        let mut rng = StdRng::seed_from_u64(derive_seed(p.seed, &format!("lesion:{key}")));
        let mut random_deletion = LesionCurve {
            count: Vec::new(),
            error: Vec::new(),
        };
        for k in 0..=can_delete.len() {
            let draws = if k == 0 { 1 } else { p.lesion_draws };
            let errs = (0..draws)
                .map(|_| {
                    let mut del = none.clone();
                    for i in sample(&mut rng, can_delete.len(), k) {
                        del[can_delete[i]] = true;
                    }
                    lesioned_error_on(engine, test, &order, &del)
                })
                .collect::<Result<Vec<_>>>()?;
            random_deletion.count.push(k);
            random_deletion.error.push(MeanStd::of(errs));
        }

        // Swap pairs of shape-keeping blocks of the same group.
        let movable: Vec<usize> = (0..n).filter(|&b| net.keeps_shape(b)).collect();
        let mut reordering = LesionCurve {
            count: Vec::new(),
            error: Vec::new(),
        };
        let max_swaps = movable.len() / 2;
        let mut swaps = 1;
        while swaps <= max_swaps {
            let errs = (0..p.lesion_draws)
                .map(|_| {
                    let mut ord = order.clone();
                    let mut done = 0;
                    let mut guard = 0;
                    while done < swaps && guard < 100 * swaps {
                        guard += 1;
                        let pick = sample(&mut rng, movable.len(), 2).into_vec();
                        let (a, b) = (movable[pick[0]], movable[pick[1]]);
                        if net.block_group(a) == net.block_group(b) {
                            ord.swap(a, b);
                            done += 1;
                        }
                    }
                    lesioned_error_on(engine, test, &ord, &none)
                })
                .collect::<Result<Vec<_>>>()?;
            reordering.count.push(swaps);
            reordering.error.push(MeanStd::of(errs));
            swaps *= 2;
        }

        let (mut path_gradient, mut path_measured) = (vec![f64::NAN; n + 1], vec![0; n + 1]);
        if arch.is_residual() {
            let batch = epoch_batches(
                train.len(),
                p.path_batch.min(train.len()),
                derive_seed(p.seed, "path-batch"),
            )[0]
            .clone();
            let mut prng = StdRng::seed_from_u64(derive_seed(p.seed, &format!("paths:{key}")));
            for k in 0..=n {
                let paths: Vec<Vec<bool>> = paths_of_length(n, k, p.path_samples, &mut prng)
                    .iter()
                    .map(|set| {
                        let mut branch = vec![false; n];
                        for &b in set {
                            branch[b] = true;
                        }
                        branch
                    })
                    .collect();
                let norms = path_gradient_norms(engine, train, &batch, &paths)?;
                path_measured[k] = norms.len();
                path_gradient[k] = MeanStd::of(norms).mean;
            }
        }
        Ok(NetOutput {
            blocks: n,
            intact_error,
            single_deletion,
            random_deletion,
            reordering,
            path_gradient,
            path_measured,
        })
    }
}

/// C(n, k) as a float (exact up to 2^53).
pub fn binomial(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k)
        .fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
        .round()
}

/// Share of the 2^n paths with length k: C(n, k)/2^n.
pub fn path_length_share(n: usize, k: usize) -> f64 {
    binomial(n, k) / 2f64.powi(n as i32)
}

/// All k-subsets of 0..n in lexicographic order (only called when there are few).
fn all_subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn rec(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            if n - i < k - cur.len() {
                break;
            }
            cur.push(i);
            rec(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    rec(0, n, k, &mut Vec::new(), &mut out);
    out
}

/// The paths of length k to measure: all of them when there are at most
/// `samples`, else `samples` drawn uniformly.
pub fn paths_of_length(n: usize, k: usize, samples: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    if binomial(n, k) <= samples as f64 {
        all_subsets(n, k)
    } else {
        (0..samples)
            .map(|_| {
                let mut v = sample(rng, n, k).into_vec();
                v.sort_unstable();
                v
            })
            .collect()
    }
}

impl Study for EnsembleConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = NetOutput;
    type Results = EnsembleResults;

    fn cells(&self) -> Vec<Cell> {
        (0..self.params.archs.len())
            .flat_map(|arch| (0..self.params.seeds).map(move |seed| Cell { arch, seed }))
            .collect()
    }

    fn cell_key(&self, cell: &Cell) -> String {
        self.key(cell)
    }

    fn run_cell(&self, cell: &Cell) -> Result<NetOutput> {
        self.run_cell_stoppable(cell, None)
    }

    fn run_cell_stoppable(
        &self,
        cell: &Cell,
        stop: Option<&std::sync::Arc<std::sync::atomic::AtomicBool>>,
    ) -> Result<NetOutput> {
        let p = &self.params;
        let arch = p.archs[cell.arch];
        let key = self.key(cell);
        let net = build_net(
            arch,
            p.depth,
            p.width,
            p.dtype,
            derive_seed(p.seed, &format!("net{}", cell.seed)),
            &self.train,
        )?;
        let (train, test) = (view_for(arch, &self.train)?, view_for(arch, &self.test)?);
        match &p.load_weights {
            Some(path) => gradscope_nets::load_safetensors(&net, path)?,
            None => {
                let train_params = TrainParams {
                    seed: derive_seed(p.seed, &format!("batches{}", cell.seed)),
                    ..p.train.clone()
                };
                let identity = serde_json::json!({ "key": key, "train": train_params, "width": p.width, "dtype": p.dtype, "data": p.data, "max_train": p.max_train, "seed": p.seed, "study": NAME });
                let h = train_net(
                    &net,
                    &key,
                    identity,
                    &train_params,
                    (&train, &test),
                    crate::training::RunControl {
                        checkpoints: p.checkpoints.as_deref(),
                        stop,
                        observer: None,
                        fresh_start: false,
                    },
                )?;
                if let Some(step) = h.diverged_at {
                    return Err(StudyError::config(
                        "training",
                        format!("{key} diverged at step {step}; lower the learning rate"),
                    ));
                }
            }
        }
        let task = Analysis {
            study: self,
            net: &net,
            arch,
            key: &key,
            train: &train,
            test: &test,
        };
        gradscope_engine::run(&net, Options::repeated(BnMode::Eval), task)?
    }

    fn summarise(
        &self,
        outputs: Vec<NetOutput>,
        provenance: Provenance,
    ) -> Result<EnsembleResults> {
        let p = &self.params;
        let cells = self.cells();
        let mut archs = Vec::new();
        for (a, arch) in p.archs.iter().enumerate() {
            let nets: Vec<&NetOutput> = cells
                .iter()
                .zip(&outputs)
                .filter(|(c, _)| c.arch == a)
                .map(|(_, o)| o)
                .collect();
            let n = nets[0].blocks;
            let mean_of = |f: &dyn Fn(&NetOutput) -> Vec<f64>| -> Vec<f64> {
                let vs: Vec<Vec<f64>> = nets.iter().map(|o| f(o)).collect();
                (0..vs[0].len())
                    .map(|i| MeanStd::of(vs.iter().map(|v| v[i])).mean)
                    .collect()
            };
            let path_gradient = mean_of(&|o| o.path_gradient.clone());
            let total: Vec<f64> = path_gradient
                .iter()
                .enumerate()
                .map(|(k, g)| g * binomial(n, k))
                .collect();
            archs.push(ArchEnsemble {
                arch: arch.to_string(),
                residual: arch.is_residual(),
                blocks: n,
                intact_error: MeanStd::of(nets.iter().map(|o| o.intact_error)),
                single_deletion: mean_of(&|o| o.single_deletion.clone()),
                random_deletion: pool(nets.iter().map(|o| &o.random_deletion)),
                reordering: pool(nets.iter().map(|o| &o.reordering)),
                path_length_share: (0..=n).map(|k| path_length_share(n, k)).collect(),
                effective_range: effective_range(&total, 0.9),
                path_gradient,
                total_gradient: total,
            });
        }
        Ok(EnsembleResults {
            summary: EnsembleSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                archs,
            },
            nets: cells.iter().map(|c| self.key(c)).zip(outputs).collect(),
        })
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }

    /// The checkpoint folder changes no cell.
    fn cell_identity(&self) -> serde_json::Value {
        let mut v = self.config_json();
        if let Some(m) = v.as_object_mut() {
            m.remove("checkpoints");
        }
        v
    }

    fn prepare(&self) -> Result<()> {
        match &self.params.checkpoints {
            Some(dir) => Ok(create_dir(dir)?),
            None => Ok(()),
        }
    }
}

/// Pool lesion curves of several nets: the mean of the per-net means, with
/// the spread of the draws of all nets.
fn pool<'a>(curves: impl Iterator<Item = &'a LesionCurve>) -> LesionCurve {
    let curves: Vec<&LesionCurve> = curves.collect();
    let count = curves[0].count.clone();
    let error = (0..count.len())
        .map(|i| {
            let parts: Vec<MeanStd> = curves
                .iter()
                .filter_map(|c| c.error.get(i).copied())
                .collect();
            let mut m = MeanStd::of(parts.iter().map(|m| m.mean));
            m.std = (parts.iter().map(|m| m.std * m.std).sum::<f64>() / parts.len() as f64).sqrt();
            m
        })
        .collect();
    LesionCurve { count, error }
}

/// The shortest range of path lengths [lo, hi] holding at least `share` of the
/// total gradient Σ_k C(n, k)·E‖g_k‖ (NaN entries count as zero).
pub fn effective_range(total: &[f64], share: f64) -> Option<(usize, usize)> {
    let t: Vec<f64> = total
        .iter()
        .map(|v| if v.is_finite() { *v } else { 0.0 })
        .collect();
    let sum: f64 = t.iter().sum();
    if sum <= 0.0 {
        return None;
    }
    let mut best: Option<(usize, usize)> = None;
    for lo in 0..t.len() {
        let mut acc = 0.0;
        for (hi, v) in t.iter().enumerate().skip(lo) {
            acc += v;
            if acc >= share * sum {
                if best.is_none_or(|(a, b)| hi - lo < b - a) {
                    best = Some((lo, hi));
                }
                break;
            }
        }
    }
    best
}

impl StudyResults for EnsembleResults {
    fn write(&self, dir: &std::path::Path) -> Result<()> {
        Ok(EnsembleResults::write(self, dir)?)
    }
}
