#![warn(missing_docs)]
//! Benchmark workloads, each timed in its own process (so peak memory is the
//! workload's own) and, when PyTorch is installed, beside a peer script doing
//! the same work (`benches/peer/peer.py`).
//!
//! Timing: warm-up runs for at least [`WARM_UP`] (and at least one), then
//! `runs` timed runs; median, min and max. The peer warms up the same way.

use std::time::Instant;

use candle_core::{Device, Tensor};
use gradscope_engine::{Engine, Options, TeamStats, Want, for_net, team_stats};
use gradscope_nets::{Arch, BnMode, Mlp, Net, NetParams, Precision, derive_seed};
use gradscope_probe::scalar_grid;
use gradscope_stats::{Spectrum, adjacent_correlation};
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A workload name that does not exist (name, the known ones).
    #[error("unknown workload `{0}` (known: {1})")]
    Unknown(String, String),
    /// A workload failed to run.
    #[error("{0}")]
    Run(String),
}

/// The least warm-up before the timed runs. On the two-core KVM guest the
/// first 0.1–0.2 s of two-thread work ran up to twice as slow as the rest (the
/// helper's core waking up), so a single warm-up run of a 30 ms workload left
/// its first timed runs in that spell.
pub const WARM_UP: std::time::Duration = std::time::Duration::from_millis(500);

impl From<gradscope_stats::StatsError> for BenchError {
    fn from(e: gradscope_stats::StatsError) -> Self {
        BenchError::Run(e.to_string())
    }
}

/// Result with a [`BenchError`].
pub type Result<T> = std::result::Result<T, BenchError>;

fn run_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Run(e.to_string())
}

/// One run of a workload, prepared.
pub type Run = Box<dyn FnMut() -> Result<()> + Send>;

/// A workload: what it does, and its arithmetic if it is dense.
pub struct Workload {
    /// Name on the command line and in the table.
    pub name: &'static str,
    /// What the workload computes, in one line.
    pub about: &'static str,
    /// Floating-point operations of one run (dense GEMMs only), if counted.
    pub flops: Option<f64>,
    /// The peer script's workloads doing the same work (several ways to write it).
    pub peers: &'static [&'static str],
    setup: fn(threads: usize) -> Result<Run>,
}

/// One workload's timings, as both sides report them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Timing {
    /// The workload's name.
    pub workload: String,
    /// Threads the work ran on.
    pub threads: usize,
    /// Timed runs (after the warm-up).
    pub runs: usize,
    /// Median wall time of a run, seconds.
    pub median_s: f64,
    /// Fastest run, seconds.
    pub min_s: f64,
    /// Slowest run, seconds.
    pub max_s: f64,
    /// Peak resident memory of the process, in MiB.
    pub peak_rss_mib: f64,
    /// Floating-point operations of one run, for dense workloads.
    pub flops: Option<f64>,
    /// Every timed run, seconds, in the order they ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times_s: Vec<f64>,
    /// Share of all CPUs' time the hypervisor took away (steal) over the
    /// timed runs, from `/proc/stat` (Linux guests; gradscope only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steal_share: Option<f64>,
    /// What the product threads did over the timed runs (gradscope only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamRecord>,
}

impl Timing {
    /// The timing of runs that took `times` seconds (in the order they ran;
    /// at least one), without the host and thread-team records.
    pub fn of_runs(
        workload: &str,
        threads: usize,
        times: Vec<f64>,
        peak_rss_mib: f64,
        flops: Option<f64>,
    ) -> Self {
        let mut sorted = times.clone();
        sorted.sort_by(f64::total_cmp);
        Timing {
            workload: workload.into(),
            threads,
            runs: sorted.len(),
            median_s: sorted[sorted.len() / 2],
            min_s: sorted[0],
            max_s: sorted[sorted.len() - 1],
            peak_rss_mib,
            flops,
            times_s: times,
            steal_share: None,
            team: None,
        }
    }
}

/// [`TeamStats`] over a workload's timed runs, as the benchmark records it:
/// a second thread that added nothing shows as steps run serially
/// (`serial_steps`) or as a caller that waited for its helpers (`wait_share`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TeamRecord {
    /// Steps split between the product threads.
    pub split_steps: u64,
    /// Steps that ran on one thread although more were set.
    pub serial_steps: u64,
    /// Times a helper went to sleep between steps.
    pub helper_sleeps: u64,
    /// Share of the timed wall time the caller spent waiting for helpers.
    pub wait_share: f64,
}

impl TeamRecord {
    fn between(before: TeamStats, after: TeamStats, wall_s: f64) -> Self {
        Self {
            split_steps: after.split_steps - before.split_steps,
            serial_steps: after.serial_steps - before.serial_steps,
            helper_sleeps: after.helper_sleeps - before.helper_sleeps,
            wait_share: (after.caller_wait_ns - before.caller_wait_ns) as f64 * 1e-9 / wall_s,
        }
    }
}

/// 2·m·k·n.
fn gemm_flops(m: usize, k: usize, n: usize) -> f64 {
    2.0 * (m * k * n) as f64
}

fn mlp(
    arch: Arch,
    depth: usize,
    width: usize,
    input: usize,
    output: usize,
    precision: Precision,
    seed: u64,
) -> Result<Mlp> {
    let p = NetParams {
        arch,
        depth,
        width,
        input_dim: input,
        output_dim: output,
        precision,
        seed,
        ..Default::default()
    };
    Mlp::new(&p.check().map_err(run_err)?).map_err(run_err)
}

/// The net on the engine's kernels in per-sample mode, kept for many passes.
fn engine(net: &Mlp) -> Result<Box<dyn Engine<f32>>> {
    for_net::<f32>(&Net::Mlp(net.clone()), Options::repeated(BnMode::PerSample)).map_err(run_err)
}

fn random_inputs(n: usize, d: usize, seed: u64) -> Array2<f32> {
    let mut state = derive_seed(seed, "inputs");
    Array2::from_shape_fn((n, d), |_| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

/// `gradscope reproduce` end to end: timed by the bench command as a child process.
pub const REPRODUCE: &str = "reproduce";

/// The workloads, in the order of the issue that set them.
pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "shattered-net",
            about: "resnet-bn, depth 50, width 200, 256 points (f32): input gradients and every ‖∂L/∂h_l‖",
            // Forward and input-gradient backward: 2 GEMMs of 256×200×200 per linear layer (100 of them).
            flops: Some(2.0 * 100.0 * gemm_flops(256, 200, 200)),
            peers: &["shattered-net"],
            setup: |_| {
                let net = mlp(Arch::RESNET_BN, 50, 200, 1, 1, Precision::F32, 1)?;
                let dense = engine(&net)?;
                let x = scalar_grid(256, -2.0, 2.0).mapv(|v| v as f32);
                Ok(Box::new(move || {
                    let fwd = dense.forward(x.view(), false).map_err(run_err)?;
                    let grads = dense
                        .backward(&fwd, 50, None, Want::default())
                        .map_err(run_err)?;
                    std::hint::black_box((grads.hidden_norms, grads.input));
                    Ok(())
                }))
            },
        },
        Workload {
            name: "depth-sweep",
            about: "r₁ and spectrum of df/dx at every depth 1..50 of resnet-bn and plain-bn, 8 seeds each (f32, one forward-mode pass per net)",
            flops: None,
            peers: &["depth-sweep", "depth-sweep-per-depth"],
            setup: |threads| {
                let nets = [Arch::RESNET_BN, Arch::PLAIN_BN]
                    .iter()
                    .flat_map(|&a| (0..8).map(move |s| (a, s)))
                    .map(|(a, s)| mlp(a, 50, 200, 1, 1, Precision::F32, s).and_then(|n| engine(&n)))
                    .collect::<Result<Vec<_>>>()?;
                let x = scalar_grid(256, -2.0, 2.0).mapv(|v| v as f32);
                let plan = Spectrum::new(256).map_err(run_err)?;
                Ok(Box::new(move || {
                    let per_net = gradscope_engine::pool::run_cells(
                        threads,
                        nets.len(),
                        &|| false,
                        &|i| -> Result<f64> {
                            let sweep = nets[i].tangent_sweep(x.view(), &[1.0]).map_err(run_err)?;
                            Ok(sweep
                                .axis_iter(Axis(0))
                                .skip(1)
                                .map(|g| {
                                    let g = g.mapv(|v| v as f64);
                                    let _ = plan.power(g.view());
                                    adjacent_correlation(g.view()).unwrap_or(f64::NAN)
                                })
                                .sum::<f64>())
                        },
                    );
                    let mut r1 = 0.0;
                    for r in per_net {
                        r1 += r.expect("every net ran")?;
                    }
                    std::hint::black_box(r1);
                    Ok(())
                }))
            },
        },
        Workload {
            name: "mlp-512x10",
            about: "plain MLP, width 512, depth 10, batch 256 (f32): forward and backward with weight gradients",
            // Per hidden layer: forward, input gradient, weight gradient.
            flops: Some(3.0 * 10.0 * gemm_flops(256, 512, 512)),
            peers: &["mlp-512x10"],
            setup: |_| dense_training_step(Arch::PLAIN, 10, 512),
        },
        Workload {
            name: "transformer-6x128",
            about: "pre-LN transformer, 6 blocks, d = 128, 4 heads, T = 64, batch 32, vocabulary 128 (f32): forward and backward of the mean token cross-entropy with parameter gradients",
            flops: Some(3.0 * TF_FORWARD_FLOPS),
            peers: &["transformer-6x128"],
            setup: |_| transformer_step(),
        },
        Workload {
            name: "resnet-256x50",
            about: "residual MLP (two-layer branch), width 256, 50 blocks, batch 256 (f32): forward and backward with weight gradients",
            flops: Some(3.0 * 100.0 * gemm_flops(256, 256, 256)),
            peers: &["resnet-256x50"],
            setup: |_| dense_training_step(Arch::RESNET, 50, 256),
        },
        Workload {
            name: "gram-256x8",
            about: "per-example parameter-gradient Gram matrices (per layer and total), batch 256, MLP width 256, depth 8 (f32)",
            flops: None,
            peers: &["gram-256x8", "gram-256x8-vmap"],
            setup: |_| {
                let net = mlp(Arch::PLAIN, 8, 256, 64, 10, Precision::F32, 3)?;
                let dense = engine(&net)?;
                let x = random_inputs(256, 64, 3);
                let labels: Vec<u32> = (0..256).map(|i| i % 10).collect();
                Ok(Box::new(move || {
                    let fwd = dense.forward(x.view(), true).map_err(run_err)?;
                    // Per-example cross-entropy: ∂ℓᵢ/∂zᵢ = softmax(zᵢ) − e_{yᵢ}.
                    let z = dense.output(&fwd, 8).map_err(run_err)?;
                    let mut g = z.clone();
                    loss_gradient(&mut g, &labels, 1.0);
                    let grads = dense
                        .backward(
                            &fwd,
                            8,
                            Some(g.view()),
                            Want {
                                gram: true,
                                ..Want::default()
                            },
                        )
                        .map_err(run_err)?;
                    let total = grads
                        .gram
                        .iter()
                        .fold(Array2::<f64>::zeros((256, 256)), |acc, (_, m)| acc + m);
                    std::hint::black_box(total);
                    Ok(())
                }))
            },
        },
        Workload {
            name: "conv-resnet20-step",
            about: "one SGD step of He et al. 2016a's ResNet-20 (option A, BN), batch 128, 32×32×3 (f32): forward, backward, update",
            flops: Some(conv_flops(20)),
            peers: &["conv-resnet20-step"],
            setup: |_| conv_step(20, true),
        },
        Workload {
            name: "conv-plain20-step",
            about: "the same step for the plain-20 net (no shortcuts)",
            flops: Some(conv_flops(20)),
            peers: &["conv-plain20-step"],
            setup: |_| conv_step(20, false),
        },
        Workload {
            name: "conv-resnet56-step",
            about: "the same step for ResNet-56",
            flops: Some(conv_flops(56)),
            peers: &["conv-resnet56-step"],
            setup: |_| conv_step(56, true),
        },
        Workload {
            name: "conv-resnet110-step",
            about: "the same step for ResNet-110",
            flops: Some(conv_flops(110)),
            peers: &["conv-resnet110-step"],
            setup: |_| conv_step(110, true),
        },
        Workload {
            name: "curvature-gradient",
            about: "the gradient of the mean cross-entropy of resnet-bn, 8 blocks, width 256, 64 inputs, 10 classes, batch 256 (f32, BN on the batch statistics): forward and backward",
            flops: Some(3.0 * 2.0 * CURVATURE_MACS),
            peers: &["curvature-gradient"],
            setup: |_| curvature_gradient(),
        },
        Workload {
            name: "curvature-hvp",
            about: "the first exact Hessian-vector product H·v of the same loss and net at a point (forward over reverse on dual numbers, every product formed; the peer: the gradient's graph built, then double backward)",
            flops: None,
            peers: &["curvature-hvp"],
            setup: |_| {
                let mut c = curvature()?;
                let v = random_direction(c.dim());
                Ok(Box::new(move || {
                    c.forget_value_products();
                    std::hint::black_box(c.hvp(&v).map_err(run_err)?);
                    Ok(())
                }))
            },
        },
        Workload {
            name: "curvature-hvp-again",
            about: "one more H·v at the same point, as Lanczos, Hutchinson and SLQ use it (the value products kept from the first; the peer: double backward through the gradient's retained graph, as PyHessian does)",
            flops: None,
            peers: &["curvature-hvp-again"],
            setup: |_| {
                let mut c = curvature()?;
                let v = random_direction(c.dim());
                c.hvp(&v).map_err(run_err)?;
                Ok(Box::new(move || {
                    std::hint::black_box(c.hvp(&v).map_err(run_err)?);
                    Ok(())
                }))
            },
        },
        Workload {
            name: "curvature-lanczos",
            about: "the top Hessian eigenvalue of the same loss by 20 Lanczos steps with full reorthogonalisation from a fresh point (20 H·v, the value products kept from the first; each new vector orthogonalised against the whole basis once, again only when that cancelled much of it; the peer: PyHessian's method, the gradient's graph built once and retained for 20 double backward passes, one orthogonalisation pass)",
            flops: None,
            peers: &["curvature-lanczos"],
            setup: |_| {
                let mut c = curvature()?;
                let start = random_direction(c.dim());
                Ok(Box::new(move || {
                    c.forget_value_products();
                    // A tolerance no residual reaches: every run takes all 20 steps.
                    let l = gradscope_stats::lanczos_top(
                        &start,
                        1,
                        LANCZOS_STEPS,
                        f64::MIN_POSITIVE,
                        |v| c.hvp(v).map_err(run_err),
                    )?;
                    std::hint::black_box(l.eigenvalues);
                    Ok(())
                }))
            },
        },
        Workload {
            name: REPRODUCE,
            about: "`gradscope reproduce` end to end: every default study (six) and report, against the six written in PyTorch",
            flops: None,
            peers: &["reproduce"],
            setup: |_| {
                Err(BenchError::Run(
                    "`reproduce` is timed as a whole process by `gradscope bench`".into(),
                ))
            },
        },
    ]
}

fn dense_training_step(arch: Arch, depth: usize, width: usize) -> Result<Run> {
    let net = mlp(arch, depth, width, width, width, Precision::F32, 2)?;
    let dense = engine(&net)?;
    let x = random_inputs(256, width, 2);
    Ok(Box::new(move || {
        let fwd = dense.forward(x.view(), true).map_err(run_err)?;
        let grads = dense
            .backward(
                &fwd,
                depth,
                None,
                Want {
                    params: true,
                    ..Want::default()
                },
            )
            .map_err(run_err)?;
        std::hint::black_box(grads.params.len());
        Ok(())
    }))
}

const TF_DEPTH: usize = 6;
const TF_WIDTH: usize = 128;
const TF_SEQ: usize = 64;
const TF_BATCH: usize = 32;
const TF_VOCAB: usize = 128;
/// One forward pass of `transformer-6x128`: per block and token the
/// projections (3d² + d²) and the FFN (2·4d²) multiply–adds, the T × T
/// products (2·T·d), and the head (d·V); two flops each.
const TF_FORWARD_FLOPS: f64 = 2.0
    * (TF_BATCH * TF_SEQ) as f64
    * (TF_DEPTH as f64 * (12 * TF_WIDTH * TF_WIDTH + 2 * TF_SEQ * TF_WIDTH) as f64
        + (TF_WIDTH * TF_VOCAB) as f64);

/// A training step's gradient of a pre-LN transformer on the engine's
/// kernels: forward, the mean token cross-entropy's gradient (the training
/// code's, over all B·T tokens), backward with parameter gradients.
fn transformer_step() -> Result<Run> {
    let p = gradscope_nets::TransformerParams {
        arch: "transformer:ln=pre".parse().map_err(run_err)?,
        depth: TF_DEPTH,
        width: TF_WIDTH,
        heads: 4,
        seq_len: TF_SEQ,
        vocab: TF_VOCAB,
        ff_width: 0,
        precision: Precision::F32,
        seed: 6,
    };
    let net = gradscope_nets::Transformer::new(&p.check().map_err(run_err)?).map_err(run_err)?;
    let engine =
        for_net::<f32>(&Net::Transformer(net), Options::repeated(BnMode::Eval)).map_err(run_err)?;
    let ids = random_inputs(TF_BATCH, TF_SEQ, 6).mapv(|v| ((v + 1.0) * 63.99).floor());
    let targets: Vec<u32> = ids
        .iter()
        .map(|&v| (TF_VOCAB as u32 - 1) - v as u32)
        .collect();
    let tokens = TF_BATCH * TF_SEQ;
    Ok(Box::new(move || {
        let fwd = engine.forward(ids.view(), true).map_err(run_err)?;
        let out = engine.output(&fwd, TF_DEPTH).map_err(run_err)?;
        let mut g = out
            .into_shape_with_order((tokens, TF_VOCAB))
            .expect("T·V logits per example");
        loss_gradient(&mut g, &targets, 1.0 / tokens as f32);
        let g = g
            .into_shape_with_order((TF_BATCH, TF_SEQ * TF_VOCAB))
            .expect("B·T rows of V");
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = engine
            .backward(&fwd, TF_DEPTH, Some(g.view()), want)
            .map_err(run_err)?;
        std::hint::black_box(grads.params.len());
        Ok(())
    }))
}

/// Multiply–adds of one forward pass of the curvature workloads' net:
/// stem 64 → 256, 16 layers 256 → 256, head 256 → 10, at batch 256.
const CURVATURE_MACS: f64 = 256.0 * (64.0 * 256.0 + 16.0 * 256.0 * 256.0 + 256.0 * 10.0);
const LANCZOS_STEPS: usize = 20;
const CURVATURE_BATCH: usize = 256;

fn curvature_net() -> Result<(Net, Array2<f32>, Vec<u32>)> {
    let net = mlp(Arch::RESNET_BN, 8, 256, 64, 10, Precision::F32, 4)?;
    let x = random_inputs(CURVATURE_BATCH, 64, 4);
    let labels = (0..CURVATURE_BATCH).map(|i| (i % 10) as u32).collect();
    Ok((Net::Mlp(net), x, labels))
}

/// The loss of the curvature workloads, BN on the batch statistics
/// differentiated through (a training step's loss).
fn curvature() -> Result<gradscope_engine::Curvature<f32>> {
    let (net, x, labels) = curvature_net()?;
    gradscope_engine::Curvature::new(&net, BnMode::Full, x.mapv(f64::from).view(), &labels)
        .map_err(run_err)
}

/// A unit vector of `n` entries of both signs.
fn random_direction(n: usize) -> Vec<f64> {
    let v = random_inputs(1, n, 5).mapv(f64::from);
    let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    v.iter().map(|a| a / norm).collect()
}

/// ∇L of the mean cross-entropy on the engine's kernels (forward, loss
/// gradient, backward with parameter gradients): the cost an HVP is
/// compared with.
fn curvature_gradient() -> Result<Run> {
    let (net, x, labels) = curvature_net()?;
    let engine = for_net::<f32>(&net, Options::repeated(BnMode::Full)).map_err(run_err)?;
    Ok(Box::new(move || {
        let fwd = engine.forward(x.view(), true).map_err(run_err)?;
        let mut g = engine.output(&fwd, 8).map_err(run_err)?;
        loss_gradient(&mut g, &labels, 1.0 / CURVATURE_BATCH as f32);
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = engine
            .backward(&fwd, 8, Some(g.view()), want)
            .map_err(run_err)?;
        std::hint::black_box(grads.params.len());
        Ok(())
    }))
}

/// Logits z → ∂ℓ/∂z of the cross-entropy (the training code's, softmax(z)
/// − one-hot per example) times `scale`: 1/B for the batch mean, 1 for
/// per-example losses.
fn loss_gradient(g: &mut Array2<f32>, labels: &[u32], scale: f32) {
    gradscope_train::cross_entropy_gradient(g, labels);
    if scale != 1.0 {
        g.mapv_inplace(|v| v * scale);
    }
}

/// The convolutions' arithmetic in one SGD step of a 6n + 2-layer CIFAR net at
/// batch 128: per 3×3 convolution 2·C_in·C_out·9·P flops for the forward
/// pass, twice that for the two backward products (input and weights).
fn conv_flops(depth: usize) -> f64 {
    let n = (depth - 2) / 6;
    // The stem (3 → 16 at 32×32), then per stage 2n convolutions at width w on
    // P pixels (the first of stages 2 and 3 reads half the channels).
    let mut macs = 3.0 * 16.0 * 9.0 * 1024.0;
    for (s, (w, p)) in [(16.0, 1024.0), (32.0, 256.0), (64.0, 64.0)]
        .into_iter()
        .enumerate()
    {
        let first_in = if s == 0 { w } else { w / 2.0 };
        macs += first_in * w * 9.0 * p + (2 * n - 1) as f64 * w * w * 9.0 * p;
    }
    3.0 * 2.0 * macs * 128.0
}

/// One SGD step (forward in training mode with the running statistics,
/// cross-entropy gradient, backward, update) of a conv net on the engine.
fn conv_step(depth: usize, residual: bool) -> Result<Run> {
    use gradscope_nets::{ConvArch, ConvNet, ConvNetParams};
    let arch = if residual {
        ConvArch::RESNET
    } else {
        ConvArch::PLAIN
    };
    let p = ConvNetParams {
        arch,
        depth,
        precision: Precision::F32,
        seed: 3,
        ..Default::default()
    };
    let net = Net::Conv(ConvNet::new(&p.check().map_err(run_err)?).map_err(run_err)?);
    let mut engine = for_net::<f32>(&net, Options::repeated(BnMode::Train)).map_err(run_err)?;
    let x = random_inputs(128, 3 * 32 * 32, 3);
    let labels: Vec<u32> = (0..128).map(|i| i % 10).collect();
    Ok(Box::new(move || {
        let fwd = engine.forward(x.view(), true).map_err(run_err)?;
        engine.update_running_stats(&fwd);
        let depth = engine.depth();
        let mut g = engine.output(&fwd, depth).map_err(run_err)?;
        loss_gradient(&mut g, &labels, 1.0 / 128.0);
        let want = Want {
            params: true,
            ..Want::default()
        };
        let grads = engine
            .backward(&fwd, depth, Some(g.view()), want)
            .map_err(run_err)?;
        engine
            .update_params(&grads, &mut |_, _, w, g| {
                w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.01 * g)
            })
            .map_err(run_err)?;
        Ok(())
    }))
}

/// The machine's dense f32 GEMM rate, GFLOP/s, from a 2048³ product (candle's gemm).
pub fn gemm_peak(runs: usize) -> Result<f64> {
    let n = 2048;
    let a = Tensor::ones((n, n), candle_core::DType::F32, &Device::Cpu).map_err(run_err)?;
    let b = (a.clone() * 0.5).map_err(run_err)?;
    let _ = a.matmul(&b).map_err(run_err)?;
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        std::hint::black_box(a.matmul(&b).map_err(run_err)?);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(gemm_flops(n, n, n) / best / 1e9)
}

/// Time one workload in this process.
pub fn time_workload(name: &str, threads: usize, runs: usize) -> Result<Timing> {
    let all = workloads();
    let Some(w) = all.iter().find(|w| w.name == name) else {
        return Err(BenchError::Unknown(
            name.into(),
            all.iter().map(|w| w.name).collect::<Vec<_>>().join(", "),
        ));
    };
    let mut f = (w.setup)(threads)?;
    let mut times = Vec::with_capacity(runs);
    // On this thread, not in a part of the pool: one net's products split between
    // the product threads (`MATMUL_NUM_THREADS`), and workloads over many
    // nets bring their own pool.
    let warm = Instant::now();
    f()?;
    while warm.elapsed() < WARM_UP {
        f()?;
    }
    let (before, cpu) = (team_stats(), cpu_times());
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let team = TeamRecord::between(before, team_stats(), times.iter().sum());
    let steal_share = cpu
        .zip(cpu_times())
        .and_then(|((s0, t0), (s1, t1))| (t1 > t0).then(|| (s1 - s0) as f64 / (t1 - t0) as f64));
    Ok(Timing {
        steal_share,
        team: Some(team),
        ..Timing::of_runs(name, threads, times, peak_rss_mib(), w.flops)
    })
}

/// All CPUs' (steal, total) time in clock ticks since boot, from the first
/// line of `/proc/stat`; None where there is none.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already counted in user and nice.
    let steal = *ticks.get(7)?;
    Some((steal, ticks.iter().take(8).sum()))
}

/// Peak resident set size of this process (Linux: VmHWM), MiB; NaN elsewhere.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timing records its runs in order and, at two product threads, the
    /// steps the team split; the CPU counters parse.
    #[test]
    fn a_timing_records_its_runs_and_the_product_threads() {
        gradscope_engine::set_product_threads(2);
        let t = time_workload("gram-256x8", 2, 3).unwrap();
        assert_eq!(t.times_s.len(), 3);
        let mut sorted = t.times_s.clone();
        sorted.sort_by(f64::total_cmp);
        assert_eq!(
            (t.min_s, t.median_s, t.max_s),
            (sorted[0], sorted[1], sorted[2])
        );
        let team = t.team.unwrap();
        assert!(team.split_steps > 0, "{team:?}");
        assert_eq!(team.serial_steps, 0, "{team:?}");
        assert!((0.0..1.0).contains(&team.wait_share), "{team:?}");
        if cfg!(target_os = "linux") {
            let (steal, total) = cpu_times().unwrap();
            assert!(steal <= total && total > 0);
            assert!((0.0..=1.0).contains(&t.steal_share.unwrap()));
        }
        assert!(matches!(
            time_workload("no-such", 1, 1),
            Err(BenchError::Unknown(..))
        ));
    }
}
