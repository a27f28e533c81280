//! The norms report: gradient norms through depth against mean-field theory,
//! the scalar chain, the σ_w² × depth phase diagram and Jacobian spectra.

pub mod claims;
pub mod images;

use std::path::Path;

use gradscope_contract::io::create_dir;
use gradscope_contract::norms::{
    self, ChainSummary, JacobianInit, LayerSummary, NormsParams, NormsSummary, critical_sigma_w2,
    read_summary,
};
use gradscope_spec::Activation;

use crate::card::StudyCard;
use crate::claims::Claims;
use crate::doc::{Block, Doc};
use crate::figure::{ColorBar, HeatmapGrid, Legend, LineChart, Mark, Panels, Raster, Series, save};
use crate::format::dash::f3;
use crate::format::{decimals, mean_sd};
use crate::style::{self, color};
use crate::{Result, pages};

/// Blue (negative, vanishing) → white → red (positive, exploding), for t in [0, 1].
fn diverging_t(t: f64) -> plotters::style::RGBColor {
    style::diverging(2.0 * t - 1.0)
}

/// The nets the finding and the index card quote.
struct Quoted<'a> {
    /// Plain ReLU net with He init (σ_w² = 2).
    relu_he: Option<&'a LayerSummary>,
    /// Residual ReLU net with He init.
    res_he: Option<&'a LayerSummary>,
    /// The plain sigmoid net with the largest backward ratio.
    sigmoid: Option<&'a LayerSummary>,
}

impl<'a> Quoted<'a> {
    fn of(s: &'a NormsSummary) -> Self {
        let he = |arch: &str| {
            s.layers
                .iter()
                .find(|r| r.arch == arch && r.activation == Activation::Relu && r.sigma_w2 == 2.0)
        };
        Quoted {
            relu_he: he("plain"),
            res_he: he("resnet"),
            sigmoid: s
                .layers
                .iter()
                .filter(|r| r.arch == "plain" && r.activation == Activation::Sigmoid)
                .max_by(|a, b| a.backward_ratio.mean.total_cmp(&b.backward_ratio.mean)),
        }
    }
}

/// Draw the norms study's figures and write its pages from the data folder alone.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let s = read_summary(data_dir)?;
    create_dir(report_dir)?;
    let quoted = Quoted::of(&s);
    let mut doc = Doc::new("Gradient norms through depth");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(norms::NAME);
    let finding = claims::finding(&s, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&s.config));

    if !s.layers.is_empty() {
        doc.heading("Vanishing and exploding, layer by layer");
        doc.push(layer_norms(&s, report_dir, &mut said)?);
        doc.push(weight_norms(&s, report_dir)?);
        doc.paragraph(
            "Measured per-layer backward ratio ‖∂L/∂h_{l−1}‖/‖∂L/∂h_l‖ (mean ± sd over layers and seeds) against the mean-field √χ₁, with \
             χ₁ = σ_w²·E[φ'(z)²] evaluated by Gauss–Hermite quadrature at each layer's measured pre-activation variance q_l = σ_w²·mean(h_{l−1}²) + σ_b² \
             (plain nets without BN; Poole et al. 2016, Schoenholz et al. 2017). Theory for residual nets without BN and a two-layer ReLU branch with He init: √2.",
        );
        doc.push(ratio_table(&s.layers));
        if let Some(text) = claims::bn_explosion(&s, &mut said) {
            doc.paragraph(text);
        }
    }
    if !s.chains.is_empty() {
        doc.heading("The scalar chain");
        doc.push(chain(&s.chains, report_dir, &mut said)?);
    }
    if !s.phase.is_empty() {
        doc.heading("Weight scale and depth: the phase diagram");
        doc.push(phase(&s, report_dir, &mut said)?);
    }
    if !s.jacobian.is_empty() {
        doc.heading("Dynamical isometry: Jacobian spectra");
        doc.push(jacobian(&s, report_dir, &mut said)?);
        doc.push(jacobian_moments(&s, report_dir)?);
    }
    if let Some(blocks) = images::section(&s, report_dir, &mut said)? {
        doc.heading("Conv nets on images: plain against residual");
        for b in blocks {
            doc.push(b);
        }
    }

    pages::finish(
        &mut doc,
        &said,
        &s.provenance,
        &s.config,
        data_files(data_dir, s.images.is_some()),
        report_dir,
    )?;
    Ok(card(&s, &quoted, finding))
}

/// The setup paragraph.
fn setup(c: &NormsParams) -> String {
    format!(
        "Setup: MLPs of width {}, {} blocks, on a batch of {} Gaussian inputs of dimension {}; L = Σ f(xᵢ); {} seeds per configuration; biases {}; {:?}; BN in per-sample mode. \
         ‖∂L/∂h_l‖ is the Frobenius norm over the batch of the gradient at block l's output (l = 0: the stem's output).",
        c.width, c.depth, c.batch, c.input_dim, c.seeds, c.bias_init, c.dtype
    )
}

/// The layers part's rows of one arch and activation, in init order.
fn rows_of(s: &NormsSummary, arch: String, act: Activation) -> Vec<&LayerSummary> {
    s.layers
        .iter()
        .filter(|r| r.arch == arch && r.activation == act)
        .collect()
}

/// A panel per activation, with `title_size` set for a row of panels.
fn activation_panel(act: Activation, x_label: &str, y_label: &str) -> LineChart {
    let mut ch = LineChart::new(format!("{act}"), x_label, y_label)
        .integer_x()
        .log_y()
        .legend(Legend::Outside);
    ch.title_size = style::PANEL_TITLE_SIZE;
    ch
}

/// The first init of a family solid, the second dashed.
fn init_mark(k: usize) -> Mark {
    if k == 0 { Mark::Line } else { Mark::Dashed }
}

/// (l, mean) of a per-layer statistic, keeping positive means (log axis).
fn positive_means(stats: &[norms::LayerStat]) -> Vec<(f64, f64)> {
    stats
        .iter()
        .enumerate()
        .map(|(l, g)| (l as f64, g.summary.mean))
        .filter(|p| p.1 > 0.0)
        .collect()
}

/// ‖∂L/∂h_l‖ against layer, one panel per activation, with the mean-field line.
fn layer_norms(s: &NormsSummary, dir: &Path, said: &mut Claims) -> Result<Block> {
    let c = &s.config;
    let mut panels = Vec::new();
    for act in &c.activations {
        let mut ch = activation_panel(
            *act,
            "layer l (input → output)",
            "‖∂L/∂h_l‖ (mean over seeds)",
        );
        for (a, arch) in c.archs.iter().enumerate() {
            for (k, r) in rows_of(s, arch.to_string(), *act).into_iter().enumerate() {
                // Overflow is a result: the legend says where it began.
                let fault = r
                    .faults
                    .iter()
                    .map(|f| f.layer)
                    .min()
                    .map_or(String::new(), |l| format!(" — NaN/inf from layer {l}"));
                if r.predicted_ratio.is_finite() {
                    // Mean-field line anchored at the output: g_l = g_L·(√χ₁)^(L−l).
                    let last = r.grad_norm.len() - 1;
                    let g_last = r.grad_norm[last].summary.mean;
                    let theory: Vec<(f64, f64)> = (0..=last)
                        .map(|l| (l as f64, g_last * r.predicted_ratio.powi((last - l) as i32)))
                        .filter(|p| p.1 > 0.0 && p.1.is_finite())
                        .collect();
                    let t = Series::line("mean-field √χ₁ per layer", theory, style::THEORY)
                        .mark(Mark::Dashed)
                        .width(1);
                    ch.push(if a == 0 && k == 0 { t } else { t.unlabelled() });
                }
                ch.push(
                    Series::line(
                        format!("{arch}, {}{fault}", r.init),
                        positive_means(&r.grad_norm),
                        color(a),
                    )
                    .mark(init_mark(k)),
                );
            }
        }
        panels.push(ch);
    }
    let n = panels.len();
    let fig = save(
        &Panels {
            title: "Gradient norm at every block output".into(),
            rows: 1,
            cols: n,
            panels,
        },
        dir,
        "layer_norms",
        (620 * n as u32, 560),
    )?;
    Ok(Block::figure(
        fig,
        "‖∂L/∂h_l‖ against layer for each architecture, activation and initialisation",
        claims::layer_norms_caption(s, said),
    ))
}

/// ‖∂L/∂W‖ of every weight matrix, one panel per activation.
fn weight_norms(s: &NormsSummary, dir: &Path) -> Result<Block> {
    let c = &s.config;
    let mut panels = Vec::new();
    for act in &c.activations {
        let mut ch = activation_panel(*act, "weight matrix (input → output)", "‖∂L/∂W‖");
        for (a, arch) in c.archs.iter().enumerate() {
            for (k, r) in rows_of(s, arch.to_string(), *act).into_iter().enumerate() {
                ch.push(
                    Series::line(
                        format!("{arch}, {}", r.init),
                        positive_means(&r.weight_grad_norm),
                        color(a),
                    )
                    .mark(init_mark(k)),
                );
            }
        }
        panels.push(ch);
    }
    let n = panels.len();
    let fig = save(
        &Panels {
            title: "Weight-gradient norm of every layer".into(),
            rows: 1,
            cols: n,
            panels,
        },
        dir,
        "weight_norms",
        (620 * n as u32, 560),
    )?;
    Ok(Block::figure(
        fig,
        "‖∂L/∂W‖ of every weight matrix (stem, blocks, head)",
        "The gradient reaching each weight matrix: ∂L/∂W_l = Σᵢ δ_{l,i} h_{l−1,i}ᵀ over the batch, whose norm is ‖δ_l‖·‖h_{l−1}‖ for one \
         example (a rank-one matrix) and at most Σᵢ ‖δ_{l,i}‖·‖h_{l−1,i}‖ for a batch, so it follows the backward norms and the forward \
         activations together. Bias gradients are in params.csv.",
    ))
}

/// Measured backward ratio against the mean-field √χ₁, one row per net.
fn ratio_table(layers: &[LayerSummary]) -> Block {
    let rows = layers
        .iter()
        .map(|r| {
            vec![
                r.arch.clone(),
                r.activation.to_string(),
                r.init.to_string(),
                f3(r.sigma_w2),
                mean_sd(&r.backward_ratio, f3),
                f3(r.predicted_ratio),
                if r.arch == "plain-bn" {
                    claims::bn_rate(r.activation).map_or_else(|| f3(f64::NAN), f3)
                } else {
                    f3(f64::NAN)
                },
                if r.faults.is_empty() {
                    "0".into()
                } else {
                    format!("{} (first at layer {})", r.faults.len(), r.faults[0].layer)
                },
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "activation",
            "init",
            "σ_w²",
            "measured ratio",
            "mean-field √χ₁",
            "BN rate (Yang et al. 2019)",
            "NaN/inf nets",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// |dF/dw₁| of the scalar chain against its length, autograd and closed form.
fn chain(chains: &[ChainSummary], dir: &Path, said: &mut Claims) -> Result<Block> {
    let mut chart = LineChart::new(
        "The scalar chain F = w_L ⋯ w_1 · x",
        "chain length L",
        "|dF/dw₁|",
    )
    .integer_x()
    .log_y()
    .legend(Legend::Outside);
    for (i, ch) in chains.iter().enumerate() {
        let col = style::ramp(i as f64 / (chains.len().max(2) - 1) as f64);
        chart.push(
            Series::line(
                format!("w = {} (autograd)", ch.w),
                ch.autograd
                    .iter()
                    .enumerate()
                    .map(|(l, v)| ((l + 1) as f64, *v))
                    .collect(),
                col,
            )
            .width(3),
        );
        chart.push(
            Series::line(
                "w^(L−1)",
                ch.closed_form
                    .iter()
                    .enumerate()
                    .step_by(4)
                    .map(|(l, v)| ((l + 1) as f64, *v))
                    .collect(),
                col,
            )
            .mark(Mark::Points)
            .unlabelled(),
        );
    }
    let fig = save(&chart, dir, "chain", (1100, 650))?;
    Ok(Block::figure(
        fig,
        "|dF/dw₁| of a chain of scalar weights against its length, autograd and closed form",
        claims::chain_caption(chains, said),
    ))
}

/// log₁₀ of the gradient ratio over σ_w² and L, plain and residual, with the critical σ_w².
fn phase(s: &NormsSummary, dir: &Path, said: &mut Claims) -> Result<Block> {
    let c = &s.config;
    let sig2 = &c.phase_sigma_w2;
    let mut maps = Vec::new();
    let mut limit = 0.0f64;
    for r in &s.phase {
        limit = r
            .log10_ratio
            .iter()
            .filter(|v| v.is_finite())
            .fold(limit, |m, v| m.max(v.abs()));
    }
    let limit = limit.clamp(1.0, 12.0);
    for residual in [false, true] {
        for act in &c.phase_activations {
            let rows: Vec<&norms::PhaseRow> = s
                .phase
                .iter()
                .filter(|r| r.residual == residual && r.activation == *act)
                .collect();
            let values: Vec<f64> = rows
                .iter()
                .flat_map(|r| r.log10_ratio.iter().copied())
                .collect();
            let crit = critical_sigma_w2(*act);
            // Row coordinate of the critical σ_w², interpolated on the log grid.
            let hline = sig2
                .windows(2)
                .enumerate()
                .find(|(_, w)| w[0] <= crit && crit <= w[1])
                .map(|(k, w)| k as f64 + 0.5 + (crit.ln() - w[0].ln()) / (w[1].ln() - w[0].ln()));
            maps.push(Raster {
                title: claims::phase_title(residual, *act),
                x_label: "layers L backpropagated through".into(),
                y_label: format!(
                    "σ_w² (row; {} … {})",
                    f3(sig2[0]),
                    f3(*sig2.last().unwrap())
                ),
                x_range: (0.5, c.depth as f64 + 0.5),
                rows: rows.len(),
                cols: c.depth,
                values,
                value_range: (-limit, limit),
                color: diverging_t,
                hline: if residual { None } else { hline },
            });
        }
    }
    let cols = c.phase_activations.len();
    let fig = save(
        &HeatmapGrid {
            title: "Phase diagram: log₁₀ ‖∂L/∂h₀‖/‖∂L/∂h_L‖ over σ_w² and L".into(),
            rows: 2,
            cols,
            maps,
            bar: ColorBar {
                label: "log₁₀ gradient ratio (blue: vanishing, red: exploding)".into(),
                range: (-limit, limit),
                color: diverging_t,
            },
        },
        dir,
        "phase",
        (700 * cols as u32, 1000),
    )?;
    Ok(Block::figure(
        fig,
        "log₁₀ of the gradient-norm ratio between the first layer and layer L, over σ_w² (rows, ascending) and L",
        claims::phase_caption(
            s,
            &sig2
                .iter()
                .map(|v| decimals(*v, 2))
                .collect::<Vec<_>>()
                .join(", "),
            said,
        ),
    ))
}

/// Which Jacobian init, in a legend's long or short words.
fn init_name(init: JacobianInit, short: bool) -> &'static str {
    match (init == JacobianInit::Gaussian, short) {
        (true, false) => "Gaussian",
        (false, false) => "orthogonal",
        (true, true) => "Gauss",
        (false, true) => "orth",
    }
}

/// Sorted singular values of ∂h_L/∂h₀, plain and residual, per activation and depth.
fn jacobian(s: &NormsSummary, dir: &Path, said: &mut Claims) -> Result<Block> {
    let c = &s.config;
    let mut panels = Vec::new();
    for residual in [false, true] {
        for act in &c.jacobian_activations {
            let mut ch = LineChart::new(
                format!("{}, {act}", if residual { "residual" } else { "plain" }),
                "rank / W",
                "singular value σ",
            )
            .log_y()
            .legend(Legend::Outside);
            ch.title_size = style::PANEL_TITLE_SIZE;
            for (k, &depth) in c.jacobian_depths.iter().enumerate() {
                for init in [JacobianInit::Gaussian, JacobianInit::Orthogonal] {
                    let Some(r) = s.jacobian.iter().find(|r| {
                        r.residual == residual
                            && r.activation == *act
                            && r.init == init
                            && r.depth == depth
                    }) else {
                        continue;
                    };
                    let mut sv: Vec<f64> = r
                        .singular_values
                        .iter()
                        .copied()
                        .filter(|v| *v > 1e-30)
                        .collect();
                    sv.sort_by(|a, b| b.total_cmp(a));
                    let len = sv.len().max(1) as f64;
                    let pts = sv
                        .iter()
                        .enumerate()
                        .map(|(i, v)| ((i as f64 + 0.5) / len, *v))
                        .collect();
                    let col = style::ramp(k as f64 / (c.jacobian_depths.len().max(2) - 1) as f64);
                    let label = format!("L = {depth}, {}", init_name(init, false));
                    ch.push(
                        Series::line(label, pts, col)
                            .mark(if init == JacobianInit::Gaussian {
                                Mark::Line
                            } else {
                                Mark::Dashed
                            })
                            .width(2),
                    );
                }
            }
            panels.push(ch);
        }
    }
    let cols = c.jacobian_activations.len();
    let fig = save(
        &Panels {
            title: format!(
                "Singular values of the input–output Jacobian, width {}",
                c.jacobian_width
            ),
            rows: 2,
            cols,
            panels,
        },
        dir,
        "jacobian",
        (620 * cols as u32, 1100),
    )?;
    Ok(Block::figure(
        fig,
        "Sorted singular values of ∂h_L/∂h₀ for Gaussian (solid) and orthogonal (dashed) weights at several depths",
        claims::jacobian_caption(s, said),
    ))
}

/// Mean and variance of σ² of the Jacobian against depth.
fn jacobian_moments(s: &NormsSummary, dir: &Path) -> Result<Block> {
    let c = &s.config;
    let deepest = *c.jacobian_depths.last().unwrap_or(&1);
    let mut mean_ch = LineChart::new("Mean of σ²", "depth L", "mean σ²")
        .integer_x()
        .log2_x()
        .log_y()
        .legend(Legend::Outside);
    let mut var_ch = LineChart::new("Variance of σ²", "depth L", "var σ²")
        .integer_x()
        .log2_x()
        .log_y()
        .legend(Legend::Outside);
    let mut idx = 0;
    for residual in [false, true] {
        for act in &c.jacobian_activations {
            for init in [JacobianInit::Gaussian, JacobianInit::Orthogonal] {
                let rows: Vec<&norms::JacobianRow> = s
                    .jacobian
                    .iter()
                    .filter(|r| r.residual == residual && r.activation == *act && r.init == init)
                    .collect();
                let label = format!(
                    "{}, {act}, {}",
                    if residual { "res" } else { "plain" },
                    init_name(init, true)
                );
                let mark = if init == JacobianInit::Gaussian {
                    Mark::LinePoints
                } else {
                    Mark::Dashed
                };
                mean_ch.push(
                    Series::line(
                        label.clone(),
                        rows.iter()
                            .map(|r| (r.depth as f64, r.mean_sq))
                            .filter(|p| p.1 > 0.0)
                            .collect(),
                        color(idx / 2),
                    )
                    .mark(mark),
                );
                var_ch.push(
                    Series::line(
                        label,
                        rows.iter()
                            .map(|r| (r.depth as f64, r.var_sq))
                            .filter(|p| p.1 > 1e-30)
                            .collect(),
                        color(idx / 2),
                    )
                    .mark(mark),
                );
                idx += 1;
            }
        }
    }
    for ch in [&mut mean_ch, &mut var_ch] {
        ch.title_size = style::PANEL_TITLE_SIZE;
    }
    let fig = save(
        &Panels {
            title: "Moments of the squared singular values against depth".into(),
            rows: 1,
            cols: 2,
            panels: vec![mean_ch, var_ch],
        },
        dir,
        "jacobian_moments",
        (1600, 650),
    )?;
    Ok(Block::figure(
        fig,
        "Mean and variance of σ² of the Jacobian against depth",
        format!(
            "Pooled over seeds; the variance of σ² of an orthogonal linear chain is zero to rounding at every depth (not drawn below 10⁻³⁰). Deepest chain: L = {deepest}."
        ),
    ))
}

/// The data files behind the page.
/// (The image files with `images`, when the run had nets on images.)
fn data_files(data_dir: &Path, images: bool) -> Block {
    Block::List(
        [
            norms::files::SUMMARY,
            norms::files::LAYERS_CSV,
            norms::files::PARAMS_CSV,
            norms::files::RATIOS_CSV,
            norms::files::CHAIN_CSV,
            norms::files::PHASE_CSV,
            norms::files::JACOBIAN_CSV,
            norms::files::GRAD_NORMS,
            norms::files::PHASE,
        ]
        .iter()
        .chain(&norms::images::files::ALL)
        .filter(|f| images || !f.starts_with("images_"))
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}

/// The index card: the quoted nets' ratios.
fn card(s: &NormsSummary, q: &Quoted, finding: String) -> StudyCard {
    let mut numbers = Vec::new();
    if let Some(r) = q.relu_he {
        numbers.push((
            "plain ReLU He: ratio / √χ₁".to_string(),
            format!("{} / {}", f3(r.backward_ratio.mean), f3(r.predicted_ratio)),
        ));
    }
    if let Some(r) = q.res_he {
        numbers.push((
            "resnet ReLU He: ratio (√2)".to_string(),
            f3(r.backward_ratio.mean),
        ));
    }
    if let Some(r) = q.sigmoid {
        numbers.push((
            format!("plain sigmoid σ_w² = {}: ratio (bound σ_w/4)", r.sigma_w2),
            format!(
                "{} ({})",
                f3(r.backward_ratio.mean),
                f3(r.sigma_w2.sqrt() / 4.0)
            ),
        ));
    }
    StudyCard {
        name: norms::NAME.into(),
        title: "Gradient norms through depth".into(),
        href: format!("{}/index.html", norms::NAME),
        thumbnail: Some(format!(
            "{}/{}.png",
            norms::NAME,
            if s.phase.is_empty() {
                "layer_norms"
            } else {
                "phase"
            }
        )),
        finding,
        numbers,
    }
}
