//! Skip connections and normalisers compared: for each variant and depth, the
//! shattering metrics of the foundation study (r₁, spectral slope, ACF of
//! df/dx on a scalar grid) and per-layer gradient norms; and a λ sweep of
//! scaled skips y = λx + F(x) (xSkip), LN(λx + F(x)) (xSkip+LN) and the
//! recursive rSkip+LN (Liu et al. 2020, "Rethinking Skip Connection with
//! Layer Normalization").
//!
//! Without a norm, the direct term of ∂h_{l+1}/∂h_l is λ, so over L blocks the
//! gradient scales like λ^L (exactly so with the branch switched off): it
//! vanishes for λ < 1 and explodes for λ > 1. LN after the sum divides by the
//! sum's scale and holds the per-block factor near 1 for every λ.
//!
//! Both parts are shattered-gradient runs ([`ShatteredConfig`]): one over
//! `archs` × `depths`, one over the swept variants at `sweep_depth`. Their
//! folders (`compare/`, `sweep/`) follow that study's data contract.

use std::path::Path;

use gradscope_nets::{Arch, BiasInit, BnMode, Precision, WeightInit};
use gradscope_stats::{Band, MeanStd};
use serde::{Deserialize, Serialize};

use crate::output::{Csv, create_dir, num, write_json};
use crate::provenance::Provenance;
use crate::runner::RunOptions;
use crate::shattered::{
    self, DepthResult, DepthSummary, ShatteredConfig, ShatteredParams, ShatteredResults,
};
use crate::study::{Study, StudyResults, run_study};
use crate::{Result, StudyError};

/// Folder name under the data and report roots.
pub const NAME: &str = "skips";
/// Schema of `summary.json`.
pub const SCHEMA: &str = "gradscope.skips/1";

/// The variants compared by default: plain nets with BN and LN, looks-linear,
/// pre- and post-activation ResNets, pre-LN and post-LN, highway, scaled and
/// gated shortcuts, Fixup and SkipInit.
pub fn default_archs() -> Vec<Arch> {
    [
        "plain",
        "plain-bn",
        "plain:norm=ln",
        "looks-linear",
        "resnet-bn",
        "resnet-bn:order=post",
        "resnet:norm=ln",
        "xskip-ln",
        "highway",
        "resnet:skip=scale(0.5)",
        "resnet:skip=gate(-2)",
        "resnet:init=fixup",
        "resnet-bn:init=skipinit",
    ]
    .iter()
    .map(|s| s.parse().expect("default archs parse"))
    .collect()
}

/// Unchecked parameters; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SkipsParams {
    /// Variants compared (see `gradscope archs`).
    pub archs: Vec<Arch>,
    /// Depths of the comparison.
    pub depths: Vec<usize>,
    /// Hidden width W.
    pub width: usize,
    /// Grid points N of the scalar input.
    pub points: usize,
    /// Independent nets per (variant, depth).
    pub seeds: usize,
    /// Base seed.
    pub seed: u64,
    /// Precision (f64: λ^L reaches 10^±15 at λ = 2 or ½ and depth 50).
    pub dtype: Precision,
    /// How BN's batch statistics enter the gradient.
    pub bn_mode: BnMode,
    /// Weight initialisation.
    pub weight_init: WeightInit,
    /// Bias initialisation.
    pub bias_init: BiasInit,
    /// λ of the xSkip and xSkip+LN sweep (the shortcut scale).
    pub lambdas: Vec<f64>,
    /// λ of the rSkip+LN sweep (the number of LN recursions).
    pub recursions: Vec<usize>,
    /// Depth of the λ sweep.
    pub sweep_depth: usize,
    /// Branch scale α of the swept xSkip and xSkip+LN blocks, y = λx + α·F(x):
    /// with He init and ReLU, E‖∂y/∂x·v‖² = (λ² + 2α²)‖v‖², so α = ½ puts the
    /// edge of stability at λ = 1/√2, with vanishing below and exploding above.
    pub sweep_alpha: f64,
}

impl Default for SkipsParams {
    fn default() -> Self {
        SkipsParams {
            archs: default_archs(),
            depths: vec![1, 4, 16, 50],
            width: 128,
            points: 256,
            seeds: 4,
            seed: 0,
            dtype: Precision::F64,
            bn_mode: BnMode::PerSample,
            weight_init: WeightInit::He,
            bias_init: BiasInit::Torch,
            lambdas: vec![0.5, 0.7, 0.9, 1.0, 1.1, 1.3, 1.5, 2.0],
            recursions: vec![1, 2, 3, 4, 6, 8],
            sweep_depth: 50,
            sweep_alpha: 0.5,
        }
    }
}

impl SkipsParams {
    /// A small run for tests and a first look.
    pub fn quick() -> Self {
        SkipsParams {
            depths: vec![1, 4, 12],
            width: 32,
            points: 128,
            seeds: 2,
            lambdas: vec![0.5, 1.0, 2.0],
            recursions: vec![1, 3],
            sweep_depth: 12,
            ..Default::default()
        }
    }

    fn shattered(&self, archs: Vec<Arch>, depths: Vec<usize>) -> ShatteredParams {
        ShatteredParams {
            archs,
            depths,
            width: self.width,
            points: self.points,
            seeds: self.seeds,
            seed: self.seed,
            dtype: self.dtype,
            bn_mode: self.bn_mode,
            weight_init: self.weight_init,
            bias_init: self.bias_init,
            ..Default::default()
        }
    }

    /// The swept variants: xskip then xskip-ln for each λ, then rskip-ln for each recursion count.
    fn sweep_archs(&self) -> Result<Vec<SweepPoint>> {
        let mut out = Vec::new();
        for family in ["xskip", "xskip-ln"] {
            for &l in &self.lambdas {
                out.push(SweepPoint {
                    family: family.into(),
                    lambda: l,
                    arch: format!("{family}:lambda={l},alpha={}", self.sweep_alpha).parse()?,
                    index: 0,
                });
            }
        }
        for &k in &self.recursions {
            out.push(SweepPoint {
                family: "rskip-ln".into(),
                lambda: k as f64,
                arch: format!("rskip-ln:lambda={k}").parse()?,
                index: 0,
            });
        }
        Ok(out)
    }

    /// Validate; the only way to a [`SkipsConfig`].
    pub fn check(&self) -> Result<SkipsConfig> {
        if self.lambdas.is_empty() || self.recursions.is_empty() {
            return Err(StudyError::config(
                "lambdas",
                "list at least one λ in `lambdas` and one in `recursions`",
            ));
        }
        if !(self.sweep_alpha.is_finite() && self.sweep_alpha >= 0.0 && self.sweep_alpha <= 10.0) {
            return Err(StudyError::config(
                "sweep_alpha",
                format!("must be in [0, 10], got {}", self.sweep_alpha),
            ));
        }
        if let Some(l) = self
            .lambdas
            .iter()
            .find(|l| !(l.is_finite() && **l > 0.0 && **l <= 10.0))
        {
            return Err(StudyError::config(
                "lambdas",
                format!("each λ must be in (0, 10], got {l}"),
            ));
        }
        for (i, l) in self.lambdas.iter().enumerate() {
            if self.lambdas[..i].contains(l) {
                return Err(StudyError::config(
                    "lambdas",
                    format!("λ = {l} is listed twice"),
                ));
            }
        }
        for (i, k) in self.recursions.iter().enumerate() {
            if self.recursions[..i].contains(k) {
                return Err(StudyError::config(
                    "recursions",
                    format!("{k} is listed twice"),
                ));
            }
        }
        let mut sweep = self.sweep_archs()?;
        // rskip-ln at λ = 1 is xskip-ln at λ = 1: one net, run once.
        let mut unique: Vec<Arch> = Vec::new();
        for a in &mut sweep {
            a.index = match unique.iter().position(|u| *u == a.arch) {
                Some(j) => j,
                None => {
                    unique.push(a.arch);
                    unique.len() - 1
                }
            };
        }
        let compare = self
            .shattered(self.archs.clone(), self.depths.clone())
            .check()?;
        let sweep_config = self
            .shattered(unique, vec![self.sweep_depth])
            .check()
            .map_err(|e| match e {
                StudyError::Config { reason, .. } => StudyError::config("sweep_depth", reason),
                e => e,
            })?;
        // Every variant of a seed draws its He weights from the same z.
        let draws = std::sync::Arc::new(gradscope_nets::DrawCache::new());
        let (compare, sweep_config) = (
            compare.sharing_draws(draws.clone()),
            sweep_config.sharing_draws(draws),
        );
        let mut params = self.clone();
        params.depths = compare.params().depths.clone();
        Ok(SkipsConfig {
            params,
            compare,
            sweep: sweep_config,
            points: sweep,
        })
    }
}

#[derive(Clone, Debug)]
struct SweepPoint {
    family: String,
    lambda: f64,
    arch: Arch,
    /// Index of the arch in the sweep's (deduplicated) run.
    index: usize,
}

/// Validated configuration of a skips run.
#[derive(Clone, Debug)]
pub struct SkipsConfig {
    params: SkipsParams,
    compare: ShatteredConfig,
    sweep: ShatteredConfig,
    points: Vec<SweepPoint>,
}

/// One unit of work: every depth of one (variant, seed) of either part.
#[derive(Clone, Debug)]
pub enum Cell {
    /// A cell of the comparison.
    Compare(shattered::Cell),
    /// A cell of the λ sweep.
    Sweep(shattered::Cell),
}

impl SkipsConfig {
    /// The validated parameters.
    pub fn params(&self) -> &SkipsParams {
        &self.params
    }

    /// Run every cell and summarise.
    pub fn run(&self, opts: &RunOptions) -> Result<SkipsResults> {
        run_study(self, opts)
    }

    /// √(λ² + 2α²) for xSkip with He init and ReLU (see [`SkipsParams::sweep_alpha`]); NaN otherwise.
    fn mean_field_growth(&self, p: &SweepPoint) -> f64 {
        let he_relu = self.params.weight_init == WeightInit::He;
        if p.family == "xskip" && he_relu {
            (p.lambda * p.lambda + 2.0 * self.params.sweep_alpha.powi(2)).sqrt()
        } else {
            f64::NAN
        }
    }

    fn part<'a>(&'a self, cell: &'a Cell) -> (&'a ShatteredConfig, &'a shattered::Cell) {
        match cell {
            Cell::Compare(c) => (&self.compare, c),
            Cell::Sweep(c) => (&self.sweep, c),
        }
    }
}

impl Study for SkipsConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = Vec<DepthResult>;
    type Results = SkipsResults;

    fn cells(&self) -> Vec<Cell> {
        let compare = self.compare.cells().into_iter().map(Cell::Compare);
        compare
            .chain(self.sweep.cells().into_iter().map(Cell::Sweep))
            .collect()
    }

    fn cell_key(&self, cell: &Cell) -> String {
        let (part, c) = self.part(cell);
        let name = if matches!(cell, Cell::Compare(_)) {
            "compare"
        } else {
            "sweep"
        };
        format!("{name}:{}", part.cell_key(c))
    }

    fn run_cell(&self, cell: &Cell) -> Result<Vec<DepthResult>> {
        let (part, c) = self.part(cell);
        part.run_cell(c)
    }

    fn cell_faults(&self, cell: &Cell, output: &Vec<DepthResult>) -> Vec<String> {
        let (part, c) = self.part(cell);
        part.cell_faults(c, output)
    }

    fn memory_estimate_gib(&self, threads: usize) -> Option<f64> {
        // Both parts' cells run in one pass and share one draw cache.
        let (c, s) = (&self.compare, &self.sweep);
        Some(
            c.working_estimate_gib(threads)
                .max(s.working_estimate_gib(threads))
                + c.draws_estimate_gib()
                + s.draws_estimate_gib(),
        )
    }

    fn summarise(
        &self,
        outputs: Vec<Vec<DepthResult>>,
        provenance: Provenance,
    ) -> Result<SkipsResults> {
        let n = self.compare.cells().len();
        let mut outputs = outputs;
        let sweep_out = outputs.split_off(n);
        let mut compare = self.compare.summarise_cells(outputs, provenance.clone())?;
        let mut sweep = self.sweep.summarise_cells(sweep_out, provenance.clone())?;
        // The comparison keeps spectra, ACFs and df/dx; the across-seed
        // correlation matrices are the shattered study's (and large).
        compare.correlation = None;
        sweep.correlation = None;
        let depth = self.params.sweep_depth;
        let rows = self
            .points
            .iter()
            .map(|p| {
                let r = &sweep.summary.results[p.index];
                let g = &r.layer_grad_norm_mean;
                let a = &r.activation_norm_mean;
                SweepRow {
                    family: p.family.clone(),
                    lambda: p.lambda,
                    arch: r.arch.clone(),
                    depth,
                    gradient_growth: r.gradient_growth,
                    log10_gradient_ratio: (g[0] / g[depth]).log10(),
                    forward_growth: (a[depth] / a[0]).powf(1.0 / depth as f64),
                    adjacent_correlation: r.adjacent_correlation,
                    spectral_slope: r.spectral_slope,
                    mean_field_growth: self.mean_field_growth(p),
                }
            })
            .collect();
        Ok(SkipsResults {
            summary: SkipsSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: self.params.clone(),
                band: self.compare.band(),
                compare: compare.summary.results.clone(),
                sweep: rows,
            },
            compare,
            sweep,
        })
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }
}

/// One swept variant at `sweep_depth`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepRow {
    /// `xskip`, `xskip-ln` or `rskip-ln`.
    pub family: String,
    /// The shortcut scale λ (xskip, xskip-ln) or the number of recursions (rskip-ln).
    pub lambda: f64,
    /// The variant's spec.
    pub arch: String,
    /// Blocks L.
    pub depth: usize,
    /// Per-block backward factor (‖∂L/∂h_0‖/‖∂L/∂h_L‖)^(1/L), over seeds.
    pub gradient_growth: MeanStd,
    /// log₁₀ ‖∂L/∂h_0‖/‖∂L/∂h_L‖ (of the seed means): > 0 explodes towards the input.
    #[serde(with = "gradscope_stats::nan")]
    pub log10_gradient_ratio: f64,
    /// Per-block forward factor (‖h_L‖/‖h_0‖)^(1/L) (of the seed means).
    #[serde(with = "gradscope_stats::nan")]
    pub forward_growth: f64,
    /// r₁ of df/dx.
    pub adjacent_correlation: MeanStd,
    /// Spectral slope of df/dx.
    pub spectral_slope: MeanStd,
    /// Mean-field per-block factor √(λ² + 2α²) (xskip with He init and ReLU; NaN otherwise).
    #[serde(with = "gradscope_stats::nan")]
    pub mean_field_growth: f64,
}

/// What `summary.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SkipsSummary {
    /// [`SCHEMA`].
    pub schema: String,
    /// [`NAME`].
    pub study: String,
    /// When, where and how the data were made.
    pub provenance: Provenance,
    /// The parameters.
    pub config: SkipsParams,
    /// Band of the spectral-slope fits.
    pub band: Band,
    /// One row per (variant, depth), as in the shattered study.
    pub compare: Vec<DepthSummary>,
    /// One row per swept variant.
    pub sweep: Vec<SweepRow>,
}

/// Results of a skips run.
#[derive(Clone, Debug)]
pub struct SkipsResults {
    /// What goes into summary.json.
    pub summary: SkipsSummary,
    /// The comparison, a shattered-study folder.
    pub compare: ShatteredResults,
    /// The λ sweep, a shattered-study folder.
    pub sweep: ShatteredResults,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// One row per (variant, depth).
    pub const COMPARE_CSV: &str = "compare.csv";
    /// One row per swept variant.
    pub const SWEEP_CSV: &str = "sweep.csv";
    /// The comparison's shattered-study folder.
    pub const COMPARE_DIR: &str = "compare";
    /// The sweep's shattered-study folder.
    pub const SWEEP_DIR: &str = "sweep";
}

impl StudyResults for SkipsResults {
    fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        self.compare.write(&dir.join(files::COMPARE_DIR))?;
        self.sweep.write(&dir.join(files::SWEEP_DIR))?;
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "r1_mean",
            "r1_std",
            "slope_mean",
            "slope_std",
            "growth_mean",
            "input_grad_norm_mean",
            "faults",
        ]);
        for r in &self.summary.compare {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.adjacent_correlation.mean),
                num(r.adjacent_correlation.std),
                num(r.spectral_slope.mean),
                num(r.spectral_slope.std),
                num(r.gradient_growth.mean),
                num(r.layer_grad_norm_mean[0]),
                r.faults.len().to_string(),
            ]);
        }
        c.write(&dir.join(files::COMPARE_CSV))?;
        let mut c = Csv::new(&[
            "family",
            "lambda",
            "arch",
            "depth",
            "growth_mean",
            "growth_std",
            "log10_gradient_ratio",
            "forward_growth",
            "mean_field_growth",
            "r1_mean",
            "slope_mean",
        ]);
        for r in &self.summary.sweep {
            c.row(&[
                r.family.clone(),
                num(r.lambda),
                r.arch.clone(),
                r.depth.to_string(),
                num(r.gradient_growth.mean),
                num(r.gradient_growth.std),
                num(r.log10_gradient_ratio),
                num(r.forward_growth),
                num(r.mean_field_growth),
                num(r.adjacent_correlation.mean),
                num(r.spectral_slope.mean),
            ]);
        }
        c.write(&dir.join(files::SWEEP_CSV))?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

/// Read `summary.json` of a skips folder, checking its schema.
pub fn read_summary(dir: &Path) -> Result<SkipsSummary> {
    crate::output::read_summary(&dir.join(files::SUMMARY), SCHEMA, |s: &SkipsSummary| {
        &s.schema
    })
}
