//! The shattered-gradients study (Balduzzi et al. 2017, "The Shattered
//! Gradients Problem: If resnets are the answer, then what is the question?",
//! ICML, arXiv:1702.08591).
//!
//! For each architecture, depth and seed: the input gradient g(x) = df/dx of a
//! scalar net over an evenly spaced grid, its lag-1 correlation r₁, ACF and
//! power spectrum, the per-layer gradient norms, and, over seeds, the
//! covariance of g across inputs. Feedforward nets with BN turn g into white
//! noise within ~16 layers; resnets with BN keep it brown far longer.
//!
//! A depth-L net of seed s is the first L blocks of the deepest net of seed s
//! (weights are drawn per tensor name), so one net per (arch, seed) serves every depth.

use std::path::{Path, PathBuf};

use gradscope_nets::{
    Arch, BiasInit, BnMode, DrawCache, Mlp, Net, NetParams, NetSpec, Precision, WeightInit,
    derive_seed,
};
use gradscope_probe::{Pass, capture_depths, scalar_grid};
use gradscope_stats::{
    Band, DecayComparison, LineFit, MeanStd, Spectrum, adjacent_correlation, autocorrelation,
    brown_noise, compare_decay, correlation_matrix, spectral_slope, white_noise,
};
use ndarray::{Array1, Array3, Array4, Axis, aview1, s};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::output::{Csv, create_dir, num, write_atomic, write_json, write_npy};
use crate::provenance::Provenance;
use crate::runner::RunOptions;
use crate::study::{Study, StudyResults, run_study};
use crate::{Result, StudyError};

/// Folder name under the data and report roots.
pub const NAME: &str = "shattered";
/// Version of `summary.json`'s layout.
pub const SCHEMA: &str = "gradscope.shattered/1";

/// Unchecked parameters; every field has a default (the paper's setup).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShatteredParams {
    /// Architectures (see `gradscope archs`).
    pub archs: Vec<Arch>,
    /// Depths (blocks between stem and head).
    pub depths: Vec<usize>,
    /// Hidden width W.
    pub width: usize,
    /// Grid points N.
    pub points: usize,
    /// Left end of the input grid.
    pub x_min: f64,
    /// Right end of the input grid.
    pub x_max: f64,
    /// Independent nets per (arch, depth).
    pub seeds: usize,
    /// Base seed; each net's seed is derived from it.
    pub seed: u64,
    /// f64 by default: in deep BN feedforward nets the gradient's rounding
    /// error grows with depth (×1.3 per layer for plain-bn), and at depth 50
    /// f32 moves r₁ by ~0.03 between two correct implementations.
    pub dtype: Precision,
    /// How BN's batch statistics enter the gradient.
    pub bn_mode: BnMode,
    /// Weight initialisation.
    pub weight_init: WeightInit,
    /// Bias initialisation (zero makes ReLU nets homogeneous: see [`BiasInit`]).
    pub bias_init: BiasInit,
    /// Spectral-slope band (inclusive bins); default N/64 ..= N/4.
    pub band: Option<Band>,
    /// Largest ACF lag stored; default min(32, N/4).
    pub max_lag: Option<usize>,
    /// Evaluate one net with these weights (safetensors) instead of drawing them.
    pub load_weights: Option<PathBuf>,
    /// Save each (arch, seed)'s deepest net here as safetensors.
    pub save_weights: Option<PathBuf>,
    /// Refuse runs whose estimated memory exceeds this many GiB.
    pub memory_limit_gib: f64,
}

impl Default for ShatteredParams {
    fn default() -> Self {
        ShatteredParams {
            archs: Arch::shattered_defaults(),
            depths: vec![1, 2, 4, 8, 16, 24, 32, 50],
            width: 200,
            points: 256,
            x_min: -2.0,
            x_max: 2.0,
            seeds: 8,
            seed: 0,
            dtype: Precision::F64,
            bn_mode: BnMode::PerSample,
            weight_init: WeightInit::He,
            bias_init: BiasInit::Torch,
            band: None,
            max_lag: None,
            load_weights: None,
            save_weights: None,
            memory_limit_gib: 8.0,
        }
    }
}

impl ShatteredParams {
    /// A small run for tests and a first look (seconds in debug builds).
    pub fn quick() -> Self {
        ShatteredParams {
            depths: vec![1, 2, 4, 8, 16],
            width: 48,
            points: 128,
            seeds: 4,
            ..Default::default()
        }
    }

    fn net_params(&self, arch: Arch, depth: usize) -> NetParams {
        NetParams {
            arch,
            depth,
            width: self.width,
            input_dim: 1,
            output_dim: 1,
            activation: Default::default(),
            weight_init: self.weight_init,
            bias_init: self.bias_init,
            precision: self.dtype,
            seed: 0,
        }
    }

    /// Validate; the only way to a [`ShatteredConfig`].
    pub fn check(&self) -> Result<ShatteredConfig> {
        let mut p = self.clone();
        crate::validate::check_archs(&p.archs, true)?;
        crate::validate::check_depths(&mut p.depths)?;
        if !(16..=1 << 16).contains(&p.points) {
            return Err(StudyError::config(
                "points",
                format!("must be 16..=65536, got {}", p.points),
            ));
        }
        if !(1..=10_000).contains(&p.seeds) {
            return Err(StudyError::config(
                "seeds",
                format!("must be 1..=10000, got {}", p.seeds),
            ));
        }
        if !(p.x_min.is_finite() && p.x_max.is_finite() && p.x_min < p.x_max) {
            return Err(StudyError::config(
                "x range",
                format!("need finite x_min < x_max, got {} .. {}", p.x_min, p.x_max),
            ));
        }
        let max_lag = p.max_lag.unwrap_or((p.points / 4).min(32));
        if max_lag == 0 || max_lag >= p.points {
            return Err(StudyError::config(
                "max_lag",
                format!("must be 1..{}, got {max_lag}", p.points),
            ));
        }
        p.max_lag = Some(max_lag);
        let band = p.band.unwrap_or_else(|| Band::default_for(p.points));
        band.check(p.points / 2 + 1)
            .map_err(|e| StudyError::config("band", e.to_string()))?;
        p.band = Some(band);
        if !(p.memory_limit_gib.is_finite() && p.memory_limit_gib > 0.0) {
            return Err(StudyError::config(
                "memory_limit_gib",
                format!("must be a positive number, got {}", p.memory_limit_gib),
            ));
        }
        if p.load_weights.is_some() && (p.archs.len() != 1 || p.depths.len() != 1 || p.seeds != 1) {
            return Err(StudyError::config(
                "load_weights",
                "a weights file is one net: give exactly one arch, one depth and seeds = 1",
            ));
        }
        let max_depth = *p.depths.last().expect("non-empty");
        let nets = p
            .archs
            .iter()
            .map(|&a| p.net_params(a, max_depth).check())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let config = ShatteredConfig {
            params: p,
            nets,
            band,
            draws: None,
        };
        let need = config.memory_estimate_gib(1);
        if need > config.params.memory_limit_gib {
            return Err(StudyError::config(
                "size",
                format!(
                    "one net needs about {need:.1} GiB, above the limit of {} GiB (memory_limit_gib)",
                    config.params.memory_limit_gib
                ),
            ));
        }
        Ok(config)
    }
}

/// Validated configuration of a shattered-gradients run.
#[derive(Clone, Debug)]
pub struct ShatteredConfig {
    params: ShatteredParams,
    /// One spec per arch, at the largest depth (seed filled in per cell).
    nets: Vec<NetSpec>,
    band: Band,
    /// Gaussian weight draws shared between cells, when set
    /// ([`ShatteredConfig::sharing_draws`]).
    draws: Option<std::sync::Arc<DrawCache>>,
}

impl ShatteredConfig {
    fn max_lag(&self) -> usize {
        self.params.max_lag.expect("set by check")
    }

    /// The same study with its nets' Gaussian weight draws kept in `draws`
    /// and shared between cells (bitwise the same weights): for many
    /// variants of one seed, at the memory of one draw per (seed, tensor).
    pub fn sharing_draws(mut self, draws: std::sync::Arc<DrawCache>) -> Self {
        self.draws = Some(draws);
        self
    }
}

/// One unit of work: every depth of one (arch, seed).
#[derive(Clone, Debug)]
pub struct Cell {
    /// Index into the configured archs.
    pub arch: usize,
    /// Seed index, 0-based.
    pub seed: usize,
}

/// Results of one depth of one cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DepthResult {
    #[serde(with = "gradscope_stats::nan::vec")]
    input_grads: Vec<f64>,
    #[serde(with = "gradscope_stats::nan")]
    r1: f64,
    slope: Option<LineFit>,
    #[serde(with = "gradscope_stats::nan::vec")]
    spectrum: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    acf: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    layer_grad_norms: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    activation_norms: Vec<f64>,
    faults: Vec<FaultRecord>,
}

/// NaN/inf found in a net: which pass, at which hidden state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Seed index.
    pub seed: usize,
    /// `forward` or `backward`.
    pub pass: String,
    /// Index l of the hidden state h_l.
    pub layer: usize,
    /// Name of the hidden state.
    pub name: String,
    /// True for NaN, false for ±inf.
    pub nan: bool,
}

impl ShatteredConfig {
    /// The validated parameters.
    pub fn params(&self) -> &ShatteredParams {
        &self.params
    }

    /// The band of the spectral-slope fits.
    pub fn band(&self) -> Band {
        self.band
    }

    /// Rough peak memory of `threads` nets in flight: weights and their
    /// gradients, plus the activations kept for the backward pass, GiB.
    pub fn working_estimate_gib(&self, threads: usize) -> f64 {
        let bytes = if self.params.dtype == Precision::F32 {
            4.0
        } else {
            8.0
        };
        let per_net = self
            .nets
            .iter()
            .map(|n| {
                let params = n.parameter_count() as f64;
                let layers = (n.depth * n.arch.layers_per_block() + 2) as f64;
                // ~8 saved (N × W) tensors per linear layer (pre-activation, norm
                // intermediates, probe, gradient) is a safe upper bound here.
                3.0 * params + 8.0 * layers * (self.params.points * n.width) as f64
            })
            .fold(0.0, f64::max);
        threads.max(1) as f64 * per_net * bytes / (1u64 << 30) as f64
    }

    /// Peak memory of a run on `threads` threads, GiB: the nets in flight
    /// ([`Self::working_estimate_gib`]) and the shared draw cache
    /// ([`Self::draws_estimate_gib`]).
    pub fn memory_estimate_gib(&self, threads: usize) -> f64 {
        self.working_estimate_gib(threads) + self.draws_estimate_gib()
    }

    /// The most the shared draw cache ([`ShatteredConfig::sharing_draws`])
    /// holds for this study's cells, GiB: one f64 per weight of every arch
    /// per seed (0 without a cache). Part of [`Self::memory_estimate_gib`].
    pub fn draws_estimate_gib(&self) -> f64 {
        if self.draws.is_none() {
            return 0.0;
        }
        let weights: u64 = self.nets.iter().map(|n| n.parameter_count()).sum();
        (self.params.seeds as u64 * weights * 8) as f64 / (1u64 << 30) as f64
    }

    /// The seed of the nets of seed index `s` (shared by all archs and depths:
    /// common random numbers make the comparison between archs sharper).
    pub fn net_seed(&self, s: usize) -> u64 {
        derive_seed(self.params.seed, &format!("seed{s}"))
    }

    /// Run every cell and summarise (see [`run_study`]).
    pub fn run(&self, opts: &RunOptions) -> Result<ShatteredResults> {
        run_study(self, opts)
    }

    pub(crate) fn summarise_cells(
        &self,
        results: Vec<Vec<DepthResult>>,
        provenance: Provenance,
    ) -> Result<ShatteredResults> {
        let p = &self.params;
        let cells = self.cells();
        let (na, nd, ns, n) = (p.archs.len(), p.depths.len(), p.seeds, p.points);
        let bins = n / 2 + 1;
        let mut input_gradients = Array4::<f64>::zeros((na, nd, ns, n));
        let mut power_spectra = Array4::<f64>::zeros((na, nd, ns, bins));
        let mut acfs = Array4::<f64>::zeros((na, nd, ns, self.max_lag() + 1));
        let mut by_cell: Vec<Vec<Option<DepthResult>>> = vec![vec![None; ns]; na * nd];
        for (cell, per_depth) in cells.iter().zip(results) {
            for (d, r) in per_depth.into_iter().enumerate() {
                input_gradients
                    .slice_mut(s![cell.arch, d, cell.seed, ..])
                    .assign(&aview1(&r.input_grads));
                power_spectra
                    .slice_mut(s![cell.arch, d, cell.seed, ..])
                    .assign(&aview1(&r.spectrum));
                acfs.slice_mut(s![cell.arch, d, cell.seed, ..])
                    .assign(&aview1(&r.acf));
                by_cell[cell.arch * nd + d][cell.seed] = Some(r);
            }
        }

        let mut rows = Vec::new();
        let mut per_seed = Vec::new();
        for (a, arch) in p.archs.iter().enumerate() {
            for (d, &depth) in p.depths.iter().enumerate() {
                let rs: Vec<&DepthResult> = by_cell[a * nd + d]
                    .iter()
                    .map(|r| r.as_ref().expect("every cell ran"))
                    .collect();
                let layers = rs[0].layer_grad_norms.len();
                let per_layer = |f: &dyn Fn(&DepthResult) -> &Vec<f64>| -> Vec<MeanStd> {
                    (0..layers)
                        .map(|l| MeanStd::of(rs.iter().map(|r| f(r)[l])))
                        .collect()
                };
                let grad = per_layer(&|r| &r.layer_grad_norms);
                let act = per_layer(&|r| &r.activation_norms);
                let growth = |r: &DepthResult| {
                    (r.layer_grad_norms[0] / r.layer_grad_norms[depth]).powf(1.0 / depth as f64)
                };
                for (s, r) in rs.iter().enumerate() {
                    per_seed.push(SeedRow {
                        arch: arch.to_string(),
                        depth,
                        seed: s,
                        adjacent_correlation: r.r1,
                        spectral_slope: r.slope.map_or(f64::NAN, |f| f.slope),
                        spectral_slope_r2: r.slope.map_or(f64::NAN, |f| f.r2),
                        input_grad_norm: r.layer_grad_norms[0],
                        gradient_growth: growth(r),
                    });
                }
                rows.push(DepthSummary {
                    arch: arch.to_string(),
                    depth,
                    adjacent_correlation: MeanStd::of(rs.iter().map(|r| r.r1)),
                    spectral_slope: MeanStd::of(
                        rs.iter().map(|r| r.slope.map_or(f64::NAN, |f| f.slope)),
                    ),
                    gradient_growth: MeanStd::of(rs.iter().map(|r| growth(r))),
                    layer_grad_norm_mean: grad.iter().map(|m| m.mean).collect(),
                    layer_grad_norm_std: grad.iter().map(|m| m.std).collect(),
                    activation_norm_mean: act.iter().map(|m| m.mean).collect(),
                    faults: rs.iter().flat_map(|r| r.faults.iter().cloned()).collect(),
                });
            }
        }

        let depths_f: Vec<f64> = p.depths.iter().map(|&d| d as f64).collect();
        let fits = p
            .archs
            .iter()
            .enumerate()
            .map(|(a, arch)| {
                let row = |d: usize| &rows[a * nd + d];
                let r1: Vec<f64> = (0..nd).map(|d| row(d).adjacent_correlation.mean).collect();
                let rough: Vec<f64> = r1.iter().map(|r| 1.0 - r).collect();
                let norm0: Vec<f64> = (0..nd).map(|d| row(d).layer_grad_norm_mean[0]).collect();
                ArchFits {
                    arch: arch.to_string(),
                    adjacent_correlation: compare_decay(&depths_f, &r1).ok(),
                    roughness: compare_decay(&depths_f, &rough).ok(),
                    input_grad_norm: compare_decay(&depths_f, &norm0).ok(),
                }
            })
            .collect();

        let references = noise_references(p, self.band)?;
        let correlation = if ns >= 2 {
            let mut m = Array4::<f32>::zeros((na, nd, n, n));
            for a in 0..na {
                for d in 0..nd {
                    let samples = input_gradients.slice(s![a, d, .., ..]);
                    m.slice_mut(s![a, d, .., ..])
                        .assign(&correlation_matrix(samples)?.mapv(|v| v as f32));
                }
            }
            Some(m)
        } else {
            None
        };

        Ok(ShatteredResults {
            summary: ShatteredSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                band: self.band,
                references: references.summaries,
                results: rows,
                fits,
            },
            per_seed,
            grid: scalar_grid(n, p.x_min, p.x_max).column(0).to_owned(),
            input_gradients,
            power_spectra,
            autocorrelation: acfs,
            correlation,
            noise: references.signals,
        })
    }
}

impl Study for ShatteredConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = Vec<DepthResult>;
    type Results = ShatteredResults;

    fn cells(&self) -> Vec<Cell> {
        (0..self.params.archs.len())
            .flat_map(|arch| (0..self.params.seeds).map(move |seed| Cell { arch, seed }))
            .collect()
    }

    fn cell_key(&self, c: &Cell) -> String {
        format!("arch={},seed={}", self.params.archs[c.arch], c.seed)
    }

    fn memory_estimate_gib(&self, threads: usize) -> Option<f64> {
        Some(ShatteredConfig::memory_estimate_gib(self, threads))
    }

    fn cell_faults(&self, cell: &Cell, output: &Vec<DepthResult>) -> Vec<String> {
        output
            .iter()
            .zip(&self.params.depths)
            .flat_map(|(r, depth)| {
                r.faults.iter().map(move |f| {
                    format!(
                        "{} at depth {depth}, seed {}: {} in the {} pass, first at layer {} ({})",
                        self.params.archs[cell.arch],
                        f.seed,
                        if f.nan { "NaN" } else { "inf" },
                        f.pass,
                        f.layer,
                        f.name
                    )
                })
            })
            .collect()
    }

    fn run_cell(&self, cell: &Cell) -> Result<Vec<DepthResult>> {
        let p = &self.params;
        let spec = self.nets[cell.arch].with_seed(self.net_seed(cell.seed));
        let net = match &self.draws {
            Some(draws) => Mlp::with_draws(&spec, draws)?,
            None => Mlp::new(&spec)?,
        };
        if let Some(path) = &p.load_weights {
            net.load_safetensors(path)?;
        }
        if let Some(dir) = &p.save_weights {
            let name = format!(
                "{}-depth{}-seed{}.safetensors",
                file_stem(&p.archs[cell.arch].to_string()),
                spec.depth,
                cell.seed
            );
            write_atomic(&dir.join(name), &net.to_safetensors()?)?;
        }
        let grid = scalar_grid(p.points, p.x_min, p.x_max);
        let plan = Spectrum::new(p.points)?;
        // One forward pass of the deepest net serves every depth.
        let caps = capture_depths(&Net::Mlp(net), grid.view(), &p.depths, p.bn_mode)?;
        caps.into_iter()
            .map(|cap| {
                let g = cap.input_grads.column(0).to_owned();
                let finite = g.iter().all(|v| v.is_finite());
                let (r1, slope, spectrum, acf) = if finite {
                    let spectrum = plan.power(g.view())?;
                    (
                        adjacent_correlation(g.view())?,
                        spectral_slope(spectrum.view(), self.band).ok(),
                        spectrum.to_vec(),
                        autocorrelation(g.view(), self.max_lag())?.to_vec(),
                    )
                } else {
                    (
                        f64::NAN,
                        None,
                        vec![f64::NAN; p.points / 2 + 1],
                        vec![f64::NAN; self.max_lag() + 1],
                    )
                };
                Ok(DepthResult {
                    r1,
                    slope,
                    spectrum,
                    acf,
                    layer_grad_norms: cap.layers.iter().map(|l| l.grad_norm).collect(),
                    activation_norms: cap.layers.iter().map(|l| l.activation_norm).collect(),
                    faults: cap
                        .faults
                        .iter()
                        .map(|f| FaultRecord {
                            seed: cell.seed,
                            pass: if f.pass == Pass::Forward {
                                "forward"
                            } else {
                                "backward"
                            }
                            .into(),
                            layer: f.layer,
                            name: f.name.clone(),
                            nan: f.nan,
                        })
                        .collect(),
                    input_grads: g.to_vec(),
                })
            })
            .collect()
    }

    fn summarise(
        &self,
        outputs: Vec<Vec<DepthResult>>,
        provenance: Provenance,
    ) -> Result<ShatteredResults> {
        self.summarise_cells(outputs, provenance)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }

    /// Where weights are saved and the memory limit change no cell.
    fn cell_identity(&self) -> serde_json::Value {
        let mut v = self.config_json();
        if let Some(m) = v.as_object_mut() {
            m.remove("save_weights");
            m.remove("memory_limit_gib");
        }
        v
    }

    fn prepare(&self) -> Result<()> {
        match &self.params.save_weights {
            Some(dir) => create_dir(dir),
            None => Ok(()),
        }
    }
}

/// Keep letters, digits, `.` and `-` of an arch string for a file name.
pub fn file_stem(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

struct References {
    summaries: Vec<NoiseReference>,
    /// (2, seeds, N): white then brown.
    signals: Array3<f64>,
}

fn noise_references(p: &ShatteredParams, band: Band) -> Result<References> {
    let plan = Spectrum::new(p.points)?;
    let mut signals = Array3::<f64>::zeros((2, p.seeds, p.points));
    let mut summaries = Vec::new();
    for (k, name) in ["white", "brown"].into_iter().enumerate() {
        let mut r1 = Vec::new();
        let mut slope = Vec::new();
        for s in 0..p.seeds {
            let mut rng =
                rand::rngs::StdRng::seed_from_u64(derive_seed(p.seed, &format!("{name}{s}")));
            let g = if k == 0 {
                white_noise(p.points, &mut rng)
            } else {
                brown_noise(p.points, &mut rng)
            };
            r1.push(adjacent_correlation(g.view())?);
            slope.push(spectral_slope(plan.power(g.view())?.view(), band)?.slope);
            signals.slice_mut(s![k, s, ..]).assign(&g);
        }
        summaries.push(NoiseReference {
            name: name.into(),
            adjacent_correlation: MeanStd::of(r1),
            spectral_slope: MeanStd::of(slope),
        });
    }
    Ok(References { summaries, signals })
}

/// `summary.json`: everything but the raw arrays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShatteredSummary {
    /// Layout version, `gradscope.shattered/1`.
    pub schema: String,
    /// Study name, `shattered`.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: ShatteredParams,
    /// Band of the spectral slopes.
    pub band: Band,
    /// White and brown noise through the same statistics.
    pub references: Vec<NoiseReference>,
    /// One entry per (arch, depth), archs in config order, depths ascending.
    pub results: Vec<DepthSummary>,
    /// Decay laws against depth, per arch.
    pub fits: Vec<ArchFits>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// Calibration noise through the study's statistics.
pub struct NoiseReference {
    /// `white` or `brown`.
    pub name: String,
    /// r₁ over the noise draws.
    pub adjacent_correlation: MeanStd,
    /// Spectral slope over the noise draws.
    pub spectral_slope: MeanStd,
}

/// Statistics of one (arch, depth) over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthSummary {
    /// Architecture spec.
    pub arch: String,
    /// Depth L.
    pub depth: usize,
    /// r₁ of g over the grid.
    pub adjacent_correlation: MeanStd,
    /// Log-log slope of g's power spectrum over the band.
    pub spectral_slope: MeanStd,
    /// Per-block growth of the backward gradient, (‖∂L/∂h₀‖/‖∂L/∂h_L‖)^{1/L}.
    pub gradient_growth: MeanStd,
    /// ‖∂L/∂h_l‖ for l = 0 (stem output) … L, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub layer_grad_norm_mean: Vec<f64>,
    #[serde(with = "gradscope_stats::nan::vec")]
    /// Standard deviation over seeds of ‖∂L/∂h_l‖.
    pub layer_grad_norm_std: Vec<f64>,
    /// ‖h_l‖, mean over seeds.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub activation_norm_mean: Vec<f64>,
    /// NaN/inf by seed and layer (empty when all values were finite).
    pub faults: Vec<FaultRecord>,
}

/// Decay of r₁, of the roughness 1 − r₁ and of ‖∂L/∂h₀‖ against depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchFits {
    /// Architecture spec.
    pub arch: String,
    /// Fits of r₁ against depth.
    pub adjacent_correlation: Option<DecayComparison>,
    /// Fits of 1 − r₁ against depth.
    pub roughness: Option<DecayComparison>,
    /// Fits of ‖∂L/∂h₀‖ against depth.
    pub input_grad_norm: Option<DecayComparison>,
}

/// One row of `per_seed.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedRow {
    /// Architecture spec.
    pub arch: String,
    /// Depth L.
    pub depth: usize,
    /// Seed index.
    pub seed: usize,
    /// r₁ of g over the grid.
    pub adjacent_correlation: f64,
    /// Log-log spectral slope over the band.
    pub spectral_slope: f64,
    /// R² of the slope fit.
    pub spectral_slope_r2: f64,
    /// ‖∂L/∂h₀‖.
    pub input_grad_norm: f64,
    /// (‖∂L/∂h₀‖/‖∂L/∂h_L‖)^{1/L}.
    pub gradient_growth: f64,
}

/// Everything a run produced, before it is written.
#[derive(Clone, Debug)]
pub struct ShatteredResults {
    /// What goes into summary.json.
    pub summary: ShatteredSummary,
    /// Rows of per_seed.csv.
    pub per_seed: Vec<SeedRow>,
    /// (N,)
    pub grid: Array1<f64>,
    /// (archs, depths, seeds, N)
    pub input_gradients: Array4<f64>,
    /// (archs, depths, seeds, N/2 + 1)
    pub power_spectra: Array4<f64>,
    /// (archs, depths, seeds, max_lag + 1)
    pub autocorrelation: Array4<f64>,
    /// (archs, depths, N, N) across seeds; None with a single seed.
    pub correlation: Option<Array4<f32>>,
    /// (2, seeds, N): white and brown noise.
    pub noise: Array3<f64>,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// One row per (arch, depth).
    pub const SUMMARY_CSV: &str = "summary.csv";
    /// One row per (arch, depth, seed).
    pub const PER_SEED_CSV: &str = "per_seed.csv";
    /// Per-layer gradient and activation norms.
    pub const LAYER_NORMS_CSV: &str = "layer_norms.csv";
    /// Decay-law fits.
    pub const FITS_CSV: &str = "fits.csv";
    /// The input grid, (N,).
    pub const GRID: &str = "grid.npy";
    /// df/dx, (archs, depths, seeds, N).
    pub const INPUT_GRADIENTS: &str = "input_gradients.npy";
    /// Power spectra, (archs, depths, seeds, N/2 + 1).
    pub const POWER_SPECTRA: &str = "power_spectra.npy";
    /// Autocorrelation functions, (archs, depths, seeds, max_lag + 1).
    pub const AUTOCORRELATION: &str = "autocorrelation.npy";
    /// Correlation across seeds, (archs, depths, N, N), f32.
    pub const CORRELATION: &str = "correlation_matrices.npy";
    /// Calibration noise, (2, seeds, N).
    pub const NOISE: &str = "noise.npy";
}

impl StudyResults for ShatteredResults {
    /// Write the study folder `dir` (created if missing); every file atomically,
    /// `summary.json` last, so its presence means the folder is complete.
    fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        write_npy(&dir.join(files::GRID), &self.grid)?;
        write_npy(&dir.join(files::INPUT_GRADIENTS), &self.input_gradients)?;
        write_npy(&dir.join(files::POWER_SPECTRA), &self.power_spectra)?;
        write_npy(&dir.join(files::AUTOCORRELATION), &self.autocorrelation)?;
        write_npy(&dir.join(files::NOISE), &self.noise)?;
        match &self.correlation {
            Some(c) => write_npy(&dir.join(files::CORRELATION), c)?,
            None => remove_stale(&dir.join(files::CORRELATION))?,
        }
        self.summary_csv().write(&dir.join(files::SUMMARY_CSV))?;
        self.per_seed_csv().write(&dir.join(files::PER_SEED_CSV))?;
        self.layer_norms_csv()
            .write(&dir.join(files::LAYER_NORMS_CSV))?;
        self.fits_csv().write(&dir.join(files::FITS_CSV))?;
        write_json(&dir.join(files::SUMMARY), &self.summary)
    }
}

impl ShatteredResults {
    fn summary_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "r1_mean",
            "r1_std",
            "slope_mean",
            "slope_std",
            "growth_mean",
            "input_grad_norm_mean",
            "seeds",
            "excluded",
            "faults",
        ]);
        for r in &self.summary.results {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.adjacent_correlation.mean),
                num(r.adjacent_correlation.std),
                num(r.spectral_slope.mean),
                num(r.spectral_slope.std),
                num(r.gradient_growth.mean),
                num(r.layer_grad_norm_mean[0]),
                r.adjacent_correlation.n.to_string(),
                r.adjacent_correlation.excluded.to_string(),
                r.faults.len().to_string(),
            ]);
        }
        c
    }

    fn per_seed_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "seed",
            "r1",
            "slope",
            "slope_r2",
            "input_grad_norm",
            "growth",
        ]);
        for r in &self.per_seed {
            c.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                r.seed.to_string(),
                num(r.adjacent_correlation),
                num(r.spectral_slope),
                num(r.spectral_slope_r2),
                num(r.input_grad_norm),
                num(r.gradient_growth),
            ]);
        }
        c
    }

    fn layer_norms_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch",
            "depth",
            "layer",
            "grad_norm_mean",
            "grad_norm_std",
            "activation_norm_mean",
        ]);
        for r in &self.summary.results {
            for l in 0..r.layer_grad_norm_mean.len() {
                c.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    l.to_string(),
                    num(r.layer_grad_norm_mean[l]),
                    num(r.layer_grad_norm_std[l]),
                    num(r.activation_norm_mean[l]),
                ]);
            }
        }
        c
    }

    fn fits_csv(&self) -> Csv {
        let mut c = Csv::new(&[
            "arch", "quantity", "law", "a", "rate", "r2", "used", "excluded", "better",
        ]);
        for f in &self.summary.fits {
            for (q, cmp) in [
                ("r1", &f.adjacent_correlation),
                ("roughness", &f.roughness),
                ("input_grad_norm", &f.input_grad_norm),
            ] {
                let Some(cmp) = cmp else { continue };
                for (law, fit) in [
                    ("exponential", &cmp.exponential),
                    ("power_law", &cmp.power_law),
                ] {
                    let better = serde_json::to_value(cmp.better)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default();
                    c.row(&[
                        f.arch.clone(),
                        q.into(),
                        law.into(),
                        num(fit.a),
                        num(fit.rate),
                        num(fit.r2),
                        fit.used.to_string(),
                        fit.excluded.to_string(),
                        (better == law).to_string(),
                    ]);
                }
            }
        }
        c
    }
}

fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StudyError::io(path, e)),
        _ => Ok(()),
    }
}

/// Mean over seeds of a (archs, depths, seeds, k) array, for one (arch, depth).
pub fn seed_mean(a: &Array4<f64>, arch: usize, depth: usize) -> Array1<f64> {
    a.slice(s![arch, depth, .., ..])
        .mean_axis(Axis(0))
        .expect("at least one seed")
}

/// The arrays of a study folder, read back (for reports and notebooks).
pub struct ShatteredData {
    /// The summary.
    pub summary: ShatteredSummary,
    /// The input grid, (N,).
    pub grid: Array1<f64>,
    /// df/dx, (archs, depths, seeds, N).
    pub input_gradients: Array4<f64>,
    /// Power spectra, (archs, depths, seeds, N/2 + 1).
    pub power_spectra: Array4<f64>,
    /// Autocorrelation functions, (archs, depths, seeds, max_lag + 1).
    pub autocorrelation: Array4<f64>,
    /// Correlation across seeds, (archs, depths, N, N); absent with one seed.
    pub correlation: Option<Array4<f32>>,
    /// Calibration noise, (2, seeds, N).
    pub noise: Array3<f64>,
}

impl ShatteredData {
    /// Read a study folder written by [`ShatteredResults::write`].
    pub fn read(dir: &Path) -> Result<Self> {
        let summary: ShatteredSummary = crate::output::read_summary(
            &dir.join(files::SUMMARY),
            SCHEMA,
            |s: &ShatteredSummary| &s.schema,
        )?;
        let corr_path = dir.join(files::CORRELATION);
        let data = ShatteredData {
            grid: read_npy(&dir.join(files::GRID))?,
            input_gradients: read_npy(&dir.join(files::INPUT_GRADIENTS))?,
            power_spectra: read_npy(&dir.join(files::POWER_SPECTRA))?,
            autocorrelation: read_npy(&dir.join(files::AUTOCORRELATION))?,
            correlation: if corr_path.exists() {
                Some(read_npy(&corr_path)?)
            } else {
                None
            },
            noise: read_npy(&dir.join(files::NOISE))?,
            summary,
        };
        let c = &data.summary.config;
        let want = (c.archs.len(), c.depths.len(), c.seeds, c.points);
        if data.input_gradients.dim() != want {
            return Err(StudyError::Data {
                path: dir.join(files::INPUT_GRADIENTS),
                reason: format!(
                    "shape {:?} does not match the summary's {want:?}",
                    data.input_gradients.dim()
                ),
            });
        }
        Ok(data)
    }

    /// Index of an arch in the config, by its string.
    pub fn arch_index(&self, arch: &str) -> Option<usize> {
        self.summary
            .config
            .archs
            .iter()
            .position(|a| a.to_string() == arch)
    }

    /// Position of `depth` in the configured depths.
    pub fn depth_index(&self, depth: usize) -> Option<usize> {
        self.summary.config.depths.iter().position(|&d| d == depth)
    }

    /// The summary of (arch, depth), if it was run.
    pub fn result(&self, arch: &str, depth: usize) -> Option<&DepthSummary> {
        self.summary
            .results
            .iter()
            .find(|r| r.arch == arch && r.depth == depth)
    }
}

/// Read an NPY file, naming it in the error.
pub fn read_npy<T: ndarray_npy::ReadableElement, D: ndarray::Dimension>(
    path: &Path,
) -> Result<ndarray::Array<T, D>> {
    let f = std::fs::File::open(path).map_err(|e| StudyError::io(path, e))?;
    ndarray_npy::ReadNpyExt::read_npy(f).map_err(|e: ndarray_npy::ReadNpyError| StudyError::Data {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
