//! The skips report's sentences that compare, each decided on the summary:
//! which variants shatter, which hold the gradient level, the xSkip sweep
//! against mean field, and layer norm holding the factor at 1.

use gradscope_contract::skips::SweepRow;

use super::{Run, growth};
use crate::claims::{Check, Claims, clearly_above, nearer_noise};
use crate::format::dash::{f2, f3};

/// A gradient that changes by at most this many decades over the whole
/// depth counts as held level.
pub const LEVEL_DECADES: f64 = 0.5;

/// Relative band around the mean-field factor (and around 1 for the
/// normalised families) that counts as "follows" ("holds at 1").
pub const FACTOR_TOLERANCE: f64 = 0.10;

/// r₁ spread between variants at the deepest depth that makes the skip and
/// the normaliser "decide" whether gradients shatter.
pub const DECIDING_SPREAD: f64 = 0.5;

/// Standard errors by which one r₁ must exceed another to be "higher".
pub const MARGIN_SE: f64 = 3.0;

/// log₁₀ ‖∂L/∂h₀‖/‖∂L/∂h_L‖ of variant `a` at the deepest depth, from its
/// per-block norms.
pub(super) fn decades(run: &Run, a: usize) -> f64 {
    let g = &run.row(a, run.last()).layer_grad_norm_mean;
    match (g.first(), g.last()) {
        (Some(first), Some(last)) => (first / last).log10(),
        _ => f64::NAN,
    }
}

/// Every row of a family within the relative band of `target(row)`.
fn follows(rows: &[&SweepRow], what: &str, target: &dyn Fn(&SweepRow) -> f64) -> Check {
    Check::all(rows.iter().map(|r| {
        let t = target(r);
        Check::within(
            &format!("{} factor at λ = {} ({what} {})", r.family, r.lambda, f3(t)),
            r.gradient_growth.mean,
            t * (1.0 - FACTOR_TOLERANCE),
            t * (1.0 + FACTOR_TOLERANCE),
        )
    }))
}

/// The xSkip rows against √(λ² + 2α²).
pub(super) fn xskip_mean_field(run: &Run) -> Check {
    follows(&run.xs, "mean field", &|r| r.mean_field_growth)
}

/// The normalised rows against 1.
pub(super) fn held_at_one(rows: &[&SweepRow]) -> Check {
    follows(rows, "level", &|_| 1.0)
}

/// r₁ of the last row of a family clearly above the first's.
pub(super) fn r1_rises(rows: &[&SweepRow]) -> Check {
    match (rows.first(), rows.last()) {
        (Some(a), Some(b)) if rows.len() > 1 => clearly_above(
            &format!("r₁ {} at λ = {} − at λ = {}", a.family, b.lambda, a.lambda),
            &b.adjacent_correlation,
            &a.adjacent_correlation,
            MARGIN_SE,
        ),
        _ => Check::that(false, "fewer than two swept values"),
    }
}

/// The finding.
pub(super) fn finding(run: &Run, claims: &mut Claims) -> String {
    let (c, archs, last, deepest) = (&run.s.config, &run.archs, run.last(), run.deepest());
    let (xs, xln, rln) = (&run.xs, &run.xln, &run.rln);
    let mut finding = String::new();
    let at_deepest: Vec<(usize, f64)> = (0..archs.len())
        // Nets that are linear or identity at init have a flat df/dx (no slope): left out.
        .filter(|&a| run.row(a, last).spectral_slope.mean.is_finite())
        .map(|a| (a, run.row(a, last).adjacent_correlation.mean))
        .filter(|(_, r)| r.is_finite())
        .collect();
    if let (Some(lo), Some(hi)) = (
        at_deepest.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
        at_deepest.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
    ) {
        finding += &format!(
            "At depth {deepest}, the lag-1 correlation r₁ of df/dx of the variants that are not linear at initialisation ranges from {} ({}, white noise {}) to {} ({})",
            f2(lo.1),
            archs[lo.0],
            f2(run.white()),
            f2(hi.1),
            archs[hi.0]
        );
        finding += &claims.decide(
            "shortcut-decides",
            Check::at_least(
                "r₁ spread at the deepest depth",
                hi.1 - lo.1,
                DECIDING_SPREAD,
            ),
            ": the shortcut and the normaliser decide whether gradients shatter. ",
            ". ",
        );
    }
    if let (Some(first), Some(last)) = (xs.first(), xs.last()) {
        let alpha = c.sweep_alpha;
        let measured = format!(
            "measured {} at λ = {} (theory {}) and {} at λ = {} (theory {})",
            f3(first.gradient_growth.mean),
            first.lambda,
            f3(first.mean_field_growth),
            f3(last.gradient_growth.mean),
            last.lambda,
            f3(last.mean_field_growth),
        );
        finding += &claims.decide(
            "xskip-mean-field",
            xskip_mean_field(run),
            format!(
                "Scaled skips y = λx + {alpha}·F(x) multiply the gradient by about √(λ² + 2α²) per block (mean field, He init): {measured}"
            ),
            format!(
                "Mean field predicts that scaled skips y = λx + {alpha}·F(x) multiply the gradient by √(λ² + 2α²) per block; {measured}, not within {} % at every λ",
                100.0 * FACTOR_TOLERANCE
            ),
        );
        finding += &format!(
            ", so over {} blocks it {} by 10^{} at λ = {} and {} by 10^{} at λ = {}. ",
            c.sweep_depth,
            if first.log10_gradient_ratio < 0.0 {
                "vanishes"
            } else {
                "grows"
            },
            f2(first.log10_gradient_ratio.abs()),
            first.lambda,
            if last.log10_gradient_ratio > 0.0 {
                "explodes"
            } else {
                "shrinks"
            },
            f2(last.log10_gradient_ratio.abs()),
            last.lambda,
        );
    }
    if !xln.is_empty() {
        let (lo, hi) = growth(xln);
        finding += &claims.decide(
            "xskip-ln-level",
            held_at_one(xln),
            format!(
                "Layer norm after the sum holds the factor at {}–{} for every λ",
                f3(lo),
                f3(hi)
            ),
            format!(
                "With layer norm after the sum the factor ranges over {}–{}, not within {} % of 1 at every λ",
                f3(lo),
                f3(hi),
                100.0 * FACTOR_TOLERANCE
            ),
        );
        if !rln.is_empty() {
            let (rlo, rhi) = growth(rln);
            finding += &claims.decide(
                "rskip-ln-level",
                held_at_one(rln),
                format!(", and so does rSkip+LN ({}–{})", f3(rlo), f3(rhi)),
                format!(", rSkip+LN over {}–{}", f3(rlo), f3(rhi)),
            );
            let (a, b) = (rln[0], rln[rln.len() - 1]);
            finding += &claims.decide(
                "rskip-r1-rises",
                r1_rises(rln),
                format!(
                    "; rSkip+LN's r₁ rises from {} to {} as the recursions go from {} to {}",
                    f2(a.adjacent_correlation.mean),
                    f2(b.adjacent_correlation.mean),
                    a.lambda,
                    b.lambda
                ),
                format!(
                    "; rSkip+LN's r₁ goes from {} to {} as the recursions go from {} to {}, no clear rise",
                    f2(a.adjacent_correlation.mean),
                    f2(b.adjacent_correlation.mean),
                    a.lambda,
                    b.lambda
                ),
            );
        }
        finding += ".";
    }
    finding
}

/// `name (value)` for each index, joined.
fn named(run: &Run, idx: &[usize], value: &dyn Fn(usize) -> String) -> String {
    idx.iter()
        .map(|&a| format!("{} ({})", run.archs[a], value(a)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The caption of r₁ against depth: the variants grouped by where they end.
pub(super) fn r1_caption(run: &Run) -> String {
    let last = run.last();
    let white = run.white();
    let r1 = |a: usize| run.row(a, last).adjacent_correlation.mean;
    let n = run.archs.len();
    let linear: Vec<usize> = (0..n)
        .filter(|&a| !run.row(a, last).spectral_slope.mean.is_finite())
        .collect();
    let mut rest: Vec<usize> = (0..n).filter(|a| !linear.contains(a)).collect();
    rest.sort_by(|&a, &b| r1(b).total_cmp(&r1(a)));
    let (shattered, kept): (Vec<usize>, Vec<usize>) = rest
        .into_iter()
        .partition(|&a| (r1(a) - white).abs() <= crate::shattered::claims::WHITE_BAND);
    let mut text = format!(
        "The white-noise level is dashed. At depth {}, within {} of it (shattered): {}. ",
        run.deepest(),
        crate::shattered::claims::WHITE_BAND,
        if shattered.is_empty() {
            "none".into()
        } else {
            named(run, &shattered, &|a| f2(r1(a)))
        }
    );
    if !kept.is_empty() {
        text += &format!(
            "Above it, highest first: {}. ",
            named(run, &kept, &|a| f2(r1(a)))
        );
    }
    if !linear.is_empty() {
        text += &format!(
            "Linear or identity at initialisation (a flat df/dx, r₁ = 1): {}.",
            named(run, &linear, &|a| f2(r1(a)))
        );
    }
    text.trim_end().to_string()
}

/// The caption of the per-block norms: which variants hold the gradient level.
pub(super) fn layer_norms_caption(run: &Run, claims: &mut Claims) -> String {
    let n = run.archs.len();
    let deepest = run.deepest();
    let dec = |a: usize| decades(run, a);
    let pick = |f: &dyn Fn(f64) -> bool| -> Vec<usize> { (0..n).filter(|&a| f(dec(a))).collect() };
    let level = pick(&|d| d.abs() <= LEVEL_DECADES);
    let grow = pick(&|d| d > LEVEL_DECADES);
    let shrink = pick(&|d| d < -LEVEL_DECADES);
    let show = |idx: &[usize]| {
        if idx.is_empty() {
            "none".to_string()
        } else {
            named(run, idx, &|a| format!("10^{}", f2(dec(a))))
        }
    };
    let mut text = format!(
        "A straight line on this log scale is a constant factor per block: rising towards the input when gradients explode on the way back. \
         Over the {deepest} blocks, ‖∂L/∂h₀‖/‖∂L/∂h_{deepest}‖ stays within 10^±{LEVEL_DECADES} (level) for {}; it grows for {}; it shrinks for {}.",
        show(&level),
        show(&grow),
        show(&shrink)
    );
    if let Some(a) = run.archs.iter().position(|a| a == "resnet") {
        text += &claims.decide(
            "resnet-grows",
            Check::at_least(
                &format!("decades of growth of resnet over {deepest} blocks"),
                dec(a),
                LEVEL_DECADES,
            ),
            " Without a norm a residual net's gradient grows with depth: each block adds its branch's gradient to the shortcut's.",
            " The residual net without a norm stays level here.",
        );
    }
    text
}

/// The caption of the df/dx pictures: which variants look like which noise.
pub(super) fn gradients_caption(run: &Run) -> String {
    let last = run.last();
    let data = &run.data.summary.references;
    let (w, b) = (data[0].spectral_slope.mean, data[1].spectral_slope.mean);
    let slope = |a: usize| run.row(a, last).spectral_slope.mean;
    let n = run.archs.len();
    let finite: Vec<usize> = (0..n).filter(|&a| slope(a).is_finite()).collect();
    let of = |noise: &str| -> Vec<usize> {
        finite
            .iter()
            .copied()
            .filter(|&a| nearer_noise(slope(a), w, b) == noise)
            .collect()
    };
    let list = |idx: Vec<usize>| {
        if idx.is_empty() {
            "none".to_string()
        } else {
            named(run, &idx, &|a| f2(slope(a)))
        }
    };
    let flat: Vec<usize> = (0..n).filter(|&a| !slope(a).is_finite()).collect();
    let mut text = format!(
        "Spectral slope at depth {} (white noise {}, brown noise {}). Nearer white noise, shattered: {}. Nearer brown noise, piecewise smooth: {}.",
        run.deepest(),
        f2(w),
        f2(b),
        list(of("white")),
        list(of("brown"))
    );
    if !flat.is_empty() {
        text += &format!(
            " Flat (linear at initialisation): {}.",
            flat.iter()
                .map(|&a| run.archs[a].clone())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    text
}

/// The caption of the λ sweep.
pub(super) fn sweep_caption(run: &Run, claims: &mut Claims) -> String {
    let alpha = run.s.config.sweep_alpha;
    let critical = (1.0 - 2.0 * alpha * alpha).max(0.0).sqrt();
    let mut text = format!(
        "xSkip is y = λx + α·F(x) with α = {alpha}, F = Linear → ReLU → Linear; with independent He-initialised weights \
         E‖∂y/∂x·v‖² = (λ² + 2α²)‖v‖², the dashed curve"
    );
    text += &claims.decide(
        "sweep-follows-mean-field",
        xskip_mean_field(run),
        format!(
            ", which the measurements follow (within {} %).",
            100.0 * FACTOR_TOLERANCE
        ),
        format!(
            "; the measurements depart from it by more than {} % at some λ (claims table).",
            100.0 * FACTOR_TOLERANCE
        ),
    );
    let wrong: Vec<String> = run
        .xs
        .iter()
        .filter(|r| {
            let d = r.log10_gradient_ratio;
            (r.lambda < critical && d >= 0.0) || (r.lambda > critical && d <= 0.0)
        })
        .map(|r| r.lambda.to_string())
        .collect();
    text += &claims.decide(
        "xskip-critical-lambda",
        Check::that(
            !run.xs.is_empty() && wrong.is_empty(),
            format!(
                "sign of log₁₀ ratio = sign of λ − {} for every xSkip λ (wrong at: {})",
                f3(critical),
                if wrong.is_empty() { "none".into() } else { wrong.join(", ") }
            ),
        ),
        format!(
            " Below λ = √(1 − 2α²) = {} the gradient vanishes geometrically with depth, above it explodes.",
            f3(critical)
        ),
        format!(
            " The sign of the change does not follow λ = √(1 − 2α²) = {} at λ = {}.",
            f3(critical),
            wrong.join(", ")
        ),
    );
    text += &format!(
        " xSkip+LN puts LN after the sum (Liu et al. 2020) and rSkip+LN repeats y ← LN(x + y) λ times. Since LN(λx + αF(x)) = LN((λ/α)x + F(x)), \
         λ here is Liu et al.'s λ/α (= {} λ at α = {alpha}).",
        1.0 / alpha
    );
    let (mut level, mut rises) = (Vec::new(), Vec::new());
    for rows in [&run.xln, &run.rln] {
        if !rows.is_empty() {
            level.push(held_at_one(rows));
            rises.push(r1_rises(rows));
        }
    }
    if !level.is_empty() {
        text += &claims.decide(
            "normaliser-holds-one",
            Check::all(level),
            format!(
                " The normaliser divides by the sum's scale and the factor stays at 1 (within {} %) for every λ",
                100.0 * FACTOR_TOLERANCE
            ),
            " The normalised factor is not within its band of 1 at every λ (claims table)",
        );
        text += &claims.decide(
            "normaliser-r1-rises",
            Check::all(rises),
            ", while a larger λ (or more recursions) keeps more of the input's smooth gradient (r₁ rises).",
            "; r₁ does not clearly rise with λ (or the recursions) in every normalised family.",
        );
    }
    text
}
