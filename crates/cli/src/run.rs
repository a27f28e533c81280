//! What each command does, given parsed arguments.

use std::time::Instant;

use anyhow::{Context, Result};
use gradscope_studies::shattered::ShatteredParams;
use gradscope_studies::{RunOptions, Study, StudyResults, default_threads, run_study};

use crate::args::{Cli, Command, Folders, ShatteredArgs};
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
        Command::Reproduce(a) => {
            let params = if a.quick {
                ShatteredParams::quick()
            } else {
                ShatteredParams::default()
            };
            run_shattered(&ctx, &params, &a.folders, true)?;
            ctx.log(&format!(
                "reports written to {}",
                a.folders.reports.display()
            ));
            Ok(())
        }
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
     e.g. resnet-bn:alpha=0.5  resnet:branch=3,norm=bn\n"
        .to_string()
}
