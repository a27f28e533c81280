//! Gradient norms through depth: vanishing and exploding gradients, and why.
//!
//! Four parts, each a set of cells:
//! - **layers**: per-layer ‖∂L/∂h_l‖, ‖∂L/∂W_l‖, ‖∂L/∂b_l‖ of plain and residual
//!   MLPs (with and without BN) on a batch of Gaussian inputs, for each
//!   activation and initialisation, over seeds; the measured per-layer
//!   backward ratio ‖∂L/∂h_{l−1}‖/‖∂L/∂h_l‖ beside the mean-field prediction
//!   √χ₁, χ₁ = σ_w²·E[φ'(z)²], z ~ N(0, q_l), q_l the measured pre-activation
//!   variance (Poole et al. 2016; Schoenholz et al. 2017). ReLU with He init:
//!   χ₁ = 1. A residual block without BN adds its branch's gradient to the
//!   identity's: for a two-layer ReLU branch with He init the squared norm
//!   doubles per block (ratio √2; Var ~ 2^L).
//! - **chain**: the scalar chain F = w_L⋯w_1·x, dF/dw₁ = ∏_{l≥2} w_l·x
//!   (= w^{L−1} for equal weights), by autograd against the closed form:
//!   vanishing for w ≤ 0.8, exploding for w ≥ 1.2.
//! - **phase**: log₁₀(‖∂L/∂h₀‖/‖∂L/∂h_L‖) over σ_w² × L, plain vs residual,
//!   with the critical σ_w² (χ₁ = 1) marked.
//! - **jacobian**: singular values of the input–output Jacobian ∂h_L/∂h₀ of a
//!   width-W chain (dynamical isometry, Saxe et al. 2014; Pennington et al.
//!   2017): Gaussian vs orthogonal weights at the critical σ_w², linear vs
//!   ReLU vs tanh, plain vs residual, at several depths; mean and variance of
//!   σ² against depth.
//! - **images** (with `image_archs`, beside the parts): per-block ‖∂L/∂h_l‖
//!   and per-layer ‖∂L/∂W‖ of conv nets of He et al. 2016a (plain and
//!   residual, BN) at initialisation, for the cross-entropy of a batch of real
//!   images, and the per-block growth towards the input ([`images`]).
//!
//! NaN or ±inf (e.g. f32 overflow) are recorded with the layer where they
//! first appear; `dtype = "f64"` reruns the same nets without them.

mod cells;
pub mod images;
mod memory;
mod summary;

use gradscope_nets::{Activation, Arch, DrawCache, NetParams, WeightInit, derive_seed};
use serde::{Deserialize, Serialize};

use crate::provenance::Provenance;
use crate::runner::RunOptions;
use crate::study::{Study, StudyResults, run_study};
use crate::{Result, StudyError};

/// The Jacobian spectra's singular values, computed in `gradscope_stats`.
pub use gradscope_stats::singular_values;

pub use gradscope_contract::norms::{
    ChainSummary, FaultRow, GrowthFit, ImageDepthSummary, ImageSummary, JacobianInit, JacobianRow,
    LayerStat, LayerSummary, NAME, NormsParams, NormsResults, NormsSummary, PARTS, PhaseRow,
    SCHEMA, critical_sigma_w2, files, read_summary,
};

impl crate::Params for NormsParams {
    type Config = NormsConfig;
    fn quick() -> Self {
        NormsParams::quick()
    }
    fn check(&self) -> Result<NormsConfig> {
        check(self)
    }
}

/// Validate `params`: the only way to a runnable study.
pub fn check(params: &NormsParams) -> Result<NormsConfig> {
    let mut p = params.clone();
    if p.parts.is_empty() {
        return Err(StudyError::config(
            "parts",
            format!("list at least one of {}", PARTS.join(", ")),
        ));
    }
    if let Some(bad) = p.parts.iter().find(|x| !PARTS.contains(&x.as_str())) {
        return Err(StudyError::config(
            "parts",
            format!("unknown part {bad:?} (known: {})", PARTS.join(", ")),
        ));
    }
    crate::validate::check_archs(&p.archs, true)?;
    let nonempty = |name: &'static str, n: usize| {
        if n == 0 {
            Err(StudyError::config(name, "list at least one value"))
        } else {
            Ok(())
        }
    };
    nonempty("activations", p.activations.len())?;
    nonempty("inits", p.inits.len())?;
    nonempty("chain_weights", p.chain_weights.len())?;
    nonempty("phase_sigma_w2", p.phase_sigma_w2.len())?;
    nonempty("phase_activations", p.phase_activations.len())?;
    nonempty("jacobian_activations", p.jacobian_activations.len())?;
    crate::validate::check_depths(&mut p.jacobian_depths)?;
    let range = |name: &'static str, v: usize, lo: usize, hi: usize| {
        if (lo..=hi).contains(&v) {
            Ok(())
        } else {
            Err(StudyError::config(
                name,
                format!("must be {lo}..={hi}, got {v}"),
            ))
        }
    };
    match p.input.as_str() {
        "gaussian" => {}
        "grid" if p.input_dim == 1 => {}
        "grid" => {
            return Err(StudyError::config(
                "input",
                "a grid input is scalar: set input_dim = 1",
            ));
        }
        other => {
            return Err(StudyError::config(
                "input",
                format!("unknown input {other:?} (known: gaussian, grid)"),
            ));
        }
    }
    range("depth", p.depth, 1, 500)?;
    range("batch", p.batch, 2, 8192)?;
    range("input_dim", p.input_dim, 1, 65536)?;
    range("seeds", p.seeds, 1, 1000)?;
    range("chain_depth", p.chain_depth, 1, 1000)?;
    range("jacobian_width", p.jacobian_width, 2, 1024)?;
    range(
        "jacobian depth",
        *p.jacobian_depths.last().unwrap(),
        1,
        1000,
    )?;
    for &w in &p.chain_weights {
        if !(w.is_finite() && w != 0.0) {
            return Err(StudyError::config(
                "chain_weights",
                format!("must be finite and non-zero, got {w}"),
            ));
        }
    }
    for &s in &p.phase_sigma_w2 {
        if !(s.is_finite() && s > 0.0) {
            return Err(StudyError::config(
                "phase_sigma_w2",
                format!("must be positive numbers, got {s}"),
            ));
        }
    }
    p.phase_sigma_w2.sort_by(f64::total_cmp);
    p.phase_sigma_w2.dedup();
    for init in &p.inits {
        net_params(&p, Arch::PLAIN, Activation::Relu, *init).check()?;
    }
    for arch in &p.archs {
        net_params(&p, *arch, Activation::Relu, WeightInit::He).check()?;
    }
    if !(p.memory_limit_gib.is_finite() && p.memory_limit_gib > 0.0) {
        return Err(StudyError::config(
            "memory_limit_gib",
            format!("must be a positive number, got {}", p.memory_limit_gib),
        ));
    }
    let images = images::check(&mut p)?;
    let config = NormsConfig {
        params: p,
        draws: Default::default(),
        images,
    };
    // Refused before anything is allocated.
    let need = config.memory_estimate_gib(1);
    if need > config.params.memory_limit_gib {
        return Err(StudyError::config(
            "size",
            format!(
                "the run needs about {need:.1} GiB (weight draws of every seed and one net), above the limit of {} GiB (memory_limit_gib)",
                config.params.memory_limit_gib
            ),
        ));
    }
    Ok(config)
}

/// The net of the layers and phase parts for `arch`, `activation` and `weight_init`.
fn net_params(
    p: &NormsParams,
    arch: Arch,
    activation: Activation,
    weight_init: WeightInit,
) -> NetParams {
    NetParams {
        arch,
        depth: p.depth,
        width: p.width,
        input_dim: p.input_dim,
        output_dim: 1,
        activation,
        weight_init,
        bias_init: p.bias_init,
        precision: p.dtype,
        seed: 0,
    }
}

/// A validated norms study.
#[derive(Clone, Debug)]
pub struct NormsConfig {
    params: NormsParams,
    /// The Gaussian weight draws per (seed, tensor), shared by the cells: the
    /// nets of one seed differ in activation and init scale (layers) or σ_w²
    /// (phase), and drawing was a fifth of building and running each.
    draws: std::sync::Arc<DrawCache>,
    /// Each seed's batch of images and the nets' shapes, with `image_archs`.
    images: Option<images::ImageSetup>,
}

/// One unit of work.
#[derive(Clone, Debug)]
pub enum Cell {
    /// One net of the layers part.
    Layers {
        /// Index into archs.
        arch: usize,
        /// Index into activations.
        activation: usize,
        /// Index into inits.
        init: usize,
        /// Seed index.
        seed: usize,
    },
    /// The scalar chains (cheap: one cell).
    Chain,
    /// One net of the phase diagram.
    Phase {
        /// 0: plain, 1: residual (no BN).
        residual: bool,
        /// Index into phase_activations.
        activation: usize,
        /// Index into phase_sigma_w2.
        sigma: usize,
        /// Seed index.
        seed: usize,
    },
    /// One Jacobian chain.
    Jacobian {
        /// Plain or residual.
        residual: bool,
        /// Index into jacobian_activations.
        activation: usize,
        /// Gaussian or orthogonal.
        init: JacobianInit,
        /// Seed index.
        seed: usize,
    },
    /// One net on images.
    Images {
        /// Index into image_archs.
        arch: usize,
        /// Index into image_depths.
        depth: usize,
        /// Seed index.
        seed: usize,
    },
}

/// What a cell produces. Externally tagged (serde's default): the cell
/// store's binary format cannot read an internally tagged enum back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CellOutput {
    /// Per-layer norms of one net.
    Layers {
        /// ‖∂L/∂h_l‖, l = 0 … L.
        #[serde(with = "gradscope_stats::nan::vec")]
        grad: Vec<f64>,
        /// mean(h_l²), l = 0 … L.
        #[serde(with = "gradscope_stats::nan::vec")]
        second_moment: Vec<f64>,
        /// (name, ‖∂L/∂θ‖) of every weight matrix, input to output.
        weight_grads: Vec<(String, f64)>,
        /// (name, ‖∂L/∂θ‖) of every bias vector.
        bias_grads: Vec<(String, f64)>,
        /// First NaN/inf: (pass, layer, name, nan).
        fault: Option<(String, usize, String, bool)>,
    },
    /// |dF/dw₁| by autograd for every weight and length 1 … chain_depth.
    Chain {
        /// One row per weight.
        autograd: Vec<Vec<f64>>,
    },
    /// ‖∂L/∂h_l‖, l = 0 … L, of one phase net.
    Phase {
        /// ‖∂L/∂h_l‖.
        #[serde(with = "gradscope_stats::nan::vec")]
        grad: Vec<f64>,
    },
    /// Singular values of ∂h_L/∂h₀ at each Jacobian depth.
    Jacobian {
        /// One list per depth, descending.
        singular_values: Vec<Vec<f64>>,
    },
    /// Per-block and per-layer norms of one net on images.
    Images {
        /// The mean cross-entropy.
        #[serde(with = "gradscope_stats::nan")]
        loss: f64,
        /// ‖∂L/∂h_l‖, l = 0 … blocks.
        #[serde(with = "gradscope_stats::nan::vec")]
        grad: Vec<f64>,
        /// (name, block, ‖∂L/∂W‖) of every weighted layer.
        weights: Vec<(String, usize, f64)>,
        /// First NaN/inf: (pass, layer, name, nan).
        fault: Option<(String, usize, String, bool)>,
    },
}

impl NormsConfig {
    /// The validated parameters.
    pub fn params(&self) -> &NormsParams {
        &self.params
    }

    /// Run every cell and summarise (see [`run_study`]).
    pub fn run(&self, opts: &RunOptions) -> Result<NormsResults> {
        run_study(self, opts)
    }

    fn net_seed(&self, part: &str, s: usize) -> u64 {
        derive_seed(self.params.seed, &format!("{part}-seed{s}"))
    }
}

impl Study for NormsConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = CellOutput;
    type Results = NormsResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        let on = |part: &str| p.parts.iter().any(|x| x == part);
        let mut c = vec![];
        if on("chain") {
            c.push(Cell::Chain);
        }
        for arch in (0..p.archs.len()).filter(|_| on("layers")) {
            for activation in 0..p.activations.len() {
                for init in 0..p.inits.len() {
                    for seed in 0..p.seeds {
                        c.push(Cell::Layers {
                            arch,
                            activation,
                            init,
                            seed,
                        });
                    }
                }
            }
        }
        for residual in [false, true] {
            for activation in (0..p.phase_activations.len()).filter(|_| on("phase")) {
                for sigma in 0..p.phase_sigma_w2.len() {
                    for seed in 0..p.seeds.min(4) {
                        c.push(Cell::Phase {
                            residual,
                            activation,
                            sigma,
                            seed,
                        });
                    }
                }
            }
            for activation in (0..p.jacobian_activations.len()).filter(|_| on("jacobian")) {
                for init in [JacobianInit::Gaussian, JacobianInit::Orthogonal] {
                    for seed in 0..p.seeds.min(4) {
                        c.push(Cell::Jacobian {
                            residual,
                            activation,
                            init,
                            seed,
                        });
                    }
                }
            }
        }
        if self.images.is_some() {
            for arch in 0..p.image_archs.len() {
                for depth in 0..p.image_depths.len() {
                    for seed in 0..p.seeds {
                        c.push(Cell::Images { arch, depth, seed });
                    }
                }
            }
        }
        c
    }

    fn cell_key(&self, c: &Cell) -> String {
        let p = &self.params;
        match *c {
            Cell::Layers {
                arch,
                activation,
                init,
                seed,
            } => format!(
                "layers,arch={},act={},init={},seed={seed}",
                p.archs[arch], p.activations[activation], p.inits[init]
            ),
            Cell::Chain => "chain".into(),
            Cell::Phase {
                residual,
                activation,
                sigma,
                seed,
            } => format!(
                "phase,residual={residual},act={},sigma_w2={},seed={seed}",
                p.phase_activations[activation], p.phase_sigma_w2[sigma]
            ),
            Cell::Jacobian {
                residual,
                activation,
                init,
                seed,
            } => format!(
                "jacobian,residual={residual},act={},init={init:?},seed={seed}",
                p.jacobian_activations[activation]
            ),
            Cell::Images { arch, depth, seed } => format!(
                "images,arch={},depth={},seed={seed}",
                p.image_archs[arch], p.image_depths[depth]
            ),
        }
    }

    fn run_cell(&self, c: &Cell) -> Result<CellOutput> {
        let p = &self.params;
        match *c {
            Cell::Layers {
                arch,
                activation,
                init,
                seed,
            } => self.layers_cell(
                p.archs[arch],
                p.activations[activation],
                p.inits[init],
                seed,
            ),
            Cell::Chain => self.chain_cell(),
            Cell::Phase {
                residual,
                activation,
                sigma,
                seed,
            } => self.phase_cell(
                residual,
                p.phase_activations[activation],
                p.phase_sigma_w2[sigma],
                seed,
            ),
            Cell::Jacobian {
                residual,
                activation,
                init,
                seed,
            } => self.jacobian_cell(residual, p.jacobian_activations[activation], init, seed),
            Cell::Images { arch, depth, seed } => {
                self.image_cell(p.image_archs[arch], p.image_depths[depth], seed)
            }
        }
    }

    fn cell_faults(&self, c: &Cell, out: &CellOutput) -> Vec<String> {
        match out {
            CellOutput::Layers {
                fault: Some((pass, layer, name, nan)),
                ..
            }
            | CellOutput::Images {
                fault: Some((pass, layer, name, nan)),
                ..
            } => vec![format!(
                "{}: {} in the {pass} pass, first at layer {layer} ({name})",
                self.cell_key(c),
                if *nan { "NaN" } else { "inf" }
            )],
            _ => vec![],
        }
    }

    fn summarise(&self, outputs: Vec<CellOutput>, provenance: Provenance) -> Result<NormsResults> {
        self.summarise_outputs(outputs, provenance)
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }

    /// The memory limit changes no cell.
    fn cell_identity(&self) -> serde_json::Value {
        let mut v = self.config_json();
        if let Some(m) = v.as_object_mut() {
            m.remove("memory_limit_gib");
        }
        v
    }

    fn memory_estimate_gib(&self, threads: usize) -> Option<f64> {
        Some(NormsConfig::memory_estimate_gib(self, threads))
    }
}

impl StudyResults for NormsResults {
    fn write(&self, dir: &std::path::Path) -> Result<()> {
        Ok(NormsResults::write(self, dir)?)
    }
}
