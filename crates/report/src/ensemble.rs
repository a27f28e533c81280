//! The ensemble report: lesions and gradient by path length (Veit et al. 2016).

use std::path::Path;

use gradscope_contract::ensemble::{
    self, ArchEnsemble, EnsembleParams, EnsembleSummary, LesionCurve, read_summary,
};
use gradscope_contract::io::create_dir;

use crate::card::StudyCard;
use crate::claims::{Check, Claims};
use crate::doc::{Block, Doc};
use crate::figure::{Legend, LineChart, Mark, Panels, Series, save};
use crate::format::pct;
use crate::style::{self, color};
use crate::{Result, pages};

/// Mean test error over the single-block deletions (finite values).
fn mean_single(a: &ArchEnsemble) -> f64 {
    let v: Vec<f64> = a
        .single_deletion
        .iter()
        .copied()
        .filter(|e| e.is_finite())
        .collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Mean single-deletion error at or above which a net counts as broken:
/// more than half of the test set misclassified.
pub const BROKEN_ERROR: f64 = 0.5;

/// Mean rise of the test error (absolute) over the deletions of blocks
/// after the first up to which a net degrades gracefully.
pub const GRACEFUL_RISE: f64 = 0.05;

/// Blocks by which the gradient-weighted mean path length must fall short of
/// the mean length of all paths, n/2, for "mostly short paths".
pub const SHORTER_BY: f64 = 1.0;

/// Mean test error over deleting one of the blocks after the first.
fn mean_later(a: &ArchEnsemble) -> f64 {
    let v: Vec<f64> = a
        .single_deletion
        .iter()
        .skip(1)
        .copied()
        .filter(|e| e.is_finite())
        .collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Σ k·T_k / Σ T_k: the mean path length weighted by the gradient the paths
/// of each length carry (T_k = C(n, k)·E‖g_k‖).
pub fn gradient_weighted_length(total: &[f64]) -> f64 {
    let t = total.iter().map(|v| if v.is_finite() { *v } else { 0.0 });
    let (num, den) = t
        .enumerate()
        .fold((0.0, 0.0), |(n, d), (k, v)| (n + k as f64 * v, d + v));
    num / den
}

/// Draw the ensemble study's figures and write its pages from the data folder alone.
pub fn build(data_dir: &Path, report_dir: &Path) -> Result<StudyCard> {
    let s = read_summary(data_dir)?;
    create_dir(report_dir)?;
    let mut doc = Doc::new("Residual nets as ensembles");
    doc.back = Some("../index.html".into());
    let mut said = Claims::new(ensemble::NAME);
    let finding = finding(&s, &mut said);
    doc.push(Block::Lead(finding.clone()));
    doc.paragraph(setup(&s.config));

    doc.heading("Lesions");
    doc.push(lesions(&s.archs, report_dir)?);
    doc.push(lesion_table(&s.archs));

    if let Some(fig) = paths(&s, report_dir)? {
        doc.heading("Gradient by path length");
        doc.push(fig);
    }

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

/// The finding: intact against one block deleted, and the effective path lengths.
fn finding(s: &EnsembleSummary, claims: &mut Claims) -> String {
    let mut parts = Vec::new();
    for a in &s.archs {
        let intact = a.intact_error.mean;
        if a.residual {
            let later = mean_later(a);
            let first = a.single_deletion.first().copied().unwrap_or(f64::NAN);
            let numbers = format!(
                "Deleting one of blocks 1–{} of {} (depth {}) takes its test error from {} to {} on average (deleting block 0 gives {})",
                a.blocks.saturating_sub(1),
                a.arch,
                s.config.depth,
                pct(intact),
                pct(later),
                pct(first)
            );
            parts.push(claims.decide(
                &format!("{}-graceful", a.arch),
                Check::at_most(
                    &format!(
                        "{}: mean error rise deleting a block after the first",
                        a.arch
                    ),
                    later - intact,
                    GRACEFUL_RISE,
                ),
                format!("{numbers}: it degrades gracefully, as an ensemble of paths would."),
                format!(
                    "{numbers}: more than a graceful {} rise.",
                    pct(GRACEFUL_RISE)
                ),
            ));
        } else {
            let single = mean_single(a);
            let numbers = format!(
                "Deleting one block of {} (depth {}) takes its test error from {} to {} on average",
                a.arch,
                s.config.depth,
                pct(intact),
                pct(single)
            );
            parts.push(claims.decide(
                &format!("{}-breaks", a.arch),
                Check::at_least(
                    &format!("{}: mean error deleting one block", a.arch),
                    single,
                    BROKEN_ERROR,
                ),
                format!("{numbers}: it breaks."),
                format!("{numbers}: it survives."),
            ));
        }
    }
    let mut text = parts.join(" ");
    for a in &s.archs {
        let Some((lo, hi)) = a.effective_range else {
            continue;
        };
        let mean = gradient_weighted_length(&a.total_gradient);
        let typical = a.blocks as f64 / 2.0;
        text += &claims.decide(
            &format!("{}-short-paths", a.arch),
            Check::at_most(
                &format!("{}: gradient-weighted mean path length − n/2", a.arch),
                mean - typical,
                -SHORTER_BY,
            ),
            format!(
                " In {}, gradient comes mostly from short paths: weighted by the gradient they carry, paths are {:.1} blocks long on average against {typical} for all paths, and lengths {lo}–{hi} of {} carry 90 % of it.",
                a.arch, mean, a.blocks
            ),
            format!(
                " In {}, weighted by the gradient they carry, paths are {:.1} blocks long on average against {typical} for all paths, not clearly shorter; lengths {lo}–{hi} of {} carry 90 % of it.",
                a.arch, mean, a.blocks
            ),
        );
    }
    text
}

/// The setup paragraph.
fn setup(c: &EnsembleParams) -> String {
    format!(
        "Setup (Veit, Wilber & Belongie 2016, “Residual Networks Behave Like Ensembles of Relatively Shallow Networks”): nets trained on {} for {} epochs ({} seed(s) per architecture); BN in eval mode. Deleting a residual block keeps its shortcut (x_{{l+1}} = x_l for an identity shortcut); deleting a plain block skips it, which is only possible where it keeps the shape of its input. Test error on the whole test set; lesion curves over {} random draws.",
        c.data, c.train.epochs, c.seeds, c.lesion_draws
    )
}

/// (k, error in %) and ± sd in % of a lesion curve.
fn lesion_points(l: &LesionCurve) -> (Vec<(f64, f64)>, Vec<f64>) {
    (
        l.count
            .iter()
            .zip(&l.error)
            .map(|(k, e)| (*k as f64, 100.0 * e.mean))
            .collect(),
        l.error.iter().map(|e| 100.0 * e.std).collect(),
    )
}

/// Test error after deleting one block, k random blocks, or swapping pairs.
fn lesions(archs: &[ArchEnsemble], dir: &Path) -> Result<Block> {
    let blocks = archs.iter().map(|a| a.blocks).max().unwrap_or(1);
    let mut single = LineChart::new(
        "Test error after deleting one block",
        "deleted block",
        "test error (%)",
    )
    .integer_x()
    .legend(Legend::Outside)
    .x_range(-0.5, blocks as f64 - 0.5);
    for (i, a) in archs.iter().enumerate() {
        single.push(
            Series::line(
                a.arch.clone(),
                a.single_deletion
                    .iter()
                    .enumerate()
                    .map(|(b, e)| (b as f64, 100.0 * e))
                    .collect(),
                color(i),
            )
            .mark(Mark::LinePoints),
        );
        single.push(
            Series::line(
                format!("{} intact", a.arch),
                vec![
                    (-0.5, 100.0 * a.intact_error.mean),
                    (blocks as f64 - 0.5, 100.0 * a.intact_error.mean),
                ],
                color(i),
            )
            .mark(Mark::Dashed)
            .width(1),
        );
    }
    let mut random = LineChart::new(
        "Deleting k random blocks",
        "blocks deleted",
        "test error (%), mean ± sd",
    )
    .integer_x()
    .legend(Legend::Outside);
    let mut swaps = LineChart::new(
        "Swapping pairs of blocks",
        "swaps",
        "test error (%), mean ± sd",
    )
    .integer_x()
    .log2_x()
    .legend(Legend::Outside);
    for (i, a) in archs.iter().enumerate() {
        let (pts, err) = lesion_points(&a.random_deletion);
        random.push(
            Series::line(a.arch.clone(), pts, color(i))
                .mark(Mark::LinePoints)
                .errors(err),
        );
        let (pts, err) = lesion_points(&a.reordering);
        if !pts.is_empty() {
            swaps.push(
                Series::line(a.arch.clone(), pts, color(i))
                    .mark(Mark::LinePoints)
                    .errors(err),
            );
        }
    }
    for ch in [&mut single, &mut random, &mut swaps] {
        ch.title_size = style::PANEL_TITLE_SIZE;
    }
    let fig = save(
        &Panels {
            title: "Lesions of trained nets".into(),
            rows: 1,
            cols: 3,
            panels: vec![single, random, swaps],
        },
        dir,
        "lesions",
        (1800, 600),
    )?;
    Ok(Block::figure(
        fig,
        "Test error after deleting one block, k random blocks, or swapping pairs of blocks",
        "Veit et al. found that removing a single block from a trained ResNet-110 barely changes its CIFAR-10 error (except for the \
         downsampling blocks), that error grows smoothly with the number of blocks removed, and that removing a layer of a plain \
         VGG net is catastrophic. Dashed lines mark the intact nets.",
    ))
}

/// Intact error against one and half of the blocks deleted at random.
fn lesion_table(archs: &[ArchEnsemble]) -> Block {
    let rows = archs
        .iter()
        .map(|a| {
            let k1 = a.random_deletion.error.get(1).map_or(f64::NAN, |e| e.mean);
            let half = a
                .random_deletion
                .error
                .get(a.blocks / 2)
                .map_or(f64::NAN, |e| e.mean);
            vec![
                a.arch.clone(),
                a.blocks.to_string(),
                pct(a.intact_error.mean),
                pct(k1),
                pct(half),
            ]
        })
        .collect();
    Block::Table {
        header: [
            "arch",
            "blocks",
            "intact",
            "1 random block deleted",
            "half the blocks deleted",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Path-length distribution, gradient per path and total gradient against
/// path length of the residual nets; `None` without a residual net.
fn paths(s: &EnsembleSummary, dir: &Path) -> Result<Option<Block>> {
    let c = &s.config;
    let residual: Vec<(usize, &ArchEnsemble)> = s
        .archs
        .iter()
        .enumerate()
        .filter(|(_, a)| a.residual)
        .collect();
    if residual.is_empty() {
        return Ok(None);
    }
    let mut share = LineChart::new(
        "Path lengths",
        "path length k (branches taken)",
        "share of the 2^n paths",
    )
    .integer_x()
    .legend(Legend::Outside);
    let mut per_path = LineChart::new("Gradient of one path", "path length k", "mean ‖∂L/∂x‖")
        .integer_x()
        .log_y()
        .legend(Legend::Outside);
    let mut total = LineChart::new(
        "Gradient of all paths of a length",
        "path length k",
        "C(n, k) · mean ‖∂L/∂x‖",
    )
    .integer_x()
    .log_y()
    .legend(Legend::Outside);
    let pts = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter().enumerate().map(|(k, y)| (k as f64, *y)).collect()
    };
    for &(i, a) in &residual {
        share.push(
            Series::line(
                format!("Binomial({}, ½)", a.blocks),
                pts(&a.path_length_share),
                color(i),
            )
            .mark(Mark::LinePoints),
        );
        per_path.push(
            Series::line(a.arch.clone(), pts(&a.path_gradient), color(i)).mark(Mark::LinePoints),
        );
        let label = match a.effective_range {
            Some((lo, hi)) => format!("{} (90 % in k = {lo}–{hi})", a.arch),
            None => a.arch.clone(),
        };
        total.push(Series::line(label, pts(&a.total_gradient), color(i)).mark(Mark::LinePoints));
    }
    for ch in [&mut share, &mut per_path, &mut total] {
        ch.title_size = style::PANEL_TITLE_SIZE;
    }
    let fig = save(
        &Panels {
            title: "The path view: how many paths of each length, and how much gradient they carry"
                .into(),
            rows: 1,
            cols: 3,
            panels: vec![share, per_path, total],
        },
        dir,
        "paths",
        (1800, 600),
    )?;
    Ok(Some(Block::figure(
        fig,
        "Path-length distribution, gradient per path and total gradient against path length",
        format!(
            "Veit et al.'s method: back-propagate through the branch of exactly k blocks and the shortcut of the others, on a fixed batch of \
             {} training examples, and measure ‖∂L/∂x‖ at the input ({} sampled paths per length, or all of them when there are fewer). The \
             gradient of one path falls roughly exponentially with its length; weighed by the binomial count of paths, most gradient comes \
             from paths far shorter than the net (for their 54-block ResNet, lengths 5–17, while most paths have length 19–35). The sum of all \
             path gradients equals the full gradient exactly (tested).",
            c.path_batch, c.path_samples
        ),
    )))
}

/// The data files behind the page.
fn data_files(data_dir: &Path) -> Block {
    Block::List(
        [
            ensemble::files::SUMMARY,
            ensemble::files::NETS,
            ensemble::files::DELETION_CSV,
            ensemble::files::PATHS_CSV,
        ]
        .iter()
        .map(|f| format!("{}/{}", data_dir.display(), f))
        .collect(),
    )
}

/// The index card: intact → one block deleted, and the effective path lengths.
fn card(s: &EnsembleSummary, finding: String) -> StudyCard {
    let mut numbers: Vec<(String, String)> = s
        .archs
        .iter()
        .flat_map(|a| {
            if a.residual {
                vec![
                    (
                        format!(
                            "{} one of blocks 1–{} deleted",
                            a.arch,
                            a.blocks.saturating_sub(1)
                        ),
                        format!("{} → {}", pct(a.intact_error.mean), pct(mean_later(a))),
                    ),
                    (
                        format!("{} block 0 deleted", a.arch),
                        pct(a.single_deletion.first().copied().unwrap_or(f64::NAN)),
                    ),
                ]
            } else {
                vec![(
                    format!("{} one block deleted", a.arch),
                    format!("{} → {}", pct(a.intact_error.mean), pct(mean_single(a))),
                )]
            }
        })
        .collect();
    for a in &s.archs {
        if let Some((lo, hi)) = a.effective_range {
            numbers.push((
                format!("{} effective path lengths", a.arch),
                format!("{lo}–{hi} of {}", a.blocks),
            ));
        }
    }
    StudyCard {
        name: ensemble::NAME.into(),
        title: "Residual nets as ensembles".into(),
        href: format!("{}/index.html", ensemble::NAME),
        thumbnail: Some(format!("{}/lesions.png", ensemble::NAME)),
        finding,
        numbers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> EnsembleSummary {
        read_summary(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../notebooks-data/ensemble"))
            .unwrap()
    }

    #[test]
    fn a_residual_net_alone_says_nothing_of_plain_nets_and_a_fragile_one_is_not_graceful() {
        let mut s = committed();
        s.archs.retain(|a| a.residual);
        let mut c = Claims::new("ensemble");
        let text = finding(&s, &mut c);
        assert!(!text.contains("plain"), "{text}");
        assert!(text.contains("degrades gracefully"), "{text}");
        for e in s.archs[0].single_deletion.iter_mut().skip(1) {
            *e += 0.2;
        }
        let mut c = Claims::new("ensemble");
        let text = finding(&s, &mut c);
        assert!(text.contains("more than a graceful 5.0 % rise"), "{text}");
        assert!(!c.list()[0].holds);
    }

    #[test]
    fn the_gradient_weighted_length_of_a_binomial_share_is_n_over_2() {
        // Equal gradient per path: T_k = C(n, k), whose mean length is n/2.
        let n = 10;
        let mut c = vec![1.0f64; 1];
        for k in 1..=n {
            let prev = c[k - 1];
            c.push(prev * (n - k + 1) as f64 / k as f64);
        }
        assert!((gradient_weighted_length(&c) - 5.0).abs() < 1e-12);
        // Only length-2 paths carry gradient.
        let mut t = vec![0.0; n + 1];
        t[2] = 3.0;
        assert_eq!(gradient_weighted_length(&t), 2.0);
    }
}
