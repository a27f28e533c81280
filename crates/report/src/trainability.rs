//! The trainability report: variant × depth maps of the final training
//! error and of the largest stable learning rate, learning curves with
//! their seed bands, the gradient statistics of training as layer × step
//! maps, and each variant's paper claim beside what the data show.

use std::path::Path;

use gradscope_contract::io::create_dir;
use gradscope_contract::trainability::{self, Trainability, TrainabilityData, TrainabilitySummary};
use gradscope_spec::{Arch, BranchInit, Norm, Skip};

use crate::card::StudyCard;
use crate::claims::{Check, Claims};
use crate::doc::{Block, Doc};
use crate::figure::{Legend, LineChart, Mark, Panels, Series, TableMap, save};
use crate::format::{na, pct};
use crate::style::{self, color};
use crate::train_stats::{Runs, StatsPanel, push_maps};
use crate::{Result, pages};

/// A variant "trains" at a depth when its mean final training error, at its
/// best learning rate without divergence, is at most this (chance is 90 %
/// on the ten digits); otherwise it "fails".
pub const TRAINS_BELOW: f64 = 0.5;

/// Build `report_dir` from `data_dir`.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let d = TrainabilityData::read(data_dir)?;
    create_dir(report_dir)?;
    let s = &d.summary;
    let mut doc = Doc::new("Trainability: which variants actually train");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(trainability::NAME);
    let sentences = claims(s, &mut said);
    let finding = if sentences.is_empty() {
        "No variant of this run has a paper claim about training to test.".to_string()
    } else {
        sentences.join(" ")
    };
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(s));

    doc.heading("Final error and stable learning rates");
    doc.push(error_map(s, report_dir)?);
    doc.push(lr_map(s, report_dir)?);
    doc.push(divergence_table(s));

    doc.heading("Learning curves");
    doc.push(learning_curves(&d, report_dir)?);

    if let Some(table) = learned_lambda_table(&d) {
        doc.heading("Learned shortcut scales");
        doc.paragraph(
            "Liu et al. 2020 suggest learning the shortcut scale λ of λx + F(x). Each run of a variant that learns it (lambda=learn(λ₀), skip=scale(learn(λ₀))), with λ per block when the run ended (at its divergence, for a run that diverged): the first block's, and the mean, least and largest over the blocks (n/a: a λ is not finite).",
        );
        doc.push(table);
    }

    if !d.stats.is_empty() {
        doc.heading("Gradient statistics during training");
        let depth = deepest(s);
        let panels: Vec<StatsPanel<'_>> = s
            .config
            .archs
            .iter()
            .map(|a| {
                let arch = a.to_string();
                let lr = verdict(s, &arch, depth)
                    .and_then(|v| v.best_lr)
                    .unwrap_or(s.config.lrs[0]);
                let rows = d
                    .stats
                    .iter()
                    .filter(|r| {
                        r.id[0] == arch
                            && r.id[1] == depth.to_string()
                            && r.id[2].parse::<f64>().ok() == Some(lr)
                            && r.id[3] == "0"
                    })
                    .collect();
                StatsPanel {
                    title: format!("{arch}, lr {lr}"),
                    rows,
                }
            })
            .collect();
        let (title, caption) = (
            format!("depth {depth} (seed 0)"),
            format!(
                "seed 0 at the variant's best stable learning rate at depth {depth} (the smallest when none is stable)"
            ),
        );
        let runs = Runs {
            title: &title,
            caption: &caption,
            cols: 3,
        };
        push_maps(&mut doc, &panels, &runs, report_dir)?;
    }

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir),
        report_dir,
    )?;
    Ok(StudyCard {
        name: trainability::NAME.into(),
        title: "Trainability: which variants actually train".into(),
        href: format!("{}/index.html", trainability::NAME),
        thumbnail: Some(format!("{}/final_error_map.png", trainability::NAME)),
        finding,
        numbers: s
            .verdicts
            .iter()
            .filter(|v| v.depth == deepest(s))
            .map(|v| {
                (
                    format!("{} train error, depth {}", v.arch, v.depth),
                    pct(v.best_train_error.mean),
                )
            })
            .collect(),
    })
}

fn deepest(s: &TrainabilitySummary) -> usize {
    s.config.depths.last().copied().unwrap_or(0)
}

fn setup(s: &TrainabilitySummary) -> String {
    let c = &s.config;
    let lrs: Vec<String> = c.lrs.iter().map(|l| l.to_string()).collect();
    format!(
        "{} variants × depths {:?} × learning rates {} × {} seeds, width {}, on {} ({} training examples), {} epochs of batches of {} ({} optimiser). \
         A run diverges when a batch loss is not finite or passes 10⁶, or a gradient or parameter is not finite; diverged runs are counted with their step and left out of the mean errors. \
         A variant trains at a depth when its mean final training error at its best learning rate without divergence is at most {}; the largest stable learning rate is the largest of the grid at which no seed diverged.",
        c.archs.len(),
        c.depths,
        lrs.join(", "),
        c.seeds,
        c.width,
        s.data.source,
        s.data.train,
        c.train.epochs,
        c.train.batch_size,
        match c.train.optimizer {
            gradscope_spec::OptimizerParams::Sgd { momentum, .. } =>
                format!("SGD, momentum {momentum}"),
            gradscope_spec::OptimizerParams::Adam { .. } => "Adam".to_string(),
        },
        pct(TRAINS_BELOW),
    )
}

fn verdict<'s>(s: &'s TrainabilitySummary, arch: &str, depth: usize) -> Option<&'s Trainability> {
    s.verdicts
        .iter()
        .find(|v| v.arch == arch && v.depth == depth)
}

/// Whether a verdict says the variant trains (see [`TRAINS_BELOW`]).
pub fn trains(v: &Trainability) -> bool {
    v.best_train_error.mean <= TRAINS_BELOW
}

/// The paper claim a variant carries, if any: (claim id stem, whether the
/// claim is that it trains, the claim in words).
pub fn paper_claim(arch: &str) -> Option<(&'static str, bool, &'static str)> {
    let a: Arch = arch.parse().ok()?;
    Some(match a {
        Arch::Plain {
            norm: Norm::None,
            looks_linear: false,
        } => (
            "plain-fails",
            false,
            "a deep plain net without normalisation fails to train (He et al. 2016a; Balduzzi et al. 2017)",
        ),
        Arch::Plain {
            looks_linear: true, ..
        } => (
            "looks-linear-trains",
            true,
            "looks-linear initialisation trains deep nets without skips (Balduzzi et al. 2017)",
        ),
        Arch::Highway { .. } => (
            "highway-trains",
            true,
            "highway gates let very deep nets train (Srivastava et al. 2015)",
        ),
        Arch::Residual {
            init: BranchInit::Fixup,
            norm: Norm::None,
            ..
        } => (
            "fixup-trains",
            true,
            "Fixup trains deep residual nets without normalisation (Zhang et al. 2019)",
        ),
        Arch::Residual {
            init: BranchInit::SkipInit,
            norm: Norm::None,
            ..
        } => (
            "skipinit-trains",
            true,
            "SkipInit trains deep residual nets without normalisation (De & Smith 2020)",
        ),
        Arch::Residual {
            init: BranchInit::ReZero,
            norm: Norm::None,
            ..
        } => (
            "rezero-trains",
            true,
            "ReZero trains deep residual nets without normalisation (Bachlechner et al. 2020)",
        ),
        Arch::Residual { repeat, .. } if repeat > 1 => (
            "rskip-ln-trains",
            true,
            "rSkip+LN trains where a scaled skip without LN does not (Liu et al. 2020)",
        ),
        _ => return None,
    })
}

/// Each claimed variant at the deepest depth: the claim beside the data.
fn claims(s: &TrainabilitySummary, said: &mut Claims) -> Vec<String> {
    let depth = deepest(s);
    let mut out = Vec::new();
    for arch in s.config.archs.iter().map(|a| a.to_string()) {
        let (Some((stem, claims_trains, words)), Some(v)) =
            (paper_claim(&arch), verdict(s, &arch, depth))
        else {
            continue;
        };
        let err = v.best_train_error.mean;
        let numbers = match v.best_lr {
            Some(lr) => format!(
                "{arch} at depth {depth}: final training error {} at learning rate {lr}",
                pct(err)
            ),
            None => format!("{arch} at depth {depth}: every learning rate diverged"),
        };
        let name = format!("{arch}@{depth}-{stem}");
        let check = if claims_trains {
            Check::at_most(
                &format!("{arch} depth {depth}: best final training error"),
                err,
                TRAINS_BELOW,
            )
        } else {
            Check::that(
                err.is_nan() || err > TRAINS_BELOW,
                format!(
                    "{arch} depth {depth}: best final training error {} > {} (or none stable)",
                    pct(err),
                    pct(TRAINS_BELOW)
                ),
            )
        };
        let agrees = if claims_trains {
            "it trains"
        } else {
            "it fails to train"
        };
        let disagrees = if claims_trains {
            "here it fails to train"
        } else {
            "here it trains"
        };
        out.push(said.decide(
            &name,
            check,
            format!("Claim: {words}. Data: {numbers} — {agrees}, as claimed."),
            format!("Claim: {words}. Data: {numbers} — {disagrees}, against the claim."),
        ));
    }
    out
}

/// Rows of the maps: variants in config order; columns: depths.
fn variant_map(
    s: &TrainabilitySummary,
    title: &str,
    value: &dyn Fn(&Trainability) -> (f64, String),
    range: (f64, f64),
    color: fn(f64) -> plotters::style::RGBColor,
) -> TableMap {
    let archs: Vec<String> = s.config.archs.iter().map(|a| a.to_string()).collect();
    let mut values = Vec::new();
    let mut texts = Vec::new();
    for a in &archs {
        for &d in &s.config.depths {
            let (v, t) = verdict(s, a, d).map_or((f64::NAN, "–".into()), value);
            values.push(v);
            texts.push(t);
        }
    }
    TableMap {
        title: title.into(),
        rows: archs,
        cols: s.config.depths.iter().map(|d| d.to_string()).collect(),
        col_header: "depth (blocks)".into(),
        values,
        texts,
        value_range: range,
        color,
    }
}

fn map_size(s: &TrainabilitySummary) -> (u32, u32) {
    (
        420 + 170 * s.config.depths.len() as u32,
        140 + 44 * s.config.archs.len() as u32,
    )
}

fn error_map(s: &TrainabilitySummary, dir: &Path) -> Result<Block> {
    let map = variant_map(
        s,
        "Final training error at the best stable learning rate",
        &|v| match v.best_lr {
            Some(_) => (v.best_train_error.mean, pct(v.best_train_error.mean)),
            None => (f64::NAN, "diverged".into()),
        },
        (0.0, 0.9),
        style::ramp,
    );
    let files = save(&map, dir, "final_error_map", map_size(s))?;
    Ok(Block::figure(
        files,
        "variant × depth map of the final training error",
        format!(
            "Mean final training error over seeds at each variant's best learning rate without divergence (dark: high; chance is 90 %). Grey: every learning rate diverged. A variant trains where the error is at most {}.",
            pct(TRAINS_BELOW)
        ),
    ))
}

fn lr_map(s: &TrainabilitySummary, dir: &Path) -> Result<Block> {
    let lrs = &s.config.lrs;
    let (lo, hi) = (lrs[0].log10(), lrs[lrs.len() - 1].log10());
    let map = variant_map(
        s,
        "Largest stable learning rate",
        &|v| match v.largest_stable_lr {
            Some(lr) => (lr.log10(), lr.to_string()),
            None => (f64::NAN, "none".into()),
        },
        (lo - 0.25, hi),
        style::ramp,
    );
    let files = save(&map, dir, "stable_lr_map", map_size(s))?;
    Ok(Block::figure(
        files,
        "variant × depth map of the largest stable learning rate",
        format!(
            "The largest learning rate of the grid ({}) at which no seed diverged (dark: large). Grey: none.",
            lrs.iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

/// Every diverged run, with its step: counted, never dropped.
fn divergence_table(s: &TrainabilitySummary) -> Block {
    let rows: Vec<Vec<String>> = s
        .results
        .iter()
        .filter(|r| r.diverged > 0)
        .map(|r| {
            vec![
                r.arch.clone(),
                r.depth.to_string(),
                r.lr.to_string(),
                format!("{} of {}", r.diverged, r.diverged_at.len()),
                r.diverged_at
                    .iter()
                    .enumerate()
                    .filter_map(|(seed, at)| at.map(|s| format!("seed {seed}: step {s}")))
                    .collect::<Vec<_>>()
                    .join("; "),
            ]
        })
        .collect();
    if rows.is_empty() {
        return Block::Paragraph("No run diverged.".into());
    }
    Block::Table {
        header: ["arch", "depth", "lr", "diverged", "at"]
            .map(String::from)
            .to_vec(),
        rows,
    }
}

/// The initial λ of an arch whose shortcut scale is trained.
fn initial_lambda(arch: &str) -> Option<f64> {
    match arch.parse().ok()? {
        Arch::Residual {
            skip: Skip::LearnedScale(l),
            ..
        } => Some(l),
        _ => None,
    }
}

/// Every run that learned its shortcut scales: λ₀ and λ per block after
/// training (the first block's; mean, least and largest over blocks).
fn learned_lambda_table(d: &TrainabilityData) -> Option<Block> {
    let rows: Vec<Vec<String>> = d
        .runs
        .iter()
        .filter(|r| !r.history.learned_lambda.is_empty())
        .map(|r| {
            let l = &r.history.learned_lambda;
            let finite = l.iter().all(|v| v.is_finite());
            let over = |f: fn(f64, f64) -> f64, start: f64| {
                if finite {
                    l.iter().copied().fold(start, f)
                } else {
                    f64::NAN
                }
            };
            let mean = over(|a, b| a + b, 0.0) / l.len() as f64;
            vec![
                r.arch.clone(),
                r.depth.to_string(),
                r.lr.to_string(),
                r.seed.to_string(),
                r.history
                    .diverged_at
                    .map_or("no".into(), |step| format!("at step {step}")),
                initial_lambda(&r.arch).map_or("?".into(), |v| v.to_string()),
                na::f3(l[0]),
                na::f3(mean),
                na::f3(over(f64::min, f64::INFINITY)),
                na::f3(over(f64::max, f64::NEG_INFINITY)),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| Block::Table {
        header: [
            "arch",
            "depth",
            "lr",
            "seed",
            "diverged",
            "λ₀",
            "λ block 1",
            "λ mean",
            "λ least",
            "λ largest",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    })
}

/// One panel per variant: mean training error per epoch at each depth (at
/// the depth's best learning rate), with the seeds' range dashed.
fn learning_curves(d: &TrainabilityData, dir: &Path) -> Result<Block> {
    let s = &d.summary;
    let mut panels = Vec::new();
    for arch in s.config.archs.iter().map(|a| a.to_string()) {
        let mut chart = LineChart::new(arch.clone(), "epoch", "training error")
            .integer_x()
            .legend(Legend::Outside)
            .y_range(0.0, 1.0);
        chart.title_size = style::PANEL_TITLE_SIZE;
        for (k, &depth) in s.config.depths.iter().enumerate() {
            let Some(lr) = verdict(s, &arch, depth).and_then(|v| v.best_lr) else {
                continue;
            };
            let runs: Vec<_> = d
                .runs
                .iter()
                .filter(|r| r.arch == arch && r.depth == depth && r.lr == lr)
                .collect();
            let epochs = runs
                .iter()
                .map(|r| r.history.epochs.len())
                .max()
                .unwrap_or(0);
            let at = |e: usize| -> Vec<f64> {
                runs.iter()
                    .filter_map(|r| r.history.epochs.get(e).map(|x| x.train_error))
                    .collect()
            };
            let line = |f: &dyn Fn(&[f64]) -> f64| -> Vec<(f64, f64)> {
                (0..epochs).map(|e| ((e + 1) as f64, f(&at(e)))).collect()
            };
            let mean = line(&|v| v.iter().sum::<f64>() / v.len().max(1) as f64);
            let lo = line(&|v| v.iter().copied().fold(f64::INFINITY, f64::min));
            let hi = line(&|v| v.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            chart.push(Series::line(format!("depth {depth}, lr {lr}"), mean, color(k)).width(3));
            chart.push(
                Series::line("", lo, color(k))
                    .mark(Mark::Dashed)
                    .width(1)
                    .unlabelled(),
            );
            chart.push(
                Series::line("", hi, color(k))
                    .mark(Mark::Dashed)
                    .width(1)
                    .unlabelled(),
            );
        }
        panels.push(chart);
    }
    let cols = 3.min(panels.len()).max(1);
    let rows = panels.len().div_ceil(cols);
    let files = save(
        &Panels {
            title: "Training error per epoch (mean over seeds; dashed: seed range)".into(),
            rows,
            cols,
            panels,
        },
        dir,
        "learning_curves",
        (520 * cols as u32, 380 * rows as u32 + 60),
    )?;
    Ok(Block::figure(
        files,
        "training error per epoch of every variant and depth",
        "Each panel one variant; a colour per depth, at that depth's best stable learning rate; the solid line is the mean over seeds and the dashed lines the lowest and highest seed.",
    ))
}

fn data_files(data_dir: &Path) -> Block {
    Block::List(
        [
            trainability::files::SUMMARY,
            trainability::files::RUNS,
            trainability::files::CURVES_CSV,
            trainability::files::RESULTS_CSV,
            trainability::files::VERDICTS_CSV,
            gradscope_contract::train_stats::files::TRAIN_STATS_CSV,
            gradscope_contract::train_stats::files::GRAD_HISTOGRAMS_CSV,
            gradscope_contract::train_stats::files::WEIGHT_HISTOGRAMS_CSV,
        ]
        .iter()
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}
