//! The transformers study's data: at initialisation, on a synthetic
//! sequence task, the per-block parameter-gradient norms of transformers
//! whose layer norm sits after the sum (post-LN), before the sublayer
//! (pre-LN), nowhere, or is replaced by ReZero, across depths (Xiong et al.
//! 2020); and the rank collapse of the token representations through depth
//! with and without skips and MLPs (Dong et al. 2021), at initialisation
//! and after training; and training itself: post-LN against pre-LN with
//! Adam, with and without learning-rate warm-up, over a grid of rates
//! (Xiong et al. 2020).

use std::path::Path;

use gradscope_spec::TransformerArch;
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::curvature::MeanSe;
use crate::io::{Csv, create_dir, ensure, num, write_json};
use crate::provenance::Provenance;

/// Folder name under the data and report roots.
pub const NAME: &str = "transformers";
/// Layout version of `summary.json`.
pub const SCHEMA: &str = "gradscope.transformers/2";
/// A run has diverged at the first step whose loss is not finite or exceeds
/// its initial loss by this many nats.
pub const DIVERGENCE_MARGIN: f64 = 1.0;

fn archs(list: &[&str]) -> Vec<TransformerArch> {
    list.iter()
        .map(|s| s.parse().expect("default archs parse"))
        .collect()
}

/// The layer-norm placements compared by default: post-LN, pre-LN, none,
/// ReZero, and rSkip+LN with λ = 2 (Liu et al. 2020).
pub fn default_placements() -> Vec<TransformerArch> {
    archs(&[
        "transformer",
        "transformer:ln=pre",
        "transformer:ln=none",
        "transformer:ln=rezero",
        "transformer:ln=rskip,lambda=2",
    ])
}

/// The rank-collapse variants (no layer norm, as Dong et al. 2021 analyse):
/// pure attention, attention + skip, attention + MLP, the full block.
pub fn default_rank_archs() -> Vec<TransformerArch> {
    archs(&[
        "transformer:ln=none,skip=off,mlp=off",
        "transformer:ln=none,mlp=off",
        "transformer:ln=none,skip=off",
        "transformer:ln=none",
    ])
}

/// The placements trained with and without warm-up: post-LN and pre-LN.
pub fn default_train_placements() -> Vec<TransformerArch> {
    archs(&["transformer", "transformer:ln=pre"])
}

/// The variants whose input gradient is followed along an interpolation:
/// pre-LN with and without skips.
pub fn default_interp_archs() -> Vec<TransformerArch> {
    archs(&["transformer:ln=pre", "transformer:ln=pre,skip=off"])
}

/// Unchecked parameters; the defaults fit `reproduce`'s budget (seconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct TransformersParams {
    /// Layer-norm placements of the gradient-norm part (see `gradscope archs`).
    #[arg(long, value_parser = crate::args::transformer_arch_list, value_name = "LIST")]
    pub placements: ::std::vec::Vec<TransformerArch>,
    /// Depths (blocks) of the gradient-norm part.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Vec<usize>,
    /// Variants of the rank-collapse part.
    #[arg(long, value_parser = crate::args::transformer_arch_list, value_name = "LIST")]
    pub rank_archs: ::std::vec::Vec<TransformerArch>,
    /// Depth of the rank-collapse part (every block's output is measured).
    #[arg(long)]
    pub rank_depth: usize,
    /// Model width d.
    #[arg(long)]
    pub width: usize,
    /// Attention heads.
    #[arg(long)]
    pub heads: usize,
    /// Tokens per sequence T.
    #[arg(long)]
    pub seq_len: usize,
    /// Vocabulary V of the task's tokens.
    #[arg(long)]
    pub vocab: usize,
    /// Sequences in the batch.
    #[arg(long)]
    pub batch: usize,
    /// Nets per (arch, depth).
    #[arg(long)]
    pub seeds: usize,
    /// Base seed (weights and data).
    #[arg(long)]
    pub seed: u64,
    /// Placements trained with and without warm-up (Xiong et al. 2020).
    #[arg(long, value_parser = crate::args::transformer_arch_list, value_name = "LIST")]
    pub train_placements: ::std::vec::Vec<TransformerArch>,
    /// Depth of the trained nets.
    #[arg(long)]
    pub train_depth: usize,
    /// Peak learning rates of Adam (β = 0.9, 0.98), each run with and
    /// without warm-up.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub lrs: Vec<f64>,
    /// Steps of linear warm-up from 0 in the warm-up runs.
    #[arg(long)]
    pub warmup: usize,
    /// Training steps (a fresh batch of the task each step).
    #[arg(long)]
    pub steps: usize,
    /// Nets per (placement, rate, warm-up).
    #[arg(long)]
    pub train_seeds: usize,
    /// Peak learning rate (with warm-up) at which the first `train_seeds`
    /// nets of each rank variant are trained for `steps` steps; 0 measures
    /// them at initialisation only.
    #[arg(long)]
    pub rank_lr: f64,
    /// Variants of the interpolation part (the shattered-gradients view).
    #[arg(long, value_parser = crate::args::transformer_arch_list, value_name = "LIST")]
    pub interp_archs: ::std::vec::Vec<TransformerArch>,
    /// Depths of the interpolation part.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub interp_depths: Vec<usize>,
    /// Points s of the grid from one sequence's embedding to another's.
    #[arg(long)]
    pub interp_points: usize,
}

impl Default for TransformersParams {
    fn default() -> Self {
        TransformersParams {
            placements: default_placements(),
            depths: vec![2, 4, 8, 16],
            rank_archs: default_rank_archs(),
            rank_depth: 8,
            width: 32,
            heads: 4,
            seq_len: 16,
            vocab: 16,
            batch: 16,
            seeds: 3,
            seed: 0,
            train_placements: default_train_placements(),
            train_depth: 2,
            lrs: vec![1e-2, 3e-2],
            warmup: 20,
            steps: 60,
            train_seeds: 1,
            rank_lr: 1e-2,
            interp_archs: default_interp_archs(),
            interp_depths: vec![1, 2, 4, 8],
            interp_points: 32,
        }
    }
}

impl TransformersParams {
    /// Small sizes, for tests and a first look.
    pub fn quick() -> Self {
        TransformersParams {
            depths: vec![2, 8],
            rank_depth: 6,
            width: 16,
            seq_len: 8,
            vocab: 8,
            batch: 8,
            seeds: 2,
            train_depth: 2,
            lrs: vec![1e-2, 3e-2],
            warmup: 10,
            steps: 30,
            interp_depths: vec![1, 4],
            interp_points: 16,
            ..Self::default()
        }
    }
}

/// What one net at initialisation shows (one cell of the gradient part).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradOutput {
    /// The task's loss (mean token cross-entropy).
    #[serde(with = "gradscope_stats::nan")]
    pub loss: f64,
    /// ‖∂L/∂θ_b‖ over all parameters of block b, b = 0 … L−1.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub block_grad: Vec<f64>,
    /// ‖∂L/∂W₂‖ of the last block's second feed-forward layer (Xiong et
    /// al.'s W^{2,L}); NaN without an MLP.
    #[serde(with = "gradscope_stats::nan")]
    pub last_ffn_grad: f64,
    /// ‖∂L/∂h_l‖ of the hidden states, l = 0 … L.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub hidden_grad: Vec<f64>,
}

/// res(h_l) of one net's hidden states (one cell of the rank part).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankOutput {
    /// res(h_l) for l = 0 … L, mean over the batch's sequences, at init.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub residual: Vec<f64>,
    /// The same after training (empty when `rank_lr` is 0).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub trained: Vec<f64>,
    /// The training run's final loss (NaN untrained).
    #[serde(with = "gradscope_stats::nan")]
    pub final_loss: f64,
}

/// One training run: a placement at a peak rate, with or without warm-up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainOutput {
    /// The loss of every step's batch, before its update (NaN after a
    /// non-finite loss stopped the run).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub losses: Vec<f64>,
    /// Mean loss over the last tenth of the steps (NaN if any was not finite).
    #[serde(with = "gradscope_stats::nan")]
    pub final_loss: f64,
    /// First step whose loss was not finite or above the initial loss by
    /// [`DIVERGENCE_MARGIN`].
    pub diverged_at: Option<usize>,
}

/// The gradient of a fixed output with respect to the embedded input along
/// e_s = (1 − s)E(x) + sE(x′) (one cell of the interpolation part).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterpOutput {
    /// r₁ per depth of `interp_depths`: the lag-1 correlation along s of
    /// each coordinate of ∂f/∂e_s, averaged over the coordinates.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub r1: Vec<f64>,
    /// The first coordinate of ∂f/∂e_s along s, at the deepest depth.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub trace: Vec<f64>,
}

/// A cell's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CellOutput {
    /// Gradient norms at initialisation.
    Grad(GradOutput),
    /// Rank collapse through depth.
    Rank(RankOutput),
    /// A training run.
    Train(TrainOutput),
    /// Input gradients along an interpolation.
    Interp(InterpOutput),
}

/// One placement at one depth, over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradRow {
    /// Architecture spec.
    pub arch: String,
    /// Blocks L.
    pub depth: usize,
    /// The loss at initialisation.
    pub loss: MeanSe,
    /// ‖∂L/∂θ_b‖ per block.
    pub block_grad: Vec<MeanSe>,
    /// ‖∂L/∂W^{2,L}‖.
    pub last_ffn_grad: MeanSe,
    /// ‖∂L/∂h_l‖, l = 0 … L.
    pub hidden_grad: Vec<MeanSe>,
}

/// The scaling of the output layer's gradient with depth, per placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlopeRow {
    /// Architecture spec.
    pub arch: String,
    /// Least-squares slope of log ‖∂L/∂W^{2,L}‖ (seed mean) against log L:
    /// 0 for a norm independent of depth (post-LN), −½ for 1/√L (pre-LN);
    /// NaN when a norm is 0 (ReZero at init) or missing.
    #[serde(with = "gradscope_stats::nan")]
    pub slope: f64,
}

/// One rank-collapse variant, over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankRow {
    /// Architecture spec.
    pub arch: String,
    /// res(h_l), l = 0 … rank_depth, at initialisation.
    pub residual: Vec<MeanSe>,
    /// res(h_l) after training (empty untrained).
    pub trained: Vec<MeanSe>,
    /// The final training loss (None untrained).
    pub final_loss: Option<MeanSe>,
}

/// One (placement, peak rate, warm-up) of the training part, over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainRow {
    /// Architecture spec.
    pub arch: String,
    /// Peak learning rate.
    pub lr: f64,
    /// Steps of warm-up (0: none).
    pub warmup: usize,
    /// Mean loss per step over the seeds whose loss stayed finite.
    pub curve: Vec<MeanSe>,
    /// Per seed: the final loss (NaN when it went non-finite).
    #[serde(with = "gradscope_stats::nan::vec")]
    pub final_loss: Vec<f64>,
    /// Per seed: the step of divergence, if any.
    pub diverged_at: Vec<Option<usize>>,
}

/// One interpolation variant at one depth, over seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterpRow {
    /// Architecture spec.
    pub arch: String,
    /// Blocks L.
    pub depth: usize,
    /// r₁ of the input gradient along s.
    pub r1: MeanSe,
}

/// One variant's input-gradient coordinate along s (seed 0, deepest depth).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterpTrace {
    /// Architecture spec.
    pub arch: String,
    /// ∂f/∂e_s, first coordinate, per grid point.
    #[serde(with = "gradscope_stats::nan::vec")]
    pub trace: Vec<f64>,
}

/// `summary.json` of the transformers study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformersSummary {
    /// Layout version.
    pub schema: String,
    /// Study name.
    pub study: String,
    /// Version, commit, time, threads and run time.
    pub provenance: Provenance,
    /// The validated parameters the run used.
    pub config: TransformersParams,
    /// Per (placement, depth), placements outermost.
    pub grads: Vec<GradRow>,
    /// Per placement.
    pub slopes: Vec<SlopeRow>,
    /// Per rank-collapse variant.
    pub rank: Vec<RankRow>,
    /// Per (placement, rate, warm-up): placements outermost, then rates,
    /// then without before with warm-up.
    pub train: Vec<TrainRow>,
    /// Per (interpolation variant, depth), variants outermost.
    pub interp: Vec<InterpRow>,
    /// Per interpolation variant.
    pub interp_traces: Vec<InterpTrace>,
}

/// Everything a run produced, before it is written.
#[derive(Clone, Debug)]
pub struct TransformersResults {
    /// What goes into summary.json.
    pub summary: TransformersSummary,
}

/// Files of the study folder.
pub mod files {
    /// Summary with provenance.
    pub const SUMMARY: &str = "summary.json";
    /// Per (placement, depth, block): ‖∂L/∂θ_b‖.
    pub const BLOCKS_CSV: &str = "blocks.csv";
    /// Per (placement, depth): the loss and ‖∂L/∂W^{2,L}‖.
    pub const OUTPUT_CSV: &str = "output_layer.csv";
    /// Per placement: the slope of log ‖∂L/∂W^{2,L}‖ against log L.
    pub const SLOPES_CSV: &str = "slopes.csv";
    /// Per (variant, layer): res(h_l) at init and trained.
    pub const RANK_CSV: &str = "rank.csv";
    /// Per (placement, rate, warm-up, seed): final loss, divergence and
    /// the chance loss ln V.
    pub const TRAIN_CSV: &str = "train.csv";
    /// Per (placement, rate, warm-up, step): the mean loss over seeds.
    pub const CURVES_CSV: &str = "train_curves.csv";
    /// Per (variant, depth): r₁ of the input gradient along the interpolation.
    pub const INTERP_CSV: &str = "interpolation.csv";
    /// Per (variant, grid point): one coordinate of the input gradient.
    pub const TRACES_CSV: &str = "interpolation_traces.csv";
}

impl TransformersResults {
    /// Write the study folder `dir` (created if missing); every file
    /// atomically, `summary.json` last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        create_dir(dir)?;
        let s = &self.summary;
        let mut blocks = Csv::new(&["arch", "depth", "block", "grad_norm_mean", "grad_norm_se"]);
        let mut output = Csv::new(&[
            "arch",
            "depth",
            "loss_mean",
            "last_ffn_grad_mean",
            "last_ffn_grad_se",
        ]);
        for r in &s.grads {
            for (b, g) in r.block_grad.iter().enumerate() {
                blocks.row(&[
                    r.arch.clone(),
                    r.depth.to_string(),
                    b.to_string(),
                    num(g.mean),
                    num(g.se),
                ]);
            }
            output.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.loss.mean),
                num(r.last_ffn_grad.mean),
                num(r.last_ffn_grad.se),
            ]);
        }
        blocks.write(&dir.join(files::BLOCKS_CSV))?;
        output.write(&dir.join(files::OUTPUT_CSV))?;
        let mut slopes = Csv::new(&["arch", "slope"]);
        for r in &s.slopes {
            slopes.row(&[r.arch.clone(), num(r.slope)]);
        }
        slopes.write(&dir.join(files::SLOPES_CSV))?;
        let mut rank = Csv::new(&[
            "arch",
            "layer",
            "res_mean",
            "res_se",
            "trained_res_mean",
            "trained_res_se",
        ]);
        for r in &s.rank {
            for (l, v) in r.residual.iter().enumerate() {
                let t = r.trained.get(l).copied().unwrap_or(MeanSe {
                    mean: f64::NAN,
                    se: f64::NAN,
                });
                rank.row(&[
                    r.arch.clone(),
                    l.to_string(),
                    num(v.mean),
                    num(v.se),
                    num(t.mean),
                    num(t.se),
                ]);
            }
        }
        rank.write(&dir.join(files::RANK_CSV))?;
        let mut train = Csv::new(&[
            "arch",
            "lr",
            "warmup",
            "seed",
            "final_loss",
            "diverged_at",
            "chance_loss",
        ]);
        let chance = (s.config.vocab as f64).ln();
        let mut curves = Csv::new(&["arch", "lr", "warmup", "step", "loss_mean", "loss_se"]);
        for r in &s.train {
            for (k, (f, d)) in r.final_loss.iter().zip(&r.diverged_at).enumerate() {
                train.row(&[
                    r.arch.clone(),
                    num(r.lr),
                    r.warmup.to_string(),
                    k.to_string(),
                    num(*f),
                    d.map_or(String::new(), |d| d.to_string()),
                    num(chance),
                ]);
            }
            for (k, v) in r.curve.iter().enumerate() {
                curves.row(&[
                    r.arch.clone(),
                    num(r.lr),
                    r.warmup.to_string(),
                    k.to_string(),
                    num(v.mean),
                    num(v.se),
                ]);
            }
        }
        train.write(&dir.join(files::TRAIN_CSV))?;
        curves.write(&dir.join(files::CURVES_CSV))?;
        let mut interp = Csv::new(&["arch", "depth", "r1_mean", "r1_se"]);
        for r in &s.interp {
            interp.row(&[
                r.arch.clone(),
                r.depth.to_string(),
                num(r.r1.mean),
                num(r.r1.se),
            ]);
        }
        interp.write(&dir.join(files::INTERP_CSV))?;
        let mut traces = Csv::new(&["arch", "s", "grad"]);
        for r in &s.interp_traces {
            let n = r.trace.len().max(2) - 1;
            for (k, g) in r.trace.iter().enumerate() {
                traces.row(&[r.arch.clone(), num(k as f64 / n as f64), num(*g)]);
            }
        }
        traces.write(&dir.join(files::TRACES_CSV))?;
        write_json(&dir.join(files::SUMMARY), s)
    }
}

/// Read the summary of a study folder, refusing one whose rows do not
/// cover every placement × depth and rank variant once, at their lengths.
pub fn read_summary(dir: &Path) -> Result<TransformersSummary> {
    let path = dir.join(files::SUMMARY);
    let s: TransformersSummary =
        crate::io::read_summary(&path, SCHEMA, |s: &TransformersSummary| &s.schema)?;
    let c = &s.config;
    ensure(
        s.grads.len() == c.placements.len() * c.depths.len(),
        &path,
        || {
            format!(
                "{} gradient rows for {} placements × {} depths",
                s.grads.len(),
                c.placements.len(),
                c.depths.len()
            )
        },
    )?;
    for (i, r) in s.grads.iter().enumerate() {
        let (a, d) = (i / c.depths.len(), i % c.depths.len());
        ensure(
            r.arch == c.placements[a].to_string()
                && r.depth == c.depths[d]
                && r.block_grad.len() == r.depth
                && r.hidden_grad.len() == r.depth + 1,
            &path,
            || {
                format!(
                    "gradient row {i} ({} depth {}) is out of place",
                    r.arch, r.depth
                )
            },
        )?;
    }
    ensure(s.slopes.len() == c.placements.len(), &path, || {
        format!(
            "{} slopes for {} placements",
            s.slopes.len(),
            c.placements.len()
        )
    })?;
    ensure(
        s.rank.len() == c.rank_archs.len()
            && s.rank
                .iter()
                .zip(&c.rank_archs)
                .all(|(r, a)| r.arch == a.to_string() && r.residual.len() == c.rank_depth + 1),
        &path,
        || "the rank rows are not one per variant over rank_depth + 1 layers".into(),
    )?;
    let runs = c.train_placements.len() * c.lrs.len() * 2;
    ensure(
        s.train.len() == runs
            && s.train.iter().enumerate().all(|(i, r)| {
                r.arch == c.train_placements[i / (2 * c.lrs.len())].to_string()
                    && r.lr == c.lrs[(i / 2) % c.lrs.len()]
                    && r.warmup == if i % 2 == 0 { 0 } else { c.warmup }
                    && r.curve.len() == c.steps
                    && r.final_loss.len() == c.train_seeds
                    && r.diverged_at.len() == c.train_seeds
            }),
        &path,
        || {
            "the training rows are not one per placement × rate × warm-up over every step and seed"
                .into()
        },
    )?;
    ensure(
        s.interp.len() == c.interp_archs.len() * c.interp_depths.len()
            && s.interp.iter().enumerate().all(|(i, r)| {
                r.arch == c.interp_archs[i / c.interp_depths.len()].to_string()
                    && r.depth == c.interp_depths[i % c.interp_depths.len()]
            })
            && s.interp_traces.len() == c.interp_archs.len()
            && s.interp_traces
                .iter()
                .all(|t| t.trace.len() == c.interp_points),
        &path,
        || "the interpolation rows are not one per variant × depth".into(),
    )?;
    Ok(s)
}
