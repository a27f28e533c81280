//! The commands that are not studies, and the flags every study command
//! shares, kept apart from what the commands do. Each study's own flags are
//! its parameters struct (`clap::Args` in the data contract), added as a
//! subcommand by the registry ([`crate::registry`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use gradscope_studies::Shard;
use gradscope_studies::training::ModelArch;

use crate::recipe::RecipeFlags;

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
    /// No progress bars or log lines.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands besides the studies (the registry adds one per study).
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train one net and log its gradients (one cell of the degradation study).
    Train(TrainArgs),
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
    /// List the `train` runs: configuration, epochs done, last errors, status.
    Runs(RunsArgs),
    /// Put two or more `train` runs side by side: the settings that differ, then their curves.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Data folder (runs are under <out>/degradation/runs).
    #[arg(long, default_value = "notebooks-data", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The runs: folder names under <out>/degradation/runs, unique prefixes, or paths.
    #[arg(required = true, num_args = 2.., value_name = "RUN")]
    pub runs: Vec<String>,
    /// Data folder (runs are under <out>/degradation/runs).
    #[arg(long, default_value = "notebooks-data", value_name = "DIR")]
    pub out: PathBuf,
    /// Also write the curves of every run to this CSV file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
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
    #[command(flatten)]
    pub workers: Workers,
}

/// How many cells run at once.
#[derive(Debug, Clone, Default, Args)]
pub struct Workers {
    /// Worker threads for independent cells (each net runs single-threaded; default: the cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// What every study command takes besides its parameters.
#[derive(Debug, Args)]
pub struct StudyFlags {
    /// Small sizes: a first look in seconds (flags given still win).
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
    /// Only these studies, comma-separated (default: all; the registry lists them here).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub studies: Option<Vec<String>>,
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
    /// The study (its folder under --out; the registry lists them here).
    pub study: String,
    /// Only write the data, not the report.
    #[arg(long)]
    pub no_report: bool,
    /// The stored configuration to merge (its folder under cells/, or a
    /// unique prefix), when cells of several are stored.
    #[arg(long, value_name = "KEY")]
    pub config: Option<String>,
    #[command(flatten)]
    pub workers: Workers,
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
    pub recipe: RecipeFlags,
    /// Name the run: its folder is <out>/degradation/runs/<name>-<hash of the configuration> (default name: <arch>-<depth>).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Where the run's files go (default: <out>/degradation/runs/<name>-<hash>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Train from the start, discarding the run's checkpoint and live files.
    #[arg(long)]
    pub force: bool,
    /// Only write the data, not the run's report (<reports>/runs/<run>/).
    #[arg(long)]
    pub no_report: bool,
    /// Also write the trained net's weights here (safetensors).
    #[arg(long, value_name = "FILE")]
    pub save_weights: Option<PathBuf>,
    /// Also log the batch loss every N steps (live/steps.csv and TensorBoard); 0: epochs only.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub log_steps: usize,
    #[command(flatten)]
    pub workers: Workers,
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        crate::registry::command().debug_assert();
    }
}
