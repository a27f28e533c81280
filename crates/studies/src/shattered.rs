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
//! (weights are drawn per tensor name), so one net per (arch, seed) serves
//! every depth; with `depth_nets = independent` each depth draws its own net.
//!
//! Nets on images (`image_archs`, conv nets of He et al. 2016a by default)
//! are measured along the straight path between two images ([`images`]) and
//! over the plane spanned by three ([`plane`]).

pub mod images;
pub mod plane;
mod summarise;

use std::path::Path;

use gradscope_nets::{
    Arch, DepthNets, DrawCache, Mlp, Net, NetParams, NetSpec, Precision, derive_seed,
};
use gradscope_probe::{Pass, capture_depths, scalar_grid};
use gradscope_stats::{
    Band, Confidence, ExclusionRule, FitInput, LineFit, MeanStd, Saturation, Spectrum,
    adjacent_correlation, autocorrelation, brown_noise, correlation_matrix, spectral_slope,
    white_noise,
};

/// The decay fits leave out r₁ less than this many standard errors above 0
/// (the noise floor: not different from white noise at about 95 %), and the
/// roughness 1 − r₁ as many standard errors below 1 (saturated there).
pub const FIT_FLOOR_IN_SE: f64 = 2.0;
use ndarray::{Array3, Array4, aview1, s};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::output::{create_dir, write_atomic};
use crate::provenance::Provenance;
use crate::runner::RunOptions;
use crate::study::{GIB, Study, StudyResults, run_study};
use crate::{Result, StudyError};

pub use gradscope_contract::io::read_npy;
pub use gradscope_contract::shattered::{
    ArchFits, DepthSummary, FaultRecord, ImageArrays, ImageDepthSummary, ImageSeedRow,
    ImageSummary, NAME, NoiseReference, SCHEMA, SeedRow, ShatteredData, ShatteredParams,
    ShatteredResults, ShatteredSummary, files, seed_mean,
};

/// The net of `arch` at `depth` that a shattered run of `p` measures (seed filled in per cell).
fn net_params(p: &ShatteredParams, arch: Arch, depth: usize) -> NetParams {
    NetParams {
        arch,
        depth,
        width: p.width,
        input_dim: 1,
        output_dim: 1,
        activation: Default::default(),
        weight_init: p.weight_init,
        bias_init: p.bias_init,
        precision: p.dtype,
        seed: 0,
    }
}

impl crate::Params for ShatteredParams {
    type Config = ShatteredConfig;
    fn quick() -> Self {
        ShatteredParams::quick()
    }
    fn check(&self) -> Result<ShatteredConfig> {
        check(self)
    }
    fn infer_from_weights(&mut self, given: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let Some(path) = &self.load_weights else {
            return Ok(Vec::new());
        };
        let Some(spec) = gradscope_nets::read_spec(path)? else {
            return Ok(Vec::new());
        };
        let gradscope_nets::WeightsSpec::Mlp(net) = &spec else {
            return Err(StudyError::config(
                "load_weights",
                format!(
                    "{} holds a conv net ({}); shattered evaluates MLPs",
                    path.display(),
                    spec.arch()
                ),
            ));
        };
        let mut took = Vec::new();
        if !given("archs") {
            self.archs = vec![net.arch];
            took.push(format!("archs {}", net.arch));
        }
        if !given("depths") {
            self.depths = vec![net.depth];
            took.push(format!("depths {}", net.depth));
        }
        if !given("width") {
            self.width = net.width;
            took.push(format!("width {}", net.width));
        }
        if !given("seeds") {
            self.seeds = 1;
            took.push("seeds 1".into());
        }
        // The weights are one MLP on the scalar grid: no nets on images beside it.
        if !given("image_archs") {
            self.image_archs = Vec::new();
            took.push("image_archs (none)".into());
        }
        Ok(took)
    }
}

/// Validate `params`; the only way to a [`ShatteredConfig`].
pub fn check(params: &ShatteredParams) -> Result<ShatteredConfig> {
    let mut p = params.clone();
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
    if p.depth_nets == DepthNets::Independent
        && let Some(key) = [
            ("load_weights", p.load_weights.is_some()),
            ("save_weights", p.save_weights.is_some()),
        ]
        .into_iter()
        .find_map(|(k, on)| on.then_some(k))
    {
        return Err(StudyError::config(
            key,
            "a weights file is one (arch, seed)'s deepest net, which depth_nets = independent does not have: use depth_nets = nested",
        ));
    }
    if p.load_weights.is_some() && (p.archs.len() != 1 || p.depths.len() != 1 || p.seeds != 1) {
        return Err(StudyError::config(
            "load_weights",
            "a weights file is one net: give exactly one arch, one depth and seeds = 1",
        ));
    }
    let images = images::check(&mut p)?;
    let max_depth = *p.depths.last().expect("non-empty");
    let nets = p
        .archs
        .iter()
        .map(|&a| net_params(&p, a, max_depth).check())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let config = ShatteredConfig {
        params: p,
        nets,
        band,
        draws: None,
        images,
    };
    let need = config.memory_estimate_gib(1);
    if need > config.params.memory_limit_gib {
        return Err(StudyError::config(
            "size",
            format!(
                "the run needs about {need:.1} GiB (N × N correlation matrices and all), above the limit of {} GiB (memory_limit_gib)",
                config.params.memory_limit_gib
            ),
        ));
    }
    Ok(config)
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
    /// The two images and their nets' shapes, with `image_archs`.
    images: Option<images::ImageSetup>,
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
    /// Index into the configured archs (the image archs when `images`).
    pub arch: usize,
    /// Seed index, 0-based.
    pub seed: usize,
    /// A net on images (`image_archs`) rather than on the scalar grid.
    pub images: bool,
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
    /// RMS over the path of ‖∂f/∂x‖ (image cells; 0 on the grid).
    #[serde(default)]
    path_grad_norm: f64,
    /// The pictures over the plane of images (image cells with a plane).
    #[serde(default)]
    plane: Option<plane::PlaneResult>,
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
        let image_net = self
            .images
            .as_ref()
            .map_or(0.0, |i| i.working_bytes(&self.params) / bytes);
        threads.max(1) as f64 * per_net.max(image_net) * bytes / GIB
    }

    /// Peak memory of a run on `threads` threads, GiB: the shared draw cache
    /// ([`Self::draws_estimate_gib`]) and the cells' outputs, plus the larger
    /// of the nets in flight ([`Self::working_estimate_gib`]) and the summary
    /// with its files ([`Self::summary_estimate_gib`]).
    pub fn memory_estimate_gib(&self, threads: usize) -> f64 {
        self.draws_estimate_gib()
            + self.outputs_estimate_gib()
            + self
                .working_estimate_gib(threads)
                .max(self.summary_estimate_gib())
    }

    /// The outputs of every cell, held until the summary is made, GiB: per
    /// (arch, depth, seed) the input gradients, spectrum, ACF and the norms
    /// of every layer, in f64.
    pub fn outputs_estimate_gib(&self) -> f64 {
        let p = &self.params;
        let n = p.points;
        let layers = p.depths.iter().map(|d| d + 1).sum::<usize>();
        let per_seed = p.depths.len() * (n + n / 2 + 1 + self.max_lag() + 1) + 2 * layers;
        let images = self
            .images
            .as_ref()
            .map_or(0.0, |i| i.output_bytes(&self.params));
        ((p.archs.len() * p.seeds * per_seed * 8) as f64 + images) / GIB
    }

    /// The summary phase, GiB: the (arch, depth, seed, N) arrays in f64 and,
    /// with two seeds or more, the N × N correlation matrix of every (arch,
    /// depth) in f32, plus the larger of the f64 matrix being computed and
    /// the file's bytes as they are written (as large as the f32 matrices).
    pub fn summary_estimate_gib(&self) -> f64 {
        let p = &self.params;
        let (na, nd, n) = (p.archs.len(), p.depths.len(), p.points);
        let arrays = na * nd * p.seeds * (n + n / 2 + 1 + self.max_lag() + 1) * 8;
        let correlation = if p.seeds >= 2 {
            let stored = (na * nd * n * n * 4) as f64;
            stored + stored.max((n * n * 8) as f64)
        } else {
            0.0
        };
        // The arrays' own file bytes are written one file at a time.
        (2 * arrays) as f64 / GIB + correlation / GIB
    }

    /// The most the shared draw cache ([`ShatteredConfig::sharing_draws`])
    /// holds for this study's cells, GiB: one f64 per weight of every arch
    /// per seed (0 without a cache). Part of [`Self::memory_estimate_gib`].
    pub fn draws_estimate_gib(&self) -> f64 {
        if self.draws.is_none() {
            return 0.0;
        }
        let weights: u64 = self.nets.iter().map(|n| n.parameter_count()).sum();
        (self.params.seeds as u64 * weights * 8) as f64 / GIB
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
}

impl Study for ShatteredConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = Vec<DepthResult>;
    type Results = ShatteredResults;

    fn cells(&self) -> Vec<Cell> {
        let seeds = self.params.seeds;
        let image_archs = if self.images.is_some() {
            self.params.image_archs.len()
        } else {
            0
        };
        let on = |images: bool, archs: usize| {
            (0..archs).flat_map(move |arch| (0..seeds).map(move |seed| Cell { arch, seed, images }))
        };
        on(false, self.params.archs.len())
            .chain(on(true, image_archs))
            .collect()
    }

    fn cell_key(&self, c: &Cell) -> String {
        if c.images {
            format!(
                "images,arch={},seed={}",
                self.params.image_archs[c.arch], c.seed
            )
        } else {
            format!("arch={},seed={}", self.params.archs[c.arch], c.seed)
        }
    }

    fn memory_estimate_gib(&self, threads: usize) -> Option<f64> {
        Some(ShatteredConfig::memory_estimate_gib(self, threads))
    }

    fn cell_faults(&self, cell: &Cell, output: &Vec<DepthResult>) -> Vec<String> {
        let (arch, depths) = if cell.images {
            (
                self.params.image_archs[cell.arch].to_string(),
                &self.params.image_depths,
            )
        } else {
            (
                self.params.archs[cell.arch].to_string(),
                &self.params.depths,
            )
        };
        output
            .iter()
            .zip(depths)
            .flat_map(|(r, depth)| {
                let arch = arch.clone();
                r.faults.iter().map(move |f| {
                    format!(
                        "{arch} at depth {depth}, seed {}: {} in the {} pass, first at layer {} ({})",
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
        if cell.images {
            return self.run_image_cell(cell.arch, cell.seed);
        }
        let p = &self.params;
        let grid = scalar_grid(p.points, p.x_min, p.x_max);
        let plan = Spectrum::new(p.points)?;
        let caps = match p.depth_nets {
            DepthNets::Nested => {
                let net = self.cell_net(cell)?;
                self.save_weights(cell, &net)?;
                // One forward pass of the deepest net serves every depth.
                capture_depths(&Net::Mlp(net), grid.view(), &p.depths, p.bn_mode)?
            }
            DepthNets::Independent => {
                let mut caps = Vec::with_capacity(p.depths.len());
                for &depth in &p.depths {
                    let net = Net::Mlp(self.independent_net(cell, depth)?);
                    caps.extend(capture_depths(&net, grid.view(), &[depth], p.bn_mode)?);
                }
                caps
            }
        };
        caps.into_iter()
            .map(|cap| {
                let g = cap.input_grads.column(0).to_owned();
                // The gradient of a net whose values are not finite measures
                // nothing, even where it came out finite.
                let finite = g.iter().all(|v| v.is_finite())
                    && cap.first_forward_fault().is_none()
                    && cap.output.iter().all(|v| v.is_finite());
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
                    path_grad_norm: 0.0,
                    plane: None,
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
            Some(dir) => Ok(create_dir(dir)?),
            None => Ok(()),
        }
    }

    /// A reused cell's weights are saved as a computed cell's would be.
    fn rewrite_cell_files(&self, cell: &Cell) -> Result<()> {
        if self.params.save_weights.is_some() && !cell.images {
            self.save_weights(cell, &self.cell_net(cell)?)?;
        }
        Ok(())
    }
}

impl ShatteredConfig {
    /// The cell's net as it starts: initialised from its seed, or loaded.
    fn cell_net(&self, cell: &Cell) -> Result<Mlp> {
        let spec = self.nets[cell.arch].with_seed(self.net_seed(cell.seed));
        let net = match &self.draws {
            Some(draws) => Mlp::with_draws(&spec, draws)?,
            None => Mlp::new(&spec)?,
        };
        if let Some(path) = &self.params.load_weights {
            net.load_safetensors(path)?;
        }
        Ok(net)
    }

    /// The cell's net of `depth` drawn on its own (`depth_nets = independent`),
    /// from a seed derived from the cell's seed and the depth.
    fn independent_net(&self, cell: &Cell, depth: usize) -> Result<Mlp> {
        let p = &self.params;
        let seed = derive_seed(self.net_seed(cell.seed), &format!("depth{depth}"));
        let spec = net_params(p, p.archs[cell.arch], depth)
            .check()?
            .with_seed(seed);
        Ok(Mlp::new(&spec)?)
    }

    /// With `save_weights`: `<arch>-depth<L>-seed<s>.safetensors` there.
    fn save_weights(&self, cell: &Cell, net: &Mlp) -> Result<()> {
        let p = &self.params;
        if let Some(dir) = &p.save_weights {
            let name = format!(
                "{}-depth{}-seed{}.safetensors",
                file_stem(&p.archs[cell.arch].to_string()),
                self.nets[cell.arch].depth,
                cell.seed
            );
            write_atomic(&dir.join(name), &net.to_safetensors()?)?;
        }
        Ok(())
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

impl StudyResults for ShatteredResults {
    fn write(&self, dir: &Path) -> Result<()> {
        Ok(ShatteredResults::write(self, dir)?)
    }
}
