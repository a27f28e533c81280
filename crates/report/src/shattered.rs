//! The shattered-gradients report: figures, tables and the finding, from
//! `notebooks-data/shattered/` alone.

use std::path::Path;

use gradscope_stats::{DecayComparison, DecayLaw, theory};
use gradscope_studies::output::create_dir;
use gradscope_studies::shattered::{self, ShatteredData, seed_mean};
use ndarray::{Axis, s};

use crate::card::StudyCard;
use crate::doc::{Block, Doc};
use crate::figure::{
    ColorBar, Heatmap, HeatmapGrid, Legend, LineChart, Mark, Panels, Series, reduce_matrix, save,
};
use crate::style::{self, color, ramp};
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

fn f2(v: f64) -> String {
    style::fixed(v, 2, "n/a")
}

fn f3(v: f64) -> String {
    style::fixed(v, 3, "n/a")
}

/// An exponent with a true minus sign: `−0.716`, `1.437`.
fn signed(v: f64) -> String {
    let s = f3(v);
    match s.strip_prefix('-') {
        Some(rest) => format!("−{rest}"),
        None => s,
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
    let c = &d.summary.config;
    let depths = &c.depths;
    let archs: Vec<String> = c.archs.iter().map(|a| a.to_string()).collect();
    let p = picks(&d);
    let r1 = |a: usize, di: usize| d.summary.results[a * depths.len() + di].adjacent_correlation;
    let slope = |a: usize, di: usize| d.summary.results[a * depths.len() + di].spectral_slope;
    let white = &d.summary.references[0];
    let brown = &d.summary.references[1];
    let (dmin, dmax) = (0, depths.len() - 1);
    let d16 = nearest(depths, 16);

    let mut doc = Doc::new("Shattered gradients");
    doc.back = Some("../index.html".into());

    // The finding, from the numbers.
    let mut finding = Vec::new();
    if let Some(ff) = p.ff {
        finding.push(format!(
            "Feedforward nets shatter: for {}, the lag-1 correlation r₁ of df/dx over {} grid points falls from {} at depth {} to {} at depth {} (white noise: {}), and the spectral slope goes from {} to {} (white 0, brown −2).",
            archs[ff], c.points, f2(r1(ff, dmin).mean), depths[dmin], f2(r1(ff, d16).mean), depths[d16], f2(white.adjacent_correlation.mean),
            f2(slope(ff, dmin).mean), f2(slope(ff, d16).mean)
        ));
    }
    if let Some(res) = p.res {
        let mut s = format!(
            "Residual nets decorrelate far more slowly: {} keeps r₁ = {} at depth {} and {} at depth {}",
            archs[res],
            f2(r1(res, d16).mean),
            depths[d16],
            f2(r1(res, dmax).mean),
            depths[dmax]
        );
        if let Some(r1i) = p.res1 {
            s.push_str(&format!(
                "; with a one-layer branch ({}) r₁ is still {} at depth {}",
                archs[r1i],
                f2(r1(r1i, dmax).mean),
                depths[dmax]
            ));
        }
        s.push_str(&format!(
            " (brown noise: {}).",
            f2(brown.adjacent_correlation.mean)
        ));
        finding.push(s);
    }
    let finding = finding.join(" ");
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(format!(
        "Setup (Balduzzi et al. 2017, “The Shattered Gradients Problem”, ICML): scalar input on {} evenly spaced points in [{}, {}], width {}, {} weights, {} biases, {} precision, {} seeds per net; BN gradients in “{}” mode ({}). A depth-L net is the first L blocks of the deepest net of the same seed.",
        c.points, c.x_min, c.x_max, c.width, describe_init(&c.weight_init.to_string()), describe_init(&c.bias_init.to_string()), c.dtype, c.seeds, c.bn_mode,
        match c.bn_mode.name() {
            "per-sample" => "batch statistics held constant in the backward pass, so g(xᵢ) is the per-sample derivative df(xᵢ)/dxᵢ",
            "full" => "gradient taken through the batch statistics, so samples are coupled; nets decorrelate faster in this mode",
            _ => "running statistics: BN is a fixed affine map",
        }
    ));

    // Figure 1 of the paper: g(x) beside white and brown noise.
    let mut panels = Vec::new();
    let grid: Vec<f64> = d.grid.to_vec();
    let standardise = |g: Vec<f64>| {
        let m = g.iter().sum::<f64>() / g.len() as f64;
        let sd = (g.iter().map(|v| (v - m).powi(2)).sum::<f64>() / g.len() as f64).sqrt();
        g.into_iter()
            .map(|v| if sd > 0.0 { (v - m) / sd } else { 0.0 })
            .collect::<Vec<f64>>()
    };
    let signal_panel = |title: String, g: Vec<f64>, col| {
        let mut ch = LineChart::new(title, "x", "g(x), standardised").legend(Legend::None);
        ch.title_size = style::PANEL_TITLE_SIZE;
        ch.push(
            Series::line("", grid.iter().copied().zip(standardise(g)).collect(), col)
                .unlabelled()
                .width(1),
        );
        ch
    };
    let mut shown = Vec::new();
    // At depth 1 a BN net on a symmetric grid has batch mean 0 before its only
    // ReLU, so it is homogeneous and g is a step; depth 2 shows a smooth gradient.
    let shallow = nearest(depths, 2);
    if let Some(ff) = p.ff {
        shown.push((ff, shallow));
        shown.push((ff, nearest(depths, 24)));
    }
    if let Some(res) = p.res {
        shown.push((res, dmax));
    }
    if let Some(r) = p.res1 {
        shown.push((r, dmax));
    }
    for (k, &(a, di)) in shown.iter().enumerate() {
        let g = d.input_gradients.slice(s![a, di, 0, ..]).to_vec();
        panels.push(signal_panel(
            format!(
                "{}, depth {} (r₁ = {})",
                archs[a],
                depths[di],
                f2(r1(a, di).mean)
            ),
            g,
            color(k),
        ));
    }
    panels.push(signal_panel(
        format!("brown noise (r₁ = {})", f2(brown.adjacent_correlation.mean)),
        d.noise.slice(s![1, 0, ..]).to_vec(),
        style::THEORY,
    ));
    panels.push(signal_panel(
        format!("white noise (r₁ = {})", f2(white.adjacent_correlation.mean)),
        d.noise.slice(s![0, 0, ..]).to_vec(),
        style::THEORY,
    ));
    let rows = panels.len().div_ceil(2);
    let fig = save(
        &Panels {
            title: "Input gradients g(x) = df/dx of one net each, beside brown and white noise"
                .into(),
            rows,
            cols: 2,
            panels,
        },
        report_dir,
        "gradients",
        (1200, 300 * rows as u32 + 60),
    )?;
    doc.heading("What the gradients look like");
    doc.figure(
        fig,
        "Input gradients of feedforward and residual nets beside noise",
        "The paper's Figure 1: df/dx along the input grid for one seed (standardised). A shallow net's gradient is smooth; \
         a deep feedforward net's looks like white noise; a deep residual net with BN stays closer to brown noise, \
         though a two-layer branch roughens it by depth 50 more than a one-layer branch does. (At depth 1, a BN net on a grid \
         symmetric about 0 has batch mean 0 before its only ReLU, so it is positively homogeneous and g is a step.)",
    );

    // r₁ against depth with the theory curves.
    let xs: Vec<f64> = depths.iter().map(|&l| l as f64).collect();
    let mut ch = LineChart::new(
        "Lag-1 correlation of df/dx against depth",
        "depth L (blocks)",
        "r₁ (mean ± sd over seeds)",
    )
    .log2_x()
    .y_range(-0.25, 1.08)
    .legend(Legend::LowerLeft);
    for (a, name) in archs.iter().enumerate() {
        let m: Vec<(f64, f64)> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, r1(a, i).mean))
            .collect();
        let e: Vec<f64> = (0..xs.len()).map(|i| r1(a, i).std).collect();
        ch.push(
            Series::line(name.clone(), m, color(a))
                .mark(Mark::LinePoints)
                .errors(e),
        );
    }
    let dense: Vec<f64> = (0..=200)
        .map(|i| 1.0 + (xs[xs.len() - 1] - 1.0).max(1.0) * i as f64 / 200.0)
        .collect();
    let curve = |f: &dyn Fn(f64) -> f64| dense.iter().map(|&l| (l, f(l))).collect::<Vec<_>>();
    ch.push(
        Series::line(
            "2^−L (feedforward, theory)",
            curve(&theory::feedforward_correlation),
            color(7),
        )
        .mark(Mark::Dashed),
    );
    ch.push(
        Series::line(
            "(3/4)^L (resnet, no BN, theory)",
            curve(&|l| theory::resnet_correlation(l, 1.0)),
            color(6),
        )
        .mark(Mark::Dashed),
    );
    ch.push(
        Series::line(
            "1/√L (resnet + BN, theory)",
            curve(&theory::resnet_bn_correlation),
            color(5),
        )
        .mark(Mark::Dashed),
    );
    let fig = save(&ch, report_dir, "r1_vs_depth", style::SIZE)?;
    doc.heading("Correlation against depth");
    doc.figure(
        fig,
        "Lag-1 correlation against depth for each architecture, with the paper's theory curves",
        format!(
            "r₁ of df/dx between neighbouring grid points (spacing {:.3}) against depth, mean ± sd over {} seeds, with Balduzzi et al.'s \
             laws for the correlation of gradients at decoupled inputs: 2^−L (feedforward), (3/4)^L (resnet without BN), 1/√L (resnet with BN). \
             The laws describe inputs far enough apart that their ReLU patterns decouple, so a fine grid's lag-1 correlation need not follow \
             them literally; what holds is the ordering. White noise gives r₁ ≈ {}, brown noise ≈ {}.",
            (c.x_max - c.x_min) / (c.points - 1) as f64,
            c.seeds,
            f2(white.adjacent_correlation.mean),
            f2(brown.adjacent_correlation.mean)
        ),
    );

    let mut header = vec!["arch".to_string()];
    header.extend(depths.iter().map(|l| format!("L={l}")));
    let table = |f: &dyn Fn(usize, usize) -> String| Block::Table {
        header: header.clone(),
        rows: archs
            .iter()
            .enumerate()
            .map(|(a, n)| {
                std::iter::once(n.clone())
                    .chain((0..depths.len()).map(|i| f(a, i)))
                    .collect()
            })
            .collect(),
    };
    doc.paragraph("r₁, mean ± sd over seeds:");
    doc.push(table(&|a, i| {
        format!("{} ± {}", f3(r1(a, i).mean), f3(r1(a, i).std))
    }));
    doc.paragraph(format!(
        "Spectral slope (bins {}..={}), mean ± sd:",
        d.summary.band.lo, d.summary.band.hi
    ));
    doc.push(table(&|a, i| {
        format!("{} ± {}", f2(slope(a, i).mean), f2(slope(a, i).std))
    }));

    // Decay fits.
    let fits = &d.summary.fits;
    let mut fit_panels = Vec::new();
    for (q, label, log_y) in [
        ("r1", "r₁", true),
        ("roughness", "1 − r₁", true),
        ("norm", "‖∂L/∂h₀‖", true),
    ] {
        let mut ch = LineChart::new(
            format!("{label} against depth, best fit dashed"),
            "depth L",
            label,
        )
        .log2_x();
        ch.title_size = style::PANEL_TITLE_SIZE;
        if log_y {
            ch = ch.log_y();
        }
        ch.legend = if q == "norm" {
            Legend::UpperLeft
        } else {
            Legend::LowerLeft
        };
        for (a, name) in archs.iter().enumerate() {
            let ys: Vec<f64> = (0..depths.len())
                .map(|i| match q {
                    "r1" => r1(a, i).mean,
                    "roughness" => 1.0 - r1(a, i).mean,
                    _ => d.summary.results[a * depths.len() + i].layer_grad_norm_mean[0],
                })
                .collect();
            ch.push(
                Series::line(name.clone(), xs.iter().copied().zip(ys).collect(), color(a))
                    .mark(Mark::Points),
            );
            let cmp = match q {
                "r1" => fits[a].adjacent_correlation,
                "roughness" => fits[a].roughness,
                _ => fits[a].input_grad_norm,
            };
            if let Some(cmp) = cmp {
                let f = best_curve(&cmp);
                ch.push(
                    Series::line("", dense.iter().map(|&l| (l, f(l))).collect(), color(a))
                        .mark(Mark::Dashed)
                        .width(1)
                        .unlabelled(),
                );
            }
        }
        fit_panels.push(ch);
    }
    let fig = save(
        &Panels {
            title: String::new(),
            rows: 1,
            cols: 3,
            panels: fit_panels,
        },
        report_dir,
        "decay_fits",
        (1800, 600),
    )?;
    doc.heading("Decay laws");
    doc.figure(
        fig,
        "r₁, roughness and input-gradient norm against depth with fitted laws",
        "Exponential a·b^L and power-law a·L^k fits of r₁, of the roughness 1 − r₁ and of ‖∂L/∂h₀‖ against depth, both fitted to ln y \
         (points ≤ 0 cannot enter a log fit and are counted as excluded); the dashed line is the law with the higher R².",
    );
    let mut rows = Vec::new();
    let mut disagreements = Vec::new();
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
                    "too few positive points".into(),
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
                format!("{}·{}^L (R² {})", f3(e.a), f3(e.rate), f3(e.r2)),
                format!("{}·L^{} (R² {})", f3(pl.a), signed(-pl.rate), f3(pl.r2)),
                format!("{} of {}", e.excluded, e.used + e.excluded),
            ]);
        }
        if f.arch.ends_with("-bn")
            && f.arch.starts_with("resnet")
            && let Some(cmp) = f.adjacent_correlation
            && cmp.better == DecayLaw::Exponential
        {
            disagreements.push(format!(
                "{}: the paper's 1/√L is a power law, but r₁ here is fitted better by an exponential (R² {} vs {}, b = {}).",
                f.arch,
                f3(cmp.exponential.r2),
                f3(cmp.power_law.r2),
                f3(cmp.exponential.rate)
            ));
        }
    }
    doc.push(Block::Table {
        header: [
            "arch",
            "quantity",
            "better fit",
            "exponential a·b^L",
            "power law a·L^k",
            "excluded points",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    });
    if !disagreements.is_empty() {
        doc.paragraph(
            "Where the data disagree with the paper's law (the fit is reported as measured; the laws describe decoupled inputs, not neighbouring grid points):",
        );
        doc.push(Block::List(disagreements));
    }

    // ACF and spectra, one panel per arch.
    let cols = if archs.len() > 4 {
        3
    } else {
        archs.len().min(2)
    };
    let rows_n = archs.len().div_ceil(cols);
    let depth_color = |i: usize| {
        ramp(if depths.len() > 1 {
            i as f64 / (depths.len() - 1) as f64
        } else {
            1.0
        })
    };
    let acf_panels: Vec<LineChart> = archs
        .iter()
        .enumerate()
        .map(|(a, name)| {
            let mut ch =
                LineChart::new(name.clone(), "lag k (grid steps)", "ρ(k)").y_range(-0.3, 1.05);
            ch.title_size = style::PANEL_TITLE_SIZE;
            for (i, l) in depths.iter().enumerate() {
                let acf = seed_mean(&d.autocorrelation, a, i);
                ch.push(Series::line(
                    format!("L={l}"),
                    acf.iter()
                        .enumerate()
                        .map(|(k, &v)| (k as f64, v))
                        .collect(),
                    depth_color(i),
                ));
            }
            ch
        })
        .collect();
    let fig = save(
        &Panels {
            title: "Autocorrelation of df/dx along the grid, mean over seeds".into(),
            rows: rows_n,
            cols,
            panels: acf_panels,
        },
        report_dir,
        "acf",
        (600 * cols as u32, 450 * rows_n as u32 + 60),
    )?;
    doc.heading("Autocorrelation and spectra");
    doc.figure(
        fig,
        "Autocorrelation functions per architecture, one curve per depth",
        "Sample autocorrelation ρ(k) of df/dx (mean over seeds), light to dark with depth. A shattered gradient loses its \
         correlation within a step or two; a brown-noise-like gradient keeps it over many steps.",
    );

    let bins = d.power_spectra.len_of(Axis(3));
    let white_spec = mean_spectrum(&d.noise, 0);
    let brown_spec = mean_spectrum(&d.noise, 1);
    let spec_panels: Vec<LineChart> = archs
        .iter()
        .enumerate()
        .map(|(a, name)| {
            let mut ch = LineChart::new(name.clone(), "frequency bin k", "power (normalised)")
                .log2_x()
                .log_y()
                .legend(Legend::LowerLeft);
            ch.title_size = style::PANEL_TITLE_SIZE;
            for (i, l) in depths.iter().enumerate() {
                let sp = normalise(seed_mean(&d.power_spectra, a, i).to_vec());
                ch.push(
                    Series::line(
                        format!("L={l} ({})", f2(slope(a, i).mean)),
                        (1..bins).map(|k| (k as f64, sp[k])).collect(),
                        depth_color(i),
                    )
                    .width(1),
                );
            }
            ch.push(
                Series::line(
                    "white",
                    (1..bins).map(|k| (k as f64, white_spec[k])).collect(),
                    style::THEORY,
                )
                .mark(Mark::Dashed)
                .width(1),
            );
            ch.push(
                Series::line(
                    "brown",
                    (1..bins).map(|k| (k as f64, brown_spec[k])).collect(),
                    color(7),
                )
                .mark(Mark::Dashed)
                .width(1),
            );
            ch
        })
        .collect();
    let fig = save(
        &Panels {
            title: "Power spectra of df/dx, mean over seeds (legend: fitted slope)".into(),
            rows: rows_n,
            cols,
            panels: spec_panels,
        },
        report_dir,
        "spectra",
        (600 * cols as u32, 480 * rows_n as u32 + 60),
    )?;
    doc.figure(
        fig,
        "Power spectra per architecture on log-log axes with white and brown noise",
        format!(
            "Power spectrum of the mean-removed df/dx, each curve scaled to unit total power, with the slope fitted over bins {}..={} \
             in the legend. White noise is flat (slope {} here), brown noise falls as 1/f² (slope {} here): the paper's picture is \
             feedforward nets moving from brown to white with depth while BN resnets stay in between.",
            d.summary.band.lo,
            d.summary.band.hi,
            f2(white.spectral_slope.mean),
            f2(brown.spectral_slope.mean)
        ),
    );

    // Correlation matrices across seeds.
    if let Some(corr) = &d.correlation {
        let mut maps = Vec::new();
        let sel: Vec<usize> = [Some(dmin), Some(d16), Some(dmax)]
            .into_iter()
            .flatten()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let shown_archs: Vec<usize> = [p.ff, p.res].into_iter().flatten().collect();
        for &a in &shown_archs {
            for &i in &sel {
                let m = corr.slice(s![a, i, .., ..]);
                let n = m.nrows();
                let v: Vec<f64> = m.iter().map(|&x| x as f64).collect();
                let (values, rn) = reduce_matrix(&v, n, 48);
                maps.push(Heatmap {
                    title: format!("{}, depth {}", archs[a], depths[i]),
                    values,
                    n: rn,
                    axis_label: "x".into(),
                    axis_range: (c.x_min, c.x_max),
                });
            }
        }
        if !maps.is_empty() {
            let cols = sel.len();
            let rows = shown_archs.len();
            let fig = save(
                &HeatmapGrid {
                    title: format!(
                        "Correlation of df/dx between inputs, across {} seeds",
                        c.seeds
                    ),
                    rows,
                    cols,
                    maps,
                    bar: ColorBar::correlation("correlation"),
                },
                report_dir,
                "correlation",
                (400 * cols as u32 + 40, 400 * rows as u32 + 150),
            )?;
            doc.heading("Covariance across inputs");
            doc.figure(
                fig,
                "Correlation matrices of the input gradient across seeds",
                format!(
                    "Correlation of g(xᵢ) and g(xⱼ) across the {} seeds, block-averaged to at most 48 × 48 cells. A wide band around the \
                     diagonal means gradients at nearby inputs move together; a shattered gradient leaves only the diagonal. \
                     (With few seeds the off-band entries are noisy.)",
                    c.seeds
                ),
            );
        }
    }

    // Per-layer gradient norms at the largest depth.
    let mut ch = LineChart::new(
        format!(
            "Backward gradient norm through the net, depth {}",
            depths[dmax]
        ),
        "hidden state l (0 = stem output)",
        "‖∂L/∂h_l‖ / ‖∂L/∂h_L‖",
    )
    .log_y()
    .legend(Legend::UpperRight);
    for (a, name) in archs.iter().enumerate() {
        let r = &d.summary.results[a * depths.len() + dmax];
        let top = r.layer_grad_norm_mean[depths[dmax]];
        ch.push(Series::line(
            format!("{name} (×{} per block)", f2(r.gradient_growth.mean)),
            r.layer_grad_norm_mean
                .iter()
                .enumerate()
                .map(|(l, &v)| (l as f64, v / top))
                .collect(),
            color(a),
        ));
    }
    let lmax = depths[dmax] as f64;
    ch.push(
        Series::line(
            "√2 per block (resnet, no BN: Var ~ 2^L)",
            (0..=depths[dmax])
                .map(|l| (l as f64, 2f64.sqrt().powf(lmax - l as f64)))
                .collect(),
            style::THEORY,
        )
        .mark(Mark::Dashed)
        .width(1),
    );
    let fig = save(&ch, report_dir, "layer_norms", style::SIZE)?;
    doc.heading("Gradient norms by layer");
    doc.figure(
        fig,
        "Per-layer backward gradient norms, normalised to the top layer",
        "‖∂L/∂h_l‖ (Frobenius norm over the grid, mean over seeds) for L = Σᵢ f(xᵢ), relative to the last hidden state, with the \
         geometric-mean growth per block in the legend. Plain He-initialised ReLU nets are critical (≈ 1 per layer); residual nets \
         without BN grow by ≈ √2 per block (Var ~ 2^L); BN feedforward nets explode mildly; BN resnets grow polynomially.",
    );
    doc.push(table(&|a, i| {
        f2(d.summary.results[a * depths.len() + i].gradient_growth.mean)
    }));

    // Faults.
    let faults: Vec<String> = d
        .summary
        .results
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
        .collect();
    if !faults.is_empty() {
        doc.heading("Numerical faults");
        doc.paragraph("These nets produced NaN or inf; their statistics are excluded from the means above (counted as excluded).");
        doc.push(Block::List(faults));
    }

    pages::provenance(
        &mut doc,
        &d.summary.provenance,
        &serde_json::to_string_pretty(&d.summary.config).unwrap_or_default(),
    );
    doc.push(Block::List(
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
        ]
        .iter()
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    ));
    pages::write(&doc, report_dir)?;

    let mut numbers = Vec::new();
    if let Some(ff) = p.ff {
        numbers.push((
            format!("r₁ {} L={}", archs[ff], depths[d16]),
            f2(r1(ff, d16).mean),
        ));
    }
    if let Some(res) = p.res {
        numbers.push((
            format!("r₁ {} L={}", archs[res], depths[dmax]),
            f2(r1(res, dmax).mean),
        ));
    }
    if let Some(r) = p.res1 {
        numbers.push((
            format!("r₁ {} L={}", archs[r], depths[dmax]),
            f2(r1(r, dmax).mean),
        ));
    }
    numbers.push((
        "r₁ white / brown noise".into(),
        format!(
            "{} / {}",
            f2(white.adjacent_correlation.mean),
            f2(brown.adjacent_correlation.mean)
        ),
    ));
    Ok(StudyCard {
        name: shattered::NAME.into(),
        title: "Shattered gradients".into(),
        href: format!("{}/index.html", shattered::NAME),
        thumbnail: Some(format!("{}/r1_vs_depth.png", shattered::NAME)),
        finding,
        numbers,
    })
}

/// The better law of a comparison as a function of depth.
fn best_curve(cmp: &DecayComparison) -> Box<dyn Fn(f64) -> f64> {
    let c = *cmp;
    match c.better {
        DecayLaw::Exponential => Box::new(move |l| c.exponential.exponential(l)),
        DecayLaw::PowerLaw => Box::new(move |l| c.power_law.power_law(l)),
    }
}

/// Mean normalised power spectrum of noise signal `k` (0 white, 1 brown).
fn mean_spectrum(noise: &ndarray::Array3<f64>, k: usize) -> Vec<f64> {
    let n = noise.len_of(Axis(2));
    let plan = gradscope_stats::Spectrum::new(n).expect("N ≥ 16");
    let seeds = noise.len_of(Axis(1));
    let mut acc = vec![0.0; n / 2 + 1];
    for sd in 0..seeds {
        let p = plan
            .power(noise.slice(s![k, sd, ..]))
            .expect("length matches");
        for (a, v) in acc.iter_mut().zip(p.iter()) {
            *a += v / seeds as f64;
        }
    }
    normalise(acc)
}

/// Scale a spectrum to unit total power.
fn normalise(v: Vec<f64>) -> Vec<f64> {
    let total: f64 = v.iter().filter(|x| x.is_finite()).sum();
    if total > 0.0 {
        v.into_iter().map(|x| x / total).collect()
    } else {
        v
    }
}
