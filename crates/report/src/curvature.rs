//! The curvature report: the Hessian's top eigenvalue, trace and negative
//! mass against depth, plain against residual, with and without BN, and its
//! spectral densities (Ghorbani et al. 2019; Yao et al. 2020).

use std::path::Path;

use gradscope_contract::curvature::{
    self, CurvatureParams, CurvaturePoint, CurvatureSummary, read_density, read_summary,
};
use gradscope_contract::io::create_dir;
use gradscope_spec::ModelArch;

use crate::card::StudyCard;
use crate::claims::{Check, Claims};
use crate::doc::{Block, Doc};
use crate::figure::{Legend, LineChart, Mark, Panels, Series, save};
use crate::format::{decimals, mean_se};
use crate::style::{self, color};
use crate::{Result, pages};

/// How many times larger the plain net's λ_max must be than the residual
/// net's (same BN, deepest depth, at initialisation) for "sharper".
pub const SHARPER_BY: f64 = 2.0;

/// How many times λ_max of a plain net must grow from the shallowest to
/// the deepest depth for "grows with depth".
pub const GROWS_BY: f64 = 2.0;

/// The point of `arch` at `depth` and `phase`.
pub fn point<'a>(
    s: &'a CurvatureSummary,
    arch: &str,
    depth: usize,
    phase: &str,
) -> Option<&'a CurvaturePoint> {
    s.points
        .iter()
        .find(|p| p.arch == arch && p.depth == depth && p.phase == phase)
}

/// Pairs (plain, residual) of the configured archs with the same norm:
/// `plain`/`resnet`, `plain-bn`/`resnet-bn` and `conv-plain`/`conv-resnet`.
pub fn pairs(s: &CurvatureSummary) -> Vec<(String, String)> {
    let names: Vec<String> = s.config.archs.iter().map(|a| a.to_string()).collect();
    [
        ("plain", "resnet"),
        ("plain-bn", "resnet-bn"),
        ("conv-plain", "conv-resnet"),
    ]
    .into_iter()
    .filter(|(p, r)| names.iter().any(|n| n == p) && names.iter().any(|n| n == r))
    .map(|(p, r)| (p.to_string(), r.to_string()))
    .collect()
}

/// What the nets are: MLPs of the configured width, conv nets of He et
/// al. 2016a (whose widths are the paper's), or both.
fn nets(c: &gradscope_contract::curvature::CurvatureParams) -> String {
    let conv = c
        .archs
        .iter()
        .filter(|a| matches!(a, ModelArch::Conv(_)))
        .count();
    let mlps = format!("MLPs of width {}", c.width);
    let convs = "conv nets of He et al. 2016a (stages of 16, 32 and 64 channels)";
    match conv {
        0 => mlps,
        n if n == c.archs.len() => convs.to_string(),
        _ => format!("{mlps} and {convs}"),
    }
}

fn num(v: f64) -> String {
    if v.is_finite() && (v.abs() >= 1e3 || (v != 0.0 && v.abs() < 1e-2)) {
        format!("{v:.2e}")
    } else {
        decimals(v, 3)
    }
}

/// Draw the curvature study's figures and write its pages from the data folder alone.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let s = read_summary(data_dir)?;
    let density = read_density(data_dir, &s)?;
    create_dir(report_dir)?;
    let mut doc = Doc::new("Curvature of the loss: the Hessian against depth");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(curvature::NAME);
    let finding = finding(&s, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&s.config));

    doc.heading("Top eigenvalue, trace and negative mass against depth");
    doc.push(against_depth(&s, report_dir)?);
    doc.push(table(&s));

    doc.heading("Spectral densities");
    doc.push(densities(&s, &density, report_dir)?);

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir),
        report_dir,
    )?;
    Ok(card(&s, finding))
}

/// The finding: plain against residual at the deepest depth, and how a
/// plain net's λ_max grows with depth.
pub fn finding(s: &CurvatureSummary, claims: &mut Claims) -> String {
    let c = &s.config;
    let (shallow, deep) = (c.depths[0], *c.depths.last().expect("depths checked"));
    let mut parts = Vec::new();
    for (plain, res) in pairs(s) {
        let (Some(p), Some(r)) = (point(s, &plain, deep, "init"), point(s, &res, deep, "init"))
        else {
            continue;
        };
        let ratio = p.top_eigenvalue.mean / r.top_eigenvalue.mean;
        let numbers = format!(
            "At initialisation and depth {deep}, λ_max of the loss's Hessian is {} for {plain} and {} for {res}",
            mean_se(p.top_eigenvalue.mean, p.top_eigenvalue.se, num, true),
            mean_se(r.top_eigenvalue.mean, r.top_eigenvalue.se, num, true),
        );
        parts.push(claims.decide(
            &format!("{plain}-sharper"),
            Check::at_least(
                &format!("λ_max({plain}) / λ_max({res}) at depth {deep}, init"),
                ratio,
                SHARPER_BY,
            ),
            format!(
                "{numbers}: the plain net's loss is {}× sharper.",
                decimals(ratio, 1)
            ),
            format!(
                "{numbers}: a ratio of {}, not the {}× that would make the plain net clearly sharper.",
                decimals(ratio, 2),
                decimals(SHARPER_BY, 0)
            ),
        ));
    }
    for arch in ["plain", "plain-bn"] {
        let (Some(a), Some(b)) = (
            point(s, arch, shallow, "init"),
            point(s, arch, deep, "init"),
        ) else {
            continue;
        };
        if shallow == deep {
            continue;
        }
        let growth = b.top_eigenvalue.mean / a.top_eigenvalue.mean;
        let numbers = format!(
            "λ_max of {arch} at initialisation goes from {} at depth {shallow} to {} at depth {deep}",
            num(a.top_eigenvalue.mean),
            num(b.top_eigenvalue.mean)
        );
        parts.push(claims.decide(
            &format!("{arch}-grows"),
            Check::at_least(
                &format!("λ_max({arch}, depth {deep}) / λ_max({arch}, depth {shallow}), init"),
                growth,
                GROWS_BY,
            ),
            format!("{numbers}: it grows {}× with depth.", decimals(growth, 1)),
            format!(
                "{numbers} (a factor {}): it does not grow {}-fold with depth.",
                decimals(growth, 2),
                decimals(GROWS_BY, 0)
            ),
        ));
    }
    if parts.is_empty() {
        return "These runs hold no pair of a plain and a residual net, nor a plain net at two depths: the report shows the measurements without comparing them.".into();
    }
    parts.join(" ")
}

/// The setup paragraph.
fn setup(c: &CurvatureParams) -> String {
    let training = if c.train.epochs > 0 {
        format!(
            "at initialisation and after {} epoch(s) of training (the degradation study's recipe)",
            c.train.epochs
        )
    } else {
        "at initialisation".into()
    };
    format!(
        "Setup: {} on {}, {} seed(s) per architecture and depth; the loss is the mean cross-entropy of a fixed batch of {} training examples with BN in training mode, measured {training}. \
         Every number comes from exact Hessian-vector products (forward-over-reverse on dual numbers through the engine's kernels, {}). \
         λ_max: Lanczos with full reorthogonalisation, at most {} steps, stopped at a residual of {} relative. \
         Trace: Hutchinson's estimator with {} Rademacher probes. Spectral density: stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019; Yao et al. 2020, PyHessian), {} probe(s) of {} steps, broadened by a Gaussian. \
         Negative mass: Σ_{{λ<0}}|λ| / Σ|λ| from the quadrature, so the many eigenvalues near 0 do not count. Error bars: standard errors over seeds.",
        nets(c),
        c.data,
        c.seeds,
        c.batch,
        c.dtype,
        c.lanczos_steps,
        c.lanczos_tol,
        c.trace_probes,
        c.density_probes,
        c.density_steps
    )
}

/// A panel's name, axis label, (mean, s.e.) of a point, and log scale.
type Quantity = (
    &'static str,
    &'static str,
    fn(&CurvaturePoint) -> (f64, f64),
    bool,
);

/// λ_max, trace and negative mass against depth, one row of panels per phase.
fn against_depth(s: &CurvatureSummary, dir: &Path) -> Result<Block> {
    let mut panels = Vec::new();
    let quantities: [Quantity; 3] = [
        (
            "λ_max",
            "top eigenvalue",
            |p| (p.top_eigenvalue.mean, p.top_eigenvalue.se),
            true,
        ),
        (
            "tr H",
            "trace (Hutchinson)",
            |p| (p.trace.mean, p.trace.se),
            true,
        ),
        (
            "negative mass",
            "Σ_{λ<0}|λ| / Σ|λ|",
            |p| (p.negative_mass.mean, p.negative_mass.se),
            false,
        ),
    ];
    for phase in &s.phases {
        for (name, label, of, log) in &quantities {
            let mut ch = LineChart::new(format!("{name}, {phase}"), "depth (blocks)", *label)
                .integer_x()
                .legend(Legend::Outside);
            if *log {
                ch = ch.log_y();
            }
            for (i, arch) in s.config.archs.iter().enumerate() {
                let arch = arch.to_string();
                let pts: Vec<&CurvaturePoint> = s
                    .points
                    .iter()
                    .filter(|p| p.arch == arch && &p.phase == phase)
                    .collect();
                let (xy, err): (Vec<(f64, f64)>, Vec<f64>) = pts
                    .iter()
                    .map(|p| {
                        let (m, se) = of(p);
                        ((p.depth as f64, m), if se.is_finite() { se } else { 0.0 })
                    })
                    .unzip();
                ch.push(
                    Series::line(arch, xy, color(i))
                        .mark(Mark::LinePoints)
                        .errors(err),
                );
            }
            ch.title_size = style::PANEL_TITLE_SIZE;
            panels.push(ch);
        }
    }
    let rows = s.phases.len();
    let fig = save(
        &Panels {
            title: "The Hessian of the loss against depth".into(),
            rows,
            cols: 3,
            panels,
        },
        dir,
        "curvature",
        (1800, 560 * rows as u32),
    )?;
    Ok(Block::figure(
        fig,
        "Top eigenvalue, trace and negative mass of the Hessian against depth, per architecture",
        "Means over seeds with standard errors. A large λ_max is a sharp direction: gradient descent is stable only for learning \
         rates below 2/λ_max. The trace sums the curvature over all directions; the negative mass is the share of it in directions \
         where the loss curves down.",
    ))
}

/// The numbers behind the figure at the deepest depth.
fn table(s: &CurvatureSummary) -> Block {
    let deep = *s.config.depths.last().expect("depths checked");
    let rows = s
        .points
        .iter()
        .filter(|p| p.depth == deep)
        .map(|p| {
            vec![
                p.arch.clone(),
                p.phase.clone(),
                p.parameters.to_string(),
                decimals(p.loss.mean, 3),
                mean_se(p.top_eigenvalue.mean, p.top_eigenvalue.se, num, false),
                mean_se(p.trace.mean, p.trace.se, num, false),
                mean_se(p.negative_mass.mean, p.negative_mass.se, num, false),
                format!(
                    "{}/{} in ≤ {}",
                    p.converged, s.config.seeds, p.lanczos_iterations
                ),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "phase",
            "parameters",
            "loss",
            "λ_max",
            "tr H",
            "negative mass",
            "Lanczos converged (steps)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// One panel per arch: its spectral density at the deepest depth, per phase.
fn densities(s: &CurvatureSummary, density: &ndarray::Array2<f64>, dir: &Path) -> Result<Block> {
    let deep = *s.config.depths.last().expect("depths checked");
    let mut panels = Vec::new();
    for arch in &s.config.archs {
        let arch = arch.to_string();
        let mut ch = LineChart::new(&arch, "eigenvalue λ", "density (log)")
            .log_y()
            .legend(Legend::Outside);
        for (k, g) in s.density_grids.iter().enumerate() {
            if g.arch != arch {
                continue;
            }
            let floor = density.row(k).iter().cloned().fold(0.0f64, f64::max) * 1e-6;
            let pts: Vec<(f64, f64)> = g
                .points()
                .into_iter()
                .zip(density.row(k).iter())
                .map(|(t, d)| (t, d.max(floor)))
                .collect();
            let i = s.phases.iter().position(|p| *p == g.phase).unwrap_or(0);
            ch.push(Series::line(g.phase.clone(), pts, color(i)));
        }
        ch.title_size = style::PANEL_TITLE_SIZE;
        panels.push(ch);
    }
    let cols = panels.len().min(4);
    let rows = panels.len().div_ceil(cols);
    let fig = save(
        &Panels {
            title: format!("Spectral densities of the Hessian at depth {deep}"),
            rows,
            cols,
            panels,
        },
        dir,
        "density",
        (450 * cols as u32, 450 * rows as u32),
    )?;
    Ok(Block::figure(
        fig,
        "Spectral density of the Hessian per architecture, at initialisation and after training",
        "Stochastic Lanczos quadrature pooled over probes and seeds, broadened by a Gaussian of 1/40 of each panel's span (floored \
         at 10⁻⁶ of the peak for the log scale). Most of the mass sits near 0; the outliers to the right are the few sharp directions.",
    ))
}

/// The data files behind the page.
fn data_files(data_dir: &Path) -> Block {
    Block::List(
        [
            curvature::files::SUMMARY,
            curvature::files::NETS,
            curvature::files::CURVATURE_CSV,
            curvature::files::DENSITY_CSV,
            curvature::files::DENSITY_NPY,
            curvature::files::PER_SEED_NPY,
        ]
        .iter()
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}

/// The index card: λ_max per arch at the deepest depth, at initialisation.
fn card(s: &CurvatureSummary, finding: String) -> StudyCard {
    let deep = *s.config.depths.last().expect("depths checked");
    let numbers = s
        .points
        .iter()
        .filter(|p| p.depth == deep && p.phase == "init")
        .map(|p| {
            (
                format!("{} λ_max at depth {deep}", p.arch),
                num(p.top_eigenvalue.mean),
            )
        })
        .collect();
    StudyCard {
        name: curvature::NAME.into(),
        title: "Curvature of the loss".into(),
        href: format!("{}/index.html", curvature::NAME),
        thumbnail: Some(format!("{}/curvature.png", curvature::NAME)),
        finding,
        numbers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gradscope_contract::curvature::MeanSe;

    /// A summary of two depths of plain and resnet with λ_max as given
    /// (plain at depths 2 and 8, resnet at depths 2 and 8).
    fn summary(top: [f64; 4]) -> CurvatureSummary {
        let config = CurvatureParams {
            archs: [gradscope_spec::Arch::PLAIN, gradscope_spec::Arch::RESNET]
                .map(gradscope_spec::ModelArch::Mlp)
                .to_vec(),
            depths: vec![2, 8],
            ..CurvatureParams::default()
        };
        let mut points = Vec::new();
        for (a, arch) in ["plain", "resnet"].iter().enumerate() {
            for (d, depth) in [2, 8].iter().enumerate() {
                let m = |v: f64| MeanSe { mean: v, se: 0.1 };
                points.push(CurvaturePoint {
                    arch: arch.to_string(),
                    depth: *depth,
                    phase: "init".into(),
                    parameters: 100,
                    loss: m(2.3),
                    top_eigenvalue: m(top[2 * a + d]),
                    trace: m(10.0),
                    negative_mass: m(0.1),
                    converged: 2,
                    lanczos_iterations: 12,
                });
            }
        }
        CurvatureSummary {
            schema: curvature::SCHEMA.into(),
            study: curvature::NAME.into(),
            provenance: serde_json::from_value(serde_json::json!({
                "version": "0", "git_commit": null, "started": "", "seconds": 0.0,
                "threads": 1, "command": null, "engine_fallbacks": []
            }))
            .unwrap(),
            config,
            phases: vec!["init".into()],
            points,
            density_grids: Vec::new(),
        }
    }

    #[test]
    fn the_sentences_follow_the_numbers() {
        let mut c = Claims::new(curvature::NAME);
        let text = finding(&summary([1.0, 8.0, 0.5, 1.0]), &mut c);
        assert!(text.contains("8.0× sharper"), "{text}");
        assert!(text.contains("grows 8.0× with depth"), "{text}");
        assert!(c.list().iter().all(|c| c.holds));
        let mut c = Claims::new(curvature::NAME);
        let text = finding(&summary([1.0, 1.5, 0.5, 1.0]), &mut c);
        assert!(text.contains("not the 2× that would make"), "{text}");
        assert!(text.contains("does not grow 2-fold"), "{text}");
        assert!(c.list().iter().all(|c| !c.holds));
        // Without a residual net there is no comparison of plain and residual.
        let mut s = summary([1.0, 8.0, 0.5, 1.0]);
        s.points.retain(|p| p.arch == "plain");
        s.config.archs.truncate(1);
        let mut c = Claims::new(curvature::NAME);
        let text = finding(&s, &mut c);
        assert!(!text.contains("resnet") && text.contains("grows"), "{text}");
    }
}
