//! Transformers at initialisation: where the layer norm goes, and rank
//! collapse without skips.
//!
//! Gradient norms (Xiong et al. 2020, "On Layer Normalization in the
//! Transformer Architecture"): with the layer norm after the residual sum
//! (post-LN) the gradient of the parameters near the output, ‖∂L/∂W^{2,L}‖,
//! does not shrink with depth L, which is why post-LN needs learning-rate
//! warm-up; with the norm before each sublayer (pre-LN) the final LN sees a
//! sum of L branches, of scale √L, and the same gradient scales like
//! 1/√L. Measured per block and at the last block's second feed-forward
//! layer, on the loss of a synthetic task, for each placement and depth; the
//! slope of log ‖∂L/∂W^{2,L}‖ against log L is fitted per placement.
//!
//! Rank collapse (Dong, Cordonnier and Loukas 2021, "Attention is not all you
//! need: pure attention loses rank doubly exponentially with depth"):
//! res(X) = ‖X − 1x̄ᵀ‖_F / ‖X‖_F, x̄ the token mean (the nearest matrix of
//! the form 1xᵀ), of the token representations after every block, for pure
//! attention, attention with skips, attention with MLPs and the full block.
//!
//! Training (Xiong et al. 2020): post-LN and pre-LN nets trained with Adam
//! (β = 0.9, 0.98, ε = 10⁻⁹, as Vaswani et al. 2017) at a grid of peak
//! rates, each with a constant rate from the first step and with a linear
//! warm-up from 0; per run the loss curve, its final value and the step of
//! divergence (a non-finite loss, or one above the initial loss by
//! [`DIVERGENCE_MARGIN`] nats). The rank-collapse variants are measured
//! again after the same training.
//!
//! The shattered-gradients view (Balduzzi et al. 2017) for transformers:
//! the gradient of a fixed output f = ⟨u, logits⟩ with respect to the
//! embedded input along e_s = (1 − s)E(x) + sE(x′), s on a grid from one
//! sequence's token embeddings to another's; r₁ (the lag-1 correlation
//! along s, per coordinate, averaged) per depth, with and without skips.
//! The interpolated embeddings are written into spare rows of the token
//! table (the net's vocabulary extended by one row per grid point and
//! token, the first V rows and every other weight unchanged), so every
//! grid point is one sequence of the batch and the engine's own backward
//! pass gives ∂f/∂h₀ = ∂f/∂e_s.
//!
//! The task (generated from the seed, no download): reverse a sequence of T
//! uniform random tokens of a vocabulary of V; the loss is the mean
//! cross-entropy over every token. Nets run in f64 on the engine's kernels
//! (attention, layer norm and the feed-forward sublayer as engine ops).
//!
//! The training loop in `training.rs`, the interpolation in
//! `interpolation.rs`; here the parameters' check, the cells at
//! initialisation and the summary.

mod interpolation;
mod training;

use gradscope_engine::Engine;
use gradscope_engine::{Options, Want, for_net};
use gradscope_nets::{BnMode, Net, Precision, Transformer, TransformerParams, derive_seed};
use ndarray::{Array2, ArrayView2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::provenance::Provenance;
use crate::study::{Study, StudyResults};
use crate::{Result, StudyError};

pub use gradscope_contract::curvature::MeanSe;
pub use gradscope_contract::transformers::{
    CellOutput, DIVERGENCE_MARGIN, GradOutput, GradRow, InterpOutput, InterpRow, InterpTrace, NAME,
    RankOutput, RankRow, SCHEMA, SlopeRow, TrainOutput, TrainRow, TransformersParams,
    TransformersResults, TransformersSummary, default_interp_archs, default_placements,
    default_rank_archs, default_train_placements, files, read_summary,
};

impl crate::Params for TransformersParams {
    type Config = TransformersConfig;
    fn quick() -> Self {
        TransformersParams::quick()
    }
    fn check(&self) -> Result<TransformersConfig> {
        check(self)
    }
}

/// Largest depth of either part.
const MAX_BLOCKS: usize = 256;

/// Validate `params`: the only way to a runnable study.
pub fn check(params: &TransformersParams) -> Result<TransformersConfig> {
    let p = params.clone();
    if p.placements.is_empty() || p.depths.is_empty() || p.rank_archs.is_empty() {
        return Err(StudyError::config(
            "placements",
            "list at least one placement, one depth and one rank variant",
        ));
    }
    if p.train_placements.is_empty() || p.interp_archs.is_empty() {
        return Err(StudyError::config(
            "train_placements",
            "list at least one trained placement and one interpolation variant",
        ));
    }
    for &d in p.depths.iter().chain([&p.rank_depth]) {
        if !(1..=MAX_BLOCKS).contains(&d) {
            return Err(StudyError::config(
                "depths",
                format!("each depth must be 1..={MAX_BLOCKS}, got {d}"),
            ));
        }
    }
    for (i, d) in p.depths.iter().enumerate() {
        if p.depths[..i].contains(d) {
            return Err(StudyError::config("depths", format!("{d} is listed twice")));
        }
    }
    if !(1..=100).contains(&p.seeds) {
        return Err(StudyError::config(
            "seeds",
            format!("must be 1..=100, got {}", p.seeds),
        ));
    }
    if !(1..=4096).contains(&p.batch) {
        return Err(StudyError::config(
            "batch",
            format!("must be 1..=4096, got {}", p.batch),
        ));
    }
    if !(1..=1024).contains(&p.seq_len) || !(2..=4096).contains(&p.vocab) {
        return Err(StudyError::config(
            "seq_len",
            format!(
                "seq_len must be 1..=1024 and vocab 2..=4096, got {} and {}",
                p.seq_len, p.vocab
            ),
        ));
    }
    if p.width > 1024 {
        return Err(StudyError::config(
            "width",
            format!("must be at most 1024, got {}", p.width),
        ));
    }
    if !(1..=MAX_BLOCKS).contains(&p.train_depth) {
        return Err(StudyError::config(
            "train_depth",
            format!("must be 1..={MAX_BLOCKS}, got {}", p.train_depth),
        ));
    }
    if p.lrs.is_empty() || p.lrs.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(StudyError::config(
            "lrs",
            "list at least one learning rate, each finite and positive",
        ));
    }
    if !(p.rank_lr.is_finite() && p.rank_lr >= 0.0) {
        return Err(StudyError::config(
            "rank_lr",
            format!("must be finite and ≥ 0, got {}", p.rank_lr),
        ));
    }
    if !(1..=100_000).contains(&p.steps) || p.warmup > p.steps {
        return Err(StudyError::config(
            "steps",
            format!(
                "steps must be 1..=100000 and the warm-up at most the steps, got {} and {}",
                p.steps, p.warmup
            ),
        ));
    }
    for &d in &p.interp_depths {
        if !(1..=MAX_BLOCKS).contains(&d) {
            return Err(StudyError::config(
                "interp_depths",
                format!("each depth must be 1..={MAX_BLOCKS}, got {d}"),
            ));
        }
    }
    if !p.interp_archs.is_empty()
        && (p.interp_depths.is_empty() || !(3..=1024).contains(&p.interp_points))
    {
        return Err(StudyError::config(
            "interp_points",
            format!(
                "list at least one interpolation depth and 3..=1024 points, got {} depths and {} points",
                p.interp_depths.len(),
                p.interp_points
            ),
        ));
    }
    if !(1..=100).contains(&p.train_seeds) {
        return Err(StudyError::config(
            "train_seeds",
            format!("must be 1..=100, got {}", p.train_seeds),
        ));
    }
    // Every net the study builds passes the spec's own check.
    let deepest = *p.depths.iter().max().expect("non-empty");
    for arch in p
        .placements
        .iter()
        .chain(&p.rank_archs)
        .chain(&p.train_placements)
    {
        net_params(&p, *arch, deepest.max(p.rank_depth).max(p.train_depth), 0).check()?;
    }
    Ok(TransformersConfig { params: p })
}

fn net_params(
    p: &TransformersParams,
    arch: gradscope_nets::TransformerArch,
    depth: usize,
    seed: u64,
) -> TransformerParams {
    TransformerParams {
        arch,
        depth,
        width: p.width,
        heads: p.heads,
        seq_len: p.seq_len,
        vocab: p.vocab,
        ff_width: 0,
        precision: Precision::F64,
        seed,
    }
}

/// A validated transformers configuration.
#[derive(Clone, Debug)]
pub struct TransformersConfig {
    params: TransformersParams,
}

/// One net: a placement at a depth, or a rank variant; and a seed index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Gradient norms of placement `arch` (index) at depth `depth` (index).
    Grad {
        /// Index into `placements`.
        arch: usize,
        /// Index into `depths`.
        depth: usize,
        /// Seed index.
        seed: usize,
    },
    /// Rank collapse of variant `arch` (index into `rank_archs`).
    Rank {
        /// Index into `rank_archs`.
        arch: usize,
        /// Seed index.
        seed: usize,
    },
    /// Input gradients of variant `arch` along the interpolation.
    Interp {
        /// Index into `interp_archs`.
        arch: usize,
        /// Seed index.
        seed: usize,
    },
    /// A training run of placement `arch` at rate `lr`.
    Train {
        /// Index into `train_placements`.
        arch: usize,
        /// Index into `lrs`.
        lr: usize,
        /// Whether the rate warms up linearly over `warmup` steps.
        warm: bool,
        /// Seed index.
        seed: usize,
    },
}

/// The reversal task's batch: token ids (B × T) and targets (reversed).
pub fn reversal_batch(
    batch: usize,
    seq_len: usize,
    vocab: usize,
    seed: u64,
) -> (Array2<f64>, Vec<u32>) {
    let mut rng = StdRng::seed_from_u64(derive_seed(seed, "transformers/data"));
    let x = Array2::from_shape_fn((batch, seq_len), |_| rng.random_range(0..vocab) as f64);
    let y = (0..batch)
        .flat_map(|i| {
            let row = x.row(i).to_vec();
            row.into_iter().rev().map(|v| v as u32)
        })
        .collect();
    (x, y)
}

/// Mean token cross-entropy of logits (B × T·V) against targets (B·T), and
/// its gradient (softmax − onehot)/(B·T).
pub fn token_cross_entropy(
    logits: ArrayView2<f64>,
    targets: &[u32],
    vocab: usize,
) -> (f64, Array2<f64>) {
    let n = targets.len() as f64;
    let mut grad = Array2::zeros(logits.raw_dim());
    let mut loss = 0.0;
    let flat = logits.as_standard_layout().to_owned();
    let rows = flat.as_slice().expect("standard layout").chunks(vocab);
    let gflat = grad.as_slice_mut().expect("standard layout");
    for ((z, g), &y) in rows.zip(gflat.chunks_mut(vocab)).zip(targets) {
        let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = z.iter().map(|v| (v - m).exp()).sum();
        loss += s.ln() + m - z[y as usize];
        for (k, (gk, zk)) in g.iter_mut().zip(z).enumerate() {
            *gk = ((zk - m).exp() / s - f64::from(u8::from(k == y as usize))) / n;
        }
    }
    (loss / n, grad)
}

/// res(X) = ‖X − 1x̄ᵀ‖_F / ‖X‖_F of one sequence's representation X (T × d,
/// a row of T·d values), x̄ the mean token (Dong et al. 2021's residual
/// from the nearest 1xᵀ, in the Frobenius norm).
pub fn rank_residual(row: &[f64], seq_len: usize) -> f64 {
    let d = row.len() / seq_len;
    let mut mean = vec![0.0; d];
    for t in row.chunks(d) {
        for (m, v) in mean.iter_mut().zip(t) {
            *m += v / seq_len as f64;
        }
    }
    let (mut num, mut den) = (0.0, 0.0);
    for t in row.chunks(d) {
        for (m, v) in mean.iter().zip(t) {
            num += (v - m).powi(2);
            den += v * v;
        }
    }
    (num / den).sqrt()
}

/// Least-squares slope of ln y against ln x; NaN unless every y is positive
/// and finite and there are two distinct x.
pub fn log_log_slope(x: &[f64], y: &[f64]) -> f64 {
    if x.len() < 2 || y.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return f64::NAN;
    }
    let lx: Vec<f64> = x.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let n = lx.len() as f64;
    let (mx, my) = (lx.iter().sum::<f64>() / n, ly.iter().sum::<f64>() / n);
    let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = lx.iter().map(|a| (a - mx).powi(2)).sum();
    sxy / sxx
}

impl TransformersConfig {
    /// The validated parameters.
    pub fn params(&self) -> &TransformersParams {
        &self.params
    }

    /// The net of a seed index: the same seed for every placement and
    /// depth (paired comparisons; the depth-L net is the first L blocks).
    fn net(&self, arch: gradscope_nets::TransformerArch, depth: usize, seed: usize) -> Result<Net> {
        let s = derive_seed(self.params.seed, &format!("transformers/net{seed}"));
        let spec = net_params(&self.params, arch, depth, s).check()?;
        Ok(Net::Transformer(Transformer::new(&spec)?))
    }

    fn grads(&self, arch: usize, depth: usize, seed: usize) -> Result<GradOutput> {
        let p = &self.params;
        let depth = p.depths[depth];
        let net = self.net(p.placements[arch], depth, seed)?;
        let engine = for_net::<f64>(&net, Options::once(BnMode::Eval))?;
        let (x, y) = reversal_batch(p.batch, p.seq_len, p.vocab, p.seed);
        let fwd = engine.forward(x.view(), true)?;
        let out = engine.output(&fwd, depth)?;
        let (loss, g) = token_cross_entropy(out.view(), &y, p.vocab);
        let want = Want {
            hidden: false,
            params: true,
            gram: false,
        };
        let grads = engine.backward(&fwd, depth, Some(g.view()), want)?;
        let mut block = vec![0.0; depth];
        let mut last_ffn = f64::NAN;
        let last = format!("layers.{}.linear2.weight", depth - 1);
        for (name, v) in &grads.params {
            let sq: f64 = v.iter().map(|a| a * a).sum();
            if let Some(b) = name
                .strip_prefix("layers.")
                .and_then(|r| r.split('.').next())
                .and_then(|i| i.parse::<usize>().ok())
            {
                block[b] += sq;
            }
            if *name == last {
                last_ffn = sq.sqrt();
            }
        }
        Ok(GradOutput {
            loss,
            block_grad: block.into_iter().map(f64::sqrt).collect(),
            last_ffn_grad: last_ffn,
            hidden_grad: grads.hidden_norms,
        })
    }

    /// res(h_l), l = 0 … L, of the evaluation batch, mean over its sequences.
    fn residuals(&self, engine: &dyn Engine<f64>) -> Result<Vec<f64>> {
        let p = &self.params;
        let (x, _) = reversal_batch(p.batch, p.seq_len, p.vocab, p.seed);
        let fwd = engine.forward(x.view(), false)?;
        Ok(fwd
            .hidden
            .iter()
            .map(|h| {
                let rows: Vec<f64> = h
                    .rows()
                    .into_iter()
                    .map(|r| rank_residual(&r.to_vec(), p.seq_len))
                    .collect();
                rows.iter().sum::<f64>() / rows.len() as f64
            })
            .collect())
    }

    fn rank(&self, arch: usize, seed: usize) -> Result<RankOutput> {
        let p = &self.params;
        let net = self.net(p.rank_archs[arch], p.rank_depth, seed)?;
        let mut engine = for_net::<f64>(&net, Options::repeated(BnMode::Eval))?;
        let residual = self.residuals(engine.as_ref())?;
        // Only the first `train_seeds` nets are trained (training costs
        // `steps` passes).
        if p.rank_lr == 0.0 || seed >= p.train_seeds {
            return Ok(RankOutput {
                residual,
                trained: Vec::new(),
                final_loss: f64::NAN,
            });
        }
        let run = self.train(engine.as_mut(), p.rank_lr, p.warmup)?;
        Ok(RankOutput {
            residual,
            trained: self.residuals(engine.as_ref())?,
            final_loss: run.final_loss,
        })
    }

    fn arch_name(&self, cell: &Cell) -> String {
        match *cell {
            Cell::Grad { arch, .. } => self.params.placements[arch].to_string(),
            Cell::Rank { arch, .. } => self.params.rank_archs[arch].to_string(),
            Cell::Train { arch, .. } => self.params.train_placements[arch].to_string(),
            Cell::Interp { arch, .. } => self.params.interp_archs[arch].to_string(),
        }
    }
}

/// Mean and standard error per position over the seeds' vectors.
fn per_position<'a>(vs: impl Iterator<Item = &'a Vec<f64>> + Clone, len: usize) -> Vec<MeanSe> {
    (0..len)
        .map(|i| MeanSe::of(vs.clone().map(|v| v[i])))
        .collect()
}

impl Study for TransformersConfig {
    const NAME: &'static str = NAME;
    type Cell = Cell;
    type CellOutput = CellOutput;
    type Results = TransformersResults;

    fn cells(&self) -> Vec<Cell> {
        let p = &self.params;
        let mut out = Vec::new();
        // The longest cells first, so the pool's threads finish together.
        for arch in 0..p.train_placements.len() {
            for lr in 0..p.lrs.len() {
                for warm in [false, true] {
                    for seed in 0..p.train_seeds {
                        out.push(Cell::Train {
                            arch,
                            lr,
                            warm,
                            seed,
                        });
                    }
                }
            }
        }
        for arch in 0..p.interp_archs.len() {
            for seed in 0..p.seeds {
                out.push(Cell::Interp { arch, seed });
            }
        }
        for arch in 0..p.placements.len() {
            for depth in 0..p.depths.len() {
                for seed in 0..p.seeds {
                    out.push(Cell::Grad { arch, depth, seed });
                }
            }
        }
        for arch in 0..p.rank_archs.len() {
            for seed in 0..p.seeds {
                out.push(Cell::Rank { arch, seed });
            }
        }
        out
    }

    fn cell_key(&self, cell: &Cell) -> String {
        let arch = self.arch_name(cell);
        match *cell {
            Cell::Grad { depth, seed, .. } => format!(
                "grad:arch={arch},depth={},seed={seed}",
                self.params.depths[depth]
            ),
            Cell::Rank { seed, .. } => format!("rank:arch={arch},seed={seed}"),
            Cell::Interp { seed, .. } => format!("interp:arch={arch},seed={seed}"),
            Cell::Train { lr, warm, seed, .. } => format!(
                "train:arch={arch},lr={},warmup={},seed={seed}",
                self.params.lrs[lr],
                if warm { self.params.warmup } else { 0 }
            ),
        }
    }

    fn run_cell(&self, cell: &Cell) -> Result<CellOutput> {
        Ok(match *cell {
            Cell::Grad { arch, depth, seed } => CellOutput::Grad(self.grads(arch, depth, seed)?),
            Cell::Rank { arch, seed } => CellOutput::Rank(self.rank(arch, seed)?),
            Cell::Train {
                arch,
                lr,
                warm,
                seed,
            } => CellOutput::Train(self.train_run(arch, lr, warm, seed)?),
            Cell::Interp { arch, seed } => CellOutput::Interp(self.interp(arch, seed)?),
        })
    }

    fn cell_faults(&self, cell: &Cell, output: &CellOutput) -> Vec<String> {
        let bad = match output {
            CellOutput::Grad(g) => {
                !g.loss.is_finite() || g.block_grad.iter().any(|v| !v.is_finite())
            }
            CellOutput::Rank(r) => r.residual.iter().any(|v| !v.is_finite()),
            // A diverging run is a finding of the training part, not a fault.
            CellOutput::Train(_) => false,
            CellOutput::Interp(o) => o.trace.iter().any(|v| !v.is_finite()),
        };
        if bad {
            vec![format!("{}: a non-finite value", self.cell_key(cell))]
        } else {
            Vec::new()
        }
    }

    fn summarise(
        &self,
        outputs: Vec<CellOutput>,
        provenance: Provenance,
    ) -> Result<TransformersResults> {
        let p = &self.params;
        let cells = self.cells();
        let grad_of = |a: usize, d: usize| -> Vec<&GradOutput> {
            cells
                .iter()
                .zip(&outputs)
                .filter_map(|(c, o)| match (c, o) {
                    (Cell::Grad { arch, depth, .. }, CellOutput::Grad(g))
                        if *arch == a && *depth == d =>
                    {
                        Some(g)
                    }
                    _ => None,
                })
                .collect()
        };
        let mut grads = Vec::new();
        let mut slopes = Vec::new();
        for (a, arch) in p.placements.iter().enumerate() {
            let mut last = Vec::new();
            for (d, &depth) in p.depths.iter().enumerate() {
                let g = grad_of(a, d);
                let row = GradRow {
                    arch: arch.to_string(),
                    depth,
                    loss: MeanSe::of(g.iter().map(|o| o.loss)),
                    block_grad: per_position(g.iter().map(|o| &o.block_grad), depth),
                    last_ffn_grad: MeanSe::of(g.iter().map(|o| o.last_ffn_grad)),
                    hidden_grad: per_position(g.iter().map(|o| &o.hidden_grad), depth + 1),
                };
                last.push(row.last_ffn_grad.mean);
                grads.push(row);
            }
            let ls: Vec<f64> = p.depths.iter().map(|&d| d as f64).collect();
            slopes.push(SlopeRow {
                arch: arch.to_string(),
                slope: log_log_slope(&ls, &last),
            });
        }
        let rank = p
            .rank_archs
            .iter()
            .enumerate()
            .map(|(a, arch)| {
                let r: Vec<&RankOutput> = cells
                    .iter()
                    .zip(&outputs)
                    .filter_map(|(c, o)| match (c, o) {
                        (Cell::Rank { arch, .. }, CellOutput::Rank(r)) if *arch == a => Some(r),
                        _ => None,
                    })
                    .collect();
                let trained = if p.rank_lr > 0.0 {
                    let t = r.iter().filter(|o| !o.trained.is_empty());
                    per_position(t.map(|o| &o.trained), p.rank_depth + 1)
                } else {
                    Vec::new()
                };
                RankRow {
                    arch: arch.to_string(),
                    residual: per_position(r.iter().map(|o| &o.residual), p.rank_depth + 1),
                    trained,
                    final_loss: (p.rank_lr > 0.0).then(|| {
                        MeanSe::of(
                            r.iter()
                                .filter(|o| !o.trained.is_empty())
                                .map(|o| o.final_loss),
                        )
                    }),
                }
            })
            .collect();
        let mut interp = Vec::new();
        let mut interp_traces = Vec::new();
        for (a, arch) in p.interp_archs.iter().enumerate() {
            let runs: Vec<(usize, &InterpOutput)> = cells
                .iter()
                .zip(&outputs)
                .filter_map(|(c, o)| match (c, o) {
                    (Cell::Interp { arch, seed }, CellOutput::Interp(r)) if *arch == a => {
                        Some((*seed, r))
                    }
                    _ => None,
                })
                .collect();
            for (i, &depth) in p.interp_depths.iter().enumerate() {
                interp.push(InterpRow {
                    arch: arch.to_string(),
                    depth,
                    r1: MeanSe::of(runs.iter().map(|(_, r)| r.r1[i])),
                });
            }
            interp_traces.push(InterpTrace {
                arch: arch.to_string(),
                trace: runs
                    .iter()
                    .find(|(s, _)| *s == 0)
                    .map_or_else(Vec::new, |(_, r)| r.trace.clone()),
            });
        }
        let mut train = Vec::new();
        for (a, arch) in p.train_placements.iter().enumerate() {
            for (l, &lr) in p.lrs.iter().enumerate() {
                for warm in [false, true] {
                    let runs: Vec<&TrainOutput> = cells
                        .iter()
                        .zip(&outputs)
                        .filter_map(|(c, o)| match (c, o) {
                            (
                                Cell::Train {
                                    arch, lr, warm: w, ..
                                },
                                CellOutput::Train(t),
                            ) if *arch == a && *lr == l && *w == warm => Some(t),
                            _ => None,
                        })
                        .collect();
                    train.push(TrainRow {
                        arch: arch.to_string(),
                        lr,
                        warmup: if warm { p.warmup } else { 0 },
                        curve: per_position(runs.iter().map(|t| &t.losses), p.steps),
                        final_loss: runs.iter().map(|t| t.final_loss).collect(),
                        diverged_at: runs.iter().map(|t| t.diverged_at).collect(),
                    });
                }
            }
        }
        Ok(TransformersResults {
            summary: TransformersSummary {
                schema: SCHEMA.into(),
                study: NAME.into(),
                provenance,
                config: p.clone(),
                grads,
                slopes,
                rank,
                train,
                interp,
                interp_traces,
            },
        })
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.params).expect("parameters serialise")
    }
}

impl StudyResults for TransformersResults {
    fn write(&self, dir: &std::path::Path) -> Result<()> {
        Ok(TransformersResults::write(self, dir)?)
    }
}

impl TransformersConfig {
    /// Run every cell and summarise.
    pub fn run(&self, opts: &crate::RunOptions) -> Result<TransformersResults> {
        crate::study::run_study(self, opts)
    }
}
