//! What each command does, given parsed arguments.

use std::time::Instant;

use anyhow::{Context, Result};
use gradscope_studies::ensemble::EnsembleParams;
use gradscope_studies::shattered::ShatteredParams;
use gradscope_studies::training::{self, TrainingParams};
use gradscope_studies::{RunOptions, Study, StudyResults, default_threads, run_study};
use gradscope_train::{Decay, OptimizerParams};

use crate::args::{
    Cli, Command, DegradationArgs, EnsembleArgs, Folders, ShatteredArgs, TrainArgs, TrainingArgs,
};
use crate::progress::Bar;

pub fn run(cli: Cli) -> Result<()> {
    let threads = match cli.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => default_threads(),
    };
    let ctx = Ctx {
        threads,
        quiet: cli.quiet,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    match cli.command {
        Command::Shattered(a) => shattered_command(&ctx, a),
        Command::Reproduce(a) => reproduce(&ctx, a.quick, &a.folders),
        Command::Degradation(a) => degradation_command(&ctx, a),
        Command::Train(a) => train_command(&ctx, a),
        Command::Ensemble(a) => ensemble_command(&ctx, a),
        Command::Bench(a) => crate::bench::bench_command(&ctx.quiet, a),
        Command::Report(f) => build_reports(&ctx, &f),
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
}

impl Ctx {
    fn log(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    fn options(&self, bar: &Bar) -> RunOptions {
        RunOptions {
            threads: self.threads,
            progress: Some(bar.callback()),
            cancel: None,
            command: Some(self.command.clone()),
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
    run_shattered(ctx, &p, &a.folders, !a.no_report)
}

fn run_shattered(
    ctx: &Ctx,
    params: &ShatteredParams,
    folders: &Folders,
    report: bool,
) -> Result<()> {
    execute(ctx, &params.check()?, folders)?;
    if report {
        build_reports(ctx, folders)?;
    }
    Ok(())
}

/// Run every cell of a validated study with a progress bar and write its
/// folder under the data root.
fn execute<S: Study>(ctx: &Ctx, study: &S, folders: &Folders) -> Result<()> {
    let cells = study.cells().len();
    let bar = Bar::new(S::NAME, cells, ctx.quiet);
    let t = Instant::now();
    let results = run_study(study, &ctx.options(&bar))?;
    bar.finish();
    let dir = folders.out.join(S::NAME);
    results
        .write(&dir)
        .with_context(|| format!("writing {}", dir.display()))?;
    ctx.log(&format!(
        "{}: {cells} cells in {:.1} s → {}",
        S::NAME,
        t.elapsed().as_secs_f64(),
        dir.display()
    ));
    Ok(())
}

fn build_reports(ctx: &Ctx, folders: &Folders) -> Result<()> {
    let t = Instant::now();
    let cards = gradscope_report::rebuild_all(&folders.out, &folders.reports)?;
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

fn archs_text() -> String {
    "plain       Linear → φ, repeated\n\
     plain-bn    Linear → BN → φ\n\
     resnet      x + α·F(x), F = φ → Linear → φ → Linear\n\
     resnet-bn   x + α·F(x), F = BN → φ → Linear → BN → φ → Linear (pre-activation)\n\
     resnet1     x + α·F(x), F = φ → Linear\n\
     resnet1-bn  x + α·F(x), F = BN → φ → Linear\n\
     \n\
     options: name:key=value,…  norm=none|bn  branch=1..8  alpha=<branch scale>\n\
     e.g. resnet-bn:alpha=0.5  resnet:branch=3,norm=bn\n\
     \n\
     conv-plain   He 2016a CIFAR net without shortcuts: 3×3 stem, 3 stages (16/32/64), 6n+2 layers\n\
     conv-resnet  the same with shortcuts, post-activation blocks; options block=basic|bottleneck (9n+2), shortcut=a|b\n\
     (conv nets train in `degradation`, `train` and `ensemble` on image data)\n"
        .to_string()
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
    execute(ctx, &p.check()?, &a.folders)?;
    if !a.no_report {
        build_reports(ctx, &a.folders)?;
    }
    Ok(())
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
    execute(ctx, &p.check()?, &a.folders)?;
    if !a.no_report {
        build_reports(ctx, &a.folders)?;
    }
    Ok(())
}

/// The default run of every study, then every report.
fn reproduce(ctx: &Ctx, quick: bool, folders: &Folders) -> Result<()> {
    let t = Instant::now();
    fn pick<T>(quick: bool, q: fn() -> T, full: fn() -> T) -> T {
        if quick { q() } else { full() }
    }
    execute(
        ctx,
        &pick(quick, ShatteredParams::quick, ShatteredParams::default).check()?,
        folders,
    )?;
    execute(
        ctx,
        &pick(quick, TrainingParams::quick, TrainingParams::default).check()?,
        folders,
    )?;
    execute(
        ctx,
        &pick(quick, EnsembleParams::quick, EnsembleParams::default).check()?,
        folders,
    )?;
    build_reports(ctx, folders)?;
    ctx.log(&format!(
        "reproduce: all studies in {:.1} s; open {}",
        t.elapsed().as_secs_f64(),
        folders.reports.join("index.html").display()
    ));
    Ok(())
}
