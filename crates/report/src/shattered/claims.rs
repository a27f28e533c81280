//! The shattered report's sentences that compare, each decided on the
//! summary: feedforward nets reaching white noise, residual nets staying
//! above them, which nets stay brown-noise-like, and the ordering of r₁.

use super::Run;
use crate::claims::{Check, Claims, clearly_above, nearer_noise};
use crate::format::na::f2;

/// r₁ within this of white noise's counts as shattered (white-noise-like).
pub const WHITE_BAND: f64 = 0.1;

/// Standard errors by which one mean must exceed another to be "above" it.
pub const MARGIN_SE: f64 = 3.0;

/// The finding: the feedforward net against white noise, the residual net against it.
pub(super) fn finding(run: &Run, claims: &mut Claims) -> String {
    let (c, depths, archs, p) = (run.config(), run.depths(), &run.archs, &run.picks);
    let (d16, dmax) = (run.d16, run.dmax);
    let white = run.white().adjacent_correlation.mean;
    let mut finding = Vec::new();
    if let Some(ff) = p.ff {
        let (r0, r16) = (run.r1(ff, 0).mean, run.r1(ff, d16).mean);
        let numbers = format!(
            "for {}, the lag-1 correlation r₁ of df/dx over {} grid points goes from {} at depth {} to {} at depth {} (white noise: {}), and the spectral slope from {} to {} (white 0, brown −2)",
            archs[ff],
            c.points,
            f2(r0),
            depths[0],
            f2(r16),
            depths[d16],
            f2(white),
            f2(run.slope(ff, 0).mean),
            f2(run.slope(ff, d16).mean)
        );
        finding.push(claims.decide(
            "feedforward-shatters",
            Check::within(
                &format!("r₁ of {} at depth {} − white noise", archs[ff], depths[d16]),
                r16 - white,
                -WHITE_BAND,
                WHITE_BAND,
            ),
            format!("Feedforward nets shatter: {numbers}."),
            format!(
                "Feedforward nets have not shattered by depth {}: {numbers}.",
                depths[d16]
            ),
        ));
    }
    if let Some(res) = p.res {
        let at =
            |a: usize, di: usize| format!("{} at depth {}", f2(run.r1(a, di).mean), depths[di]);
        let kept = format!("{} keeps r₁ = {}", archs[res], at(res, d16));
        let mut s = match p.ff {
            Some(ff) => claims.decide(
                "residual-above-feedforward",
                clearly_above(
                    &format!("r₁ {} − {} at depth {}", archs[res], archs[ff], depths[d16]),
                    run.r1(res, d16),
                    run.r1(ff, d16),
                    MARGIN_SE,
                ),
                format!(
                    "Residual nets decorrelate more slowly: {kept}, against {} for {}",
                    f2(run.r1(ff, d16).mean),
                    archs[ff]
                ),
                format!(
                    "{kept}, not clearly above {}'s {} at the same depth",
                    archs[ff],
                    f2(run.r1(ff, d16).mean)
                ),
            ),
            None => kept,
        };
        if dmax != d16 {
            let r = run.r1(res, dmax).mean;
            s += &format!(", and {}", at(res, dmax));
            s += &claims.decide(
                "residual-deep-white",
                Check::within(
                    &format!(
                        "r₁ of {} at depth {} − white noise",
                        archs[res], depths[dmax]
                    ),
                    r - white,
                    -WHITE_BAND,
                    WHITE_BAND,
                ),
                format!("; by depth {} it too is white-noise-like", depths[dmax]),
                format!("; at depth {} it is still above white noise", depths[dmax]),
            );
        }
        if let Some(r1i) = p.res1 {
            s.push_str(&format!(
                "; with a one-layer branch ({}) r₁ is {} at depth {}",
                archs[r1i],
                f2(run.r1(r1i, dmax).mean),
                depths[dmax]
            ));
        }
        s.push_str(&format!(
            " (white noise: {}, brown noise: {}).",
            f2(white),
            f2(run.brown().adjacent_correlation.mean)
        ));
        finding.push(s);
    }
    finding.join(" ")
}

/// `arch (slope s: nearer brown|white)` for the residual nets at the largest depth.
fn noise_of(run: &Run, a: usize) -> (String, &'static str) {
    let slope = run.slope(a, run.dmax).mean;
    let near = nearer_noise(
        slope,
        run.white().spectral_slope.mean,
        run.brown().spectral_slope.mean,
    );
    (format!("{} (slope {})", run.archs[a], f2(slope)), near)
}

/// The caption of the paper's Figure 1.
pub(super) fn gradients_caption(run: &Run, claims: &mut Claims) -> String {
    let p = &run.picks;
    let deepest = run.depths()[run.dmax];
    let mut text = String::from(
        "The paper's Figure 1: df/dx along the input grid for one seed (standardised). A shallow net's gradient is smooth",
    );
    if let Some(ff) = p.ff {
        let (name, near) = noise_of(run, ff);
        text += &claims.decide(
            "deep-feedforward-white",
            Check::that(
                near == "white",
                format!(
                    "spectral slope of {name} at depth {deepest} nearer white than brown noise"
                ),
            ),
            format!("; at depth {deepest}, {name} is nearer white noise than brown"),
            format!("; at depth {deepest}, {name} is still nearer brown noise than white"),
        );
    }
    for (id, a) in [
        ("residual-brown", p.res),
        ("one-layer-branch-brown", p.res1),
    ] {
        if let Some(a) = a {
            let (name, near) = noise_of(run, a);
            text += &claims.decide(
                id,
                Check::that(
                    near == "brown",
                    format!(
                        "spectral slope of {name} at depth {deepest} nearer brown than white noise"
                    ),
                ),
                format!("; {name} stays nearer brown noise"),
                format!("; {name} is nearer white noise"),
            );
        }
    }
    if let (Some(res), Some(res1)) = (p.res, p.res1) {
        text += &claims.decide(
            "two-layer-branch-rougher",
            clearly_above(
                &format!(
                    "r₁ {} − {} at depth {deepest}",
                    run.archs[res1], run.archs[res]
                ),
                run.r1(res1, run.dmax),
                run.r1(res, run.dmax),
                MARGIN_SE,
            ),
            format!(
                "; the two-layer branch of {} roughens the gradient more than the one-layer branch of {} (r₁ {} against {})",
                run.archs[res],
                run.archs[res1],
                f2(run.r1(res, run.dmax).mean),
                f2(run.r1(res1, run.dmax).mean)
            ),
            format!(
                "; {} and {} are not clearly apart (r₁ {} and {})",
                run.archs[res],
                run.archs[res1],
                f2(run.r1(res, run.dmax).mean),
                f2(run.r1(res1, run.dmax).mean)
            ),
        );
    }
    text + ". (At depth 1, a BN net on a grid symmetric about 0 has batch mean 0 before its only ReLU, so it is positively homogeneous and g is a step.)"
}

/// The ordering the paper's laws imply, where both nets are run: the
/// feedforward net's r₁ never clearly (by [`MARGIN_SE`] standard errors)
/// above the residual net's.
pub(super) fn ordering(run: &Run, claims: &mut Claims) -> String {
    let (Some(ff), Some(res)) = (run.picks.ff, run.picks.res) else {
        return String::new();
    };
    let depths = run.depths();
    let name = |i: usize| {
        format!(
            "r₁ {} − {} at depth {}",
            run.archs[ff], run.archs[res], depths[i]
        )
    };
    let inverted: Vec<usize> = (0..depths.len())
        .filter(|&i| clearly_above(&name(i), run.r1(ff, i), run.r1(res, i), MARGIN_SE).holds)
        .collect();
    let list = |idx: &[usize]| {
        idx.iter()
            .map(|&i| depths[i].to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ahead: Vec<usize> = (0..depths.len())
        .filter(|&i| clearly_above(&name(i), run.r1(res, i), run.r1(ff, i), MARGIN_SE).holds)
        .collect();
    claims.decide(
        "ordering",
        Check::that(
            inverted.is_empty(),
            format!(
                "r₁ of {} clearly ({MARGIN_SE} standard errors) above {} at no depth (above at: {})",
                run.archs[ff],
                run.archs[res],
                if inverted.is_empty() { "none".into() } else { list(&inverted) }
            ),
        ),
        format!(
            " What holds is the ordering: {} is never clearly below {}, and clearly above it at depth {}.",
            run.archs[res],
            run.archs[ff],
            if ahead.is_empty() { "none".into() } else { list(&ahead) }
        ),
        format!(
            " The ordering does not hold everywhere: {} is clearly below {} at depth {}.",
            run.archs[res],
            run.archs[ff],
            list(&inverted)
        ),
    )
}

/// The spectra caption's comparison: where the picked nets end up.
pub(super) fn spectra(run: &Run, claims: &mut Claims) -> String {
    let (Some(ff), Some(res)) = (run.picks.ff, run.picks.res) else {
        return String::new();
    };
    let (w, b) = (
        run.white().spectral_slope.mean,
        run.brown().spectral_slope.mean,
    );
    let (sf, sr) = (run.slope(ff, run.dmax).mean, run.slope(res, run.dmax).mean);
    let deepest = run.depths()[run.dmax];
    claims.decide(
        "residual-spectrum-steeper",
        clearly_above(
            &format!("slope {} − {} at depth {deepest}", run.archs[ff], run.archs[res]),
            run.slope(ff, run.dmax),
            run.slope(res, run.dmax),
            MARGIN_SE,
        ),
        format!(
            " The paper's picture, feedforward nets moving from brown to white with depth while BN resnets keep a steeper spectrum, holds here: at depth {deepest} {} has slope {} and {} {} (white {}, brown {}).",
            run.archs[ff],
            f2(sf),
            run.archs[res],
            f2(sr),
            f2(w),
            f2(b)
        ),
        format!(
            " The paper's picture has BN resnets' spectra steeper than feedforward nets'; here at depth {deepest} {} has slope {} and {} {}, not clearly steeper (white {}, brown {}).",
            run.archs[ff],
            f2(sf),
            run.archs[res],
            f2(sr),
            f2(w),
            f2(b)
        ),
    )
}
