//! Input gradients along an interpolation between two sequences'
//! embeddings (Balduzzi et al. 2017's shattered-gradients view): r₁ at
//! the shallowest and deepest depth, the claims, and the figure.

use std::path::Path;

use gradscope_contract::curvature::MeanSe;
use gradscope_contract::transformers::TransformersSummary;

use super::{Figure, figure, with_errors};
use crate::Result;
use crate::claims::{Check, Claims};
use crate::doc::Block;
use crate::figure::{Legend, LineChart, Mark, Series};
use crate::format::decimals;
use crate::style::color;

/// r₁ at the deepest and the shallowest interpolation depth, per variant:
/// (arch, skip, shallow r₁, deep r₁).
pub fn interp_ends(s: &TransformersSummary) -> Vec<(String, bool, f64, f64)> {
    let c = &s.config;
    let (Some(&lo), Some(&hi)) = (c.interp_depths.iter().min(), c.interp_depths.iter().max())
    else {
        return Vec::new();
    };
    c.interp_archs
        .iter()
        .filter_map(|a| {
            let name = a.to_string();
            let at = |d: usize| {
                s.interp
                    .iter()
                    .find(|r| r.arch == name && r.depth == d)
                    .map(|r| r.r1.mean)
            };
            Some((name.clone(), a.skip, at(lo)?, at(hi)?))
        })
        .collect()
}

/// Skips against none at the deepest depth, and the decay without skips.
pub(super) fn finding(s: &TransformersSummary, claims: &mut Claims, parts: &mut Vec<String>) {
    let c = &s.config;
    let ends = interp_ends(s);
    let (Some(&lo), Some(&hi)) = (c.interp_depths.iter().min(), c.interp_depths.iter().max())
    else {
        return;
    };
    let with: Vec<f64> = ends.iter().filter(|e| e.1).map(|e| e.3).collect();
    let without: Vec<&(String, bool, f64, f64)> = ends.iter().filter(|e| !e.1).collect();
    if !with.is_empty() && !without.is_empty() {
        let least = with.iter().copied().fold(f64::INFINITY, f64::min);
        let most = without
            .iter()
            .map(|e| e.3)
            .fold(f64::NEG_INFINITY, f64::max);
        parts.push(claims.decide(
            "interp-skips-smoother",
            Check::that(
                least > most,
                format!("smallest r₁ at depth {hi} with skips ({}) above the largest without ({})", decimals(least, 3), decimals(most, 3)),
            ),
            format!(
                "Along a line from one sequence's embeddings to another's, the input gradient of a stack of {hi} blocks with skips is more correlated from point to point (r₁ ≥ {}) than without skips (r₁ ≤ {}), the direction of Balduzzi et al. 2017's shattered-gradients contrast.",
                decimals(least, 2),
                decimals(most, 2)
            ),
            format!(
                "Along a line from one sequence's embeddings to another's, the input gradient of a stack of {hi} blocks is not more correlated with skips (r₁ down to {}) than without (up to {}).",
                decimals(least, 2),
                decimals(most, 2)
            ),
        ));
    }
    if lo < hi && !without.is_empty() {
        let decays = without.iter().all(|e| e.3 < e.2);
        let list = without
            .iter()
            .map(|e| format!("{} → {}", decimals(e.2, 3), decimals(e.3, 3)))
            .collect::<Vec<_>>()
            .join(", ");
        parts.push(claims.decide(
            "interp-no-skip-decays",
            Check::that(
                decays,
                format!("r₁ without skips, depth {lo} → {hi}: {list}"),
            ),
            format!("Without skips r₁ falls with depth ({list} from {lo} to {hi} blocks)."),
            format!(
                "Without skips r₁ does not fall with depth here ({list} from {lo} to {hi} blocks)."
            ),
        ));
    }
}

/// r₁ against depth per variant, and one coordinate of ∂f/∂e_s along s at
/// the deepest depth.
pub(super) fn plot(s: &TransformersSummary, dir: &Path) -> Result<Block> {
    let c = &s.config;
    let mut first = LineChart::new(
        "r₁ of ∂f/∂e_s along s against depth",
        "depth L (blocks)",
        "r₁",
    )
    .integer_x()
    .log2_x()
    .legend(Legend::Outside);
    for (i, arch) in c.interp_archs.iter().enumerate() {
        let arch = arch.to_string();
        let points: Vec<(f64, MeanSe)> = s
            .interp
            .iter()
            .filter(|r| r.arch == arch && r.r1.mean.is_finite())
            .map(|r| (r.depth as f64, r.r1))
            .collect();
        first.push(with_errors(arch, points, color(i)));
    }
    let deep = c.interp_depths.iter().copied().max().unwrap_or(0);
    let mut second = LineChart::new(
        format!("one coordinate of ∂f/∂e_s, depth {deep}"),
        "s (0: sequence x, 1: sequence x′)",
        "∂f/∂e_s (first coordinate)",
    )
    .legend(Legend::Outside);
    for (i, t) in s.interp_traces.iter().enumerate() {
        // Scaled to unit maximum: the variants' gradients differ in scale.
        let m = t.trace.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let n = t.trace.len().max(2) - 1;
        let xy = t
            .trace
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k as f64 / n as f64, if m > 0.0 { v / m } else { *v }))
            .collect();
        second.push(Series::line(t.arch.clone(), xy, color(i)).mark(Mark::LinePoints));
    }
    let f = Figure {
        name: "interpolation",
        title: "Input gradients along an interpolation between two sequences' embeddings",
        alt: "r₁ of the input gradient along the interpolation against depth, and one coordinate of it along s",
        caption: format!(
            "e_s = (1 − s)E(x) + sE(x′) over {} points s, x and x′ two random sequences of the task; f = ⟨u, logits⟩ for a fixed N(0, 1) direction u; \
             r₁ is the lag-1 correlation along s of each of the T·d coordinates of ∂f/∂e_s, averaged over the coordinates (Balduzzi et al. 2017's measure); means and standard errors over {} seed(s). \
             Right: seed 0's first coordinate, each curve divided by its largest magnitude.",
            c.interp_points, c.seeds
        ),
    };
    figure(dir, f, vec![first, second], 2, |_, _| (1600, 500))
}
