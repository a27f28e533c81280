//! The shattered-gradients report: figures, tables and the finding, from
//! `notebooks-data/shattered/` alone.

pub mod claims;
mod figures;
pub mod images;
pub mod laws;
mod plane;

use std::path::Path;

use gradscope_contract::io::create_dir;
use gradscope_contract::shattered::{
    self, ArchFits, DepthSummary, NoiseReference, ShatteredData, ShatteredParams, ShatteredSummary,
};
use gradscope_stats::{DecayLaw, ExcludedPoint, ExclusionReason, MeanStd};

use crate::card::StudyCard;
use crate::claims::Claims;
use crate::doc::{Block, Doc};
use crate::format::na::{f2, f3};
use crate::format::{mean_ci, signed};
use crate::{Result, pages};

/// Which nets the paper's pictures use, picked from what the run has.
struct Picks {
    /// A feedforward arch (plain-bn preferred).
    ff: Option<usize>,
    /// A residual arch (resnet-bn preferred).
    res: Option<usize>,
    /// A second residual arch (resnet1-bn preferred).
    res1: Option<usize>,
}

fn picks(d: &ShatteredData) -> Picks {
    let archs = &d.summary.config.archs;
    let find = |name: &str| d.arch_index(name);
    let ff = find("plain-bn").or_else(|| archs.iter().position(|a| !a.is_residual()));
    let res = find("resnet-bn").or_else(|| archs.iter().position(|a| a.is_residual()));
    let res1 = find("resnet1-bn").filter(|&i| Some(i) != res);
    Picks { ff, res, res1 }
}

/// A run's data with the nets and depths its page refers to.
struct Run<'a> {
    d: &'a ShatteredData,
    /// Arch spec strings, in config order.
    archs: Vec<String>,
    picks: Picks,
    /// Index of the depth nearest 16.
    d16: usize,
    /// Index of the largest depth.
    dmax: usize,
}

impl<'a> Run<'a> {
    fn new(d: &'a ShatteredData) -> Self {
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
            picks: picks(d),
            d16: nearest(depths, 16),
            dmax: depths.len() - 1,
        }
    }

    fn config(&self) -> &'a ShatteredParams {
        &self.d.summary.config
    }

    fn depths(&self) -> &'a [usize] {
        &self.d.summary.config.depths
    }

    /// The summary of arch `a` at depth index `di`.
    fn result(&self, a: usize, di: usize) -> &'a DepthSummary {
        &self.d.summary.results[a * self.depths().len() + di]
    }

    fn r1(&self, a: usize, di: usize) -> &'a MeanStd {
        &self.result(a, di).adjacent_correlation
    }

    fn slope(&self, a: usize, di: usize) -> &'a MeanStd {
        &self.result(a, di).spectral_slope
    }

    fn white(&self) -> &'a NoiseReference {
        &self.d.summary.references[0]
    }

    fn brown(&self) -> &'a NoiseReference {
        &self.d.summary.references[1]
    }
}

/// Inits in words, for the setup paragraph.
fn describe_init(s: &str) -> String {
    match s {
        "he" => "He (Kaiming fan-in, N(0, 2/fan_in))".into(),
        "lecun" => "LeCun (N(0, 1/fan_in))".into(),
        "xavier" => "Xavier/Glorot (N(0, 2/(fan_in + fan_out)))".into(),
        "torch" => "PyTorch-default U(±1/√fan_in)".into(),
        "zero" => "zero".into(),
        other => other.into(),
    }
}

fn nearest(depths: &[usize], target: usize) -> usize {
    (0..depths.len())
        .min_by_key(|&i| depths[i].abs_diff(target))
        .unwrap_or(0)
}

/// Build `report_dir` (figures, index.html, report.md) from `data_dir`.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let d = ShatteredData::read(data_dir)?;
    create_dir(report_dir)?;
    let run = Run::new(&d);
    let s = &d.summary;

    let mut doc = Doc::new("Shattered gradients");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(shattered::NAME);
    let finding = claims::finding(&run, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&s.config));

    doc.heading("What the gradients look like");
    doc.push(figures::gradients(&run, report_dir, &mut said)?);

    doc.heading("Correlation against depth");
    doc.push(figures::r1_vs_depth(&run, report_dir, &mut said)?);
    doc.paragraph("r₁: mean ± standard error [95 % Student-t interval] over seeds:");
    doc.push(depth_table(&run, &|a, i| mean_ci(run.r1(a, i), f3)));
    doc.paragraph(format!(
        "Spectral slope (bins {}..={}): mean ± standard error [95 % Student-t interval]:",
        s.band.lo, s.band.hi
    ));
    doc.push(depth_table(&run, &|a, i| mean_ci(run.slope(a, i), f2)));

    doc.heading("Decay laws");
    doc.push(figures::decay_fits(&run, report_dir)?);
    doc.push(fits_table(&s.fits));
    let disagreements = disagreements(&s.fits);
    if !disagreements.is_empty() {
        doc.paragraph(
            "Where the data disagree with the paper's law (the fit is reported as measured; the laws describe decoupled inputs, not neighbouring grid points):",
        );
        doc.push(Block::List(disagreements));
    }

    doc.heading("The laws where they apply: correlation across nets by distance");
    for b in laws::section(&run, report_dir, &mut said)? {
        doc.push(b);
    }

    doc.heading("Autocorrelation and spectra");
    doc.push(figures::acf(&run, report_dir)?);
    doc.push(figures::spectra(&run, report_dir, &mut said)?);

    if let Some(fig) = figures::correlation(&run, report_dir)? {
        doc.heading("Covariance across inputs");
        doc.push(fig);
    }

    if let Some(blocks) = images::section(&d, report_dir, &mut said)? {
        let plane = d.summary.images.as_ref().is_some_and(|i| i.plane.is_some());
        doc.heading(if plane {
            "On images: conv nets along a path between two images and over a plane of three"
        } else {
            "On images: conv nets along a path between two images"
        });
        for b in blocks {
            doc.push(b);
        }
    }

    doc.heading("Gradient norms by layer");
    doc.push(figures::layer_norms(&run, report_dir)?);
    doc.push(depth_table(&run, &|a, i| {
        f2(run.result(a, i).gradient_growth.mean)
    }));

    let faults = faults(s);
    if !faults.is_empty() {
        doc.heading("Numerical faults");
        doc.paragraph("These nets produced NaN or inf; their statistics are excluded from the means above (counted as excluded).");
        doc.push(Block::List(faults));
    }

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir),
        report_dir,
    )?;
    Ok(card(&run, finding))
}

/// The setup paragraph: what was run, in the paper's terms.
fn setup(c: &ShatteredParams) -> String {
    format!(
        "Setup (Balduzzi et al. 2017, “The Shattered Gradients Problem”, ICML): scalar input on {} evenly spaced points in [{}, {}], width {}, {} weights, {} biases, {} precision, {} seeds per net; BN gradients in “{}” mode ({}). {}",
        c.points,
        c.x_min,
        c.x_max,
        c.width,
        describe_init(&c.weight_init.to_string()),
        describe_init(&c.bias_init.to_string()),
        c.dtype,
        c.seeds,
        c.bn_mode,
        match c.bn_mode.name() {
            "per-sample" => {
                "batch statistics held constant in the backward pass, so g(xᵢ) is the per-sample derivative df(xᵢ)/dxᵢ"
            }
            "full" => {
                "gradient taken through the batch statistics, so samples are coupled; nets decorrelate faster in this mode"
            }
            _ => "running statistics: BN is a fixed affine map",
        },
        match c.depth_nets {
            gradscope_spec::DepthNets::Nested => {
                "A depth-L net is the first L blocks of the deepest net of the same seed, so the depths' values are correlated."
            }
            gradscope_spec::DepthNets::Independent => {
                "Each depth's nets are drawn on their own (depth_nets = independent), so the depths' values are independent samples."
            }
        }
    )
}

/// A table with one row per arch and one column per depth; `cell(a, i)`
/// prints arch `a` at depth index `i`.
fn depth_table(run: &Run, cell: &dyn Fn(usize, usize) -> String) -> Block {
    let mut header = vec!["arch".to_string()];
    header.extend(run.depths().iter().map(|l| format!("L={l}")));
    Block::Table {
        header,
        rows: run
            .archs
            .iter()
            .enumerate()
            .map(|(a, n)| {
                std::iter::once(n.clone())
                    .chain((0..run.depths().len()).map(|i| cell(a, i)))
                    .collect()
            })
            .collect(),
    }
}

/// The decay fits of every arch and quantity: both laws, the better one, exclusions.
fn fits_table(fits: &[ArchFits]) -> Block {
    let mut rows = Vec::new();
    for f in fits {
        for (q, cmp) in [
            ("r₁", &f.adjacent_correlation),
            ("1 − r₁", &f.roughness),
            ("‖∂L/∂h₀‖", &f.input_grad_norm),
        ] {
            let Some(cmp) = cmp else {
                rows.push(vec![
                    f.arch.clone(),
                    q.into(),
                    "fewer than 3 points to fit".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                continue;
            };
            let e = &cmp.exponential;
            let pl = &cmp.power_law;
            rows.push(vec![
                f.arch.clone(),
                q.into(),
                match cmp.better {
                    DecayLaw::Exponential => "exponential".into(),
                    DecayLaw::PowerLaw => "power law".into(),
                },
                format!(
                    "b = {} [{}, {}] (R² {})",
                    f3(e.rate),
                    f3(e.rate_lo),
                    f3(e.rate_hi),
                    f3(e.line.r2)
                ),
                format!(
                    "k = {} [{}, {}] (R² {})",
                    signed(-pl.rate),
                    signed(-pl.rate_hi),
                    signed(-pl.rate_lo),
                    f3(pl.line.r2)
                ),
                left_out(&cmp.best().excluded),
            ]);
        }
    }
    Block::Table {
        header: [
            "arch",
            "quantity",
            "better fit",
            "exponential a·b^L, b [95 % interval]",
            "power law a·L^k, k [95 % interval]",
            "depths left out of the better fit",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The depths a fit left out, each with its reason ("none" when it kept all).
fn left_out(excluded: &[ExcludedPoint]) -> String {
    if excluded.is_empty() {
        return "none".into();
    }
    excluded
        .iter()
        .map(|e| {
            let why = match e.reason {
                ExclusionReason::NonFinite => "not finite".to_string(),
                ExclusionReason::BelowNoiseFloor { floor } => {
                    format!("below the noise floor {}", f3(floor))
                }
                ExclusionReason::AboveCeiling { ceiling } => {
                    format!("saturated, above {}", f3(ceiling))
                }
                ExclusionReason::NonPositiveUnderLog => "≤ 0 under a log".to_string(),
                ExclusionReason::NoStandardError => "no standard error".to_string(),
            };
            format!("L = {} ({why})", e.x)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// BN resnets whose r₁ follows an exponential better than the paper's 1/√L.
fn disagreements(fits: &[ArchFits]) -> Vec<String> {
    let mut out = Vec::new();
    for f in fits {
        if f.arch.ends_with("-bn")
            && f.arch.starts_with("resnet")
            && let Some(cmp) = &f.adjacent_correlation
            && cmp.better == DecayLaw::Exponential
        {
            out.push(format!(
                "{}: the paper's 1/√L is a power law, but r₁ here is fitted better by an exponential (R² {} vs {}, b = {}).",
                f.arch,
                f3(cmp.exponential.line.r2),
                f3(cmp.power_law.line.r2),
                f3(cmp.exponential.rate)
            ));
        }
    }
    out
}

/// Every NaN or inf a net produced, one line each.
fn faults(s: &ShatteredSummary) -> Vec<String> {
    s.results
        .iter()
        .flat_map(|r| {
            r.faults.iter().map(move |f| {
                format!(
                    "{} depth {} seed {}: {} in the {} pass at {} (h_{})",
                    r.arch,
                    r.depth,
                    f.seed,
                    if f.nan { "NaN" } else { "inf" },
                    f.pass,
                    f.name,
                    f.layer
                )
            })
        })
        .collect()
}

/// The data files behind the page.
fn data_files(data_dir: &Path) -> Block {
    Block::List(
        [
            shattered::files::SUMMARY,
            shattered::files::SUMMARY_CSV,
            shattered::files::PER_SEED_CSV,
            shattered::files::LAYER_NORMS_CSV,
            shattered::files::FITS_CSV,
            "grid.npy (N,)",
            "input_gradients.npy (archs, depths, seeds, N)",
            "power_spectra.npy (archs, depths, seeds, N/2+1)",
            "autocorrelation.npy (archs, depths, seeds, max_lag+1)",
            "correlation_matrices.npy (archs, depths, N, N), float32",
            "noise.npy (2: white, brown; seeds; N)",
            "images_summary.csv, images_per_seed.csv, images_layer_norms.csv (nets on images, when run)",
            "images_gradients.npy (image archs, depths, N, C·H·W), seed 0; images_power_spectra.npy, images_autocorrelation.npy (image archs, depths, seeds, ·); images_path.npy (N,); images_endpoints.npy (2, C·H·W)",
            "images_plane_summary.csv, images_plane_per_seed.csv (the plane of images, when run)",
            "images_plane_pictures.npy (image archs, depths, plane seeds, 2: ∂f/∂a, ∂f/∂b; H, H); images_plane_spectra.npy (image archs, depths, plane seeds, 2, H/2+1); images_plane_corners.npy (3, C·H·W)",
        ]
        .iter()
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}

/// The index card: the finding and the r₁ of the picked nets.
fn card(run: &Run, finding: String) -> StudyCard {
    let (depths, archs, p) = (run.depths(), &run.archs, &run.picks);
    let (d16, dmax) = (run.d16, run.dmax);
    let mut numbers = Vec::new();
    if let Some(ff) = p.ff {
        numbers.push((
            format!("r₁ {} L={}", archs[ff], depths[d16]),
            f2(run.r1(ff, d16).mean),
        ));
    }
    if let Some(res) = p.res {
        numbers.push((
            format!("r₁ {} L={}", archs[res], depths[dmax]),
            f2(run.r1(res, dmax).mean),
        ));
    }
    if let Some(r) = p.res1 {
        numbers.push((
            format!("r₁ {} L={}", archs[r], depths[dmax]),
            f2(run.r1(r, dmax).mean),
        ));
    }
    numbers.push((
        "r₁ white / brown noise".into(),
        format!(
            "{} / {}",
            f2(run.white().adjacent_correlation.mean),
            f2(run.brown().adjacent_correlation.mean)
        ),
    ));
    StudyCard {
        name: shattered::NAME.into(),
        title: "Shattered gradients".into(),
        href: format!("{}/index.html", shattered::NAME),
        thumbnail: Some(format!("{}/r1_vs_depth.png", shattered::NAME)),
        finding,
        numbers,
    }
}
