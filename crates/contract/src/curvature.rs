//! The curvature study's data: the Hessian of the training loss of plain and
//! residual MLPs, with and without BN, at initialisation and after a short
//! training — its top eigenvalue (Lanczos), trace (Hutchinson), negative
//! mass and spectral density (stochastic Lanczos quadrature; Ghorbani,
//! Krishnan and Xiao 2019; Yao et al. 2020) against depth.

use std::path::{Path, PathBuf};

use gradscope_spec::{Arch, DataSource, ModelArch, Precision, TrainParams};
use ndarray::{Array3, Array4};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::io::{Csv, create_dir, ensure, num, read_npy_shaped, write_json, write_npy};
use crate::provenance::Provenance;

/// Folder name under the data and report roots.
pub const NAME: &str = "curvature";
/// Layout version of `summary.json`.
pub const SCHEMA: &str = "gradscope.curvature/1";
/// Points of each spectral density's grid.
pub const GRID_POINTS: usize = 160;
/// The two points of each net's training the Hessian is measured at.
pub const PHASES: [&str; 2] = ["init", "trained"];

/// Unchecked parameters; the defaults fit `reproduce`'s budget (seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct CurvatureParams {
    /// Architectures: MLPs of the grammar (plain, resnet, plain-bn, resnet-bn, …) or conv
    /// nets (conv-plain, conv-resnet; depth 6n + 2).
    #[arg(long, value_parser = crate::args::model_arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<ModelArch>,
    /// Depths (blocks).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// MLP width.
    #[arg(long)]
    pub width: usize,
    /// Nets per arch and depth.
    #[arg(long)]
    pub seeds: usize,
    /// Base seed.
    #[arg(long)]
    pub seed: u64,
    /// Data set.
    #[arg(long, value_name = "SOURCE")]
    pub data: DataSource,
    /// Training examples whose mean cross-entropy is the loss (the first of a fixed shuffle).
    #[arg(long)]
    pub batch: usize,
    /// Training recipe of the short training (its epochs; 0 measures at initialisation only).
    #[arg(skip)]
    pub train: TrainParams,
    /// f32 or f64 (the Hessian-vector products run on dual numbers over it).
    #[arg(long)]
    pub dtype: Precision,
    /// Top eigenvalues found by Lanczos.
    #[arg(long)]
    pub top_k: usize,
    /// Most Lanczos steps (Hessian-vector products) for the top eigenvalues.
    #[arg(long)]
    pub lanczos_steps: usize,
    /// Relative residual at which a Ritz value counts as converged.
    #[arg(long)]
    pub lanczos_tol: f64,
    /// Rademacher probes of Hutchinson's trace estimator.
    #[arg(long)]
    pub trace_probes: usize,
    /// Probes of stochastic Lanczos quadrature.
    #[arg(long)]
    pub density_probes: usize,
    /// Lanczos steps per quadrature probe.
    #[arg(long)]
    pub density_steps: usize,
    /// Checkpoint folder, so interrupted training resumes.
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
}

impl Default for CurvatureParams {
    fn default() -> Self {
        CurvatureParams {
            archs: [Arch::PLAIN, Arch::RESNET, Arch::PLAIN_BN, Arch::RESNET_BN]
                .map(ModelArch::Mlp)
                .to_vec(),
            depths: vec![2, 4, 8],
            width: 16,
            seeds: 2,
            seed: 0,
            data: DataSource::Digits,
            batch: 128,
            train: TrainParams {
                epochs: 1,
                // A plain resnet of 4+ blocks diverges at the common 0.1.
                optimizer: gradscope_spec::OptimizerParams::Sgd {
                    lr: 0.02,
                    momentum: 0.9,
                    weight_decay: 1e-4,
                    nesterov: false,
                },
                probe_points: 0,
                similarity_examples: 0,
                ..TrainParams::default()
            },
            dtype: Precision::F64,
            top_k: 1,
            lanczos_steps: 20,
            lanczos_tol: 1e-3,
            trace_probes: 8,
            density_probes: 2,
            density_steps: 16,
            checkpoints: None,
        }
    }
}

impl CurvatureParams {
    /// Small sizes, for tests and a first look.
    pub fn quick() -> Self {
        CurvatureParams {
            depths: vec![2, 6],
            seeds: 2,
            batch: 64,
            lanczos_steps: 12,
            trace_probes: 4,
            density_probes: 1,
            density_steps: 10,
            ..Self::default()
        }
    }
}

/// The Hessian of one net's loss at one point of its training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HessianOutput {
    /// The loss (mean cross-entropy of the batch).
    #[serde(with = "gradscope_stats::nan")]
    pub loss: f64,
    /// ‖∇L‖.
    #[serde(with = "gradscope_stats::nan")]
    pub gradient_norm: f64,
    /// The top eigenvalues, descending (Lanczos).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub top: Vec<f64>,
    /// Each one's residual ‖Hy − θy‖.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub residuals: Vec<f64>,
    /// Lanczos steps taken.
    pub lanczos_iterations: usize,
    /// Whether every top Ritz value met the tolerance.
    pub converged: bool,
    /// The largest Ritz value after each Lanczos step.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub top_history: Vec<f64>,
    /// Hutchinson's trace estimate.
    #[serde(with = "gradscope_stats::nan")]
    pub trace: f64,
    /// Its standard error over probes.
    #[serde(with = "gradscope_stats::nan")]
    pub trace_se: f64,
    /// Σ_{λ<0}|λ| / Σ|λ| from the quadrature.
    #[serde(with = "gradscope_stats::nan")]
    pub negative_mass: f64,
    /// Quadrature nodes per probe.
    pub density_nodes: Vec<Vec<f64>>,
    /// Quadrature weights per probe.
    pub density_weights: Vec<Vec<f64>>,
}

/// What one net (arch, depth, seed) shows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetCurvature {
    /// Trainable parameters (the Hessian's dimension).
    pub parameters: usize,
    /// At initialisation, then after training (absent without training).
    pub phases: Vec<HessianOutput>,
    /// Test error after training (NaN without training).
    #[serde(with = "gradscope_stats::nan")]
    pub test_error: f64,
}

/// A mean over seeds with its standard error.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanSe {
    /// Mean over seeds.
    #[serde(with = "gradscope_stats::nan")]
    pub mean: f64,
    /// Standard error of the mean (NaN for one seed).
    #[serde(with = "gradscope_stats::nan")]
    pub se: f64,
}

impl MeanSe {
    /// Mean and s/√n of the finite values.
    pub fn of(values: impl IntoIterator<Item = f64>) -> MeanSe {
        let v: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let se = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
        } else {
            f64::NAN
        };
        MeanSe {
            mean: if v.is_empty() { f64::NAN } else { mean },
            se,
        }
    }
}

/// One arch at one depth and phase, over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvaturePoint {
    /// Architecture spec.
    pub arch: String,
    /// Blocks.
    pub depth: usize,
    /// `init` or `trained`.
    pub phase: String,
    /// Trainable parameters.
    pub parameters: usize,
    /// The loss.
    pub loss: MeanSe,
    /// λ_max.
    pub top_eigenvalue: MeanSe,
    /// tr H.
    pub trace: MeanSe,
    /// Σ_{λ<0}|λ| / Σ|λ|.
    pub negative_mass: MeanSe,
    /// Nets whose Lanczos met the tolerance, of `seeds`.
    pub converged: usize,
    /// Largest Lanczos step count over seeds.
    pub lanczos_iterations: usize,
}

/// `summary.json` of the curvature study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvatureSummary {
    /// Layout version, `gradscope.curvature/1`.
    pub schema: String,
    /// Study name, `curvature`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: CurvatureParams,
    /// Phases measured: `init`, and `trained` when the nets train.
    pub phases: Vec<String>,
    /// Per (arch, depth, phase), archs outermost, in config order.
    pub points: Vec<CurvaturePoint>,
    /// Each density's grid [lo, hi] per (arch, phase) at the deepest depth
    /// (the rows of `density.npy`), with the Gaussian width σ.
    pub density_grids: Vec<DensityGrid>,
}

/// Where one spectral density is drawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DensityGrid {
    /// Architecture spec.
    pub arch: String,
    /// `init` or `trained`.
    pub phase: String,
    /// Grid from …
    pub lo: f64,
    /// … to, in [`GRID_POINTS`] equal steps.
    pub hi: f64,
    /// The Gaussian broadening's width.
    pub sigma: f64,
}

/// Everything a run produced, before it is written.
#[derive(Clone, Debug)]
pub struct CurvatureResults {
    /// What goes into summary.json.
    pub summary: CurvatureSummary,
    /// Per-net results (cell key, output), for nets.json.
    pub nets: Vec<(String, NetCurvature)>,
    /// Spectral densities at the deepest depth, (archs, phases, [`GRID_POINTS`]).
    pub density: Array3<f64>,
    /// λ_max, trace and negative mass per net: (archs, depths, phases, seeds × 3).
    pub per_seed: Array4<f64>,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Per-net results (Lanczos histories, quadrature nodes and weights).
    pub const NETS: &str = "nets.json";
    /// λ_max, trace and negative mass per arch, depth and phase.
    pub const CURVATURE_CSV: &str = "curvature.csv";
    /// The spectral densities on their grids.
    pub const DENSITY_CSV: &str = "density.csv";
    /// The spectral densities, (archs, phases, grid points).
    pub const DENSITY_NPY: &str = "density.npy";
    /// Per-seed λ_max, trace, negative mass: (archs, depths, phases, seeds, 3).
    pub const PER_SEED_NPY: &str = "per_seed.npy";
}

impl DensityGrid {
    /// The grid's points.
    pub fn points(&self) -> Vec<f64> {
        let step = (self.hi - self.lo) / (GRID_POINTS - 1) as f64;
        (0..GRID_POINTS)
            .map(|i| self.lo + i as f64 * step)
            .collect()
    }
}

impl CurvatureResults {
    /// Write the study folder `dir` (created if missing); every file
    /// atomically, `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_json(&dir.join(files::NETS), &self.nets)?;
        let mut table = Csv::new(&[
            "arch",
            "depth",
            "phase",
            "parameters",
            "loss_mean",
            "top_eigenvalue_mean",
            "top_eigenvalue_se",
            "trace_mean",
            "trace_se",
            "negative_mass_mean",
            "negative_mass_se",
            "converged",
        ]);
        for p in &self.summary.points {
            table.row(&[
                p.arch.clone(),
                p.depth.to_string(),
                p.phase.clone(),
                p.parameters.to_string(),
                num(p.loss.mean),
                num(p.top_eigenvalue.mean),
                num(p.top_eigenvalue.se),
                num(p.trace.mean),
                num(p.trace.se),
                num(p.negative_mass.mean),
                num(p.negative_mass.se),
                p.converged.to_string(),
            ]);
        }
        table.write(&dir.join(files::CURVATURE_CSV))?;
        let mut density = Csv::new(&["arch", "phase", "eigenvalue", "density"]);
        for (g, row) in self.summary.density_grids.iter().zip(self.density.rows()) {
            for (t, d) in g.points().iter().zip(row) {
                density.row(&[g.arch.clone(), g.phase.clone(), num(*t), num(*d)]);
            }
        }
        density.write(&dir.join(files::DENSITY_CSV))?;
        write_npy(&dir.join(files::DENSITY_NPY), &self.density)?;
        write_npy(&dir.join(files::PER_SEED_NPY), &self.per_seed)?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

/// Read the summary of a study folder, refusing one whose points do not
/// cover every arch, depth and phase once.
pub fn read_summary(dir: &Path) -> Result<CurvatureSummary> {
    let path = dir.join(files::SUMMARY);
    let s: CurvatureSummary =
        crate::io::read_summary(&path, SCHEMA, |s: &CurvatureSummary| &s.schema)?;
    let c = &s.config;
    let want = c.archs.len() * c.depths.len() * s.phases.len();
    ensure(s.points.len() == want, &path, || {
        format!(
            "{} points for {} archs × {} depths × {} phases",
            s.points.len(),
            c.archs.len(),
            c.depths.len(),
            s.phases.len()
        )
    })?;
    ensure(
        s.density_grids.len() == c.archs.len() * s.phases.len(),
        &path,
        || {
            format!(
                "{} density grids for {} archs × {} phases",
                s.density_grids.len(),
                c.archs.len(),
                s.phases.len()
            )
        },
    )?;
    Ok(s)
}

/// The spectral densities of a study folder, (archs · phases, grid points),
/// in the order of the summary's `density_grids`.
pub fn read_density(dir: &Path, s: &CurvatureSummary) -> Result<ndarray::Array2<f64>> {
    let d: Array3<f64> = read_npy_shaped(
        &dir.join(files::DENSITY_NPY),
        &[s.config.archs.len(), s.phases.len(), GRID_POINTS],
    )?;
    let rows = s.density_grids.len();
    Ok(d.into_shape_with_order((rows, GRID_POINTS))
        .expect("shape checked"))
}
