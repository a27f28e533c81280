//! Balduzzi et al.'s laws tested where they apply: the correlation of g(x)
//! and g(x′) across independently initialised nets, for pairs of inputs a
//! given distance apart, against depth, with 2^−L (feedforward) and 1/√L
//! (resnet with BN) fitted there with 95 % intervals.

use std::path::Path;

use gradscope_stats::{
    Confidence, DecayLaw, DecayRateFit, DistanceBinCorrelation, ExclusionRule, Weighting,
    correlation_decay, pair_correlation_by_distance,
};
use ndarray::{Array2, s};

use super::Run;
use crate::Result;
use crate::claims::{Check, Claims};
use crate::doc::Block;
use crate::figure::{Legend, LineChart, Mark, Panels, Series, save};
use crate::format::na::{f2, f3};
use crate::style::{self, color};

/// Distance bins |x − x′| in input units: neighbours, mid-range, far apart.
pub const EDGES: [f64; 4] = [0.0, 0.25, 1.0, 4.0];

/// The bin the laws are tested in: pairs 0.25–1 apart, far enough that a
/// shallow net's ReLU patterns differ between them, near enough that the
/// correlation is above the noise for a few depths.
pub const LAW_BIN: usize = 1;

/// Widest 95 % interval of a rate that still tests a law: a wider one
/// cannot tell b = ½ from b = 1 or q = ½ from q = 0.
pub const MAX_RATE_WIDTH: f64 = 0.5;

/// Depths whose bin correlation is within this many jackknife standard
/// errors of 0 are left out of a fit (the noise floor).
pub const FLOOR_IN_SE: f64 = 2.0;

/// The correlation of each arch's gradients over nets in each distance bin,
/// per depth: `[arch][depth][bin]`; needs three seeds.
pub(super) fn by_distance(run: &Run) -> Option<Vec<Vec<Vec<DistanceBinCorrelation>>>> {
    let g = &run.d.input_gradients;
    let coords = Array2::from_shape_fn((run.d.grid.len(), 1), |(i, _)| run.d.grid[i]);
    let span = run.d.grid.iter().fold(0.0f64, |m, v| m.max(v.abs())) * 2.0;
    let mut edges = EDGES;
    edges[3] = edges[3].max(span);
    (0..run.archs.len())
        .map(|a| {
            (0..run.depths().len())
                .map(|di| {
                    pair_correlation_by_distance(g.slice(s![a, di, .., ..]), coords.view(), &edges)
                        .ok()
                })
                .collect()
        })
        .collect()
}

/// A decay law fitted to one arch's correlation in the law bin across depths.
pub(super) fn fit(
    run: &Run,
    bins: &[Vec<DistanceBinCorrelation>],
    law: DecayLaw,
) -> Option<DecayRateFit> {
    let depths: Vec<f64> = run.depths().iter().map(|&d| d as f64).collect();
    let one: Vec<DistanceBinCorrelation> = bins.iter().map(|b| b[LAW_BIN]).collect();
    correlation_decay(
        &depths,
        &one,
        law,
        ExclusionRule {
            floor_in_se: Some(FLOOR_IN_SE),
            ..Default::default()
        },
        Weighting::InverseVariance,
        Confidence::P95,
    )
    .ok()
}

/// `rate [lo, hi] (n depths)` of a fit.
fn rate_text(f: &DecayRateFit) -> String {
    format!(
        "{} [{}, {}] from {} depths",
        f3(f.rate),
        f3(f.rate_lo),
        f3(f.rate_hi),
        f.line.n
    )
}

/// The law of each picked net, its fit and a claim.
fn test_law(
    run: &Run,
    all: &[Vec<Vec<DistanceBinCorrelation>>],
    claims: &mut Claims,
    (id, arch, law, rate, name): (&str, Option<usize>, DecayLaw, f64, &str),
) -> Option<String> {
    let a = arch?;
    let arch_name = &run.archs[a];
    let Some(f) = fit(run, &all[a], law) else {
        return Some(claims.decide(
            id,
            Check::that(
                false,
                format!("{arch_name}: fewer than three depths above the noise floor"),
            ),
            "",
            format!(" {arch_name}: too few depths above the noise floor to test {name}."),
        ));
    };
    let symbol = if law == DecayLaw::Exponential {
        "b"
    } else {
        "q"
    };
    let (consistent, width) = (f.rate_consistent_with(rate), f.rate_hi - f.rate_lo);
    let fitted = format!(" {arch_name}: fitted {symbol} {}", rate_text(&f));
    Some(claims.decide(
        id,
        Check::all([
            Check::that(
                consistent,
                format!(
                    "{arch_name}: {rate} in the 95 % interval [{}, {}] of {symbol}",
                    f3(f.rate_lo),
                    f3(f.rate_hi)
                ),
            ),
            Check::at_most("its width", width, MAX_RATE_WIDTH),
        ]),
        format!("{fitted}, consistent with {name}."),
        if consistent {
            format!("{fitted}: too wide an interval to test {name}.")
        } else {
            format!("{fitted}, which rejects {name} at the 5 % level.")
        },
    ))
}

/// The figure and the table of the laws, with their claims.
pub(super) fn section(run: &Run, dir: &Path, claims: &mut Claims) -> Result<Vec<Block>> {
    let Some(all) = by_distance(run) else {
        return Ok(vec![Block::Paragraph(
            "The correlation across nets needs at least three seeds; this run has fewer.".into(),
        )]);
    };
    let xs: Vec<f64> = run.depths().iter().map(|&d| d as f64).collect();
    let mut panels = Vec::new();
    for bin in 0..EDGES.len() - 1 {
        let b0 = &all[0][0][bin];
        let mut ch = LineChart::new(
            format!("|x − x′| in [{}, {})", f2(b0.lo), f2(b0.hi)),
            "depth L",
            "correlation over nets",
        )
        .integer_x()
        .log2_x()
        .y_range(-1.05, 1.05)
        .legend(Legend::Outside);
        ch.title_size = style::PANEL_TITLE_SIZE;
        for (a, name) in run.archs.iter().enumerate() {
            let pts = xs
                .iter()
                .zip(&all[a])
                .map(|(x, b)| (*x, b[bin].mean))
                .collect();
            let err = all[a].iter().map(|b| 1.96 * b[bin].se).collect();
            ch.push(
                Series::line(name.clone(), pts, color(a))
                    .mark(Mark::LinePoints)
                    .errors(err),
            );
        }
        if bin == LAW_BIN {
            for (arch, law, label, col) in [
                (run.picks.ff, DecayLaw::Exponential, "fit a·b^L", 7),
                (run.picks.res, DecayLaw::PowerLaw, "fit a·L^−q", 5),
            ] {
                if let Some(f) = arch.and_then(|a| fit(run, &all[a], law)) {
                    let dense: Vec<(f64, f64)> = (0..=100)
                        .map(|i| xs[0] * (xs[xs.len() - 1] / xs[0]).powf(i as f64 / 100.0))
                        .map(|l| (l, f.at(l)))
                        .collect();
                    ch.push(
                        Series::line(
                            format!("{label}, {}", run.archs[arch.unwrap_or(0)]),
                            dense,
                            color(col),
                        )
                        .mark(Mark::Dashed)
                        .width(1),
                    );
                }
            }
        }
        panels.push(ch);
    }
    let n = panels.len();
    let fig = save(
        &Panels {
            title: "Correlation of g(x) and g(x′) across nets, by distance".into(),
            rows: 1,
            cols: n,
            panels,
        },
        dir,
        "pair_correlation",
        (600 * n as u32, 520),
    )?;
    let mut text = format!(
        "The laws are tested in the bin |x − x′| in [{}, {}): each fit uses the depths whose correlation is more than {FLOOR_IN_SE} \
         jackknife standard errors above 0, weighted by inverse variance; the rate's 95 % interval decides.",
        EDGES[LAW_BIN],
        EDGES[LAW_BIN + 1]
    );
    for t in [
        (
            "law-feedforward",
            run.picks.ff,
            DecayLaw::Exponential,
            0.5,
            "2^−L (b = ½)",
        ),
        (
            "law-resnet-bn",
            run.picks.res,
            DecayLaw::PowerLaw,
            0.5,
            "1/√L (q = ½)",
        ),
    ] {
        if let Some(s) = test_law(run, &all, claims, t) {
            text += &s;
        }
    }
    let caption = format!(
        "r_xx′ = corr over nets of g(x) and g(x′), averaged over the pairs of each distance bin (Balduzzi et al. 2017 state their laws for this \
         quantity at inputs whose ReLU patterns have decoupled), mean with ±1.96 jackknife standard errors over the {} nets per depth. \
         Dashed in the middle panel: the fitted laws.",
        run.config().seeds
    );
    Ok(vec![
        Block::figure(
            fig,
            "Correlation across nets of gradients at two inputs against depth, per distance bin",
            caption,
        ),
        Block::Paragraph(text),
    ])
}
