//! The training report: error curves of plain vs residual nets at several
//! depths (He et al. 2016a, Figure 1) and the gradients behind them.

use std::path::Path;

use gradscope_contract::History;
use gradscope_contract::io::create_dir;
use gradscope_contract::training::{
    self, ArchDepthResult, CellRecord, TrainingData, TrainingSummary,
};
use gradscope_spec::{Decay, OptimizerParams, Schedule};

use crate::card::StudyCard;
use crate::claims::{Check, Claims};
use crate::doc::{Block, Doc};
use crate::figure::{ColorBar, HeatmapGrid, Legend, LineChart, Mark, Panels, Raster, Series, save};
use crate::format::{decimals, mean_ci, pct};
use crate::style::{self, color};
use crate::train_stats::{Runs, StatsPanel, push_maps};
use crate::{Result, pages};

/// The data with the depths and runs the page refers to.
struct Run<'a> {
    d: &'a TrainingData,
    /// Arch spec strings, in config order.
    archs: Vec<String>,
    /// The shallowest and deepest configured depths.
    shallow: usize,
    deep: usize,
}

impl<'a> Run<'a> {
    fn new(d: &'a TrainingData) -> Self {
        let depths = &d.summary.config.depths;
        Run {
            d,
            archs: d
                .summary
                .config
                .archs
                .iter()
                .map(|a| a.to_string())
                .collect(),
            shallow: depths[0],
            deep: depths[depths.len() - 1],
        }
    }

    fn depths(&self) -> &'a [usize] {
        &self.d.summary.config.depths
    }

    /// The result of arch `a` at depth index `di`.
    fn result(&self, a: usize, di: usize) -> &'a ArchDepthResult {
        &self.d.summary.results[a * self.depths().len() + di]
    }

    /// The first run (seed 0) of an arch at a depth, if it is in the data.
    fn first_run(&self, arch: &str, depth: usize) -> Option<&'a CellRecord> {
        self.d
            .runs
            .iter()
            .find(|r| r.arch == arch && r.depth == depth)
    }

    /// The deepest nets solid, the shallowest dashed, those between with
    /// markers.
    fn mark_of(&self, depth: usize) -> Mark {
        if depth == self.deep && self.depths().len() > 1 {
            Mark::Line
        } else if depth == self.shallow {
            Mark::Dashed
        } else {
            Mark::LinePoints
        }
    }

    fn width_of(&self, depth: usize) -> u32 {
        if depth == self.deep { 3 } else { 2 }
    }

    /// One series per (arch, depth), coloured by arch, marked by depth.
    fn curve(&self, a: usize, depth: usize, pts: Vec<(f64, f64)>) -> Series {
        Series::line(format!("{}, depth {depth}", self.archs[a]), pts, color(a))
            .mark(self.mark_of(depth))
            .width(self.width_of(depth))
    }
}

/// Build `report_dir` from `data_dir`.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let d = TrainingData::read(data_dir)?;
    create_dir(report_dir)?;
    let run = Run::new(&d);
    let s = &d.summary;

    let mut doc = Doc::new("Training: the degradation problem");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(training::NAME);
    let finding = finding(&run, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(s));

    doc.heading("Error curves");
    doc.push(error_curves(&run, report_dir)?);
    doc.push(loss_curves(&run, report_dir)?);
    doc.push(final_table(&run));
    doc.paragraph(crate::format::CI_NOTE);
    doc.paragraph(format!(
        "A deeper net counts as degraded when its final training error exceeds the shallower net's by more than {} (absolute).",
        pct(training::DEGRADATION_MARGIN)
    ));

    if let Some(fig) = layer_grad_norms(&run, report_dir)? {
        doc.heading("Gradients during training");
        doc.push(fig);
    }
    if let Some(fig) = grad_norm_heatmaps(&run, report_dir)? {
        doc.push(fig);
    }
    doc.push(gradient_probes(&run, report_dir)?);

    if !d.stats.is_empty() {
        doc.heading("Gradient statistics during training");
        let panels: Vec<StatsPanel<'_>> = run
            .archs
            .iter()
            .flat_map(|a| run.depths().iter().map(move |&depth| (a, depth)))
            .map(|(arch, depth)| StatsPanel {
                title: format!("{arch}, depth {depth}"),
                rows: d
                    .stats
                    .iter()
                    .filter(|r| r.id[0] == *arch && r.id[1] == depth.to_string() && r.id[2] == "0")
                    .collect(),
            })
            .collect();
        let runs = Runs {
            title: "seed 0",
            caption: "seed 0 of each net (a row per arch, a column per depth)",
            cols: run.depths().len(),
        };
        push_maps(&mut doc, &panels, &runs, report_dir)?;
    }

    doc.heading("Reproducing He et al. 2016a on CIFAR-10");
    doc.paragraph(
        "With the CIFAR-10 binary batches on disk, `gradscope degradation --data cifar10:DIR --archs conv-plain,conv-resnet --depths 20,56 --epochs 164 --batch-size 128 --lr 0.1 --momentum 0.9 --weight-decay 1e-4 --schedule step:82,123` runs the paper's recipe (see README for the expected time); checkpoints let it resume.",
    );

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir),
        report_dir,
    )?;
    Ok(card(s, finding))
}

/// Runs of `arch` at `depth` whose training loss was not finite at some
/// epoch, with those epochs: `(seed, epochs)`.
fn non_finite_runs(run: &Run, arch: &str, depth: usize) -> Vec<(usize, Vec<usize>)> {
    run.d
        .runs
        .iter()
        .filter(|r| r.arch == arch && r.depth == depth)
        .filter_map(|r| {
            let epochs: Vec<usize> = r
                .output
                .history
                .epochs
                .iter()
                .filter(|e| !e.train_loss.is_finite())
                .map(|e| e.epoch)
                .collect();
            (!epochs.is_empty() || r.output.history.diverged_at.is_some())
                .then_some((r.seed, epochs))
        })
        .collect()
}

/// Every run with a non-finite training loss, one phrase each.
fn non_finite_list(run: &Run) -> Vec<String> {
    let mut out = Vec::new();
    for name in &run.archs {
        for &depth in run.depths() {
            for (seed, epochs) in non_finite_runs(run, name, depth) {
                out.push(format!(
                    "{name} depth {depth} seed {seed}: epoch{} {}",
                    if epochs.len() == 1 { "" } else { "s" },
                    epochs
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    out
}

/// The finding: each arch's deep against shallow training error.
fn finding(run: &Run, claims: &mut Claims) -> String {
    let s = &run.d.summary;
    let mut finding = Vec::new();
    let mut any = false;
    for cmp in &s.comparisons {
        let numbers = format!(
            "{}: final training error {} at depth {} and {} at depth {}",
            cmp.arch,
            pct(cmp.shallow_train_error),
            cmp.shallow_depth,
            pct(cmp.deep_train_error),
            cmp.deep_depth,
        );
        let check = Check::at_least(
            &format!("{}: deep − shallow final training error", cmp.arch),
            cmp.deep_train_error - cmp.shallow_train_error,
            training::DEGRADATION_MARGIN,
        );
        any |= check.holds;
        finding.push(claims.decide(
            &format!("{}-degrades", cmp.arch),
            check,
            format!("{numbers} — the deeper net trains worse"),
            format!(
                "{numbers} — the deeper net trains no worse (within {})",
                pct(training::DEGRADATION_MARGIN)
            ),
        ));
    }
    let mut text = if finding.is_empty() {
        format!(
            "One depth per architecture ({}): no deeper net trained on the same recipe to compare with, so this run does not test degradation.",
            run.depths()
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "Same data, same recipe, more layers. {}.",
            finding.join("; ")
        )
    };
    if any {
        text += " A deeper net fitting its training set worse than a shallower one is the degradation problem that motivated residual learning (He et al. 2016a); the training error, not the test error, shows it is an optimisation failure rather than overfitting.";
    }
    text += &flatness(run, claims);
    let bad = non_finite_list(run);
    if !bad.is_empty() {
        text += &format!(
            " {} run(s) had a non-finite training loss at some epoch ({}).",
            bad.len(),
            bad.join("; ")
        );
    }
    text
}

/// Whether each (arch, depth)'s mean training-error curve flattened over its
/// last quarter of epochs ([`training::late_drop`]): final errors compare
/// what nets can fit only where the curves are flat.
fn flatness(run: &Run, claims: &mut Claims) -> String {
    let mut parts = Vec::new();
    let mut falling = false;
    for (a, arch) in run.archs.iter().enumerate() {
        for (di, &depth) in run.depths().iter().enumerate() {
            let curve = &run.result(a, di).train_error_curve;
            let Some((k, drop)) = training::late_drop(curve) else {
                continue;
            };
            if !drop.is_finite() {
                continue;
            }
            let n = curve.len();
            let span = format!(
                "{} → {} from epoch {} to {n}",
                pct(curve[n - 1 - k]),
                pct(curve[n - 1]),
                n - k
            );
            let check = Check::at_most(
                &format!("{arch}, depth {depth}: training-error drop over the last {k} epochs"),
                drop,
                training::FLAT_DROP,
            );
            falling |= !check.holds;
            parts.push(claims.decide(
                &format!("{arch}-{depth}-flat"),
                check,
                format!("{arch} at depth {depth} flat ({span})"),
                format!("{arch} at depth {depth} still falling ({span})"),
            ));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    let mut text = format!(
        " Converged? A curve counts as flat when its mean training error fell by at most {} over the last quarter of the epochs: {}.",
        pct(training::FLAT_DROP),
        parts.join("; ")
    );
    if falling {
        text += " A curve still falling ends above what the recipe would reach with more epochs, so a comparison that involves it is of training speed as much as of what the nets can fit.";
    }
    text
}

/// The setup paragraph: data, nets and recipe.
fn setup(s: &TrainingSummary) -> String {
    let c = &s.config;
    format!(
        "Setup: {} ({} training and {} test examples of shape {:?}, {} classes); MLP width {} (conv nets: 16/32/64 channels); {} epochs, batch {}, {}, {}; {} seed(s) per net; BN nets train with batch statistics and are evaluated with running statistics. Errors are measured on the whole training and test sets after each epoch.",
        s.data.source,
        s.data.train,
        s.data.test,
        s.data.shape,
        s.data.classes,
        c.width,
        c.train.epochs,
        c.train.batch_size,
        optimizer_text(&c.train.optimizer),
        schedule_text(&c.train.schedule),
        c.seeds
    )
}

/// The learning-rate schedule in words.
fn schedule_text(s: &Schedule) -> String {
    let decay = match &s.decay {
        Decay::Constant => "constant rate".to_string(),
        Decay::Step { milestones, gamma } => format!(
            "rate × {gamma} at epochs {}",
            milestones
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        Decay::Cosine { min_lr } => format!("cosine decay to {min_lr}"),
    };
    if s.warmup_epochs > 0 {
        format!(
            "{} epoch(s) of linear warm-up, then {decay}",
            s.warmup_epochs
        )
    } else {
        decay
    }
}

/// Training and test error against epoch, one curve per (arch, depth).
fn error_curves(run: &Run, dir: &Path) -> Result<Block> {
    let mut panels = Vec::new();
    for (title, pick) in [("Training error", 0usize), ("Test error", 1)] {
        let mut ch = LineChart::new(title, "epoch", "error (%)")
            .integer_x()
            .legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        for a in 0..run.archs.len() {
            for (di, &depth) in run.depths().iter().enumerate() {
                let r = run.result(a, di);
                let curve = if pick == 0 {
                    &r.train_error_curve
                } else {
                    &r.test_error_curve
                };
                let pts = curve
                    .iter()
                    .enumerate()
                    .map(|(e, v)| ((e + 1) as f64, 100.0 * v))
                    .collect();
                ch.push(run.curve(a, depth, pts));
            }
        }
        panels.push(ch);
    }
    let fig = save(
        &Panels {
            title: "Error during training (mean over seeds)".into(),
            rows: 1,
            cols: 2,
            panels,
        },
        dir,
        "error_curves",
        (1600, 650),
    )?;
    let (shallow, deep) = (run.shallow, run.deep);
    let caption = if shallow == deep {
        format!(
            "Training and test error after each epoch at depth {deep} on {}, one colour per architecture. \
             He et al. 2016a's Figure 1 compares a shallower and a deeper net on one recipe, which needs runs at two depths.",
            run.d.summary.data.source
        )
    } else {
        format!(
            "The shape of He et al. 2016a's Figure 1: dashed lines are the shallowest nets (depth {shallow}), solid the deepest (depth {deep}), lines with markers any depth between, one colour per architecture. \
             In the paper, plain-56 has higher training and test error than plain-20 on CIFAR-10 while ResNet-56 beats ResNet-20; here the same \
             comparison runs at depths {} on {}.",
            and_list(run.depths()),
            run.d.summary.data.source
        )
    };
    Ok(Block::figure(
        fig,
        "Training and test error against epoch for plain and residual nets at each depth",
        caption,
    ))
}

/// `4, 16 and 32`.
fn and_list(depths: &[usize]) -> String {
    let text: Vec<String> = depths.iter().map(|d| d.to_string()).collect();
    match text.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => text.join(""),
    }
}

/// Training loss against epoch, log scale.
fn loss_curves(run: &Run, dir: &Path) -> Result<Block> {
    let mut loss = LineChart::new("Training loss (mean over seeds)", "epoch", "cross-entropy")
        .integer_x()
        .log_y()
        .legend(Legend::Outside);
    for a in 0..run.archs.len() {
        for (di, &depth) in run.depths().iter().enumerate() {
            let pts = run
                .result(a, di)
                .train_loss_curve
                .iter()
                .enumerate()
                .map(|(e, v)| ((e + 1) as f64, *v))
                .collect();
            loss.push(run.curve(a, depth, pts));
        }
    }
    let fig = save(&loss, dir, "loss_curves", style::SIZE)?;
    Ok(Block::figure(fig, "Training loss against epoch", {
        let bad = non_finite_list(run);
        let mut c = String::from(
            "Cross-entropy on the whole training set after each epoch (mean over seeds), log scale.",
        );
        if !bad.is_empty() {
            c += &format!(
                " A mean over seeds with a non-finite loss is not finite and is not drawn: {}.",
                bad.join("; ")
            );
        }
        c
    }))
}

/// Final errors and loss of every (arch, depth).
fn final_table(run: &Run) -> Block {
    let rows = run
        .d
        .summary
        .results
        .iter()
        .map(|r| {
            vec![
                r.arch.clone(),
                r.depth.to_string(),
                r.parameters.to_string(),
                mean_ci(&r.final_train_error, pct),
                mean_ci(&r.final_test_error, pct),
                decimals(r.final_train_loss.mean, 4),
                r.diverged.to_string(),
                non_finite_runs(run, &r.arch, r.depth).len().to_string(),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "depth",
            "parameters",
            "final training error",
            "final test error",
            "training loss",
            "diverged runs (non-finite gradient or parameter, or loss past 1e6)",
            "runs with a non-finite loss at some epoch",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Indices of the linear and convolution layers of a history.
fn weight_layers(h: &History) -> Vec<usize> {
    (0..h.layers.len())
        .filter(|&i| is_weight_layer(&h.layers[i]))
        .collect()
}

/// Optimiser steps per epoch (the step count after the first epoch), at least 1.
fn steps_per_epoch(h: &History) -> f64 {
    h.epochs.first().map_or(1, |e| e.step.max(1)) as f64
}

/// Per-layer gradient norms of the deepest nets at the start, middle and end
/// of training; `None` when no deepest net has a run in the data.
fn layer_grad_norms(run: &Run, dir: &Path) -> Result<Option<Block>> {
    let deep = run.deep;
    let mut norm_panels = Vec::new();
    for name in &run.archs {
        let Some(cell) = run.first_run(name, deep) else {
            continue;
        };
        let h = &cell.output.history;
        let mut ch = LineChart::new(
            format!("{name}, depth {deep} (seed 0)"),
            "weight layer (input → output)",
            "‖∂L/∂θ‖ of the layer",
        )
        .integer_x()
        .log_y()
        .legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        // Weight layers only (linear and convolution); BN scales and shifts are a different kind of parameter.
        let keep = weight_layers(h);
        let picks = [0, h.logs.len() / 2, h.logs.len().saturating_sub(1)];
        for (k, &i) in picks.iter().enumerate() {
            let Some(log) = h.logs.get(i) else { continue };
            let epoch = (log.step as f64 / steps_per_epoch(h)).round();
            let pts = keep
                .iter()
                .enumerate()
                .map(|(k, &l)| (k as f64, log.layer_grad_norms[l]))
                .collect();
            ch.push(
                Series::line(format!("epoch {epoch}"), pts, style::ramp(k as f64 / 2.0)).width(2),
            );
        }
        norm_panels.push(ch);
    }
    if norm_panels.is_empty() {
        return Ok(None);
    }
    let cols = norm_panels.len().min(2);
    let rows_n = norm_panels.len().div_ceil(cols);
    let fig = save(
        &Panels {
            title: "Gradient norm per layer, deepest nets".into(),
            rows: rows_n,
            cols,
            panels: norm_panels,
        },
        dir,
        "layer_grad_norms",
        (800 * cols as u32, 520 * rows_n as u32 + 60),
    )?;
    Ok(Some(Block::figure(
        fig,
        "Per-layer gradient norms of the deepest nets at the start, middle and end of training",
        "‖∂L/∂θ‖ per linear or convolution layer (its weights and bias together) on a fixed batch of training examples, with BN using batch \
         statistics. Values for every layer (BN parameters included) and logging step are in grad_norms.csv.",
    )))
}

/// The same norms over every logging step: layer × step heatmaps of every
/// net of seed 0 on one colour scale; `None` when no run has logs.
fn grad_norm_heatmaps(run: &Run, dir: &Path) -> Result<Option<Block>> {
    let depths = run.depths();
    let mut rasters = Vec::new();
    for name in &run.archs {
        for &depth in depths {
            let Some(cell) = run.first_run(name, depth) else {
                continue;
            };
            let h = &cell.output.history;
            let keep = weight_layers(h);
            if keep.is_empty() || h.logs.is_empty() {
                continue;
            }
            let steps_per_epoch = steps_per_epoch(h);
            let (first, last) = (h.logs[0].step as f64, h.logs[h.logs.len() - 1].step as f64);
            let dx = if h.logs.len() > 1 {
                (last - first) / (h.logs.len() - 1) as f64
            } else {
                1.0
            };
            let values = keep
                .iter()
                .flat_map(|&l| {
                    h.logs
                        .iter()
                        .map(move |log| log.layer_grad_norms[l].log10())
                })
                .collect();
            rasters.push(Raster {
                title: format!("{name}, depth {depth}"),
                x_label: "epoch".into(),
                y_label: "weight layer".into(),
                x_range: (
                    (first - dx / 2.0).max(0.0) / steps_per_epoch,
                    (last + dx / 2.0) / steps_per_epoch,
                ),
                rows: keep.len(),
                cols: h.logs.len(),
                values,
                value_range: (0.0, 0.0),
                color: style::ramp,
                hline: None,
            });
        }
    }
    if rasters.is_empty() {
        return Ok(None);
    }
    let finite = rasters
        .iter()
        .flat_map(|r| r.values.iter().copied())
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let range = if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    for r in &mut rasters {
        r.value_range = range;
    }
    let cols = depths.len().max(1);
    let rows_n = rasters.len().div_ceil(cols);
    let fig = save(
        &HeatmapGrid {
            title: "log₁₀ ‖∂L/∂θ‖ by layer and training step (seed 0)".into(),
            rows: rows_n,
            cols,
            maps: rasters,
            bar: ColorBar::sequential("log₁₀ ‖∂L/∂θ‖", range),
        },
        dir,
        "grad_norm_heatmaps",
        (700 * cols as u32, 420 * rows_n as u32 + 150),
    )?;
    Ok(Some(Block::figure(
        fig,
        "Gradient norm of every weight layer at every logging step, all nets of seed 0",
        "Each row is a linear or convolution layer (input at the bottom), each column a logging step; the colour is log₁₀ ‖∂L/∂θ‖ on the fixed batch, \
         one colour scale for all panels (light: small, dark: large); grey marks NaN or ±inf. Read down a column to see how the gradient changes \
         from the output to the input layers at that step (vanishing: pale at the bottom; exploding: dark at the bottom), across a row to see a layer \
         over training. With BN, a deep plain net starts with its largest gradients in the lowest layers (BN makes deep plain nets' gradients \
         grow towards the input at initialisation; Yang et al. 2019), while a residual net's layers receive gradients of similar size.",
    )))
}

/// Shattering along an input line and per-example gradient similarity over training.
fn gradient_probes(run: &Run, dir: &Path) -> Result<Block> {
    let c = &run.d.summary.config;
    let mut probe_panels = Vec::new();
    for (title, y_label, pick) in [
        ("Shattering along an input line", "r₁ of df/dt", 0usize),
        ("Per-example gradient similarity", "mean cosine", 1),
    ] {
        let mut ch = LineChart::new(title, "epoch", y_label)
            .integer_x()
            .legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        for (a, name) in run.archs.iter().enumerate() {
            for &depth in run.depths() {
                let Some(cell) = run.first_run(name, depth) else {
                    continue;
                };
                let h = &cell.output.history;
                let steps_per_epoch = steps_per_epoch(h);
                let pts = h
                    .logs
                    .iter()
                    .map(|l| {
                        (
                            l.step as f64 / steps_per_epoch,
                            if pick == 0 { l.line_r1 } else { l.mean_cosine },
                        )
                    })
                    .collect();
                ch.push(run.curve(a, depth, pts));
            }
        }
        probe_panels.push(ch);
    }
    let fig = save(
        &Panels {
            title: "Gradient structure during training (seed 0)".into(),
            rows: 1,
            cols: 2,
            panels: probe_panels,
        },
        dir,
        "gradient_probes",
        (1600, 600),
    )?;
    Ok(Block::figure(
        fig,
        "Shattering metric along an input line and per-example gradient cosine against epoch",
        format!(
            "Left: r₁ of g(t) = d f_y(a + t(b − a))/dt over {} points between two training examples of different classes (BN with running statistics): the \
             foundation study's shattering metric, near 1 for a smooth gradient, near 0 for white noise. Right: mean cosine between the loss gradients \
             (all parameters) of {} distinct training examples. Both at every logging step.",
            c.train.probe_points, c.train.similarity_examples
        ),
    ))
}

/// The data files behind the page.
fn data_files(data_dir: &Path) -> Block {
    Block::List(
        [
            training::files::SUMMARY,
            training::files::RUNS,
            training::files::CURVES_CSV,
            training::files::FINAL_CSV,
            training::files::GRAD_NORMS_CSV,
            training::files::PROBES_CSV,
            gradscope_contract::train_stats::files::TRAIN_STATS_CSV,
            gradscope_contract::train_stats::files::GRAD_HISTOGRAMS_CSV,
            gradscope_contract::train_stats::files::WEIGHT_HISTOGRAMS_CSV,
        ]
        .iter()
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}

/// The index card: each arch's training error, shallow → deep.
fn card(s: &TrainingSummary, finding: String) -> StudyCard {
    let numbers = s
        .comparisons
        .iter()
        .map(|c| {
            (
                format!(
                    "{} train error L={} → L={}",
                    c.arch, c.shallow_depth, c.deep_depth
                ),
                format!(
                    "{} → {}",
                    pct(c.shallow_train_error),
                    pct(c.deep_train_error)
                ),
            )
        })
        .collect();
    StudyCard {
        name: training::NAME.into(),
        title: "Training: the degradation problem".into(),
        href: format!("{}/index.html", training::NAME),
        thumbnail: Some(format!("{}/error_curves.png", training::NAME)),
        finding,
        numbers,
    }
}

/// Linear and convolution layers, not BN (`bn1`, `layers.3.bn2`, `downsample.1`).
fn is_weight_layer(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    !(last.starts_with("bn") || name.ends_with("downsample.1"))
}

fn optimizer_text(o: &OptimizerParams) -> String {
    match o {
        OptimizerParams::Sgd {
            lr,
            momentum,
            weight_decay,
            nesterov,
        } => {
            format!(
                "SGD lr {lr}, momentum {momentum}{}, weight decay {weight_decay}",
                if *nesterov { " (Nesterov)" } else { "" }
            )
        }
        OptimizerParams::Adam {
            lr,
            beta1,
            beta2,
            weight_decay,
            ..
        } => {
            format!("Adam lr {lr}, β₁ {beta1}, β₂ {beta2}, decoupled weight decay {weight_decay}")
        }
    }
}
