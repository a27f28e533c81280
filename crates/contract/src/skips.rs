//! The skips study's data: its parameters, `summary.json`, two CSV tables,
//! and the shattered-study folders of its two parts (`compare/`, the
//! variants × depths; `sweep/`, the λ sweep), which follow that study's
//! contract ([`crate::shattered`]) without the across-seed correlation matrices.

use std::path::Path;

use gradscope_spec::{Arch, BiasInit, BnMode, Precision, WeightInit};
use gradscope_stats::{Band, MeanStd};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::io::{Csv, create_dir, ensure, num, write_json};
use crate::provenance::Provenance;
use crate::shattered::{DepthSummary, ShatteredData, ShatteredResults};

/// Folder name under the data and report roots.
pub const NAME: &str = "skips";
/// Schema of `summary.json`.
pub const SCHEMA: &str = "gradscope.skips/1";

/// The variants compared by default: plain nets with BN and LN, looks-linear,
/// the residual baseline without a norm, pre- and post-activation ResNets,
/// pre-LN and post-LN, highway, scaled and gated shortcuts, Fixup, SkipInit
/// and ReZero.
pub fn default_archs() -> Vec<Arch> {
    [
        "plain",
        "plain-bn",
        "plain:norm=ln",
        "looks-linear",
        "resnet",
        "resnet-bn",
        "resnet-bn:order=post",
        "resnet:norm=ln",
        "xskip-ln",
        "highway",
        "resnet:skip=scale(0.5)",
        "resnet:skip=gate(-2)",
        "resnet:init=fixup",
        "resnet-bn:init=skipinit",
        "resnet:init=rezero",
    ]
    .iter()
    .map(|s| s.parse().expect("default archs parse"))
    .collect()
}

/// Unchecked parameters; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct SkipsParams {
    /// Variants compared (see `gradscope archs`).
    #[arg(long, value_parser = crate::args::arch_list, value_name = "LIST")]
    pub archs: ::std::vec::Vec<Arch>,
    /// Depths of the comparison.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// Hidden width W.
    #[arg(long)]
    pub width: usize,
    /// Grid points N of the scalar input.
    #[arg(long)]
    pub points: usize,
    /// Independent nets per (variant, depth).
    #[arg(long)]
    pub seeds: usize,
    /// Base seed.
    #[arg(long)]
    pub seed: u64,
    /// Precision (f64: λ^L reaches 10^±15 at λ = 2 or ½ and depth 50).
    #[arg(long)]
    pub dtype: Precision,
    /// How BN's batch statistics enter the gradient.
    #[arg(long)]
    pub bn_mode: BnMode,
    /// Weight initialisation.
    #[arg(long)]
    pub weight_init: WeightInit,
    /// Bias initialisation.
    #[arg(long)]
    pub bias_init: BiasInit,
    /// λ of the xSkip and xSkip+LN sweep (the shortcut scale).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub lambdas: Vec<f64>,
    /// λ of the rSkip+LN sweep (the number of LN recursions).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub recursions: Vec<usize>,
    /// Depth of the λ sweep.
    #[arg(long)]
    pub sweep_depth: usize,
    /// Branch scale α of the swept xSkip and xSkip+LN blocks, y = λx + α·F(x):
    /// with He init and ReLU, E‖∂y/∂x·v‖² = (λ² + 2α²)‖v‖², so α = ½ puts the
    /// edge of stability at λ = 1/√2, with vanishing below and exploding above.
    #[arg(long)]
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

impl SkipsResults {
    /// Write the study folder `dir` (created if missing) with its two
    /// shattered-study folders; every file atomically, `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
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

/// Read `summary.json` of a skips folder, checking its schema and that it
/// has a comparison row for every (variant, depth) it configures.
pub fn read_summary(dir: &Path) -> Result<SkipsSummary> {
    let path = dir.join(files::SUMMARY);
    let s: SkipsSummary = crate::io::read_summary(&path, SCHEMA, |s: &SkipsSummary| &s.schema)?;
    let c = &s.config;
    ensure(!c.archs.is_empty() && !c.depths.is_empty(), &path, || {
        "the config lists no variant or no depth".into()
    })?;
    let compare = crate::shattered::ShatteredParams {
        archs: c.archs.clone(),
        depths: c.depths.clone(),
        ..Default::default()
    };
    crate::shattered::check_rows(&s.compare, &compare, &path)?;
    Ok(s)
}

/// A skips folder read back: the summary and the comparison's arrays.
#[derive(Clone, Debug)]
pub struct SkipsData {
    /// The summary.
    pub summary: SkipsSummary,
    /// The comparison, a shattered-study folder (`compare/`).
    pub compare: ShatteredData,
}

impl SkipsData {
    /// Read a skips folder and its comparison, refusing a comparison that
    /// is not of the variants and depths the summary lists.
    pub fn read(dir: &Path) -> Result<Self> {
        let summary = read_summary(dir)?;
        let compare_dir = dir.join(files::COMPARE_DIR);
        let compare = ShatteredData::read(&compare_dir)?;
        let (c, cc) = (&summary.config, &compare.summary.config);
        ensure(
            cc.archs == c.archs && cc.depths == c.depths,
            &compare_dir,
            || "its variants or depths are not the skips summary's".into(),
        )?;
        Ok(SkipsData { summary, compare })
    }
}
