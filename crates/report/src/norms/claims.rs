//! The norms report's sentences that compare or bound, each decided on the
//! summary: mean-field agreement, the sigmoid bound σ_w·max φ' = σ_w/4, the
//! phase boundaries, and the Jacobian spectra.

use gradscope_contract::norms::{
    ChainSummary, JacobianInit, JacobianRow, LayerSummary, NormsSummary, critical_sigma_w2,
};
use gradscope_spec::Activation;

use crate::claims::{Check, Claims};
use crate::format::dash::f3;
use crate::format::decimals;

/// Largest relative distance of a measured backward ratio from √χ₁ that
/// still counts as "as mean-field theory predicts".
pub const MEAN_FIELD_TOLERANCE: f64 = 0.05;

/// Half-width of the band around a stated factor (1 for "keeps", √2, ½ for
/// the squared norm, 2 for the residual σ²), relative.
pub const FACTOR_TOLERANCE: f64 = 0.10;

/// σ_w² within this factor of the critical value is left out of the phase
/// test: at finite depth a near-critical net may go either way.
pub const NEAR_CRITICAL: f64 = 1.25;

/// Singular values of an orthogonal linear chain within this of 1 count as an isometry.
pub const ISOMETRY_TOLERANCE: f64 = 1e-5;

/// Relative distance of plain-bn's ratio from the large-batch BN rate that
/// still counts as agreeing: the batch of the study is finite, which
/// changes the rate by O(1/B).
pub const BN_TOLERANCE: f64 = 0.03;

/// The per-layer gradient growth of a deep Linear → BN → φ net in the
/// large-batch limit, √(E[φ'(z)²]/Var[φ(z)]) (Yang et al. 2019:
/// √(π/(π − 1)) = 1.2112 for ReLU), where the theory gives one.
pub fn bn_rate(act: Activation) -> Option<f64> {
    use gradscope_stats::mean_field::{Activation as Mf, bn_gradient_growth};
    match act {
        Activation::Relu => Some(bn_gradient_growth(Mf::Relu)),
        Activation::Tanh => Some(bn_gradient_growth(Mf::Tanh)),
        _ => None,
    }
}

/// The plain BN nets whose activation has a large-batch BN rate.
fn bn_rows(s: &NormsSummary) -> Vec<(&LayerSummary, f64)> {
    s.layers
        .iter()
        .filter(|r| r.arch == "plain-bn")
        .filter_map(|r| Some((r, bn_rate(r.activation)?)))
        .collect()
}

/// The BN explosion of Yang et al. 2019, tested on the plain BN nets.
pub(super) fn bn_explosion(s: &NormsSummary, claims: &mut Claims) -> Option<String> {
    let rows = bn_rows(s);
    if rows.is_empty() {
        return None;
    }
    let list = rows
        .iter()
        .map(|(r, t)| {
            format!(
                "{} {} {} (theory {})",
                r.activation,
                r.init,
                f3(r.backward_ratio.mean),
                f3(*t)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(claims.decide(
        "bn-explosion-rate",
        Check::all(rows.iter().map(|(r, t)| {
            Check::within(
                &format!("plain-bn {} {} ratio / BN rate", r.activation, r.init),
                r.backward_ratio.mean / t,
                1.0 - BN_TOLERANCE,
                1.0 + BN_TOLERANCE,
            )
        })),
        format!(
            "Plain nets with BN explode at the rate Yang et al. 2019 derive for large batches, √(E[φ'(z)²]/Var φ(z)) per layer \
             whatever σ_w² (√(π/(π − 1)) = 1.211 for ReLU): measured {list}, within {} %.",
            100.0 * BN_TOLERANCE
        ),
        format!(
            "Yang et al. 2019 derive a large-batch growth of √(E[φ'(z)²]/Var φ(z)) per layer for plain BN nets (√(π/(π − 1)) = 1.211 for ReLU); \
             measured {list}: not within {} % of it everywhere.",
            100.0 * BN_TOLERANCE
        ),
    ))
}

/// The plain nets without BN, where mean field predicts the ratio.
fn predicted(s: &NormsSummary) -> impl Iterator<Item = &LayerSummary> {
    s.layers.iter().filter(|r| r.predicted_ratio.is_finite())
}

/// The plain sigmoid nets.
fn sigmoid(s: &NormsSummary) -> Vec<&LayerSummary> {
    s.layers
        .iter()
        .filter(|r| r.arch == "plain" && r.activation == Activation::Sigmoid)
        .collect()
}

/// `ratio at σ_w² = v` for each net, joined.
fn ratios_at(rows: &[&LayerSummary], value: impl Fn(&LayerSummary) -> f64) -> String {
    rows.iter()
        .map(|r| format!("{} at σ_w² = {}", f3(value(r)), decimals(r.sigma_w2, 0)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each sigmoid net's measured ratio under its bound σ_w/4.
fn sigmoid_bound(rows: &[&LayerSummary]) -> Check {
    Check::all(rows.iter().map(|r| {
        Check::at_most(
            &format!("ratio at σ_w² = {}", decimals(r.sigma_w2, 0)),
            r.backward_ratio.mean,
            r.sigma_w2.sqrt() / 4.0,
        )
    }))
}

/// The finding: mean field, the He ReLU net, sigmoid, the residual net.
pub(super) fn finding(s: &NormsSummary, claims: &mut Claims) -> String {
    let rows: Vec<&LayerSummary> = predicted(s).collect();
    let worst = rows.iter().copied().max_by(|a, b| {
        rel_dev(a.backward_ratio.mean, a.predicted_ratio)
            .total_cmp(&rel_dev(b.backward_ratio.mean, b.predicted_ratio))
    });
    let mut finding = match worst {
        Some(w) => {
            let dev = rel_dev(w.backward_ratio.mean, w.predicted_ratio);
            claims.decide(
                "mean-field",
                Check::at_most(
                    "largest |measured/√χ₁ − 1| over plain nets without BN",
                    dev,
                    MEAN_FIELD_TOLERANCE,
                ),
                format!(
                    "Backpropagation multiplies the gradient by √χ₁ = √(σ_w²·E[φ'(z)²]) per layer, as mean-field theory predicts (within {} % for every plain net without BN)",
                    decimals(100.0 * dev, 1)
                ),
                format!(
                    "Mean-field theory predicts a factor √χ₁ = √(σ_w²·E[φ'(z)²]) per layer; the measured ratios differ from it by up to {} % ({}, {}, {})",
                    decimals(100.0 * dev, 1),
                    w.arch,
                    w.activation,
                    w.init
                ),
            )
        }
        None => "Backpropagation multiplies the gradient by a factor per layer".to_string(),
    };
    if let Some(r) = he(s, "plain") {
        let m = r.backward_ratio.mean;
        finding += &claims.decide(
            "relu-he-keeps",
            Check::within(
                "plain ReLU He ratio",
                m,
                1.0 - FACTOR_TOLERANCE,
                1.0 + FACTOR_TOLERANCE,
            ),
            format!(
                ": a plain ReLU net with He init keeps it (measured {} per layer, predicted {})",
                f3(m),
                f3(r.predicted_ratio)
            ),
            format!(
                ": a plain ReLU net with He init changes it by {} per layer (predicted {})",
                f3(m),
                f3(r.predicted_ratio)
            ),
        );
    }
    let sig = sigmoid(s);
    if !sig.is_empty() {
        let bounds = ratios_at(&sig, |r| r.sigma_w2.sqrt() / 4.0);
        finding += &claims.decide(
            "sigmoid-bound",
            sigmoid_bound(&sig),
            format!(
                ", sigmoid nets lose it ({} per layer, under the bound σ_w·max φ' = σ_w/4: {})",
                ratios_at(&sig, |r| r.backward_ratio.mean),
                bounds
            ),
            format!(
                ", sigmoid nets change it by {} per layer, not all under the bound σ_w·max φ' = σ_w/4 ({})",
                ratios_at(&sig, |r| r.backward_ratio.mean),
                bounds
            ),
        );
    }
    if let Some(r) = he(s, "resnet") {
        let m = r.backward_ratio.mean;
        let root2 = std::f64::consts::SQRT_2;
        finding += &claims.decide(
            "resnet-he-root2",
            Check::within(
                "resnet ReLU He ratio",
                m,
                root2 * (1.0 - FACTOR_TOLERANCE),
                root2 * (1.0 + FACTOR_TOLERANCE),
            ),
            format!(
                "; a residual ReLU net without BN grows it by {} per block (√2 = 1.414)",
                f3(m)
            ),
            format!(
                "; a residual ReLU net without BN changes it by {} per block, away from the √2 = 1.414 of a two-layer branch with He init",
                f3(m)
            ),
        );
    }
    finding += ".";
    if let Some(sentence) = isometry(s, claims) {
        finding += " ";
        finding += &sentence;
    }
    finding
}

/// |measured/predicted − 1|.
fn rel_dev(measured: f64, predicted: f64) -> f64 {
    (measured / predicted - 1.0).abs()
}

/// The He-initialised ReLU net of `arch`.
fn he<'a>(s: &'a NormsSummary, arch: &str) -> Option<&'a LayerSummary> {
    s.layers
        .iter()
        .find(|r| r.arch == arch && r.activation == Activation::Relu && r.sigma_w2 == 2.0)
}

/// The ReLU net of `arch` with σ_w² = 1 (Xavier).
fn xavier<'a>(s: &'a NormsSummary, arch: &str) -> Option<&'a LayerSummary> {
    s.layers
        .iter()
        .find(|r| r.arch == arch && r.activation == Activation::Relu && r.sigma_w2 == 1.0)
}

/// The caption of the per-layer norms figure.
pub(super) fn layer_norms_caption(s: &NormsSummary, claims: &mut Claims) -> String {
    let mut text = String::from(
        "Solid: the first initialisation listed, dashed: the second. A straight line on this log scale is a constant per-layer factor: \
         rising towards the input (left) when gradients explode on the way back, falling when they vanish.",
    );
    if let Some(r) = he(s, "plain") {
        let m = r.backward_ratio.mean;
        text += &claims.decide(
            "relu-he-flat",
            Check::within(
                "plain ReLU He ratio",
                m,
                1.0 - FACTOR_TOLERANCE,
                1.0 + FACTOR_TOLERANCE,
            ),
            format!(
                " Plain ReLU nets with He init stay flat ({} per layer);",
                f3(m)
            ),
            format!(
                " Plain ReLU nets with He init change by {} per layer;",
                f3(m)
            ),
        );
    }
    if let Some(r) = xavier(s, "plain") {
        let sq = r.backward_ratio.mean.powi(2);
        text += &claims.decide(
            "relu-xavier-halves",
            Check::within(
                "squared plain ReLU Xavier ratio",
                sq,
                0.5 * (1.0 - FACTOR_TOLERANCE),
                0.5 * (1.0 + FACTOR_TOLERANCE),
            ),
            format!(
                " Xavier init (σ_w² = 1) halves the squared norm per layer ({});",
                f3(sq)
            ),
            format!(
                " Xavier init (σ_w² = 1) multiplies the squared norm by {} per layer;",
                f3(sq)
            ),
        );
    }
    let sig = sigmoid(s);
    if !sig.is_empty() {
        text += &claims.decide(
            "sigmoid-factor",
            sigmoid_bound(&sig),
            format!(
                " sigmoid loses a factor {} per layer, at least 4/σ_w since φ' ≤ ¼;",
                ratios_at(&sig, |r| 1.0 / r.backward_ratio.mean)
            ),
            format!(
                " sigmoid loses a factor {} per layer, less than the 4/σ_w that φ' ≤ ¼ implies for the mean-field factor;",
                ratios_at(&sig, |r| 1.0 / r.backward_ratio.mean)
            ),
        );
    }
    text += " BN and residual connections change the picture (the table below).";
    text
}

/// The ReLU and tanh phase boundary at the deepest L, away from the critical σ_w².
fn phase_check(s: &NormsSummary, residual: bool, act: Activation) -> Check {
    let crit = critical_sigma_w2(act);
    Check::all(
        s.phase
            .iter()
            .filter(|r| r.residual == residual && r.activation == act)
            .filter_map(|r| {
                let last = *r.log10_ratio.last()?;
                let name = format!(
                    "{} {act} log₁₀ ratio at σ_w² = {}",
                    if residual { "residual" } else { "plain" },
                    decimals(r.sigma_w2, 3)
                );
                if residual {
                    Some(Check::at_least(&name, last, 0.0))
                } else if r.sigma_w2 < crit / NEAR_CRITICAL {
                    Some(Check::at_most(&name, last, 0.0))
                } else if r.sigma_w2 > crit * NEAR_CRITICAL {
                    Some(Check::at_least(&name, last, 0.0))
                } else {
                    None
                }
            }),
    )
}

/// The panel title of one phase map: plain nets name their critical σ_w².
pub(super) fn phase_title(residual: bool, act: Activation) -> String {
    if residual {
        format!("residual, {act} (no critical σ_w²)")
    } else {
        format!(
            "plain, {act} (critical σ_w² = {})",
            f3(critical_sigma_w2(act))
        )
    }
}

/// The caption of the phase diagram.
pub(super) fn phase_caption(s: &NormsSummary, sig2: &str, claims: &mut Claims) -> String {
    let acts = &s.config.phase_activations;
    let deepest = s.config.depth;
    let crits = acts
        .iter()
        .map(|a| format!("{} for {a}", decimals(critical_sigma_w2(*a), 0)))
        .collect::<Vec<_>>()
        .join(", ");
    let plain = claims.decide(
        "phase-plain-critical",
        Check::all(acts.iter().map(|a| phase_check(s, false, *a))),
        format!(
            "Plain nets vanish below their critical σ_w² and explode above it (the dashed line: {crits}; tested at L = {deepest} on the rows more than a factor {NEAR_CRITICAL} from it)."
        ),
        format!(
            "Plain nets do not all change sign at their critical σ_w² (the dashed line: {crits}): the claims table below lists the rows, at L = {deepest}."
        ),
    );
    let residual = claims.decide(
        "phase-residual-explodes",
        Check::all(acts.iter().map(|a| phase_check(s, true, *a))),
        format!(
            " Residual nets explode at every σ_w² of the grid (log₁₀ ratio > 0 at L = {deepest}), because each block adds its branch's gradient to the identity's."
        ),
        format!(
            " Residual nets do not explode at every σ_w² of the grid (the claims table below lists the rows, at L = {deepest})."
        ),
    );
    format!(
        "Weights W ~ N(0, σ_w²/fan_in), no biases, no BN; rows are σ_w² = {sig2} (log-spaced), columns the number of layers the gradient has \
         travelled back. {plain}{residual}"
    )
}

/// The caption of the scalar-chain figure.
pub(super) fn chain_caption(chains: &[ChainSummary], claims: &mut Claims) -> String {
    let worst = chains
        .iter()
        .flat_map(|c| c.autograd.iter().zip(&c.closed_form))
        .map(|(a, c)| ((a - c) / c).abs())
        .filter(|d| d.is_finite())
        .fold(0.0f64, f64::max);
    let agree = claims.decide(
        "chain-closed-form",
        Check::at_most(
            "largest relative difference autograd − closed form",
            worst,
            1e-12,
        ),
        "they agree to rounding",
        "they differ",
    );
    let at_end = |c: &ChainSummary| {
        format!(
            "w = {}: {:.1e} after {} links",
            c.w,
            c.autograd.last().copied().unwrap_or(f64::NAN),
            c.autograd.len()
        )
    };
    let below = chains.iter().rfind(|c| c.w.abs() < 1.0).map(at_end);
    let above = chains.iter().find(|c| c.w.abs() > 1.0).map(at_end);
    let mut text = format!(
        "Lines: autograd through the product; points: the closed form |w|^(L−1) ({agree}, largest relative difference {worst:.1e}). The smallest example of the whole story: a factor below 1 per link vanishes geometrically"
    );
    if let Some(b) = below {
        text += &format!(" ({b})");
    }
    text += ", above 1 it explodes";
    if let Some(a) = above {
        text += &format!(" ({a})");
    }
    text + "."
}

/// The rows of one chain family, by depth.
fn family(
    s: &NormsSummary,
    residual: bool,
    act: Activation,
    init: JacobianInit,
) -> Vec<&JacobianRow> {
    s.jacobian
        .iter()
        .filter(|r| r.residual == residual && r.activation == act && r.init == init)
        .collect()
}

/// Largest |σ − 1| of the orthogonal linear chains (NaN without them).
fn isometry_deviation(s: &NormsSummary) -> f64 {
    family(s, false, Activation::Identity, JacobianInit::Orthogonal)
        .iter()
        .map(|r| (r.max - 1.0).abs().max((r.min - 1.0).abs()))
        .fold(f64::NAN, f64::max)
}

/// Orthogonal linear chains: every singular value is 1 (Saxe et al. 2014).
fn isometry(s: &NormsSummary, claims: &mut Claims) -> Option<String> {
    let gauss = family(s, false, Activation::Identity, JacobianInit::Gaussian);
    let deepest = gauss.last()?;
    let dev = isometry_deviation(s);
    if dev.is_nan() {
        return None;
    }
    Some(claims.decide(
        "orthogonal-isometry",
        Check::at_most(
            "largest |σ − 1| of orthogonal linear chains",
            dev,
            ISOMETRY_TOLERANCE,
        ),
        format!(
            "Orthogonal weights make deep linear nets exact isometries (every singular value within {dev:.0e} of 1); Gaussian ones do not ({} decades between the largest and smallest at depth {}).",
            decimals(decades(&gauss), 1),
            deepest.depth
        ),
        format!(
            "Orthogonal linear chains are not isometries here (a singular value {dev:.1e} from 1)."
        ),
    ))
}

/// Decades between the largest and smallest singular value of the deepest chain.
fn decades(rows: &[&JacobianRow]) -> f64 {
    rows.last().map_or(f64::NAN, |r| (r.max / r.min).log10())
}

/// The caption of the Jacobian spectra figure.
pub(super) fn jacobian_caption(s: &NormsSummary, claims: &mut Claims) -> String {
    let mut text = String::from(
        "Chains h_l = φ(W_l h_{l−1}) (plain) or h_l = h_{l−1} + W_l φ(h_{l−1}) (residual) at the critical σ_w² of each activation, from h₀ ~ N(0, I) \
         (Saxe et al. 2014, Pennington et al. 2017).",
    );
    let acts = &s.config.jacobian_activations;
    let dev = isometry_deviation(s);
    if !dev.is_nan() {
        text += &claims.decide(
            "orthogonal-linear-isometry",
            Check::at_most(
                "largest |σ − 1| of orthogonal linear chains",
                dev,
                ISOMETRY_TOLERANCE,
            ),
            format!(
                " With orthogonal weights a linear net is an exact isometry at any depth (every σ within {dev:.0e} of 1)."
            ),
            format!(" Orthogonal linear chains are not isometries here (a σ {dev:.1e} from 1)."),
        );
    }
    if acts.contains(&Activation::Tanh) {
        let o = decades(&family(
            s,
            false,
            Activation::Tanh,
            JacobianInit::Orthogonal,
        ));
        let g = decades(&family(s, false, Activation::Tanh, JacobianInit::Gaussian));
        text += &claims.decide(
            "tanh-orthogonal-narrower",
            Check::at_least("decades Gaussian − orthogonal, deepest tanh", g - o, 1.0),
            format!(
                " Tanh with orthogonal weights keeps its spectrum within {} decades at the deepest depth, Gaussian weights spread it over {}.",
                decimals(o, 1),
                decimals(g, 1)
            ),
            format!(
                " Tanh spreads its spectrum over {} decades with orthogonal weights and {} with Gaussian ones at the deepest depth: no clear gain.",
                decimals(o, 1),
                decimals(g, 1)
            ),
        );
    }
    if acts.contains(&Activation::Relu) {
        let zero = s
            .jacobian
            .iter()
            .filter(|r| !r.residual && r.activation == Activation::Relu)
            .map(|r| r.min)
            .fold(f64::NAN, f64::max);
        text += &claims.decide(
            "relu-not-isometric",
            Check::at_most("largest smallest σ of plain ReLU chains", zero, 1e-12),
            " ReLU zeroes directions (its smallest σ is 0) and cannot be isometric.",
            format!(" Plain ReLU chains keep every direction here (smallest σ up to {zero:.1e})."),
        );
    }
    let mut factors = Vec::new();
    let mut checks: Vec<Check> = Vec::new();
    for act in acts {
        for init in [JacobianInit::Gaussian, JacobianInit::Orthogonal] {
            let rows = family(s, true, *act, init);
            let (Some(a), Some(b)) = (rows.first(), rows.last()) else {
                continue;
            };
            if b.depth <= a.depth {
                continue;
            }
            let f = (b.mean_sq / a.mean_sq).powf(1.0 / (b.depth - a.depth) as f64);
            let name = format!(
                "{act} {}",
                if init == JacobianInit::Gaussian {
                    "Gaussian"
                } else {
                    "orthogonal"
                }
            );
            factors.push(format!("{name} {}", f3(f)));
            checks.push(Check::within(
                &format!("residual {name} mean-σ² factor per block"),
                f,
                2.0 * (1.0 - FACTOR_TOLERANCE),
                2.0 * (1.0 + FACTOR_TOLERANCE),
            ));
        }
    }
    if !checks.is_empty() {
        let list = factors.join(", ");
        let off: Vec<&str> = factors
            .iter()
            .zip(&checks)
            .filter(|(_, c)| !c.holds)
            .map(|(f, _)| f.as_str())
            .collect();
        let off = off.join(", ");
        text += &claims.decide(
            "residual-doubles",
            Check::all(checks),
            format!(" Unscaled residual blocks multiply the mean σ² by about 2 per block ({list})."),
            format!(" Unscaled residual blocks multiply the mean σ² per block by {list}; not about 2 for {off}."),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gradscope_contract::norms::read_summary;

    use super::*;

    fn committed() -> NormsSummary {
        read_summary(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../notebooks-data/norms"))
            .unwrap()
    }

    fn claim<'a>(c: &'a Claims, name: &str) -> &'a crate::claims::Claim {
        c.list()
            .iter()
            .find(|x| x.id == format!("norms/{name}"))
            .unwrap()
    }

    #[test]
    fn a_sigmoid_ratio_over_its_bound_changes_the_sentence() {
        let mut s = committed();
        let mut c = Claims::new("norms");
        assert!(finding(&s, &mut c).contains(", under the bound σ_w·max φ' = σ_w/4"));
        assert!(claim(&c, "sigmoid-bound").holds);
        for r in s.layers.iter_mut().filter(|r| {
            r.arch == "plain" && r.activation == Activation::Sigmoid && r.sigma_w2 == 2.0
        }) {
            // √2/4 = 0.3536: just over the bound.
            r.backward_ratio.mean = 0.36;
        }
        let mut c = Claims::new("norms");
        let text = finding(&s, &mut c);
        assert!(text.contains("not all under the bound"), "{text}");
        assert!(!claim(&c, "sigmoid-bound").holds);
        let caption = layer_norms_caption(&s, &mut c);
        assert!(caption.contains("less than the 4/σ_w"), "{caption}");
    }

    #[test]
    fn a_net_off_mean_field_is_named_and_a_residual_net_off_root_two_is_not_called_root_two() {
        let mut s = committed();
        let r = s
            .layers
            .iter_mut()
            .find(|r| r.arch == "plain" && r.activation == Activation::Tanh && r.sigma_w2 == 1.0)
            .unwrap();
        r.backward_ratio.mean = r.predicted_ratio * 1.2;
        let r = s
            .layers
            .iter_mut()
            .find(|r| r.arch == "resnet" && r.activation == Activation::Relu && r.sigma_w2 == 2.0)
            .unwrap();
        r.backward_ratio.mean = 1.2;
        let mut c = Claims::new("norms");
        let text = finding(&s, &mut c);
        assert!(
            text.contains("differ from it by up to 20.0 % (plain, tanh, xavier)"),
            "{text}"
        );
        assert!(
            text.contains("changes it by 1.200 per block, away from the √2"),
            "{text}"
        );
    }

    #[test]
    fn a_residual_phase_row_that_vanishes_is_not_called_exploding() {
        let mut s = committed();
        let row = s.phase.iter_mut().find(|r| r.residual).unwrap();
        *row.log10_ratio.last_mut().unwrap() = -0.5;
        let mut c = Claims::new("norms");
        let text = phase_caption(&s, "…", &mut c);
        assert!(text.contains("do not explode at every σ_w²"), "{text}");
        assert!(!claim(&c, "phase-residual-explodes").holds);
        assert!(claim(&c, "phase-plain-critical").holds);
    }
}
