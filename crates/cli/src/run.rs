//! What each command does, given parsed arguments.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{ArgMatches, FromArgMatches};
use gradscope_studies::live::Follow;
use gradscope_studies::training::TrainingParams;
use gradscope_studies::{
    CellCache, LockKind, Params, RunOptions, Study, StudyFolder, default_threads, merge_study,
    run_shard, run_study,
};

use crate::args::{Cli, Command, Folders, MergeArgs, RunArgs, RunFlags, TrainArgs};
use crate::progress::Bar;
use crate::recipe::RecipeFlags;
use crate::registry::{self, STUDIES, given_flags};

/// A run stopped by Ctrl-C or SIGTERM (exit code 130).
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The most worker threads `--threads` accepts: cells run one per thread,
/// so threads beyond the cells or the cores only add stacks and memory.
pub const MAX_THREADS: usize = 1024;

/// Run the parsed command line: the whole `gradscope` binary after parsing.
pub fn run(m: ArgMatches) -> Result<()> {
    let quiet = m.get_flag("quiet");
    let (name, sub) = m.subcommand().context("no command")?;
    // Only the commands that run cells have --threads.
    let threads = match sub.try_get_one::<usize>("threads").ok().flatten() {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(&n) if n > MAX_THREADS => anyhow::bail!(
            "--threads {n} is more than {MAX_THREADS}: cells run one per thread, so more threads than cells or cores only add memory"
        ),
        Some(&n) => n,
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
        quiet,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cancel,
    };
    if let Some(study) = registry::find(name).filter(|e| e.name() == name) {
        return study.run_command_line(&ctx, sub);
    }
    match Cli::from_arg_matches(&m)?.command {
        Command::Reproduce(a) => reproduce(&ctx, a.quick, a.studies.as_deref(), &a.folders, &a.run),
        Command::Train(a) => train_command(&ctx, a, sub),
        Command::Bench(a) => crate::bench::bench_command(&ctx.quiet, a),
        Command::Run(a) => run_file(&ctx, a),
        Command::Merge(a) => merge_command(&ctx, a),
        Command::Report(f) => build_reports(&ctx, &f, None),
        Command::Archs => {
            print!("{}", archs_text());
            Ok(())
        }
        Command::Runs(a) => {
            print!(
                "{}",
                crate::runs::list_text(&crate::runs::runs_root(&a.out))
            );
            Ok(())
        }
        Command::Compare(a) => {
            let root = crate::runs::runs_root(&a.out);
            let runs = a
                .runs
                .iter()
                .map(|r| crate::runs::find(&root, r))
                .collect::<Result<Vec<_>>>()?;
            print!("{}", crate::runs::compare_text(&runs));
            if let Some(path) = &a.csv {
                gradscope_contract::io::write_atomic(
                    path,
                    crate::runs::compare_csv(&runs).as_bytes(),
                )?;
            }
            Ok(())
        }
    }
}

/// What a command runs with.
pub struct Ctx {
    /// Worker threads for independent cells.
    pub threads: usize,
    /// No progress bars, log lines or summary tables.
    pub quiet: bool,
    /// The command line, for the provenance.
    pub command: String,
    /// Set by Ctrl-C or SIGTERM: no new cells start; a second signal exits at once.
    pub cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
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

/// Validate `params`, run the study (reusing stored cells unless told
/// otherwise), write its folder and, when asked, the reports. Returns false
/// for a shard, which writes no summary.
pub fn run_params<P: Params>(
    ctx: &Ctx,
    params: &P,
    folders: &Folders,
    flags: &RunFlags,
    report: bool,
) -> Result<bool> {
    let mut study = params.check()?;
    preflight(folders, report)?;
    let done = execute(ctx, &mut study, folders, flags)?;
    if done && report {
        build_reports(ctx, folders, Some(&[<P::Config as Study>::NAME]))?;
    }
    Ok(done)
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
        let probe = dir.join(gradscope_studies::output::temp_name("gradscope-write-test"));
        gradscope_studies::output::create_new(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .with_context(|| format!("cannot write into the output folder {}", dir.display()))?;
    }
    Ok(())
}

/// Run every cell of a validated study with a progress bar, each stored in
/// `<out>/<study>/cells/` as it finishes, and write the study folder.
/// Returns false for a shard, which stores its cells and writes no summary.
fn execute<S: Study>(
    ctx: &Ctx,
    study: &mut S,
    folders: &Folders,
    flags: &RunFlags,
) -> Result<bool> {
    let dir = folders.out.join(S::NAME);
    let cells_dir = dir.join("cells");
    // One writer per study folder; shards of a configuration share it.
    let lock = if flags.shard.is_some() {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    };
    let folder = StudyFolder::open(&dir, lock, &ctx.command, &|m| ctx.log(m))?;
    if flags.shard.is_some() {
        for line in other_configurations(&*study, &cells_dir) {
            eprintln!("{line}");
        }
    }
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
    let bar = Bar::new(S::NAME, todo, study.cell_steps(), ctx.quiet);
    if !ctx.quiet {
        study.follow(Follow {
            observer: Some(bar.observer(true)),
            ..Follow::default()
        });
    }
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
        let r = run_shard(&*study, &opts).map_err(interrupted)?;
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
    let results = run_study(&*study, &opts).map_err(interrupted)?;
    bar.finish();
    folder
        .publish(&results)
        .with_context(|| format!("writing {}", dir.display()))?;
    ctx.log(&format!(
        "{}: {total} cells in {:.1} s → {}",
        S::NAME,
        t.elapsed().as_secs_f64(),
        dir.display()
    ));
    Ok(true)
}

/// One line per configuration other than `study`'s whose cells are stored
/// in `cells_dir`: shards of one study should share one configuration, and
/// a shard started with other flags stores its cells apart.
fn other_configurations<S: Study>(study: &S, cells_dir: &std::path::Path) -> Vec<String> {
    let mine = gradscope_studies::cells::config_key(&study.cell_identity());
    let stored = gradscope_studies::cells::stored_configs(cells_dir).unwrap_or_default();
    let ours = study.config_json();
    stored
        .iter()
        .filter(|c| c.key != mine)
        .map(|c| {
            let theirs: serde_json::Value =
                std::fs::read(c.dir.join(gradscope_studies::cells::PARAMS_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
            let diff = crate::runs::differences(&[&theirs, &ours])
                .into_iter()
                .map(|(k, v)| format!("{k} {} here, {} there", v[1], v[0]))
                .collect::<Vec<_>>()
                .join("; ");
            format!(
                "{}: warning: shards of another configuration stored {} cells in {} ({}); this shard's configuration is {mine}: its cells are stored apart, and `gradscope merge {} --config KEY` merges one configuration",
                S::NAME,
                c.cells,
                c.dir.display(),
                if diff.is_empty() { "differs in its data or derived settings".to_string() } else { diff },
                S::NAME
            )
        })
        .collect()
}

/// Estimated peak memory from which a run announces it.
const LARGE_RUN_GIB: f64 = 0.5;

/// `gradscope run FILE`: the study named in the file, with its parameters.
fn run_file(ctx: &Ctx, a: RunArgs) -> Result<()> {
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let (study, table) = registry::parse_study_file(&text, &a.file)?;
    study.run_file(ctx, table, &a)
}

/// `gradscope merge STUDY`.
fn merge_command(ctx: &Ctx, a: MergeArgs) -> Result<()> {
    let study = registry::find(&a.study).with_context(|| {
        format!(
            "unknown study `{}` (known: {})",
            a.study,
            registry::names().join(", ")
        )
    })?;
    study.merge(ctx, &a)
}

/// Summarise the stored cells of one configuration (`config`, or the only
/// one stored) with the parameters its shards stored, publishing the study
/// folder as one transaction under its lock.
pub fn merge_params<P: Params>(
    ctx: &Ctx,
    folders: &Folders,
    config: Option<&str>,
    report: bool,
) -> Result<()> {
    let name = <P::Config as Study>::NAME;
    let dir = folders.out.join(name);
    let cells_dir = dir.join("cells");
    let folder = StudyFolder::open(&dir, LockKind::Exclusive, &ctx.command, &|m| ctx.log(m))?;
    let (study, stored) = gradscope_studies::cells::select_config::<P>(&cells_dir, config)?;
    ctx.log(&format!(
        "{name}: merging configuration {} ({} cells stored)",
        stored.key, stored.cells
    ));
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
    folder
        .publish(&results)
        .with_context(|| format!("writing {}", dir.display()))?;
    ctx.log(&format!(
        "{name}: merged {} cells in {:.1} s → {}",
        study.cells().len(),
        t.elapsed().as_secs_f64(),
        dir.display()
    ));
    drop(folder);
    if report {
        build_reports(ctx, folders, Some(&[name]))?;
    }
    Ok(())
}

fn build_reports(ctx: &Ctx, folders: &Folders, only: Option<&[&str]>) -> Result<()> {
    let t = Instant::now();
    let studies: Vec<_> = STUDIES.iter().map(|e| (e.name(), e.report())).collect();
    let stopped = || ctx.cancel.load(std::sync::atomic::Ordering::Relaxed);
    let stop = |when: &str| {
        anyhow::Error::new(Interrupted(format!(
            "interrupted {when} the report phase; the data are complete, `gradscope report` draws the reports from them"
        )))
    };
    if stopped() {
        return Err(stop("before"));
    }
    let cards = gradscope_report::rebuild(&studies, &folders.out, &folders.reports, only)?;
    if stopped() {
        // Each report was written as a whole; say the run was stopped all the same.
        return Err(stop("during"));
    }
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

/// `gradscope train`'s defaults: the degradation study's net and recipe
/// for 20 epochs at a constant rate (the study's ÷10 milestones belong to
/// its 12 epochs).
pub(crate) fn train_defaults() -> TrainingParams {
    let mut p = TrainingParams::default();
    p.train.epochs = 20;
    p.train.schedule = gradscope_spec::Schedule::default();
    p
}

/// `gradscope train`: one cell of the degradation study in its own run
/// folder, named from its configuration (see [`crate::runs`]).
fn train_command(ctx: &Ctx, a: TrainArgs, m: &ArgMatches) -> Result<()> {
    use crate::runs::{CHECKPOINT, LIVE, RunConfig};
    let one = |mut p: TrainingParams| {
        (p.archs, p.depths, p.seeds) = (vec![a.arch], vec![a.depth], 1);
        p
    };
    let mut p = one(given_flags(&one(train_defaults()), m)?);
    RecipeFlags::given(m)?.apply(&mut p.train)?;
    let mut config = p.check()?;
    config.set_save_weights(a.save_weights.clone())?;
    let identity = config.cell_identity();
    let label = a
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", a.arch, a.depth));
    let name = crate::runs::run_name(&label, &identity);
    let dir = a
        .run_dir
        .clone()
        .unwrap_or_else(|| crate::runs::runs_root(&a.folders.out).join(&name));
    if !a.no_report {
        preflight(&a.folders, true)?;
    }
    let folder = StudyFolder::open(&dir, LockKind::Exclusive, &ctx.command, &|m| ctx.log(m))?;
    let live = dir.join(LIVE);
    if a.force {
        for sub in [live.clone(), dir.join(CHECKPOINT)] {
            if sub.exists() {
                std::fs::remove_dir_all(&sub)
                    .with_context(|| format!("removing {}", sub.display()))?;
            }
        }
    }
    crate::runs::claim(
        &dir,
        &RunConfig {
            hash: name.rsplit('-').next().unwrap_or_default().to_string(),
            name: name.clone(),
            config: identity,
            command: ctx.command.clone(),
        },
        a.force,
    )?;
    if p.checkpoints.is_none() {
        config.set_checkpoints(Some(dir.join(CHECKPOINT)));
    }
    config.set_fresh_start(a.force);
    ctx.log(&format!(
        "train: estimated peak memory {:.3} GiB",
        config.memory_estimate_gib(1)
    ));
    let bar = Bar::new("train", 1, config.cell_steps(), ctx.quiet);
    config.follow(Follow {
        files: Some(live.clone()),
        every_steps: a.log_steps,
        observer: Some(bar.observer(!ctx.quiet)),
    });
    ctx.log(&format!(
        "train: run {} (epochs.csv, steps.csv, grad_norms.csv and TensorBoard events in {})",
        dir.display(),
        live.display()
    ));
    let results = run_study(&config, &ctx.options(&bar)).map_err(|e| match e {
        // SIGTERM or Ctrl-C: the trainer stopped after its epoch in flight.
        gradscope_studies::StudyError::Interrupted => anyhow::Error::new(Interrupted(
            "interrupted: the last finished epoch is checkpointed; run the same command again to resume".into(),
        )),
        other => other.into(),
    })?;
    bar.finish();
    folder
        .publish(&results)
        .with_context(|| format!("writing {}", dir.display()))?;
    drop(folder);
    let report = if a.no_report {
        None
    } else {
        let (root, run) = (
            dir.parent().unwrap_or(Path::new(".")),
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let reports = a.folders.reports.join("runs");
        gradscope_report::build_study(&run, gradscope_report::training::build, root, &reports)?;
        Some(reports.join(&run).join("index.html"))
    };
    let r = &results.summary.results[0];
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
    if let Some(page) = report {
        ctx.log(&format!("report: {}", page.display()));
    }
    Ok(())
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
    let only: Option<Vec<&str>> = only
        .map(|o| {
            o.iter()
                .map(|s| {
                    registry::find(s).map(|e| e.name()).with_context(|| {
                        format!(
                            "--studies: unknown study `{s}` (known: {})",
                            registry::names().join(", ")
                        )
                    })
                })
                .collect()
        })
        .transpose()?;
    // Every study's parameters are checked before the first one runs.
    for study in STUDIES {
        study.check_defaults(quick)?;
    }
    preflight(folders, true)?;
    for study in STUDIES {
        if only.as_ref().is_none_or(|o| o.contains(&study.name())) {
            study.run_defaults(ctx, quick, folders, flags)?;
        }
    }
    // Only the reports of the studies run: the others' raw arrays may be absent.
    build_reports(ctx, folders, only.as_deref())?;
    ctx.log(&format!(
        "reproduce: studies in {:.1} s; open {}",
        t.elapsed().as_secs_f64(),
        folders.reports.join("index.html").display()
    ));
    Ok(())
}
