//! Sentences that state a comparison or a bound, each decided by a predicate
//! evaluated on the data it describes.
//!
//! A report never types "stays level" or "under the bound": it asks a
//! [`Check`] of the numbers and prints the claim where it holds and what the
//! data show instead where it does not. Every decision is kept with its test
//! and its numbers, listed at the end of the page and written to
//! `claims.json` beside it, so a reader (and a test) can verify each one.

use std::path::Path;

use gradscope_contract::io::write_atomic;

use crate::Result;
use crate::doc::{Block, Doc};
use crate::format::decimals;

/// The file beside a study's report that lists its claims.
pub const CLAIMS_FILE: &str = "claims.json";

/// One decided sentence.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    /// `study/what`, the same for every run of the study.
    pub id: String,
    /// The predicate with the numbers it compared.
    pub test: String,
    /// Whether the data satisfy the predicate.
    pub holds: bool,
    /// The sentence on the page: the claim where it holds, what the data
    /// show where it does not.
    pub sentence: String,
}

/// A predicate and the numbers it compared, in words.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Whether it holds (false for a NaN or missing value).
    pub holds: bool,
    /// What was compared, e.g. `max ratio − σ_w/4 = −0.040 ≤ 0`.
    pub test: String,
}

/// A number as a test prints it: enough digits to re-check the comparison.
fn num(v: f64) -> String {
    if v.is_finite() && v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        decimals(v, 4)
    }
}

impl Check {
    /// `name = value ≤ bound`; fails for NaN.
    pub fn at_most(name: &str, value: f64, bound: f64) -> Check {
        Check {
            holds: value <= bound,
            test: format!("{name} = {} ≤ {}", num(value), num(bound)),
        }
    }

    /// `name = value ≥ bound`; fails for NaN.
    pub fn at_least(name: &str, value: f64, bound: f64) -> Check {
        Check {
            holds: value >= bound,
            test: format!("{name} = {} ≥ {}", num(value), num(bound)),
        }
    }

    /// `lo ≤ name = value ≤ hi`; fails for NaN.
    pub fn within(name: &str, value: f64, lo: f64, hi: f64) -> Check {
        Check {
            holds: lo <= value && value <= hi,
            test: format!("{} ≤ {name} = {} ≤ {}", num(lo), num(value), num(hi)),
        }
    }

    /// A condition that is not a number (e.g. "both nets present").
    pub fn that(holds: bool, test: impl Into<String>) -> Check {
        Check {
            holds,
            test: test.into(),
        }
    }

    /// All of `checks` (true when empty is refused: an empty list fails, so a
    /// claim about "every" member of nothing is never printed).
    pub fn all(checks: impl IntoIterator<Item = Check>) -> Check {
        let checks: Vec<Check> = checks.into_iter().collect();
        Check {
            holds: !checks.is_empty() && checks.iter().all(|c| c.holds),
            test: summarise(&checks),
        }
    }
}

/// Whether a spectral slope lies nearer the brown-noise reference than the
/// white-noise one: the test behind "brown-noise-like".
pub fn nearer_brown(slope: f64, white: f64, brown: f64) -> bool {
    (slope - brown).abs() < (slope - white).abs()
}

/// "brown" or "white": the noise reference nearer in spectral slope.
pub fn nearer_noise(slope: f64, white: f64, brown: f64) -> &'static str {
    if nearer_brown(slope, white, brown) {
        "brown"
    } else {
        "white"
    }
}

/// `a` above `b` by more than `z` combined standard errors: the test behind
/// "larger" for two means over independent seeds.
pub fn clearly_above(
    name: &str,
    a: &gradscope_stats::MeanStd,
    b: &gradscope_stats::MeanStd,
    z: f64,
) -> Check {
    let se = |m: &gradscope_stats::MeanStd| m.std / (m.n.max(1) as f64).sqrt();
    let margin = z * (se(a).powi(2) + se(b).powi(2)).sqrt();
    Check::at_least(
        &format!("{name}: difference (margin {z} combined standard errors)"),
        a.mean - b.mean,
        margin,
    )
}

/// At most this many cases of [`Check::all`] are listed in full.
const LISTED: usize = 4;

/// The cases of a conjunction in words: all of a few, or the count and the
/// failing ones of many.
fn summarise(checks: &[Check]) -> String {
    let join = |c: &[&Check]| {
        c.iter()
            .map(|c| c.test.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let all: Vec<&Check> = checks.iter().collect();
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.holds).collect();
    match (checks.len(), failed.len()) {
        (0, _) => "no cases".into(),
        (n, _) if n <= LISTED => join(&all),
        (n, 0) => format!("all {n} cases hold, e.g. {}", join(&all[..2])),
        (n, k) => format!("{k} of {n} cases fail: {}", join(&failed[..k.min(LISTED)])),
    }
}

/// The claims of one report, in page order.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    study: String,
    list: Vec<Claim>,
}

impl Claims {
    /// No claims yet, for study `study`.
    pub fn new(study: &str) -> Self {
        Claims {
            study: study.into(),
            list: Vec::new(),
        }
    }

    /// Record `check` under `study/name` and return `yes` where it holds,
    /// `no` where it does not.
    pub fn decide(
        &mut self,
        name: &str,
        check: Check,
        yes: impl Into<String>,
        no: impl Into<String>,
    ) -> String {
        let sentence = if check.holds { yes.into() } else { no.into() };
        self.list.push(Claim {
            id: format!("{}/{name}", self.study),
            test: check.test,
            holds: check.holds,
            sentence: sentence.clone(),
        });
        sentence
    }

    /// The decided claims, in page order.
    pub fn list(&self) -> &[Claim] {
        &self.list
    }

    /// A section listing every claim with its test, then `claims.json` in `dir`.
    pub fn finish(&self, doc: &mut Doc, dir: &Path) -> Result<()> {
        if self.list.is_empty() {
            return Ok(());
        }
        doc.heading("Claims and their tests");
        doc.paragraph(
            "Every sentence above that states a comparison or a bound was chosen by a test on this run's data; \
             where the test fails, the page says what the data show instead. The tests, with their numbers:",
        );
        doc.push(Block::Table {
            header: ["claim", "test", "holds"].map(String::from).to_vec(),
            rows: self
                .list
                .iter()
                .map(|c| {
                    vec![
                        c.id.clone(),
                        c.test.clone(),
                        if c.holds { "yes" } else { "no" }.into(),
                    ]
                })
                .collect(),
        });
        let path = dir.join(CLAIMS_FILE);
        let json = serde_json::to_vec_pretty(&self.list).map_err(|e| crate::ReportError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        write_atomic(&path, &json)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_compare_and_refuse_nan() {
        assert!(Check::at_most("x", 0.25, 0.25).holds);
        assert!(!Check::at_most("x", 0.2501, 0.25).holds);
        assert!(!Check::at_most("x", f64::NAN, 0.25).holds);
        assert!(!Check::at_least("x", f64::NAN, 0.0).holds);
        assert!(Check::within("x", 1.0, 0.9, 1.1).holds);
        assert!(!Check::within("x", 1.2, 0.9, 1.1).holds);
        assert!(!Check::all([]).holds);
        let both = Check::all([Check::at_most("a", 1.0, 2.0), Check::at_most("b", 3.0, 2.0)]);
        assert!(!both.holds);
        assert_eq!(both.test, "a = 1.0000 ≤ 2.0000; b = 3.0000 ≤ 2.0000");
    }

    #[test]
    fn a_decision_keeps_the_sentence_that_matches_the_test() {
        let mut c = Claims::new("norms");
        let s = c.decide("bound", Check::at_most("r", 0.3, 0.25), "under", "over");
        assert_eq!(s, "over");
        assert_eq!(c.list()[0].id, "norms/bound");
        assert!(!c.list()[0].holds);
    }
}
