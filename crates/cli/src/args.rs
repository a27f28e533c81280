//! Command-line arguments, kept apart from what the commands do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gradscope_nets::{Activation, Arch, BiasInit, BnMode, Precision, WeightInit};
use gradscope_studies::Shard;
use gradscope_studies::data::DataSource;
use gradscope_studies::training::ModelArch;

#[derive(Debug, Parser)]
#[command(
    name = "gradscope",
    version,
    about = "A research workbench for the gradients of deep networks",
    long_about = "A research workbench for the gradients of deep networks: vanishing and exploding \
                  gradients, shattered gradients, and why residual nets train.\n\n\
                  Results go to notebooks-data/<study>/ (JSON, CSV, NPY) and reports/<study>/ \
                  (PNG, SVG, HTML, Markdown)."
)]
pub struct Cli {
    /// Worker threads for independent cells (each net runs single-threaded).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// No progress bars or log lines.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Shattered gradients: correlation and spectra of df/dx over an input grid (Balduzzi et al. 2017).
    Shattered(ShatteredArgs),
    /// The degradation problem: plain vs residual nets trained at several depths (He et al. 2016a).
    Degradation(DegradationArgs),
    /// Train one net and log its gradients (one cell of the degradation study).
    Train(TrainArgs),
    /// Residual nets as ensembles: lesions (delete or swap blocks) and gradient by path length (Veit et al. 2016).
    Ensemble(EnsembleArgs),
    /// Gradient norms through depth: per-layer norms against mean-field theory, the scalar chain, the σ_w² × depth phase diagram, Jacobian spectra.
    Norms(NormsArgs),
    /// Skip connections and normalisers compared (r₁, spectra, per-layer norms), and a λ sweep of xSkip, xSkip+LN and rSkip+LN.
    Skips(SkipsArgs),
    /// Gradient correlation beyond one dimension: 2-D gradient pictures and per-example gradient similarity on the digits.
    Correlation(CorrelationArgs),
    /// Benchmarks: gradscope's fast paths beside a PyTorch peer doing the same work.
    Bench(BenchArgs),
    /// Run the default studies and build every report.
    Reproduce(ReproduceArgs),
    /// Run any study from a TOML file (`study = "shattered"` and its parameters; see examples/studies/).
    Run(RunArgs),
    /// Summarise a study whose cells were computed by shards (`--shard i/n`), then build its report.
    Merge(MergeArgs),
    /// Rebuild the reports from notebooks-data alone (no recomputation).
    Report(Folders),
    /// List the architectures and the spec grammar.
    Archs,
}

/// How a study's cells are run: reused, recomputed, or one shard of them.
#[derive(Debug, Clone, Default, Args)]
pub struct RunFlags {
    /// Reuse cells stored by an earlier or interrupted run of the same configuration (the default).
    #[arg(long, overrides_with = "force")]
    pub resume: bool,
    /// Recompute every cell, ignoring stored ones.
    #[arg(long)]
    pub force: bool,
    /// Run only slice i of n of the cells and store them (e.g. a Slurm array task); `gradscope merge` makes the summary.
    #[arg(long, value_name = "i/n")]
    pub shard: Option<Shard>,
    /// Stop at the first NaN/inf in activations, gradients or the loss (naming where it appeared) instead of recording it as data.
    #[arg(long)]
    pub fatal_faults: bool,
}

/// Where results and reports go.
#[derive(Debug, Clone, Args)]
pub struct Folders {
    /// Data folder (one subfolder per study).
    #[arg(long, default_value = "notebooks-data", value_name = "DIR")]
    pub out: PathBuf,
    /// Report folder (one subfolder per study, plus index.html).
    #[arg(long, default_value = "reports", value_name = "DIR")]
    pub reports: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Small sizes: a first look in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Only these studies, comma-separated (default: all of shattered,
    /// training, ensemble, correlation, norms, skips); reports are built
    /// from whatever data the folder holds.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub studies: Option<Vec<String>>,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct ShatteredArgs {
    /// Architectures, comma-separated (e.g. plain-bn,resnet-bn,resnet:branch=1,norm=bn).
    #[arg(long, value_parser = parse_arch_list, value_name = "LIST")]
    pub archs: Option<ArchList>,
    /// Depths, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Option<Vec<usize>>,
    /// Hidden width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Grid points on [x-min, x-max].
    #[arg(long)]
    pub points: Option<usize>,
    /// Nets per (arch, depth).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Base seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Option<Precision>,
    /// BN gradient mode: per-sample (statistics held constant), full (through the statistics) or eval.
    #[arg(long)]
    pub bn_mode: Option<BnMode>,
    /// Weight init: he, lecun, xavier, normal(σ_w²).
    #[arg(long)]
    pub weight_init: Option<WeightInit>,
    /// Bias init: torch (default), zero, normal(σ), uniform(b).
    #[arg(long)]
    pub bias_init: Option<BiasInit>,
    /// Small sizes: a first look in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Save each (arch, seed)'s deepest net as safetensors in this folder.
    #[arg(long, value_name = "DIR")]
    pub save_weights: Option<PathBuf>,
    /// Evaluate one net with these weights (needs one arch, one depth, --seeds 1).
    #[arg(long, value_name = "FILE")]
    pub load_weights: Option<PathBuf>,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct NormsArgs {
    /// Parts to run, comma-separated: layers (per-layer norms vs mean-field theory), chain (the scalar chain), phase (σ_w² × depth diagram), jacobian (singular values). Default: all.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub parts: Option<Vec<String>>,
    /// Architectures, comma-separated (MLP specs).
    #[arg(long, value_parser = parse_arch_list, value_name = "LIST")]
    pub archs: Option<ArchList>,
    /// Activations, comma-separated: relu, leaky-relu(a), elu, selu, gelu, softplus, tanh, sigmoid, identity.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub activations: Option<Vec<Activation>>,
    /// Weight inits, comma-separated: he, he-fan-out, lecun, xavier, xavier-uniform, normal(σ_w²), uniform(σ_w²), orthogonal(gain).
    #[arg(long, value_delimiter = ';', value_name = "LIST")]
    pub inits: Option<Vec<WeightInit>>,
    /// Blocks.
    #[arg(long)]
    pub depth: Option<usize>,
    /// Inputs: gaussian (a batch of N(0, I) vectors) or grid (scalars on [−2, 2]; needs --input-dim 1).
    #[arg(long)]
    pub input: Option<String>,
    /// Dimension of the Gaussian inputs.
    #[arg(long)]
    pub input_dim: Option<usize>,
    /// Hidden width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Nets per configuration.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Base seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// f32 or f64 (f32 shows where overflow happens).
    #[arg(long)]
    pub dtype: Option<Precision>,
    /// Small sizes: a first look in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct SkipsArgs {
    /// Variants compared, comma-separated (see `gradscope archs`).
    #[arg(long, value_parser = parse_arch_list, value_name = "LIST")]
    pub archs: Option<ArchList>,
    /// Depths of the comparison, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Option<Vec<usize>>,
    /// λ of the xSkip and xSkip+LN sweep, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub lambdas: Option<Vec<f64>>,
    /// λ of the rSkip+LN sweep (LN recursions), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub recursions: Option<Vec<usize>>,
    /// Depth of the λ sweep.
    #[arg(long)]
    pub sweep_depth: Option<usize>,
    /// Hidden width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Grid points.
    #[arg(long)]
    pub points: Option<usize>,
    /// Nets per (variant, depth).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Base seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Option<Precision>,
    /// BN gradient mode: per-sample, full, eval.
    #[arg(long)]
    pub bn_mode: Option<BnMode>,
    /// Small sizes: a first look in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct CorrelationArgs {
    /// Architectures, comma-separated (MLP specs).
    #[arg(long, value_parser = parse_arch_list, value_name = "LIST")]
    pub archs: Option<ArchList>,
    /// Depths, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Option<Vec<usize>>,
    /// Hidden width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Grid side H: pictures of H × H points on [−extent, extent]².
    #[arg(long)]
    pub side: Option<usize>,
    /// Digits whose per-example gradients are compared.
    #[arg(long)]
    pub examples: Option<usize>,
    /// Nets per (arch, depth).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Base seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Option<Precision>,
    /// Small sizes: a first look in seconds.
    #[arg(long)]
    pub quick: bool,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The study file.
    pub file: PathBuf,
    /// Use the study's small sizes instead of its defaults for keys the file leaves out.
    #[arg(long)]
    pub quick: bool,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The study folder name under --out (shattered, training, ensemble).
    pub study: String,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub folders: Folders,
}

/// How to train (shared by `degradation` and `train`).
#[derive(Debug, Args)]
pub struct TrainingArgs {
    /// Data: digits (embedded), mnist:DIR (IDX files), cifar10:DIR (binary batches).
    #[arg(long, value_name = "SOURCE")]
    pub data: Option<DataSource>,
    /// Train on at most this many examples.
    #[arg(long, value_name = "N")]
    pub max_train: Option<usize>,
    /// MLP width.
    #[arg(long)]
    pub width: Option<usize>,
    /// Passes over the training set.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per optimiser step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// sgd or adam.
    #[arg(long, value_parser = ["sgd", "adam"])]
    pub optimizer: Option<String>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// L2 weight decay (SGD) or decoupled weight decay (Adam).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Learning-rate decay: constant, cosine, or step:E1,E2 (÷10 at those epochs).
    #[arg(long, value_name = "DECAY")]
    pub schedule: Option<String>,
    /// Linear warm-up epochs.
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Log gradients every N steps (default: every epoch).
    #[arg(long, value_name = "N")]
    pub log_every: Option<usize>,
    /// f32 or f64.
    #[arg(long)]
    pub dtype: Option<Precision>,
    /// Base seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Checkpoint folder (default: <out>/training/checkpoints); runs resume from it.
    #[arg(long, value_name = "DIR")]
    pub checkpoints: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DegradationArgs {
    /// Architectures, comma-separated: MLP specs (plain-bn, resnet-bn, …) or conv-plain, conv-resnet[:shortcut=b][,block=bottleneck].
    #[arg(long, value_parser = parse_model_arch_list, value_name = "LIST")]
    pub archs: Option<ModelArchList>,
    /// Depths, comma-separated (MLP: blocks; conv: 6n+2 layers).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub depths: Option<Vec<usize>>,
    /// Runs per (arch, depth).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Small sizes: a first look in seconds.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Architecture (see `gradscope archs`; conv nets as conv-plain, conv-resnet).
    #[arg(long, value_name = "SPEC")]
    pub arch: ModelArch,
    /// Depth (MLP: blocks; conv: 6n+2 layers).
    #[arg(long)]
    pub depth: usize,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Where the run's files go (default: <out>/training/runs/<arch>-<depth>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct EnsembleArgs {
    /// Architectures, comma-separated (as for `degradation`).
    #[arg(long, value_parser = parse_model_arch_list, value_name = "LIST")]
    pub archs: Option<ModelArchList>,
    /// Depth (MLP: blocks; conv: 6n+2 layers).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Nets per architecture.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Evaluate these weights (safetensors, e.g. a training checkpoint) instead of training; needs one arch and --seeds 1.
    #[arg(long, value_name = "FILE")]
    pub load_weights: Option<PathBuf>,
    /// Random draws per number of deleted blocks or swaps.
    #[arg(long, value_name = "N")]
    pub lesion_draws: Option<usize>,
    /// Sampled paths per path length.
    #[arg(long, value_name = "N")]
    pub path_samples: Option<usize>,
    /// Small sizes: a first look in seconds.
    #[arg(long)]
    pub quick: bool,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub folders: Folders,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Timed runs per workload (after at least 0.5 s of warm-up runs).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Thread counts to run every workload at.
    #[arg(
        long = "at-threads",
        value_delimiter = ',',
        default_value = "1,2",
        value_name = "LIST"
    )]
    pub at_threads: Vec<usize>,
    /// Workloads (default: all; see --list).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub workloads: Option<Vec<String>>,
    /// List the workloads and exit.
    #[arg(long)]
    pub list: bool,
    /// Python with torch for the peer runs (default: python3 if it imports torch); `off` to skip.
    #[arg(long, value_name = "PYTHON")]
    pub peer: Option<String>,
    /// The peer script.
    #[arg(long, default_value = "benches/peer/peer.py", value_name = "FILE")]
    pub peer_script: PathBuf,
    /// Also write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Internal: time one workload in this process and print JSON.
    #[arg(long, hide = true, value_name = "WORKLOAD")]
    pub worker: Option<String>,
    /// Internal: measure the GEMM rate in this process and print it.
    #[arg(long, hide = true)]
    pub gemm_worker: bool,
}

/// A list of trainable architectures.
#[derive(Debug, Clone)]
pub struct ModelArchList(pub Vec<ModelArch>);

/// Like [`parse_arch_list`], for MLP and conv architectures.
pub fn parse_model_arch_list(s: &str) -> Result<ModelArchList, String> {
    split_specs(s)?
        .iter()
        .map(|i| i.parse::<ModelArch>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(ModelArchList)
}

/// A list of architectures.
#[derive(Debug, Clone)]
pub struct ArchList(pub Vec<Arch>);

/// Split `a,b:k=v,k=v,c` into archs: a piece holding `=` continues the options
/// of the arch before it (arch names never contain `=`).
pub fn parse_arch_list(s: &str) -> Result<ArchList, String> {
    split_specs(s)?
        .iter()
        .map(|i| i.parse::<Arch>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(ArchList)
}

/// Split a comma-separated list of specs, keeping `key=value` options with their spec.
fn split_specs(s: &str) -> Result<Vec<String>, String> {
    let mut items: Vec<String> = Vec::new();
    for piece in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match items.last_mut() {
            Some(last) if piece.contains('=') && !piece.contains(':') => {
                last.push(',');
                last.push_str(piece);
            }
            _ => items.push(piece.to_string()),
        }
    }
    if items.is_empty() {
        return Err("list at least one architecture".into());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_lists_split_between_archs_not_options() {
        let l = parse_arch_list("plain-bn,resnet:branch=3,norm=bn,resnet-bn:alpha=0.5,plain")
            .unwrap()
            .0;
        let s: Vec<String> = l.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            s,
            [
                "plain-bn",
                "resnet-bn:branch=3",
                "resnet-bn:alpha=0.5",
                "plain"
            ]
        );
        assert!(parse_arch_list("").is_err());
        assert!(parse_arch_list("plain,mlp").unwrap_err().contains("mlp"));
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
