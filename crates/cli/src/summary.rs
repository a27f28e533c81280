//! The short table each study command prints when it is done: its main
//! numbers, read back from the `summary.json` the report reads.

use std::path::Path;

use anyhow::{Context, Result};
use gradscope_contract::io::read_summary;
use gradscope_contract::{
    correlation, curvature, ensemble, landscape, norms, shattered, skips, training, transformers,
};
use gradscope_stats::MeanStd;

/// Rows of cells, printed with every column padded to its widest cell.
struct Table {
    title: String,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Table {
            title: title.into(),
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = format!("{}\n", self.title);
        for row in &self.rows {
            let line: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, s)| format!("{s:<w$}", w = width[c]))
                .collect();
            out.push_str("  ");
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// `rows` under `header`, every column padded to its widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new("", header);
    for r in rows {
        t.row(r.clone());
    }
    t.render().trim_start_matches('\n').to_string()
}

/// Rows of (arch, depth, value) as one row per arch and one column per depth.
fn by_arch_and_depth(title: &str, cells: Vec<(String, usize, String)>) -> String {
    let mut depths: Vec<usize> = cells.iter().map(|c| c.1).collect();
    depths.sort_unstable();
    depths.dedup();
    let mut header = vec!["arch \\ depth".to_string()];
    header.extend(depths.iter().map(|d| d.to_string()));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = Table::new(title, &header);
    let mut archs: Vec<&str> = Vec::new();
    for (a, _, _) in &cells {
        if !archs.contains(&a.as_str()) {
            archs.push(a);
        }
    }
    for arch in archs {
        let mut row = vec![arch.to_string()];
        for d in &depths {
            row.push(
                cells
                    .iter()
                    .find(|c| c.0 == arch && c.1 == *d)
                    .map_or("—".into(), |c| c.2.clone()),
            );
        }
        t.row(row);
    }
    t.render()
}

fn fixed(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:.decimals$}")
    } else {
        "n/a".into()
    }
}

fn mean_sd(m: &MeanStd, decimals: usize) -> String {
    format!("{} ± {}", fixed(m.mean, decimals), fixed(m.std, decimals))
}

fn read<T: serde::de::DeserializeOwned>(
    dir: &Path,
    schema: &str,
    schema_of: impl Fn(&T) -> &str,
) -> Result<T> {
    let path = dir.join("summary.json");
    read_summary(&path, schema, schema_of).with_context(|| format!("reading {}", path.display()))
}

/// Shattered gradients: r₁ and the spectral slope per arch × depth.
pub fn shattered(dir: &Path) -> Result<String> {
    let s: shattered::ShatteredSummary =
        read(dir, shattered::SCHEMA, |s: &shattered::ShatteredSummary| {
            &s.schema
        })?;
    let cells = s
        .results
        .iter()
        .map(|r| {
            let v = format!(
                "{} / {}",
                fixed(r.adjacent_correlation.mean, 3),
                fixed(r.spectral_slope.mean, 2)
            );
            (r.arch.clone(), r.depth, v)
        })
        .collect();
    let mut out = by_arch_and_depth("shattered: r₁ / spectral slope (mean over seeds)", cells);
    if let Some(images) = &s.images {
        let cells = images
            .results
            .iter()
            .map(|r| {
                let v = format!(
                    "{} / {}",
                    fixed(r.adjacent_correlation.mean, 3),
                    fixed(r.spectral_slope.mean, 2)
                );
                (r.arch.clone(), r.depth, v)
            })
            .collect();
        out.push_str(&by_arch_and_depth(
            "shattered on images (path between two images): r₁ / spectral slope",
            cells,
        ));
        if let Some(plane) = &images.plane {
            let cells = plane
                .results
                .iter()
                .map(|r| {
                    let both = |f: &dyn Fn(&shattered::PictureSummary) -> String| {
                        r.pictures.iter().map(f).collect::<Vec<_>>().join(", ")
                    };
                    let v = format!(
                        "{} / {}",
                        both(&|p| fixed(p.adjacent_correlation.mean, 3)),
                        both(&|p| fixed(p.radial_slope.mean, 2))
                    );
                    (r.arch.clone(), r.depth, v)
                })
                .collect();
            out.push_str(&by_arch_and_depth(
                "shattered on images (plane of three images): r₁ of ∂f/∂a, ∂f/∂b / radial slope",
                cells,
            ));
        }
    }
    Ok(out)
}

/// Gradient norms: the measured per-layer backward growth beside the
/// mean-field prediction, per configuration of the layers part.
pub fn norms(dir: &Path) -> Result<String> {
    let s: norms::NormsSummary = read(dir, norms::SCHEMA, |s: &norms::NormsSummary| &s.schema)?;
    let mut t = Table::new(
        "norms: per-layer gradient growth ‖∂L/∂h_{l−1}‖/‖∂L/∂h_l‖",
        &["arch", "activation", "init", "measured", "mean field"],
    );
    for l in &s.layers {
        t.row(vec![
            l.arch.clone(),
            l.activation.to_string(),
            l.init.to_string(),
            mean_sd(&l.backward_ratio, 3),
            fixed(l.predicted_ratio, 3),
        ]);
    }
    let mut out = if s.layers.is_empty() {
        String::new()
    } else {
        t.render()
    };
    if !s.jacobian.is_empty() {
        let mut j = Table::new(
            "norms: Jacobian singular values",
            &[
                "residual",
                "activation",
                "depth",
                "mean σ²",
                "max σ",
                "min σ",
            ],
        );
        for r in &s.jacobian {
            j.row(vec![
                r.residual.to_string(),
                r.activation.to_string(),
                r.depth.to_string(),
                fixed(r.mean_sq, 3),
                fixed(r.max, 3),
                fixed(r.min, 3),
            ]);
        }
        out.push_str(&j.render());
    }
    if let Some(images) = &s.images {
        let mut t = Table::new(
            "norms on images: per-block growth of ‖∂L/∂h_l‖ towards the input (95 % interval)",
            &["arch", "depth", "growth", "interval", "loss"],
        );
        for r in &images.results {
            t.row(vec![
                r.arch.clone(),
                r.depth.to_string(),
                fixed(r.growth.growth, 3),
                format!("[{}, {}]", fixed(r.growth.lo, 3), fixed(r.growth.hi, 3)),
                mean_sd(&r.loss, 3),
            ]);
        }
        out.push_str(&t.render());
    }
    if out.is_empty() {
        out = format!("norms: parts {}\n", s.config.parts.join(", "));
    }
    Ok(out)
}

/// Skips: r₁ per variant × depth, and the gradient growth of the λ sweep.
pub fn skips(dir: &Path) -> Result<String> {
    let s: skips::SkipsSummary = read(dir, skips::SCHEMA, |s: &skips::SkipsSummary| &s.schema)?;
    let cells = s
        .compare
        .iter()
        .map(|r| {
            (
                r.arch.clone(),
                r.depth,
                fixed(r.adjacent_correlation.mean, 3),
            )
        })
        .collect();
    let mut out = by_arch_and_depth("skips: r₁ (mean over seeds)", cells);
    let mut t = Table::new(
        "skips: λ sweep, log10 of the gradient ratio over depth",
        &["family", "λ", "log10 ratio", "r₁"],
    );
    for r in &s.sweep {
        t.row(vec![
            r.family.clone(),
            r.lambda.to_string(),
            fixed(r.log10_gradient_ratio, 2),
            fixed(r.adjacent_correlation.mean, 3),
        ]);
    }
    if !s.sweep.is_empty() {
        out.push_str(&t.render());
    }
    Ok(out)
}

/// Degradation: final training and test errors per arch × depth.
pub fn degradation(dir: &Path) -> Result<String> {
    let s: training::TrainingSummary =
        read(dir, training::SCHEMA, |s: &training::TrainingSummary| {
            &s.schema
        })?;
    let mut t = Table::new(
        format!("{}: final errors (mean ± sd over seeds)", training::NAME),
        &["arch", "depth", "train error", "test error", "diverged"],
    );
    for r in &s.results {
        t.row(vec![
            r.arch.clone(),
            r.depth.to_string(),
            mean_sd(&r.final_train_error, 3),
            mean_sd(&r.final_test_error, 3),
            r.diverged.to_string(),
        ]);
    }
    Ok(t.render())
}

/// Trainability: each variant's best final training error and largest stable learning rate per depth.
pub fn trainability(dir: &Path) -> Result<String> {
    use gradscope_studies::trainability as t;
    let s: t::TrainabilitySummary = read(dir, t::SCHEMA, |s: &t::TrainabilitySummary| &s.schema)?;
    let mut table = Table::new(
        format!(
            "{}: best final training error (mean ± sd over seeds) and largest stable lr",
            t::NAME
        ),
        &[
            "arch",
            "depth",
            "best lr",
            "train error",
            "largest stable lr",
            "diverged",
        ],
    );
    let lr = |v: Option<f64>| v.map_or("none".into(), |x| x.to_string());
    for v in &s.verdicts {
        table.row(vec![
            v.arch.clone(),
            v.depth.to_string(),
            lr(v.best_lr),
            mean_sd(&v.best_train_error, 3),
            lr(v.largest_stable_lr),
            v.diverged.to_string(),
        ]);
    }
    Ok(table.render())
}

/// Ensemble: the intact net's test error and the mean error with one block deleted.
pub fn ensemble(dir: &Path) -> Result<String> {
    let s: ensemble::EnsembleSummary =
        read(dir, ensemble::SCHEMA, |s: &ensemble::EnsembleSummary| {
            &s.schema
        })?;
    let mut t = Table::new(
        "ensemble: test error, intact and with one block deleted",
        &["arch", "blocks", "intact", "one deleted (mean)"],
    );
    for a in &s.archs {
        let finite: Vec<f64> = a
            .single_deletion
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        let deleted = if finite.is_empty() {
            f64::NAN
        } else {
            finite.iter().sum::<f64>() / finite.len() as f64
        };
        t.row(vec![
            a.arch.clone(),
            a.blocks.to_string(),
            mean_sd(&a.intact_error, 3),
            fixed(deleted, 3),
        ]);
    }
    Ok(t.render())
}

/// Curvature: λ_max, trace and negative mass of the Hessian per arch, depth and phase.
pub fn curvature(dir: &Path) -> Result<String> {
    let s: curvature::CurvatureSummary =
        read(dir, curvature::SCHEMA, |s: &curvature::CurvatureSummary| {
            &s.schema
        })?;
    let mut t = Table::new(
        "curvature: the Hessian of the loss (mean over seeds)",
        &["arch", "depth", "phase", "λ_max", "trace", "negative mass"],
    );
    for p in &s.points {
        t.row(vec![
            p.arch.clone(),
            p.depth.to_string(),
            p.phase.clone(),
            fixed(p.top_eigenvalue.mean, 3),
            fixed(p.trace.mean, 2),
            fixed(p.negative_mass.mean, 3),
        ]);
    }
    Ok(t.render())
}

/// Correlation: the 2-D r₁ and the mean per-example gradient cosine per arch × depth.
pub fn correlation(dir: &Path) -> Result<String> {
    let s: correlation::CorrelationSummary = read(
        dir,
        correlation::SCHEMA,
        |s: &correlation::CorrelationSummary| &s.schema,
    )?;
    let cells = s
        .results
        .iter()
        .map(|r| {
            let v = format!(
                "{} / {}",
                fixed(r.adjacent_correlation.mean, 3),
                fixed(r.mean_cosine.mean, 3)
            );
            (r.arch.clone(), r.depth, v)
        })
        .collect();
    let mut out = by_arch_and_depth(
        "correlation: 2-D r₁ / mean per-example gradient cosine",
        cells,
    );
    if let Some(images) = &s.images {
        let cells = images
            .results
            .iter()
            .map(|r| {
                let v = format!(
                    "{} / {} / {}",
                    fixed(r.mean_cosine.mean, 3),
                    fixed(r.same_class.mean, 3),
                    fixed(r.different_class.mean, 3)
                );
                (r.arch.clone(), r.depth, v)
            })
            .collect();
        out.push_str(&by_arch_and_depth(
            "correlation on images: mean gradient cosine, all / same-class / different-class pairs",
            cells,
        ));
    }
    Ok(out)
}

/// Landscape: the effective β-smoothness during training and |λ_min/λ_max|
/// after it, per arch × depth.
pub fn landscape(dir: &Path) -> Result<String> {
    let s: landscape::LandscapeSummary =
        read(dir, landscape::SCHEMA, |s: &landscape::LandscapeSummary| {
            &s.schema
        })?;
    let cells = s
        .rows
        .iter()
        .map(|r| {
            let v = format!(
                "{} / {}",
                fixed(r.smoothness.beta_smoothness.mean, 2),
                fixed(r.trained.ratio_origin.mean, 3)
            );
            (r.arch.clone(), r.depth, v)
        })
        .collect();
    Ok(by_arch_and_depth(
        "landscape: effective β-smoothness in training / |λ_min/λ_max| after",
        cells,
    ))
}

/// Transformers: the last block's ‖∂L/∂W²‖ per placement × depth, the
/// log-log slopes, res(h_L)/res(h_0) per rank variant, the training
/// runs' final losses and divergences, and r₁ along the interpolation.
pub fn transformers(dir: &Path) -> Result<String> {
    let s: transformers::TransformersSummary = read(
        dir,
        transformers::SCHEMA,
        |s: &transformers::TransformersSummary| &s.schema,
    )?;
    let cells = s
        .grads
        .iter()
        .map(|r| (r.arch.clone(), r.depth, fixed(r.last_ffn_grad.mean, 4)))
        .collect();
    let mut out = by_arch_and_depth(
        "transformers: the last block's ‖∂L/∂W²‖ at initialisation",
        cells,
    );
    let mut t = Table::new("slope of log ‖∂L/∂W²‖ against log L", &["arch", "slope"]);
    for r in &s.slopes {
        t.row(vec![r.arch.clone(), fixed(r.slope, 2)]);
    }
    out += &t.render();
    let mut t = Table::new(
        format!("rank collapse: res(h_{}) / res(h_0)", s.config.rank_depth),
        &["arch", "ratio"],
    );
    for r in &s.rank {
        let v = &r.residual;
        t.row(vec![
            r.arch.clone(),
            fixed(v[v.len() - 1].mean / v[0].mean, 4),
        ]);
    }
    out += &t.render();
    let mut t = Table::new(
        format!(
            "training, {} steps: final loss (seed mean) and runs diverged",
            s.config.steps
        ),
        &["arch", "lr", "warm-up", "final loss", "diverged"],
    );
    for r in &s.train {
        let finite: Vec<f64> = r
            .final_loss
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        let diverged = r.diverged_at.iter().filter(|d| d.is_some()).count();
        t.row(vec![
            r.arch.clone(),
            format!("{}", r.lr),
            r.warmup.to_string(),
            fixed(mean, 3),
            format!("{diverged}/{}", r.diverged_at.len()),
        ]);
    }
    out += &t.render();
    let cells = s
        .interp
        .iter()
        .map(|r| (r.arch.clone(), r.depth, fixed(r.r1.mean, 3)))
        .collect();
    out += &by_arch_and_depth(
        "interpolation between two sequences' embeddings: r₁ of ∂f/∂e_s along s",
        cells,
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_put_depths_across() {
        let s = by_arch_and_depth(
            "t",
            vec![
                ("plain".into(), 2, "0.5".into()),
                ("resnet-bn".into(), 2, "0.9".into()),
                ("plain".into(), 16, "0.125".into()),
            ],
        );
        assert_eq!(
            s,
            "t\n  arch \\ depth  2    16\n  plain         0.5  0.125\n  resnet-bn     0.9  —\n"
        );
        assert_eq!(fixed(f64::NAN, 2), "n/a");
    }

    /// The committed norms run's conv nets on images: a row per (arch,
    /// depth) with its growth and interval as summary.json has them.
    #[test]
    fn norms_prints_the_image_part() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../notebooks-data/norms");
        let s: norms::NormsSummary =
            read(&dir, norms::SCHEMA, |s: &norms::NormsSummary| &s.schema).unwrap();
        let images = s.images.expect("the committed run has an image part");
        let out = norms(&dir).unwrap();
        assert!(out.contains("norms on images"), "{out}");
        for r in &images.results {
            let g = &r.growth;
            let row = out
                .lines()
                .find(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.first() == Some(&r.arch.as_str())
                        && cols.get(1) == Some(&&*r.depth.to_string())
                })
                .unwrap_or_else(|| panic!("no row for {} {}: {out}", r.arch, r.depth));
            assert!(
                row.contains(&format!("{:.3}", g.growth))
                    && row.contains(&format!("[{:.3}, {:.3}]", g.lo, g.hi)),
                "{row}"
            );
        }
    }
}
