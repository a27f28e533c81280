//! What each command does, given parsed arguments.

use std::time::Instant;

use anyhow::{Context, Result};
use gradscope_studies::correlation::CorrelationParams;
use gradscope_studies::ensemble::EnsembleParams;
use gradscope_studies::norms::NormsParams;
use gradscope_studies::registry::{Params, STUDY_NAMES, params_from_table, parse_study_file};
use gradscope_studies::shattered::ShatteredParams;
use gradscope_studies::skips::SkipsParams;
use gradscope_studies::study::PARAMS_FILE;
use gradscope_studies::training::{self, TrainingParams};
use gradscope_studies::{
    CellCache, RunOptions, Study, StudyResults, default_threads, merge_study, run_shard, run_study,
};
use gradscope_train::{Decay, OptimizerParams};

use crate::args::{
    Cli, Command, CorrelationArgs, DegradationArgs, EnsembleArgs, Folders, MergeArgs, NormsArgs,
    RunArgs, RunFlags, ShatteredArgs, SkipsArgs, TrainArgs, TrainingArgs,
};
use crate::progress::Bar;

/// A run stopped by Ctrl-C or SIGTERM (exit code 130).
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Run the parsed command line: the whole `gradscope` binary after parsing.
pub fn run(cli: Cli) -> Result<()> {
    let threads = match cli.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => default_threads(),
    };
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // The first signal asks running studies to stop after the cells in flight; a second exits.
        signal_hook::flag::register_conditional_shutdown(signal, 130, cancel.clone())
            .context("signal handler")?;
        signal_hook::flag::register(signal, cancel.clone()).context("signal handler")?;
    }
    let ctx = Ctx {
        threads,
        quiet: cli.quiet,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cancel,
    };
    match cli.command {
        Command::Shattered(a) => shattered_command(&ctx, a),
        Command::Reproduce(a) => reproduce(&ctx, a.quick, a.studies.as_deref(), &a.folders, &a.run),
        Command::Degradation(a) => degradation_command(&ctx, a),
        Command::Train(a) => train_command(&ctx, a),
        Command::Ensemble(a) => ensemble_command(&ctx, a),
        Command::Correlation(a) => correlation_command(&ctx, a),
        Command::Norms(a) => norms_command(&ctx, a),
        Command::Skips(a) => skips_command(&ctx, a),
        Command::Bench(a) => crate::bench::bench_command(&ctx.quiet, a),
        Command::Run(a) => run_file(&ctx, a),
        Command::Merge(a) => merge_command(&ctx, a),
        Command::Report(f) => build_reports(&ctx, &f, None),
        Command::Archs => {
            print!("{}", archs_text());
            Ok(())
        }
    }
}

struct Ctx {
    threads: usize,
    quiet: bool,
    command: String,
    /// Set by Ctrl-C or SIGTERM: no new cells start; a second signal exits at once.
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Ctx {
    fn log(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    fn options(&self, bar: &Bar) -> RunOptions {
        let quiet = self.quiet;
        RunOptions {
            threads: self.threads,
            progress: Some(bar.callback()),
            cancel: Some(self.cancel.clone()),
            command: Some(self.command.clone()),
            log: Some(std::sync::Arc::new(move |m: &str| {
                if !quiet {
                    eprintln!("{m}");
                }
            })),
            ..Default::default()
        }
    }
}

fn shattered_command(ctx: &Ctx, a: ShatteredArgs) -> Result<()> {
    let mut p = if a.quick {
        ShatteredParams::quick()
    } else {
        ShatteredParams::default()
    };
    if let Some(v) = a.archs {
        p.archs = v.0;
    }
    if let Some(v) = a.depths {
        p.depths = v;
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { p.$f = v; } )* };
    }
    set!(
        width,
        points,
        seeds,
        seed,
        dtype,
        bn_mode,
        weight_init,
        bias_init
    );
    p.save_weights = a.save_weights;
    p.load_weights = a.load_weights;
    run_params(ctx, &p, &a.folders, &a.run, !a.no_report)
}

fn norms_command(ctx: &Ctx, a: NormsArgs) -> Result<()> {
    let mut p = if a.quick {
        NormsParams::quick()
    } else {
        NormsParams::default()
    };
    if let Some(v) = a.archs {
        p.archs = v.0;
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { p.$f = v; } )* };
    }
    set!(
        parts,
        activations,
        inits,
        depth,
        input,
        input_dim,
        width,
        seeds,
        seed,
        dtype
    );
    run_params(ctx, &p, &a.folders, &a.run, !a.no_report)
}

fn skips_command(ctx: &Ctx, a: SkipsArgs) -> Result<()> {
    let mut p = if a.quick {
        SkipsParams::quick()
    } else {
        SkipsParams::default()
    };
    if let Some(v) = a.archs {
        p.archs = v.0;
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { p.$f = v; } )* };
    }
    set!(
        depths,
        lambdas,
        recursions,
        sweep_depth,
        width,
        points,
        seeds,
        seed,
        dtype,
        bn_mode
    );
    run_params(ctx, &p, &a.folders, &a.run, !a.no_report)
}

fn correlation_command(ctx: &Ctx, a: CorrelationArgs) -> Result<()> {
    let mut p = if a.quick {
        CorrelationParams::quick()
    } else {
        CorrelationParams::default()
    };
    if let Some(v) = a.archs {
        p.archs = v.0;
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { p.$f = v; } )* };
    }
    set!(depths, width, side, examples, seeds, seed, dtype);
    run_params(ctx, &p, &a.folders, &a.run, !a.no_report)
}

/// Validate `params`, run the study (reusing stored cells unless told
/// otherwise), write its folder and, when asked, the reports.
fn run_params<P: Params>(
    ctx: &Ctx,
    params: &P,
    folders: &Folders,
    flags: &RunFlags,
    report: bool,
) -> Result<()> {
    let study = params.check()?;
    preflight(folders, report)?;
    if execute(ctx, &study, folders, flags)? && report {
        build_reports(ctx, folders, Some(&[<P::Config as Study>::NAME]))?;
    }
    Ok(())
}

/// Fail before a long run, not after it, when an output folder cannot be
/// written: create it and write and remove a probe file.
fn preflight(folders: &Folders, report: bool) -> Result<()> {
    let mut dirs = vec![&folders.out];
    if report {
        dirs.push(&folders.reports);
    }
    for dir in dirs {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
        let probe = dir.join(format!(".gradscope-write-test-{}", std::process::id()));
        std::fs::write(&probe, b"")
            .and_then(|_| std::fs::remove_file(&probe))
            .with_context(|| format!("cannot write into the output folder {}", dir.display()))?;
    }
    Ok(())
}

/// Run every cell of a validated study with a progress bar, each stored in
/// `<out>/<study>/cells/` as it finishes, and write the study folder.
/// Returns false for a shard, which stores its cells and writes no summary.
fn execute<S: Study>(ctx: &Ctx, study: &S, folders: &Folders, flags: &RunFlags) -> Result<bool> {
    let dir = folders.out.join(S::NAME);
    let cells_dir = dir.join("cells");
    let total = study.cells().len();
    let todo = flags
        .shard
        .map_or(total, |s| (0..total).filter(|&p| s.contains(p)).count());
    // Large runs say what they will take before they start.
    let threads = ctx.threads.min(todo.max(1));
    if let Some(gib) = study
        .memory_estimate_gib(threads)
        .filter(|&g| g >= LARGE_RUN_GIB)
    {
        ctx.log(&format!(
            "{}: {todo} cells on {threads} thread(s); estimated peak memory {gib:.1} GiB",
            S::NAME
        ));
    }
    let bar = Bar::new(S::NAME, todo, ctx.quiet);
    let t = Instant::now();
    let mut opts = ctx.options(&bar);
    opts.cache = Some(CellCache {
        dir: cells_dir.clone(),
        resume: !flags.force,
    });
    opts.shard = flags.shard;
    opts.fatal_faults = flags.fatal_faults;
    let interrupted = |e: gradscope_studies::StudyError| match e {
        gradscope_studies::StudyError::Interrupted => anyhow::Error::new(Interrupted(format!(
            "interrupted: finished cells are stored in {}; run the same command again to resume",
            cells_dir.display()
        ))),
        other => other.into(),
    };
    if let Some(shard) = flags.shard {
        let r = run_shard(study, &opts).map_err(interrupted)?;
        bar.finish();
        ctx.log(&format!(
            "{}: shard {}/{}: {} cells ({} reused) of {} stored in {} in {:.1} s; when every shard is done: gradscope merge {} --out {}",
            S::NAME,
            shard.index,
            shard.count,
            r.cells,
            r.reused,
            r.total,
            cells_dir.display(),
            t.elapsed().as_secs_f64(),
            S::NAME,
            folders.out.display()
        ));
        return Ok(false);
    }
    let results = run_study(study, &opts).map_err(interrupted)?;
    bar.finish();
    results
        .write(&dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    ctx.log(&format!(
        "{}: {total} cells in {:.1} s → {}",
        S::NAME,
        t.elapsed().as_secs_f64(),
        dir.display()
    ));
    Ok(true)
}

/// Estimated peak memory from which a run announces it.
const LARGE_RUN_GIB: f64 = 0.5;

/// `gradscope run FILE`: the study named in the file, with its parameters.
fn run_file(ctx: &Ctx, a: RunArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let (name, table) = parse_study_file(&text, &a.file)?;
    fn go<P: Params>(ctx: &Ctx, a: &RunArgs, table: toml::Table) -> Result<()> {
        let mut p: P = params_from_table(table.clone(), &a.file)?;
        if a.quick {
            // Keys the file gives win over the small defaults.
            let mut merged = toml::Table::try_from(P::quick()).context("quick parameters")?;
            merged.extend(table);
            p = params_from_table(merged, &a.file)?;
        }
        run_params(ctx, &p, &a.folders, &a.run, !a.no_report)
    }
    match name.as_str() {
        gradscope_studies::shattered::NAME => go::<ShatteredParams>(ctx, &a, table),
        training::NAME => go::<TrainingParams>(ctx, &a, table),
        gradscope_studies::ensemble::NAME => go::<EnsembleParams>(ctx, &a, table),
        gradscope_studies::correlation::NAME => go::<CorrelationParams>(ctx, &a, table),
        gradscope_studies::norms::NAME => go::<NormsParams>(ctx, &a, table),
        gradscope_studies::skips::NAME => go::<SkipsParams>(ctx, &a, table),
        other => anyhow::bail!("{}: no runner for study `{other}`", a.file.display()),
    }
}

/// `gradscope merge STUDY`: summarise stored cells with the parameters the shards stored.
fn merge_command(ctx: &Ctx, a: MergeArgs) -> Result<()> {
    fn go<P: Params>(ctx: &Ctx, a: &MergeArgs) -> Result<()> {
        let dir = a.folders.out.join(&a.study);
        let cells_dir = dir.join("cells");
        let params_path = cells_dir.join(PARAMS_FILE);
        let params: P = gradscope_studies::output::read_json(&params_path)?;
        let study = params.check()?;
        let t = Instant::now();
        let opts = RunOptions {
            threads: ctx.threads,
            command: Some(ctx.command.clone()),
            cache: Some(CellCache {
                dir: cells_dir,
                resume: true,
            }),
            ..Default::default()
        };
        let results = merge_study(&study, &opts)?;
        results
            .write(&dir)
            .with_context(|| format!("writing {}", dir.display()))?;
        ctx.log(&format!(
            "{}: merged {} cells in {:.1} s → {}",
            a.study,
            study.cells().len(),
            t.elapsed().as_secs_f64(),
            dir.display()
        ));
        if !a.no_report {
            build_reports(ctx, &a.folders, Some(&[<P::Config as Study>::NAME]))?;
        }
        Ok(())
    }
    match a.study.as_str() {
        gradscope_studies::shattered::NAME => go::<ShatteredParams>(ctx, &a),
        training::NAME => go::<TrainingParams>(ctx, &a),
        gradscope_studies::ensemble::NAME => go::<EnsembleParams>(ctx, &a),
        gradscope_studies::correlation::NAME => go::<CorrelationParams>(ctx, &a),
        gradscope_studies::norms::NAME => go::<NormsParams>(ctx, &a),
        gradscope_studies::skips::NAME => go::<SkipsParams>(ctx, &a),
        other => anyhow::bail!(
            "unknown study `{other}` (known: {})",
            STUDY_NAMES.join(", ")
        ),
    }
}

fn build_reports(ctx: &Ctx, folders: &Folders, only: Option<&[&str]>) -> Result<()> {
    let t = Instant::now();
    let cards = gradscope_report::rebuild(&folders.out, &folders.reports, only)?;
    ctx.log(&format!(
        "report: {} ({}) in {:.1} s → {}",
        cards
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cards.len(),
        t.elapsed().as_secs_f64(),
        folders.reports.join("index.html").display()
    ));
    Ok(())
}

/// The arch grammar from the spec crate's tables, and where conv nets train.
fn archs_text() -> String {
    gradscope_spec::grammar_help()
        + "\n(conv nets train in `degradation`, `train` and `ensemble` on image data)\n"
}

/// Apply the training flags to study parameters.
fn apply_training(p: &mut TrainingParams, a: TrainingArgs, folders: &Folders) -> Result<()> {
    if let Some(v) = a.data {
        p.data = v;
    }
    if a.max_train.is_some() {
        p.max_train = a.max_train;
    }
    if let Some(v) = a.width {
        p.width = v;
    }
    if let Some(v) = a.dtype {
        p.dtype = v;
    }
    if let Some(v) = a.seed {
        p.seed = v;
    }
    let t = &mut p.train;
    if let Some(v) = a.epochs {
        t.epochs = v;
    }
    if let Some(v) = a.batch_size {
        t.batch_size = v;
    }
    if let Some(v) = a.log_every {
        t.log_every = v;
    }
    if let Some(v) = a.warmup {
        t.schedule.warmup_epochs = v;
    }
    if let Some(s) = a.schedule {
        t.schedule.decay = parse_decay(&s)?;
    }
    let lr = a.lr.unwrap_or(t.optimizer.lr());
    t.optimizer = match (a.optimizer.as_deref(), t.optimizer.clone()) {
        (Some("adam"), OptimizerParams::Adam { .. }) | (None, OptimizerParams::Adam { .. }) => {
            match t.optimizer.clone() {
                OptimizerParams::Adam {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    ..
                } => OptimizerParams::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay: a.weight_decay.unwrap_or(weight_decay),
                },
                sgd => sgd,
            }
        }
        (Some("adam"), _) => OptimizerParams::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: a.weight_decay.unwrap_or(0.0),
        },
        (
            _,
            OptimizerParams::Sgd {
                momentum,
                weight_decay,
                nesterov,
                ..
            },
        ) => OptimizerParams::Sgd {
            lr,
            momentum: a.momentum.unwrap_or(momentum),
            weight_decay: a.weight_decay.unwrap_or(weight_decay),
            nesterov,
        },
        (_, adam) => adam,
    };
    if a.momentum.is_some() && matches!(t.optimizer, OptimizerParams::Adam { .. }) {
        anyhow::bail!("--momentum applies to sgd; adam has beta1");
    }
    p.checkpoints = Some(
        a.checkpoints
            .unwrap_or_else(|| folders.out.join(training::NAME).join("checkpoints")),
    );
    Ok(())
}

/// `constant`, `cosine`, or `step:E1,E2,…` (÷10 at those epochs).
fn parse_decay(s: &str) -> Result<Decay> {
    Ok(match s.trim() {
        "constant" => Decay::Constant,
        "cosine" => Decay::Cosine { min_lr: 0.0 },
        other => match other.strip_prefix("step:") {
            Some(list) => Decay::Step {
                milestones: list
                    .split(',')
                    .map(|e| {
                        e.trim()
                            .parse::<usize>()
                            .with_context(|| format!("--schedule: `{e}` is not an epoch number"))
                    })
                    .collect::<Result<_>>()?,
                gamma: 0.1,
            },
            None => {
                anyhow::bail!("--schedule `{other}`: expected constant, cosine or step:E1,E2,…")
            }
        },
    })
}

fn degradation_command(ctx: &Ctx, a: DegradationArgs) -> Result<()> {
    let mut p = if a.quick {
        TrainingParams::quick()
    } else {
        TrainingParams::default()
    };
    if let Some(v) = a.archs {
        p.archs = v.0;
    }
    if let Some(v) = a.depths {
        p.depths = v;
    }
    if let Some(v) = a.seeds {
        p.seeds = v;
    }
    apply_training(&mut p, a.training, &a.folders)?;
    run_params(ctx, &p, &a.folders, &a.run, !a.no_report)
}

fn train_command(ctx: &Ctx, a: TrainArgs) -> Result<()> {
    let mut p = TrainingParams {
        archs: vec![a.arch],
        depths: vec![a.depth],
        seeds: 1,
        ..Default::default()
    };
    apply_training(&mut p, a.training, &a.folders)?;
    let config = p.check()?;
    let stem = gradscope_studies::shattered::file_stem(&format!("{}-{}", a.arch, a.depth));
    let dir = a
        .run_dir
        .unwrap_or_else(|| a.folders.out.join(training::NAME).join("runs").join(stem));
    let bar = Bar::new("train", 1, ctx.quiet);
    let results = run_study(&config, &ctx.options(&bar))?;
    bar.finish();
    results
        .write(&dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    let r = &results.summary.results[0];
    if !ctx.quiet {
        for e in &results.cells[0].output.history.epochs {
            eprintln!(
                "epoch {:>4}  lr {:.4}  train loss {:.4}  error {:.4}  test error {:.4}",
                e.epoch, e.lr, e.train_loss, e.train_error, e.test_error
            );
        }
    }
    println!(
        "{} depth {}: {} parameters, final train error {:.4}, test error {:.4}{} → {}",
        r.arch,
        r.depth,
        r.parameters,
        r.final_train_error.mean,
        r.final_test_error.mean,
        if r.diverged > 0 { " (diverged)" } else { "" },
        dir.display()
    );
    Ok(())
}

fn ensemble_command(ctx: &Ctx, a: EnsembleArgs) -> Result<()> {
    let mut p = if a.quick {
        EnsembleParams::quick()
    } else {
        EnsembleParams::default()
    };
    if let Some(v) = a.archs {
        p.archs = v.0;
    }
    if let Some(v) = a.depth {
        p.depth = v;
    }
    if let Some(v) = a.seeds {
        p.seeds = v;
    }
    if let Some(v) = a.lesion_draws {
        p.lesion_draws = v;
    }
    if let Some(v) = a.path_samples {
        p.path_samples = v;
    }
    p.load_weights = a.load_weights;
    // The training flags, applied through the training study's parameters.
    let mut t = TrainingParams {
        width: p.width,
        seed: p.seed,
        data: p.data.clone(),
        max_train: p.max_train,
        train: p.train.clone(),
        dtype: p.dtype,
        ..Default::default()
    };
    apply_training(&mut t, a.training, &a.folders)?;
    (
        p.width,
        p.seed,
        p.data,
        p.max_train,
        p.train,
        p.dtype,
        p.checkpoints,
    ) = (
        t.width,
        t.seed,
        t.data,
        t.max_train,
        t.train,
        t.dtype,
        t.checkpoints,
    );
    run_params(ctx, &p, &a.folders, &a.run, !a.no_report)
}

/// The default run of every study, then every report.
fn reproduce(
    ctx: &Ctx,
    quick: bool,
    only: Option<&[String]>,
    folders: &Folders,
    flags: &RunFlags,
) -> Result<()> {
    let t = Instant::now();
    if let Some(bad) = only
        .into_iter()
        .flatten()
        .find(|s| !STUDY_NAMES.contains(&s.trim()))
    {
        anyhow::bail!(
            "--studies: unknown study `{bad}` (known: {})",
            STUDY_NAMES.join(", ")
        );
    }
    let wanted = |name: &str| only.is_none_or(|o| o.iter().any(|s| s.trim() == name));
    fn pick<T>(quick: bool, q: fn() -> T, full: fn() -> T) -> T {
        if quick { q() } else { full() }
    }
    let shattered = pick(quick, ShatteredParams::quick, ShatteredParams::default).check()?;
    let training = pick(quick, TrainingParams::quick, TrainingParams::default).check()?;
    let ensemble = pick(quick, EnsembleParams::quick, EnsembleParams::default).check()?;
    let correlation = pick(quick, CorrelationParams::quick, CorrelationParams::default).check()?;
    let norms = pick(quick, NormsParams::quick, NormsParams::default).check()?;
    let skips = pick(quick, SkipsParams::quick, SkipsParams::default).check()?;
    preflight(folders, true)?;
    if wanted(gradscope_studies::shattered::NAME) {
        execute(ctx, &shattered, folders, flags)?;
    }
    if wanted(training::NAME) {
        execute(ctx, &training, folders, flags)?;
    }
    if wanted(gradscope_studies::ensemble::NAME) {
        execute(ctx, &ensemble, folders, flags)?;
    }
    if wanted(gradscope_studies::correlation::NAME) {
        execute(ctx, &correlation, folders, flags)?;
    }
    if wanted(gradscope_studies::norms::NAME) {
        execute(ctx, &norms, folders, flags)?;
    }
    if wanted(gradscope_studies::skips::NAME) {
        execute(ctx, &skips, folders, flags)?;
    }
    // Only the reports of the studies run: the others' raw arrays may be absent.
    let ran: Option<Vec<&str>> = only.map(|o| o.iter().map(|s| s.trim()).collect());
    build_reports(ctx, folders, ran.as_deref())?;
    ctx.log(&format!(
        "reproduce: studies in {:.1} s; open {}",
        t.elapsed().as_secs_f64(),
        folders.reports.join("index.html").display()
    ));
    Ok(())
}
