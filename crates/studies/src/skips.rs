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

use gradscope_nets::{Arch, WeightInit};

use crate::provenance::Provenance;
use crate::runner::RunOptions;
use crate::shattered::{self, DepthResult, ShatteredConfig, ShatteredParams};
use crate::study::{Study, StudyResults, run_study};
use crate::{Result, StudyError};

pub use gradscope_contract::skips::{
    NAME, SCHEMA, SkipsData, SkipsParams, SkipsResults, SkipsSummary, SweepRow, default_archs,
    files, read_summary,
};

/// The shattered study of `archs` × `depths` with the skips study's sizes.
fn shattered_params(p: &SkipsParams, archs: Vec<Arch>, depths: Vec<usize>) -> ShatteredParams {
    ShatteredParams {
        archs,
        depths,
        width: p.width,
        points: p.points,
        seeds: p.seeds,
        seed: p.seed,
        dtype: p.dtype,
        bn_mode: p.bn_mode,
        weight_init: p.weight_init,
        bias_init: p.bias_init,
        image_archs: Vec::new(),
        ..Default::default()
    }
}

/// The swept variants: xskip then xskip-ln for each λ, then rskip-ln for each recursion count.
fn sweep_archs(p: &SkipsParams) -> Result<Vec<SweepPoint>> {
    let mut out = Vec::new();
    for family in ["xskip", "xskip-ln"] {
        for &l in &p.lambdas {
            out.push(SweepPoint {
                family: family.into(),
                lambda: l,
                arch: format!("{family}:lambda={l},alpha={}", p.sweep_alpha).parse()?,
                index: 0,
            });
        }
    }
    for &k in &p.recursions {
        out.push(SweepPoint {
            family: "rskip-ln".into(),
            lambda: k as f64,
            arch: format!("rskip-ln:lambda={k}").parse()?,
            index: 0,
        });
    }
    Ok(out)
}

impl crate::Params for SkipsParams {
    type Config = SkipsConfig;
    fn quick() -> Self {
        SkipsParams::quick()
    }
    fn check(&self) -> Result<SkipsConfig> {
        check(self)
    }
}

/// Validate `params`; the only way to a [`SkipsConfig`].
pub fn check(params: &SkipsParams) -> Result<SkipsConfig> {
    let p = params;
    if p.lambdas.is_empty() || p.recursions.is_empty() {
        return Err(StudyError::config(
            "lambdas",
            "list at least one λ in `lambdas` and one in `recursions`",
        ));
    }
    if !(p.sweep_alpha.is_finite() && p.sweep_alpha >= 0.0 && p.sweep_alpha <= 10.0) {
        return Err(StudyError::config(
            "sweep_alpha",
            format!("must be in [0, 10], got {}", p.sweep_alpha),
        ));
    }
    if let Some(l) = p
        .lambdas
        .iter()
        .find(|l| !(l.is_finite() && **l > 0.0 && **l <= 10.0))
    {
        return Err(StudyError::config(
            "lambdas",
            format!("each λ must be in (0, 10], got {l}"),
        ));
    }
    for (i, l) in p.lambdas.iter().enumerate() {
        if p.lambdas[..i].contains(l) {
            return Err(StudyError::config(
                "lambdas",
                format!("λ = {l} is listed twice"),
            ));
        }
    }
    for (i, k) in p.recursions.iter().enumerate() {
        if p.recursions[..i].contains(k) {
            return Err(StudyError::config(
                "recursions",
                format!("{k} is listed twice"),
            ));
        }
    }
    let mut sweep = sweep_archs(p)?;
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
    let compare = shattered::check(&shattered_params(p, p.archs.clone(), p.depths.clone()))?;
    let sweep_config = shattered::check(&shattered_params(p, unique, vec![p.sweep_depth]))
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
    let mut params = p.clone();
    params.depths = compare.params().depths.clone();
    Ok(SkipsConfig {
        params,
        compare,
        sweep: sweep_config,
        points: sweep,
    })
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

impl StudyResults for SkipsResults {
    fn write(&self, dir: &Path) -> Result<()> {
        Ok(SkipsResults::write(self, dir)?)
    }
}
