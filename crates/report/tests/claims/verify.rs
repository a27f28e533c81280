//! Re-decides every claim a report makes from the study's CSV files, without
//! the report's code: a claim whose `holds` disagrees with the data, whose
//! sentence is not on the page, or that no check here knows, fails.

use std::collections::BTreeMap;
use std::path::Path;

use gradscope_report::claims::{CLAIMS_FILE, Claim};

/// The rows of a CSV file as header → text maps.
pub struct Csv(pub Vec<BTreeMap<String, String>>);

impl Csv {
    pub fn read(path: &Path) -> Csv {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
        Csv(lines
            .filter(|l| !l.is_empty())
            .map(|l| header.iter().cloned().zip(fields(l)).collect())
            .collect())
    }

    /// Rows whose columns equal the given values.
    pub fn rows(&self, eq: &[(&str, &str)]) -> Vec<&BTreeMap<String, String>> {
        self.0
            .iter()
            .filter(|r| eq.iter().all(|(k, v)| r[*k] == *v))
            .collect()
    }
}

/// The fields of one CSV line: a field in double quotes may hold commas
/// (arch strings with options), and "" inside it is one quote.
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// A column as a number (`NaN`, `inf` included).
pub fn num(row: &BTreeMap<String, String>, col: &str) -> f64 {
    let t = &row[col];
    t.parse()
        .unwrap_or_else(|_| panic!("column {col}: {t} is not a number"))
}

/// The claims a built report wrote.
pub fn claims(report_dir: &Path) -> Vec<Claim> {
    let text = std::fs::read(report_dir.join(CLAIMS_FILE)).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Markdown with its escapes removed, to find sentences in.
pub fn page_text(report_dir: &Path) -> String {
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    let mut out = String::with_capacity(md.len());
    let mut chars = md.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(|n| "\\`*_[]<>#".contains(*n)) {
            out.push(chars.next().unwrap());
        } else {
            out.push(c);
        }
    }
    out
}

/// Check each claim: on the page, and `holds` as the data decide it. The
/// claims that need the raw arrays ([`crate::decide::NEEDS_ARRAYS`]) are
/// re-decided only where the study's arrays are present (a fresh run; a
/// clean checkout holds summaries and tables, not the NPY files).
pub fn verify_all(
    data_dir: &Path,
    report_dir: &Path,
    decide: &dyn Fn(&Path, &str) -> Option<bool>,
) -> usize {
    let page = page_text(report_dir);
    let claims = claims(report_dir);
    let arrays = data_dir.join("grid.npy").exists();
    for c in &claims {
        assert!(
            page.contains(c.sentence.trim()),
            "{}: sentence not on the page: {}",
            c.id,
            c.sentence
        );
        if !arrays && crate::decide::NEEDS_ARRAYS.contains(&c.id.as_str()) {
            continue;
        }
        let Some(holds) = decide(data_dir, &c.id) else {
            panic!("{}: no independent check for this claim", c.id);
        };
        assert_eq!(
            holds, c.holds,
            "{}: the data say {holds}, the report {} ({})",
            c.id, c.holds, c.test
        );
    }
    claims.len()
}
