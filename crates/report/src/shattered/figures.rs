//! The shattered-gradients figures, one function each: it draws its picture
//! into the report folder and returns the figure with its caption.

use std::path::Path;

use gradscope_contract::shattered::seed_mean;
use gradscope_stats::theory;
use ndarray::{Axis, s};
use plotters::style::RGBColor;

use super::{Run, nearest};
use crate::Result;
use crate::claims::Claims;
use crate::doc::Block;
use crate::figure::{
    ColorBar, Heatmap, HeatmapGrid, Legend, LineChart, Mark, Panels, Series, reduce_matrix, save,
};
use crate::format::na::f2;
use crate::format::{ci_half_width, decimals};
use crate::style::{self, color, ramp};

/// Depths as numbers, for the x axes.
fn depth_axis(run: &Run) -> Vec<f64> {
    run.depths().iter().map(|&l| l as f64).collect()
}

/// 201 depths from 1 to the largest, where the laws are drawn.
fn dense_depths(xs: &[f64]) -> Vec<f64> {
    (0..=200)
        .map(|i| 1.0 + (xs[xs.len() - 1] - 1.0).max(1.0) * i as f64 / 200.0)
        .collect()
}

/// Light to dark with depth index `i`.
fn depth_color(run: &Run, i: usize) -> RGBColor {
    let n = run.depths().len();
    ramp(if n > 1 {
        i as f64 / (n - 1) as f64
    } else {
        1.0
    })
}

/// Columns and rows of a grid with one panel per arch.
fn arch_grid(run: &Run) -> (usize, usize) {
    let n = run.archs.len();
    let cols = if n > 4 { 3 } else { n.min(2) };
    (cols, n.div_ceil(cols))
}

/// The paper's Figure 1: g(x) of one net each beside white and brown noise.
pub(super) fn gradients(run: &Run, dir: &Path, said: &mut Claims) -> Result<Block> {
    let (d, depths, p) = (run.d, run.depths(), &run.picks);
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
        shown.push((res, run.dmax));
    }
    if let Some(r) = p.res1 {
        shown.push((r, run.dmax));
    }
    let mut panels = Vec::new();
    for (k, &(a, di)) in shown.iter().enumerate() {
        let g = d.input_gradients.slice(s![a, di, 0, ..]).to_vec();
        panels.push(signal_panel(
            format!(
                "{}, depth {} (r₁ = {})",
                run.archs[a],
                depths[di],
                f2(run.r1(a, di).mean)
            ),
            g,
            color(k),
        ));
    }
    panels.push(signal_panel(
        format!(
            "brown noise (r₁ = {})",
            f2(run.brown().adjacent_correlation.mean)
        ),
        d.noise.slice(s![1, 0, ..]).to_vec(),
        style::THEORY,
    ));
    panels.push(signal_panel(
        format!(
            "white noise (r₁ = {})",
            f2(run.white().adjacent_correlation.mean)
        ),
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
        dir,
        "gradients",
        (1200, 300 * rows as u32 + 60),
    )?;
    Ok(Block::figure(
        fig,
        "Input gradients of feedforward and residual nets beside noise",
        super::claims::gradients_caption(run, said),
    ))
}

/// A law of r₁ against depth.
type Law = dyn Fn(f64) -> f64;

/// r₁ against depth with the paper's theory curves.
pub(super) fn r1_vs_depth(run: &Run, dir: &Path, said: &mut Claims) -> Result<Block> {
    let c = run.config();
    let xs = depth_axis(run);
    let mut ch = LineChart::new(
        "Lag-1 correlation of df/dx against depth",
        "depth L (blocks)",
        "r₁ (mean, 95 % t interval over seeds)",
    )
    .integer_x()
    .log2_x()
    .y_range(-0.25, 1.08)
    .legend(Legend::Outside);
    for (a, name) in run.archs.iter().enumerate() {
        let m: Vec<(f64, f64)> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, run.r1(a, i).mean))
            .collect();
        let e: Vec<f64> = (0..xs.len()).map(|i| ci_half_width(run.r1(a, i))).collect();
        ch.push(
            Series::line(name.clone(), m, color(a))
                .mark(Mark::LinePoints)
                .errors(e),
        );
    }
    let dense = dense_depths(&xs);
    // Each law is drawn through its net's first point: the laws give a decay
    // rate, not the level at the shallowest depth (0.98 there, not 0.5).
    let laws: [(&str, Option<usize>, &Law, usize); 3] = [
        ("2^−L", run.picks.ff, &theory::feedforward_correlation, 7),
        (
            "(3/4)^L",
            run.d.arch_index("resnet"),
            &|l| theory::resnet_correlation(l, 1.0),
            6,
        ),
        ("1/√L", run.picks.res, &theory::resnet_bn_correlation, 5),
    ];
    for (law, arch, f, col) in laws {
        let Some(a) = arch else { continue };
        let (l0, r0) = (xs[0], run.r1(a, 0).mean);
        let pts = dense
            .iter()
            .filter(|&&l| l >= l0)
            .map(|&l| (l, r0 * f(l) / f(l0)))
            .collect();
        ch.push(
            Series::line(format!("{law} through {}", run.archs[a]), pts, color(col))
                .mark(Mark::Dashed),
        );
    }
    let fig = save(&ch, dir, "r1_vs_depth", style::SIZE)?;
    Ok(Block::figure(
        fig,
        "Lag-1 correlation against depth for each architecture, with the paper's theory curves",
        format!(
            "r₁ of df/dx between neighbouring grid points (spacing {}) against depth, mean and 95 % Student-t interval over {} seeds, with Balduzzi et al.'s \
             laws for the correlation of gradients at decoupled inputs: 2^−L (feedforward), (3/4)^L (resnet without BN), 1/√L (resnet with BN), \
             each drawn through its net's point at the shallowest depth. \
             The laws describe inputs far enough apart that their ReLU patterns decouple, so a fine grid's lag-1 correlation need not follow \
             them literally.{} White noise gives r₁ ≈ {}, brown noise ≈ {}.",
            decimals((c.x_max - c.x_min) / (c.points - 1) as f64, 3),
            c.seeds,
            super::claims::ordering(run, said),
            f2(run.white().adjacent_correlation.mean),
            f2(run.brown().adjacent_correlation.mean)
        ),
    ))
}

/// r₁, the roughness 1 − r₁ and ‖∂L/∂h₀‖ against depth with the better law of each.
pub(super) fn decay_fits(run: &Run, dir: &Path) -> Result<Block> {
    let fits = &run.d.summary.fits;
    let xs = depth_axis(run);
    let dense = dense_depths(&xs);
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
        .integer_x()
        .log2_x();
        ch.title_size = style::PANEL_TITLE_SIZE;
        if log_y {
            ch = ch.log_y();
        }
        ch.legend = Legend::Outside;
        for (a, name) in run.archs.iter().enumerate() {
            let ys: Vec<f64> = (0..xs.len())
                .map(|i| match q {
                    "r1" => run.r1(a, i).mean,
                    "roughness" => 1.0 - run.r1(a, i).mean,
                    _ => run.result(a, i).layer_grad_norm_mean[0],
                })
                .collect();
            ch.push(
                Series::line(name.clone(), xs.iter().copied().zip(ys).collect(), color(a))
                    .mark(Mark::Points),
            );
            let cmp = match q {
                "r1" => &fits[a].adjacent_correlation,
                "roughness" => &fits[a].roughness,
                _ => &fits[a].input_grad_norm,
            };
            if let Some(cmp) = cmp {
                let best = cmp.best();
                // The law over the depths it was fitted to, not extrapolated.
                let kept = xs
                    .iter()
                    .copied()
                    .filter(|&l| best.excluded.iter().all(|e| e.x != l));
                let (lo, hi) = kept.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), l| {
                    (lo.min(l), hi.max(l))
                });
                let span = dense.iter().filter(|&&l| lo <= l && l <= hi);
                ch.push(
                    Series::line("", span.map(|&l| (l, best.at(l))).collect(), color(a))
                        .mark(Mark::Dashed)
                        .width(1)
                        .unlabelled(),
                );
                let left_out: Vec<(f64, f64)> = best
                    .excluded
                    .iter()
                    .filter(|e| e.y.is_finite() && (!log_y || e.y > 0.0))
                    .map(|e| (e.x, e.y))
                    .collect();
                if !left_out.is_empty() {
                    ch.push(
                        Series::line("", left_out, color(a))
                            .mark(Mark::Hollow)
                            .unlabelled(),
                    );
                }
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
        dir,
        "decay_fits",
        (1800, 600),
    )?;
    Ok(Block::figure(
        fig,
        "r₁, roughness and input-gradient norm against depth with fitted laws",
        "Exponential a·b^L and power-law a·L^k fits of r₁, of the roughness 1 − r₁ and of ‖∂L/∂h₀‖ against depth, both fitted to ln y; \
         the dashed line is the law with the higher R², drawn over the depths it was fitted to. Circled points were left out of the fit: r₁ less than 2 standard errors above 0 \
         (the noise floor), 1 − r₁ within 2 standard errors of 1 (saturated), and values ≤ 0, which a log fit cannot take; \
         the table below lists them with the fitted rates' 95 % intervals.",
    ))
}

/// The autocorrelation of df/dx, one panel per arch, one curve per depth.
pub(super) fn acf(run: &Run, dir: &Path) -> Result<Block> {
    let (cols, rows_n) = arch_grid(run);
    let acf_panels: Vec<LineChart> = run
        .archs
        .iter()
        .enumerate()
        .map(|(a, name)| {
            let mut ch = LineChart::new(name.clone(), "lag k (grid steps)", "ρ(k)")
                .integer_x()
                .y_range(-0.3, 1.05);
            ch.title_size = style::PANEL_TITLE_SIZE;
            for (i, l) in run.depths().iter().enumerate() {
                let acf = seed_mean(&run.d.autocorrelation, a, i);
                ch.push(Series::line(
                    format!("L={l}"),
                    acf.iter()
                        .enumerate()
                        .map(|(k, &v)| (k as f64, v))
                        .collect(),
                    depth_color(run, i),
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
        dir,
        "acf",
        (600 * cols as u32, 450 * rows_n as u32 + 60),
    )?;
    Ok(Block::figure(
        fig,
        "Autocorrelation functions per architecture, one curve per depth",
        "Sample autocorrelation ρ(k) of df/dx (mean over seeds), light to dark with depth. A shattered gradient loses its \
         correlation within a step or two; a brown-noise-like gradient keeps it over many steps.",
    ))
}

/// Power spectra of df/dx per arch on log-log axes, with white and brown noise.
pub(super) fn spectra(run: &Run, dir: &Path, said: &mut Claims) -> Result<Block> {
    let d = run.d;
    let (cols, rows_n) = arch_grid(run);
    let bins = d.power_spectra.len_of(Axis(3));
    let white_spec = mean_spectrum(&d.noise, 0);
    let brown_spec = mean_spectrum(&d.noise, 1);
    let spec_panels: Vec<LineChart> = run
        .archs
        .iter()
        .enumerate()
        .map(|(a, name)| {
            let mut ch = LineChart::new(name.clone(), "frequency bin k", "power (normalised)")
                .integer_x()
                .log2_x()
                .log_y()
                .legend(Legend::Outside);
            ch.title_size = style::PANEL_TITLE_SIZE;
            for (i, l) in run.depths().iter().enumerate() {
                let sp = normalise(seed_mean(&d.power_spectra, a, i).to_vec());
                ch.push(
                    Series::line(
                        format!("L={l} ({})", f2(run.slope(a, i).mean)),
                        (1..bins).map(|k| (k as f64, sp[k])).collect(),
                        depth_color(run, i),
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
        dir,
        "spectra",
        (600 * cols as u32, 480 * rows_n as u32 + 60),
    )?;
    Ok(Block::figure(
        fig,
        "Power spectra per architecture on log-log axes with white and brown noise",
        format!(
            "Power spectrum of the mean-removed df/dx, each curve scaled to unit total power, with the slope fitted over bins {}..={} \
             in the legend. White noise is flat (slope {} here), brown noise falls as 1/f² (slope {} here).{}",
            d.summary.band.lo,
            d.summary.band.hi,
            f2(run.white().spectral_slope.mean),
            f2(run.brown().spectral_slope.mean),
            super::claims::spectra(run, said)
        ),
    ))
}

/// Correlation matrices of g across seeds for the picked nets at three
/// depths; `None` when the run has no matrices (one seed) or no picked nets.
pub(super) fn correlation(run: &Run, dir: &Path) -> Result<Option<Block>> {
    let Some(corr) = &run.d.correlation else {
        return Ok(None);
    };
    let (c, depths, p) = (run.config(), run.depths(), &run.picks);
    let mut maps = Vec::new();
    let sel: Vec<usize> = [Some(0), Some(run.d16), Some(run.dmax)]
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
                title: format!("{}, depth {}", run.archs[a], depths[i]),
                values,
                n: rn,
                axis_label: "x".into(),
                axis_range: (c.x_min, c.x_max),
            });
        }
    }
    if maps.is_empty() {
        return Ok(None);
    }
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
        dir,
        "correlation",
        (400 * cols as u32 + 40, 400 * rows as u32 + 150),
    )?;
    Ok(Some(Block::figure(
        fig,
        "Correlation matrices of the input gradient across seeds",
        format!(
            "Correlation of g(xᵢ) and g(xⱼ) across the {} seeds, block-averaged to at most 48 × 48 cells. A wide band around the \
             diagonal means gradients at nearby inputs move together; a shattered gradient leaves only the diagonal. \
             (With few seeds the off-band entries are noisy.)",
            c.seeds
        ),
    )))
}

/// Per-layer backward gradient norms at the largest depth, relative to the top layer.
pub(super) fn layer_norms(run: &Run, dir: &Path) -> Result<Block> {
    let (depths, dmax) = (run.depths(), run.dmax);
    let mut ch = LineChart::new(
        format!(
            "Backward gradient norm through the net, depth {}",
            depths[dmax]
        ),
        "hidden state l (0 = stem output)",
        "‖∂L/∂h_l‖ / ‖∂L/∂h_L‖",
    )
    .integer_x()
    .log_y()
    .legend(Legend::Outside);
    for (a, name) in run.archs.iter().enumerate() {
        let r = run.result(a, dmax);
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
    let fig = save(&ch, dir, "layer_norms", style::SIZE)?;
    Ok(Block::figure(
        fig,
        "Per-layer backward gradient norms, normalised to the top layer",
        "‖∂L/∂h_l‖ (Frobenius norm over the grid, mean over seeds) for L = Σᵢ f(xᵢ), relative to the last hidden state, with the \
         geometric-mean growth per block in the legend. Plain He-initialised ReLU nets are critical (≈ 1 per layer); residual nets \
         without BN grow by ≈ √2 per block (Var ~ 2^L); BN feedforward nets explode mildly; BN resnets grow polynomially.",
    ))
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
