//! A norms folder's summary read back and checked: each part holds the rows
//! its config implies, each row as long as the depths it covers, so a
//! reader can index them without checking again.

use std::path::Path;

use super::{NormsSummary, SCHEMA, files};
use crate::Result;
use crate::io::ensure;

/// Read the summary of a study folder, refusing one whose parts disagree
/// with its config.
pub fn read_summary(dir: &Path) -> Result<NormsSummary> {
    let path = dir.join(files::SUMMARY);
    let s: NormsSummary = crate::io::read_summary(&path, SCHEMA, |s: &NormsSummary| &s.schema)?;
    check(&s, &path)?;
    Ok(s)
}

fn check(s: &NormsSummary, path: &Path) -> Result<()> {
    let c = &s.config;
    let hidden = c.depth + 1;
    for r in &s.layers {
        let what = || format!("layers row ({}, {}, {})", r.arch, r.activation, r.init);
        ensure(r.grad_norm.len() == hidden, path, || {
            format!(
                "{} has {} gradient norms, expected {hidden}",
                what(),
                r.grad_norm.len()
            )
        })?;
        ensure(
            r.weight_names.len() == r.weight_grad_norm.len()
                && r.bias_names.len() == r.bias_grad_norm.len(),
            path,
            || {
                format!(
                    "{} names and norms of its parameters differ in number",
                    what()
                )
            },
        )?;
    }
    for ch in &s.chains {
        ensure(ch.autograd.len() == ch.closed_form.len(), path, || {
            format!(
                "chain w = {}: autograd and closed form differ in length",
                ch.w
            )
        })?;
    }
    if !s.phase.is_empty() {
        let rows = 2 * c.phase_activations.len() * c.phase_sigma_w2.len();
        ensure(s.phase.len() == rows, path, || {
            format!(
                "{} phase rows, expected {rows} (plain and residual × activations × σ_w²)",
                s.phase.len()
            )
        })?;
        for r in &s.phase {
            ensure(r.log10_ratio.len() == c.depth, path, || {
                format!(
                    "phase row ({}, σ_w² = {}) has {} depths, expected {}",
                    r.activation,
                    r.sigma_w2,
                    r.log10_ratio.len(),
                    c.depth
                )
            })?;
        }
    }
    if let Some(images) = &s.images {
        super::images::check_summary(images, c, path)?;
    }
    ensure(
        s.jacobian.is_empty() || !c.jacobian_depths.is_empty(),
        path,
        || "Jacobian rows without Jacobian depths".into(),
    )
}
