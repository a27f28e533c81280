//! The landscape study: for plain and residual MLPs at several depths,
//! with and without BN, the loss of a fixed batch of digits around the
//! initial weights and around the weights after a short training — 1-D
//! curves, 2-D surfaces and |λ_min/λ_max| over the plane along
//! filter-normalised directions — and the smoothness of the loss along the
//! gradient at steps of that training. A cell is one net (arch, depth, seed).

use std::path::Path;

use gradscope_engine::{Curvature, Engine, Options, Real, Task};
use gradscope_nets::{BnMode, Model, Net, Precision, derive_seed};
use gradscope_spec::ModelArch;
use gradscope_stats::MeanStd;
use gradscope_train::{Examples, TrainConfig, TrainParams, epoch_batches};
use ndarray::{Array4, Array5, Array6};
use serde::{Deserialize, Serialize};

use super::directions::filter_normalised;
use super::objective::{EngineLoss, Objective, dot};
use super::smoothness::{MeasuredRun, train_measured};
use super::surface::{Extremes, curve, eigen_grid, surface, symmetric_grid};
use crate::provenance::Provenance;
use crate::study::{Study, StudyResults};
use crate::training::{build_net, check_net, view_for};
use crate::{Result, StudyError};

pub(super) use gradscope_contract::landscape::{
    LandscapeArrays, LandscapeParams, LandscapeResults, LandscapeRow, LandscapeSummary, NAME,
    PointSummary, SCHEMA, SMOOTHNESS_COLUMNS, SmoothnessSummary,
};

/// How the curvature and the Hessian's extreme eigenvalues are obtained
/// (stated in the data).
pub fn hessian_method() -> String {
    "power iteration on exact Hessian-vector products (forward over reverse on dual numbers, gradscope_engine::Curvature), the loss with BN on the batch statistics".into()
}

impl crate::Params for LandscapeParams {
    type Config = LandscapeConfig;
    fn quick() -> Self {
        LandscapeParams::quick()
    }
    fn check(&self) -> Result<LandscapeConfig> {
        check(self)
    }
}

fn odd_in(field: &'static str, n: usize, lo: usize, hi: usize) -> Result<()> {
    if n % 2 == 1 && (lo..=hi).contains(&n) {
        Ok(())
    } else {
        Err(StudyError::config(
            field,
            format!(
                "must be odd (the grid's centre is the point itself) and in {lo}..={hi}, got {n}"
            ),
        ))
    }
}

/// Validate `params` and load the digits: the only way to a runnable study.
pub fn check(params: &LandscapeParams) -> Result<LandscapeConfig> {
    let mut p = params.clone();
    crate::validate::check_archs(&p.archs, true)?;
    crate::validate::check_depths(&mut p.depths)?;
    if let Some(&d) = p.depths.iter().find(|&&d| d > 200) {
        return Err(StudyError::config(
            "depths",
            format!("at most 200 blocks, got {d}"),
        ));
    }
    if !(1..=100).contains(&p.seeds) {
        return Err(StudyError::config(
            "seeds",
            format!("must be 1..=100, got {}", p.seeds),
        ));
    }
    odd_in("curve_points", p.curve_points, 3, 1001)?;
    odd_in("surface_points", p.surface_points, 3, 201)?;
    if p.ratio_points != 0 {
        odd_in("ratio_points", p.ratio_points, 1, 21)?;
    }
    if !(1..=500).contains(&p.ratio_iterations) {
        return Err(StudyError::config(
            "ratio_iterations",
            format!("must be 1..=500, got {}", p.ratio_iterations),
        ));
    }
    if !(p.extent.is_finite() && p.extent > 0.0 && p.extent <= 100.0) {
        return Err(StudyError::config(
            "extent",
            format!("must be in (0, 100], got {}", p.extent),
        ));
    }
    if p.step_sizes.is_empty() || p.step_sizes.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(StudyError::config(
            "step_sizes",
            format!("list positive finite step sizes, got {:?}", p.step_sizes),
        ));
    }
    if p.measure_every == 0 {
        return Err(StudyError::config("measure_every", "must be at least 1"));
    }
    if p.dtype != Precision::F64 {
        return Err(StudyError::config(
            "dtype",
            "the smoothness measures compare losses and gradients at nearby points, which need f64",
        ));
    }
    let (train, _) = crate::data::load(&gradscope_spec::DataSource::Digits)?;
    if !(2..=train.len()).contains(&p.examples) {
        return Err(StudyError::config(
            "examples",
            format!("must be 2..={}, got {}", train.len(), p.examples),
        ));
    }
    let train_config = p
        .train
        .check(train.len())
        .map_err(|e| StudyError::config("train", e.to_string()))?;
    for arch in &p.archs {
        for &depth in &p.depths {
            check_net(ModelArch::Mlp(*arch), depth, p.width, p.dtype, &train)?;
        }
    }
    let batch = epoch_batches(
        train.len(),
        p.examples,
        derive_seed(p.seed, "landscape-batch"),
    )[0]
    .clone();
    let train = train.reshaped(vec![train.shape().iter().product()])?;
    Ok(LandscapeConfig {
        params: p,
        train,
        train_config,
        batch,
    })
}

/// A validated landscape study with its data loaded.
#[derive(Clone, Debug)]
pub struct LandscapeConfig {
    params: LandscapeParams,
    /// The training digits, flattened.
    train: Examples,
    train_config: TrainConfig,
    /// The fixed batch of the curves and surfaces.
    batch: Vec<usize>,
}

/// One net: (arch, depth, seed) indices.
#[derive(Clone, Copy, Debug)]
pub struct Cell {
    arch: usize,
    depth: usize,
    seed: usize,
}

/// The landscape around one point.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointOutput {
    /// L(θ).
    pub loss: f64,
    /// L along d₁, then along d₂.
    pub curves: [Vec<f64>; 2],
    /// L over the plane, row-major (a along d₁ by rows).
    pub surface: Vec<f64>,
    /// d₁ᵀHd₁.
    pub curvature: f64,
    /// (λ_min, λ_max) over the ratio grid, row-major.
    pub extremes: Vec<Extremes>,
}

/// What one cell produces.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellOutput {
    /// Trainable parameters.
    pub parameters: usize,
    /// Around the initial weights; around the trained ones (None after a divergence).
    pub points: [Option<PointOutput>; 2],
    /// The measured training run.
    pub run: MeasuredRun,
}

impl LandscapeConfig {
    /// The validated parameters.
    pub fn params(&self) -> &LandscapeParams {
        &self.params
    }

    /// Steps before each smoothness measurement of a run that does not diverge.
    fn measured_at(&self) -> Vec<usize> {
        (0..self.train_config.total_steps())
            .step_by(self.params.measure_every)
            .collect()
    }

    /// The landscape around the parameters `engine` holds now.
    fn landscape<T: Real>(
        &self,
        engine: &mut dyn Engine<T>,
        net: &Net,
        cell: &Cell,
    ) -> Result<PointOutput> {
        let p = &self.params;
        // H·v exactly, on the loss the curves draw: the same batch, BN mode
        // and parameter order, moved to each point by `set_parameters`.
        let mut hessian = {
            let (x, y) = self.train.matrix::<f64>(&self.batch);
            Curvature::<f64>::new(net, BnMode::Full, x.view(), &y)?
        };
        let (x, y) = self.train.matrix::<T>(&self.batch);
        let mut obj = EngineLoss::new(engine, x, y, BnMode::Full)?;
        let theta = obj.origin().to_vec();
        let key = format!("directions{}", cell.seed);
        let d1 = filter_normalised(
            obj.layout(),
            &theta,
            derive_seed(p.seed, &format!("{key}a")),
        );
        let d2 = filter_normalised(
            obj.layout(),
            &theta,
            derive_seed(p.seed, &format!("{key}b")),
        );
        let loss = obj.loss(&theta)?;
        let line = symmetric_grid(p.curve_points, p.extent);
        let curves = [
            curve(&mut obj, &theta, &d1, &line)?,
            curve(&mut obj, &theta, &d2, &line)?,
        ];
        let plane = symmetric_grid(p.surface_points, p.extent);
        let surface = surface(&mut obj, &theta, (&d1, &d2), &plane, &plane)?;
        obj.restore()?;
        let mut hvp_at = |at: &[f64], v: &[f64]| -> Result<Vec<f64>> {
            hessian.set_parameters(at)?;
            Ok(hessian.hvp(v)?)
        };
        let curvature = dot(&d1, &hvp_at(&theta, &d1)?);
        let coarse = symmetric_grid(p.ratio_points, p.extent);
        let extremes = eigen_grid(
            &mut hvp_at,
            &theta,
            (&d1, &d2),
            (&coarse, &coarse),
            p.ratio_iterations,
            derive_seed(p.seed, &format!("power{}", cell.seed)),
        )?;
        Ok(PointOutput {
            loss,
            curves,
            surface: surface.into_iter().collect(),
            curvature,
            extremes: extremes.into_iter().collect(),
        })
    }
}

/// One cell's work on its net's engine.
struct CellTask<'a> {
    config: &'a LandscapeConfig,
    net: &'a Net,
    cell: Cell,
}

impl Task for CellTask<'_> {
    type Output = Result<([Option<PointOutput>; 2], MeasuredRun)>;
    fn run<T: Real>(self, engine: &mut dyn Engine<T>) -> gradscope_engine::Result<Self::Output> {
        let (c, cell, net) = (self.config, self.cell, self.net);
        Ok((|| {
            let init = c.landscape(engine, net, &cell)?;
            let train = TrainParams {
                seed: derive_seed(c.params.seed, &format!("batches{}", cell.seed)),
                ..c.params.train.clone()
            };
            let config = train
                .check(c.train.len())
                .map_err(|e| StudyError::config("train", e.to_string()))?;
            let run = train_measured(
                engine,
                &c.train,
                &config,
                c.params.measure_every,
                &c.params.step_sizes,
            )?;
            let trained = match run.diverged_at {
                None => Some(c.landscape(engine, net, &cell)?),
                Some(_) => None,
            };
            Ok(([Some(init), trained], run))
        })())
    }
}

impl Study for LandscapeConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = CellOutput;
    type Results = LandscapeResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        let mut out = Vec::new();
        for arch in 0..p.archs.len() {
            for depth in 0..p.depths.len() {
                for seed in 0..p.seeds {
                    out.push(Cell { arch, depth, seed });
                }
            }
        }
        out
    }

    fn cell_key(&self, c: &Cell) -> String {
        let p = &self.params;
        format!(
            "arch={},depth={},seed={}",
            p.archs[c.arch], p.depths[c.depth], c.seed
        )
    }

    fn run_cell(&self, cell: &Cell) -> Result<CellOutput> {
        let p = &self.params;
        let arch = ModelArch::Mlp(p.archs[cell.arch]);
        let net = build_net(
            arch,
            p.depths[cell.depth],
            p.width,
            p.dtype,
            derive_seed(p.seed, &format!("net{}", cell.seed)),
            &view_for(arch, &self.train)?,
        )?;
        let parameters = net.parameters().iter().map(|(_, v)| v.elem_count()).sum();
        let task = CellTask {
            config: self,
            net: &net,
            cell: *cell,
        };
        let (points, run) = gradscope_engine::run(&net, Options::repeated(BnMode::Train), task)??;
        Ok(CellOutput {
            parameters,
            points,
            run,
        })
    }

    fn cell_faults(&self, _cell: &Cell, out: &CellOutput) -> Vec<String> {
        match &out.points[0] {
            Some(p) if !p.loss.is_finite() => {
                vec![format!("the loss at initialisation is {}", p.loss)]
            }
            _ => Vec::new(),
        }
    }

    fn summarise(
        &self,
        outputs: Vec<CellOutput>,
        provenance: Provenance,
    ) -> Result<LandscapeResults> {
        super::summary::summarise(self, outputs, provenance)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }
}

impl StudyResults for LandscapeResults {
    fn write(&self, dir: &Path) -> Result<()> {
        Ok(LandscapeResults::write(self, dir)?)
    }
}

/// What [`super::summary`] needs of a configuration.
pub(super) struct Shape {
    pub(super) rows: Vec<(String, usize)>,
    pub(super) seeds: usize,
    pub(super) measured_at: Vec<usize>,
}

impl LandscapeConfig {
    pub(super) fn shape(&self) -> Shape {
        let p = &self.params;
        Shape {
            rows: p
                .archs
                .iter()
                .flat_map(|a| p.depths.iter().map(move |&d| (a.to_string(), d)))
                .collect(),
            seeds: p.seeds,
            measured_at: self.measured_at(),
        }
    }
}

/// Empty arrays of the configured shapes, filled with NaN.
pub(super) fn nan_arrays(p: &LandscapeParams, rows: usize, measured: usize) -> LandscapeArrays {
    let k = p.seeds;
    LandscapeArrays {
        curves: Array5::from_elem((rows, k, 2, 2, p.curve_points), f64::NAN),
        surfaces: Array5::from_elem((rows, k, 2, p.surface_points, p.surface_points), f64::NAN),
        eigenvalues: Array6::from_elem((rows, k, 2, p.ratio_points, p.ratio_points, 2), f64::NAN),
        smoothness: Array4::from_elem((rows, k, measured, SMOOTHNESS_COLUMNS.len()), f64::NAN),
    }
}

/// Mean and std over seeds.
pub(super) fn over_seeds(v: impl IntoIterator<Item = f64>) -> MeanStd {
    MeanStd::of(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_are_refused_with_their_field() {
        let ok = LandscapeParams::quick();
        assert!(check(&ok).is_ok());
        let cases: Vec<(LandscapeParams, &str)> = vec![
            (
                LandscapeParams {
                    curve_points: 20,
                    ..ok.clone()
                },
                "curve_points",
            ),
            (
                LandscapeParams {
                    surface_points: 1,
                    ..ok.clone()
                },
                "surface_points",
            ),
            (
                LandscapeParams {
                    ratio_points: 4,
                    ..ok.clone()
                },
                "ratio_points",
            ),
            (
                LandscapeParams {
                    step_sizes: vec![],
                    ..ok.clone()
                },
                "step_sizes",
            ),
            (
                LandscapeParams {
                    step_sizes: vec![0.1, -1.0],
                    ..ok.clone()
                },
                "step_sizes",
            ),
            (
                LandscapeParams {
                    extent: f64::NAN,
                    ..ok.clone()
                },
                "extent",
            ),
            (
                LandscapeParams {
                    dtype: Precision::F32,
                    ..ok.clone()
                },
                "dtype",
            ),
            (
                LandscapeParams {
                    examples: 1,
                    ..ok.clone()
                },
                "examples",
            ),
            (
                LandscapeParams {
                    measure_every: 0,
                    ..ok.clone()
                },
                "measure_every",
            ),
            (
                LandscapeParams {
                    archs: vec![],
                    ..ok.clone()
                },
                "archs",
            ),
        ];
        for (p, field) in cases {
            let e = check(&p).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        // Without a ratio grid the study still runs (no eigenvalues).
        assert!(
            check(&LandscapeParams {
                ratio_points: 0,
                ..ok
            })
            .is_ok()
        );
    }
}
