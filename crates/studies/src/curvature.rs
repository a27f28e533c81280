//! The Hessian of the training loss of plain and residual MLPs, with and
//! without BN, against depth: its top eigenvalue (Lanczos), trace
//! (Hutchinson), negative mass and spectral density (stochastic Lanczos
//! quadrature), at initialisation and after a short training.
//!
//! Every number comes from exact Hessian-vector products on the engine
//! ([`gradscope_engine::Curvature`], forward-over-reverse on dual numbers)
//! of the mean cross-entropy of one fixed batch, BN in training mode (the
//! loss a training step descends). Ghorbani, Krishnan and Xiao 2019 and Yao
//! et al. 2020 (PyHessian) measure these spectra on real nets; Li et al.
//! 2018 and Santurkar et al. 2018 connect skip connections and BN to a
//! smoother loss.

use gradscope_engine::{Curvature, Engine, Options, Real, Task};
use gradscope_nets::{BnMode, Net, derive_seed};
use gradscope_spec::{Precision, TrainParams};
use gradscope_stats::{hutchinson_trace, lanczos_top, spectral_density};
use gradscope_train::{Examples, epoch_batches, misclassified};
use ndarray::{Array2, Array3, Array4};

use crate::output::create_dir;
use crate::provenance::Provenance;
use crate::study::{Study, StudyResults};
use crate::training::{build_net, check_net, train_net, view_for};
use crate::{Result, StudyError};

pub use gradscope_contract::curvature::{
    CurvatureParams, CurvaturePoint, CurvatureResults, CurvatureSummary, DensityGrid, GRID_POINTS,
    HessianOutput, MeanSe, NAME, NetCurvature, PHASES, SCHEMA, files, read_density, read_summary,
};

impl crate::Params for CurvatureParams {
    type Config = CurvatureConfig;
    fn quick() -> Self {
        CurvatureParams::quick()
    }
    fn check(&self) -> Result<CurvatureConfig> {
        check(self)
    }
}

/// Validate `params` and load the data: the only way to a runnable study.
pub fn check(params: &CurvatureParams) -> Result<CurvatureConfig> {
    let p = params.clone();
    if p.archs.is_empty() || p.depths.is_empty() {
        return Err(StudyError::config(
            "archs",
            "list at least one architecture and one depth",
        ));
    }
    if !(1..=1000).contains(&p.seeds) {
        return Err(StudyError::config(
            "seeds",
            format!("must be 1..=1000, got {}", p.seeds),
        ));
    }
    for (field, v, hi) in [
        ("top_k", p.top_k, 100),
        ("lanczos_steps", p.lanczos_steps, 10_000),
        ("trace_probes", p.trace_probes, 100_000),
        ("density_probes", p.density_probes, 10_000),
        ("density_steps", p.density_steps, 10_000),
    ] {
        if !(1..=hi).contains(&v) {
            return Err(StudyError::config(
                field,
                format!("must be 1..={hi}, got {v}"),
            ));
        }
    }
    if p.top_k > p.lanczos_steps {
        return Err(StudyError::config(
            "top_k",
            format!(
                "{} eigenvalues need at least as many Lanczos steps (lanczos_steps = {})",
                p.top_k, p.lanczos_steps
            ),
        ));
    }
    if !(p.lanczos_tol > 0.0 && p.lanczos_tol < 1.0) {
        return Err(StudyError::config(
            "lanczos_tol",
            format!("must lie in (0, 1), got {}", p.lanczos_tol),
        ));
    }
    let (train, test) = crate::data::load(&p.data)?;
    if !(2..=train.len()).contains(&p.batch) {
        return Err(StudyError::config(
            "batch",
            format!(
                "must be 2..={} (the training set), got {}",
                train.len(),
                p.batch
            ),
        ));
    }
    if p.train.epochs > 0 {
        p.train
            .check(train.len())
            .map_err(|e| StudyError::config("train", e.to_string()))?;
    }
    for arch in &p.archs {
        for &d in &p.depths {
            check_net(*arch, d, p.width, p.dtype, &train)?;
        }
    }
    Ok(CurvatureConfig {
        params: p,
        train,
        test,
    })
}

/// A batch's inputs (one example a row) and labels.
pub type Batch = (Array2<f64>, Vec<u32>);

/// A validated curvature study with its data loaded.
#[derive(Clone, Debug)]
pub struct CurvatureConfig {
    params: CurvatureParams,
    train: Examples,
    test: Examples,
}

/// One net: (arch, depth, seed).
#[derive(Clone, Debug)]
pub struct Cell {
    /// Index into the configured archs.
    pub arch: usize,
    /// Index into the configured depths.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
}

impl CurvatureConfig {
    /// The validated parameters.
    pub fn params(&self) -> &CurvatureParams {
        &self.params
    }

    /// Run every cell and summarise (see [`run_study`](crate::run_study)).
    pub fn run(&self, opts: &crate::RunOptions) -> Result<CurvatureResults> {
        crate::run_study(self, opts)
    }

    fn key(&self, c: &Cell) -> String {
        format!(
            "arch={},depth={},seed={}",
            self.params.archs[c.arch], self.params.depths[c.depth], c.seed
        )
    }

    fn phases(&self) -> Vec<String> {
        let n = if self.params.train.epochs > 0 { 2 } else { 1 };
        PHASES[..n].iter().map(|s| s.to_string()).collect()
    }

    /// The loss batch: the first `batch` training examples of a fixed shuffle.
    fn loss_batch(&self, train: &Examples) -> Batch {
        let order = epoch_batches(
            train.len(),
            train.len(),
            derive_seed(self.params.seed, "loss batch"),
        );
        train.matrix::<f64>(&order[0][..self.params.batch])
    }

    /// The net of `cell` at initialisation and the batch (inputs, labels)
    /// whose mean cross-entropy is the loss the study takes the Hessian of.
    pub fn problem(&self, cell: &Cell) -> Result<(Net, Batch)> {
        let p = &self.params;
        let arch = p.archs[cell.arch];
        let net = build_net(
            arch,
            p.depths[cell.depth],
            p.width,
            p.dtype,
            derive_seed(p.seed, &format!("net{}", cell.seed)),
            &self.train,
        )?;
        let batch = self.loss_batch(&view_for(arch, &self.train)?);
        Ok((net, batch))
    }

    /// The Hessian's statistics for `net` as it is now.
    fn measure(&self, net: &Net, batch: &Batch, seed: u64) -> Result<HessianOutput> {
        match self.params.dtype {
            Precision::F32 => self.measure_in::<f32>(net, batch, seed),
            Precision::F64 => self.measure_in::<f64>(net, batch, seed),
        }
    }

    fn measure_in<F: Real>(&self, net: &Net, (x, y): &Batch, seed: u64) -> Result<HessianOutput> {
        let p = &self.params;
        let mut c = Curvature::<F>::new(net, BnMode::Train, x.view(), y)?;
        let n = c.dim();
        let (loss, gradient) = c.loss_gradient()?;
        let mut hvp = |v: &[f64]| -> Result<Vec<f64>> { Ok(c.hvp(v)?) };
        let start: Vec<f64> = {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(derive_seed(
                seed,
                "lanczos start",
            ));
            (0..n)
                .map(|_| -> f64 {
                    rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng)
                })
                .collect()
        };
        let top = lanczos_top(
            &start,
            p.top_k.min(n),
            p.lanczos_steps.min(n),
            p.lanczos_tol,
            &mut hvp,
        )?;
        let trace = hutchinson_trace(n, p.trace_probes, derive_seed(seed, "trace"), &mut hvp)?;
        let density = spectral_density(
            n,
            p.density_probes,
            p.density_steps,
            derive_seed(seed, "density"),
            &mut hvp,
        )?;
        Ok(HessianOutput {
            loss,
            gradient_norm: gradient.iter().map(|g| g * g).sum::<f64>().sqrt(),
            top_history: top.history.iter().map(|s| s.values[0]).collect(),
            top: top.eigenvalues,
            residuals: top.residuals,
            lanczos_iterations: top.iterations,
            converged: top.converged,
            trace: trace.mean,
            trace_se: trace.std_error,
            negative_mass: density.negative_mass(),
            density_nodes: density.nodes,
            density_weights: density.weights,
        })
    }

    fn train(&self, net: &Net, cell: &Cell, key: &str, data: (&Examples, &Examples)) -> Result<()> {
        let p = &self.params;
        let train_params = TrainParams {
            seed: derive_seed(p.seed, &format!("batches{}", cell.seed)),
            ..p.train.clone()
        };
        let identity = serde_json::json!({ "key": key, "train": train_params, "width": p.width, "dtype": p.dtype, "data": p.data, "seed": p.seed, "study": NAME });
        let h = train_net(
            net,
            key,
            identity,
            &train_params,
            data,
            crate::training::RunControl {
                checkpoints: p.checkpoints.as_deref(),
                ..Default::default()
            },
        )?;
        if let Some(step) = h.diverged_at {
            return Err(StudyError::config(
                "training",
                format!("{key} diverged at step {step}; lower the learning rate"),
            ));
        }
        Ok(())
    }
}

/// Test error of `net` on `test`, BN in eval mode.
fn test_error(net: &Net, test: &Examples) -> Result<f64> {
    let (x, y) = test.matrix::<f64>(&(0..test.len()).collect::<Vec<_>>());
    let task = TestError { x: &x, y: &y };
    Ok(gradscope_engine::run(
        net,
        Options::once(BnMode::Eval),
        task,
    )?)
}

struct TestError<'a> {
    x: &'a Array2<f64>,
    y: &'a [u32],
}

impl Task for TestError<'_> {
    type Output = f64;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<f64> {
        let logits = engine.predict(self.x.mapv(T::of).view())?;
        Ok(misclassified(&logits, self.y) as f64 / self.y.len().max(1) as f64)
    }
}

impl Study for CurvatureConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = NetCurvature;
    type Results = CurvatureResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        (0..p.archs.len())
            .flat_map(|arch| {
                (0..p.depths.len())
                    .flat_map(move |depth| (0..p.seeds).map(move |seed| Cell { arch, depth, seed }))
            })
            .collect()
    }

    fn cell_key(&self, cell: &Cell) -> String {
        self.key(cell)
    }

    fn run_cell(&self, cell: &Cell) -> Result<NetCurvature> {
        let p = &self.params;
        let arch = p.archs[cell.arch];
        let key = self.key(cell);
        let (net, batch) = self.problem(cell)?;
        let (train, test) = (view_for(arch, &self.train)?, view_for(arch, &self.test)?);
        let seed = derive_seed(p.seed, &key);
        let mut phases = vec![self.measure(&net, &batch, seed)?];
        let mut error = f64::NAN;
        if p.train.epochs > 0 {
            self.train(&net, cell, &key, (&train, &test))?;
            phases.push(self.measure(&net, &batch, seed)?);
            error = test_error(&net, &test)?;
        }
        let parameters = gradscope_nets::Model::parameters(&net)
            .iter()
            .map(|(_, v)| v.elem_count())
            .sum();
        Ok(NetCurvature {
            parameters,
            phases,
            test_error: error,
        })
    }

    fn summarise(
        &self,
        outputs: Vec<NetCurvature>,
        provenance: Provenance,
    ) -> Result<CurvatureResults> {
        let p = &self.params;
        let cells = self.cells();
        let phases = self.phases();
        let mut points = Vec::new();
        let mut per_seed = Array4::from_elem(
            (p.archs.len(), p.depths.len(), phases.len(), p.seeds * 3),
            f64::NAN,
        );
        for (a, arch) in p.archs.iter().enumerate() {
            for (d, depth) in p.depths.iter().enumerate() {
                let nets: Vec<&NetCurvature> = cells
                    .iter()
                    .zip(&outputs)
                    .filter(|(c, _)| c.arch == a && c.depth == d)
                    .map(|(_, o)| o)
                    .collect();
                for (f, phase) in phases.iter().enumerate() {
                    let h: Vec<&HessianOutput> = nets.iter().map(|n| &n.phases[f]).collect();
                    for (s, o) in h.iter().enumerate() {
                        per_seed[[a, d, f, 3 * s]] = o.top[0];
                        per_seed[[a, d, f, 3 * s + 1]] = o.trace;
                        per_seed[[a, d, f, 3 * s + 2]] = o.negative_mass;
                    }
                    points.push(CurvaturePoint {
                        arch: arch.to_string(),
                        depth: *depth,
                        phase: phase.clone(),
                        parameters: nets[0].parameters,
                        loss: MeanSe::of(h.iter().map(|o| o.loss)),
                        top_eigenvalue: MeanSe::of(h.iter().map(|o| o.top[0])),
                        trace: MeanSe::of(h.iter().map(|o| o.trace)),
                        negative_mass: MeanSe::of(h.iter().map(|o| o.negative_mass)),
                        converged: h.iter().filter(|o| o.converged).count(),
                        lanczos_iterations: h
                            .iter()
                            .map(|o| o.lanczos_iterations)
                            .max()
                            .unwrap_or(0),
                    });
                }
            }
        }
        let (density_grids, density) = densities(p, &phases, &cells, &outputs);
        Ok(CurvatureResults {
            summary: CurvatureSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                phases,
                points,
                density_grids,
            },
            nets: cells.iter().map(|c| self.key(c)).zip(outputs).collect(),
            density,
            per_seed,
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

    fn cell_faults(&self, cell: &Cell, o: &NetCurvature) -> Vec<String> {
        o.phases
            .iter()
            .zip(PHASES)
            .filter(|(h, _)| !(h.loss.is_finite() && h.top.iter().all(|v| v.is_finite())))
            .map(|(_, phase)| {
                format!(
                    "{}: a Hessian statistic at {phase} is not finite",
                    self.key(cell)
                )
            })
            .collect()
    }
}

/// Each arch's spectral density per phase at the deepest depth, pooled over
/// seeds, on a grid spanning its quadrature nodes (σ = 1/40 of the span).
fn densities(
    p: &CurvatureParams,
    phases: &[String],
    cells: &[Cell],
    outputs: &[NetCurvature],
) -> (Vec<DensityGrid>, Array3<f64>) {
    let deepest = p.depths.len() - 1;
    let mut grids = Vec::new();
    let mut out = Array3::zeros((p.archs.len(), phases.len(), GRID_POINTS));
    for (a, arch) in p.archs.iter().enumerate() {
        for (f, phase) in phases.iter().enumerate() {
            let (mut nodes, mut weights) = (Vec::new(), Vec::new());
            let nets = cells
                .iter()
                .zip(outputs)
                .filter(|(c, _)| c.arch == a && c.depth == deepest);
            let mut probes = 0usize;
            for (_, o) in nets {
                let h = &o.phases[f];
                for (x, w) in h.density_nodes.iter().zip(&h.density_weights) {
                    nodes.extend_from_slice(x);
                    weights.extend_from_slice(w);
                    probes += 1;
                }
            }
            let weights: Vec<f64> = weights.iter().map(|w| w / probes.max(1) as f64).collect();
            let (lo, hi) = nodes
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            let span = (hi - lo).max(1e-6);
            let sigma = span / 40.0;
            let grid = DensityGrid {
                arch: arch.to_string(),
                phase: phase.clone(),
                lo: lo - 4.0 * sigma,
                hi: hi + 4.0 * sigma,
                sigma,
            };
            let d = gradscope_stats::broadened_density(&nodes, &weights, &grid.points(), sigma);
            for (i, v) in d.into_iter().enumerate() {
                out[[a, f, i]] = v;
            }
            grids.push(grid);
        }
    }
    (grids, out)
}

impl StudyResults for CurvatureResults {
    fn write(&self, dir: &std::path::Path) -> Result<()> {
        Ok(CurvatureResults::write(self, dir)?)
    }
}
