//! The landscape study's data: its parameters, `summary.json`, the CSV
//! tables and the NPY arrays of loss curves, surfaces, Hessian extremes
//! over the plane (Li et al. 2018) and smoothness along the gradient during
//! training (Santurkar et al. 2018).

use std::path::Path;

use gradscope_spec::{Arch, OptimizerParams, Precision, TrainParams};
use gradscope_stats::MeanStd;
use ndarray::{Array4, Array5, Array6};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::io::{Csv, create_dir, ensure, num, read_npy_shaped, write_json, write_npy};
use crate::provenance::Provenance;

/// Folder name under the data and report roots.
pub const NAME: &str = "landscape";
/// Layout version of `summary.json`.
pub const SCHEMA: &str = "gradscope.landscape/1";

/// The two points each landscape is drawn around.
pub const PHASES: [&str; 2] = ["init", "trained"];

/// Columns of the last axis of `smoothness.npy`.
pub const SMOOTHNESS_COLUMNS: [&str; 5] = [
    "loss",
    "grad_norm",
    "loss_variation",
    "gradient_predictiveness",
    "beta_smoothness",
];

/// Unchecked parameters; the defaults run in seconds on the embedded digits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct LandscapeParams {
    /// MLP architectures (plain vs residual, with and without BN).
    #[arg(long, value_parser = crate::args::arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<Arch>,
    /// Depths (blocks).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// Hidden width.
    #[arg(long)]
    pub width: usize,
    /// Nets per (arch, depth): seed bands of the smoothness curves.
    #[arg(long)]
    pub seeds: usize,
    /// Base seed.
    #[arg(long)]
    pub seed: u64,
    /// Training digits in the fixed batch whose mean cross-entropy the
    /// curves and surfaces show.
    #[arg(long)]
    pub examples: usize,
    /// Points of each 1-D curve on [−extent, extent].
    #[arg(long)]
    pub curve_points: usize,
    /// Points per side of each 2-D surface on [−extent, extent]².
    #[arg(long)]
    pub surface_points: usize,
    /// Half-width of the curves and surfaces, in units of the filter-normalised directions.
    #[arg(long)]
    pub extent: f64,
    /// Points per side of the |λ_min/λ_max| grid over the same plane (0: none).
    #[arg(long)]
    pub ratio_points: usize,
    /// Hessian-vector products per end of the spectrum at each grid point.
    #[arg(long)]
    pub ratio_iterations: usize,
    /// Step sizes η' of the smoothness measures along −∇L.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub step_sizes: Vec<f64>,
    /// Measure smoothness before every this many optimiser steps.
    #[arg(long)]
    pub measure_every: usize,
    /// Training recipe of the short run (a study file's `[train]` table).
    #[arg(skip)]
    pub train: TrainParams,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Precision,
}

impl Default for LandscapeParams {
    fn default() -> Self {
        LandscapeParams {
            archs: default_archs(),
            depths: vec![2, 8],
            width: 24,
            seeds: 2,
            seed: 0,
            examples: 128,
            curve_points: 31,
            surface_points: 15,
            extent: 1.0,
            ratio_points: 3,
            ratio_iterations: 6,
            step_sizes: vec![0.05, 0.1, 0.2, 0.4],
            measure_every: 4,
            train: TrainParams {
                epochs: 1,
                batch_size: 64,
                probe_points: 0,
                similarity_examples: 0,
                // Residual MLPs without BN double their variance per block
                // at He init: at 0.1 the depth-8 one diverges.
                optimizer: OptimizerParams::Sgd {
                    lr: 0.02,
                    momentum: 0.9,
                    weight_decay: 1e-4,
                    nesterov: false,
                },
                ..TrainParams::default()
            },
            dtype: Precision::F64,
        }
    }
}

/// Plain and residual MLPs, each without and with BN.
pub fn default_archs() -> Vec<Arch> {
    vec![Arch::PLAIN, Arch::PLAIN_BN, Arch::RESNET, Arch::RESNET_BN]
}

impl LandscapeParams {
    /// A small run for tests and a first look.
    pub fn quick() -> Self {
        LandscapeParams {
            depths: vec![2, 6],
            width: 16,
            examples: 96,
            curve_points: 21,
            surface_points: 11,
            ratio_iterations: 4,
            measure_every: 6,
            ..Default::default()
        }
    }
}

/// What is summarised of one landscape (over seeds).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointSummary {
    /// L(θ) of the fixed batch.
    pub loss: MeanStd,
    /// dᵀHd along the first direction (filter-normalised), from gradients.
    pub curvature: MeanStd,
    /// Mean of L − L(θ) over the 2-D surface: how fast the loss rises around θ.
    pub surface_rise: MeanStd,
    /// |λ_min/λ_max| at θ (NaN without a ratio grid).
    pub ratio_origin: MeanStd,
    /// The largest |λ_min/λ_max| over the ratio grid.
    pub ratio_max: MeanStd,
    /// λ_max at θ.
    pub lambda_max: MeanStd,
}

/// Smoothness along the gradient, each seed's mean over its measured steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SmoothnessSummary {
    /// max L − min L over η' ∈ {0} ∪ step_sizes.
    pub loss_variation: MeanStd,
    /// max ‖∇L(θ − η'g) − ∇L(θ)‖.
    pub gradient_predictiveness: MeanStd,
    /// max ‖∇L(θ − η'g) − ∇L(θ)‖ / ‖η'g‖.
    pub beta_smoothness: MeanStd,
}

/// One (arch, depth).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LandscapeRow {
    /// The arch's spec.
    pub arch: String,
    /// Blocks.
    pub depth: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Around the initial weights.
    pub init: PointSummary,
    /// Around the weights after the short training.
    pub trained: PointSummary,
    /// During training.
    pub smoothness: SmoothnessSummary,
    /// Seeds whose training diverged.
    pub diverged: usize,
}

/// What `summary.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LandscapeSummary {
    /// [`SCHEMA`].
    pub schema: String,
    /// [`NAME`].
    pub study: String,
    /// When, where and how the data were made.
    pub provenance: Provenance,
    /// The parameters.
    pub config: LandscapeParams,
    /// How BN takes its statistics in every measure: the batch's own, as a
    /// training step computes its loss (`full`), running statistics untouched.
    pub bn_mode: String,
    /// How the Hessian's extreme eigenvalues were obtained.
    pub hessian: String,
    /// Optimiser steps taken before each smoothness measurement.
    pub measured_at: Vec<usize>,
    /// Coefficients along the directions of the curves.
    pub curve_grid: Vec<f64>,
    /// Coefficients along each direction of the surfaces.
    pub surface_grid: Vec<f64>,
    /// Coefficients along each direction of the ratio grid.
    pub ratio_grid: Vec<f64>,
    /// One row per (arch, depth), archs outer.
    pub rows: Vec<LandscapeRow>,
}

/// The arrays of a landscape run (rows: (arch, depth), archs outer).
#[derive(Clone, Debug)]
pub struct LandscapeArrays {
    /// L along d₁ and d₂: rows × seeds × phases × 2 × curve_points.
    pub curves: Array5<f64>,
    /// L over the plane: rows × seeds × phases × surface_points²
    /// (row i: a = gridᵢ along d₁, column j: b = gridⱼ along d₂).
    pub surfaces: Array5<f64>,
    /// (λ_min, λ_max) over the ratio grid: rows × seeds × phases × ratio_points² × 2.
    pub eigenvalues: Array6<f64>,
    /// [`SMOOTHNESS_COLUMNS`] per measurement: rows × seeds × measurements × 5
    /// (NaN after a divergence).
    pub smoothness: Array4<f64>,
}

/// Results of a landscape run.
#[derive(Clone, Debug)]
pub struct LandscapeResults {
    /// What goes into summary.json.
    pub summary: LandscapeSummary,
    /// The arrays.
    pub arrays: LandscapeArrays,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// One row per (arch, depth).
    pub const ROWS_CSV: &str = "rows.csv";
    /// Smoothness per (arch, depth, measured step), mean and std over seeds.
    pub const SMOOTHNESS_CSV: &str = "smoothness.csv";
    /// 1-D curves.
    pub const CURVES: &str = "curves.npy";
    /// 2-D surfaces.
    pub const SURFACES: &str = "surfaces.npy";
    /// Hessian extremes over the plane.
    pub const EIGENVALUES: &str = "eigenvalues.npy";
    /// Smoothness per seed and measurement.
    pub const SMOOTHNESS: &str = "smoothness.npy";
}

/// The array shapes a summary implies.
fn shapes(s: &LandscapeSummary) -> [Vec<usize>; 4] {
    let c = &s.config;
    let (r, k) = (s.rows.len(), c.seeds);
    [
        vec![r, k, 2, 2, c.curve_points],
        vec![r, k, 2, c.surface_points, c.surface_points],
        vec![r, k, 2, c.ratio_points, c.ratio_points, 2],
        vec![r, k, s.measured_at.len(), SMOOTHNESS_COLUMNS.len()],
    ]
}

fn ms(m: &MeanStd) -> [String; 2] {
    [num(m.mean), num(m.std)]
}

impl LandscapeResults {
    /// Write the study folder `dir` (created if missing), every file
    /// atomically, `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        let a = &self.arrays;
        write_npy(&dir.join(files::CURVES), &a.curves)?;
        write_npy(&dir.join(files::SURFACES), &a.surfaces)?;
        write_npy(&dir.join(files::EIGENVALUES), &a.eigenvalues)?;
        write_npy(&dir.join(files::SMOOTHNESS), &a.smoothness)?;
        let mut header = vec!["arch", "depth", "parameters", "diverged"];
        let point = [
            "loss",
            "curvature",
            "surface_rise",
            "ratio_origin",
            "ratio_max",
            "lambda_max",
        ];
        let mut names = Vec::new();
        for phase in PHASES {
            for p in point {
                for stat in ["mean", "std"] {
                    names.push(format!("{phase}_{p}_{stat}"));
                }
            }
        }
        for p in SMOOTHNESS_COLUMNS[2..].iter() {
            for stat in ["mean", "std"] {
                names.push(format!("{p}_{stat}"));
            }
        }
        header.extend(names.iter().map(String::as_str));
        let mut c = Csv::new(&header);
        for r in &self.summary.rows {
            let mut cells = vec![
                r.arch.clone(),
                r.depth.to_string(),
                r.parameters.to_string(),
                r.diverged.to_string(),
            ];
            for p in [&r.init, &r.trained] {
                for m in [
                    &p.loss,
                    &p.curvature,
                    &p.surface_rise,
                    &p.ratio_origin,
                    &p.ratio_max,
                    &p.lambda_max,
                ] {
                    cells.extend(ms(m));
                }
            }
            let s = &r.smoothness;
            for m in [
                &s.loss_variation,
                &s.gradient_predictiveness,
                &s.beta_smoothness,
            ] {
                cells.extend(ms(m));
            }
            c.row(&cells);
        }
        c.write(&dir.join(files::ROWS_CSV))?;
        let mut header = vec!["arch".to_string(), "depth".into(), "step".into()];
        for p in SMOOTHNESS_COLUMNS {
            header.push(format!("{p}_mean"));
            header.push(format!("{p}_std"));
        }
        let mut c = Csv::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
        for (ri, r) in self.summary.rows.iter().enumerate() {
            for (mi, step) in self.summary.measured_at.iter().enumerate() {
                let mut cells = vec![r.arch.clone(), r.depth.to_string(), step.to_string()];
                for col in 0..SMOOTHNESS_COLUMNS.len() {
                    let seeds = a.smoothness.slice(ndarray::s![ri, .., mi, col]);
                    cells.extend(ms(&MeanStd::of(seeds.iter().copied())));
                }
                c.row(&cells);
            }
        }
        c.write(&dir.join(files::SMOOTHNESS_CSV))?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

/// Read `summary.json` of a landscape folder, checking its schema and that
/// it has a row for every (arch, depth) it configures, in order.
pub fn read_summary(dir: &Path) -> Result<LandscapeSummary> {
    let path = dir.join(files::SUMMARY);
    let s: LandscapeSummary =
        crate::io::read_summary(&path, SCHEMA, |s: &LandscapeSummary| &s.schema)?;
    let c = &s.config;
    let want: Vec<(String, usize)> = c
        .archs
        .iter()
        .flat_map(|a| c.depths.iter().map(move |&d| (a.to_string(), d)))
        .collect();
    let got: Vec<(String, usize)> = s.rows.iter().map(|r| (r.arch.clone(), r.depth)).collect();
    ensure(!want.is_empty() && got == want, &path, || {
        format!("rows {got:?} are not the configured (arch, depth) pairs {want:?}")
    })?;
    Ok(s)
}

/// A landscape folder read back.
#[derive(Clone, Debug)]
pub struct LandscapeData {
    /// The summary.
    pub summary: LandscapeSummary,
    /// The arrays, of the shapes the summary implies.
    pub arrays: LandscapeArrays,
}

impl LandscapeData {
    /// Read a landscape folder, refusing arrays of other shapes than the
    /// summary implies.
    pub fn read(dir: &Path) -> Result<Self> {
        let summary = read_summary(dir)?;
        let [c, s, e, m] = shapes(&summary);
        let arrays = LandscapeArrays {
            curves: read_npy_shaped(&dir.join(files::CURVES), &c)?,
            surfaces: read_npy_shaped(&dir.join(files::SURFACES), &s)?,
            eigenvalues: read_npy_shaped(&dir.join(files::EIGENVALUES), &e)?,
            smoothness: read_npy_shaped(&dir.join(files::SMOOTHNESS), &m)?,
        };
        Ok(LandscapeData { summary, arrays })
    }
}
