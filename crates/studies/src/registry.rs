//! A study's parameters ([`Params`]: checked into its runnable configuration)
//! and its study file (`study = "…"` and the parameters, as `gradscope run`
//! reads it).

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::study::Study;
use crate::{Result, StudyError};

/// A study's unchecked parameters; each study module implements it for its
/// parameters type. The table of studies (names, commands, reports) is the
/// command line's (`gradscope_cli::registry`), which sees the reports too.
pub trait Params: Clone + Default + Serialize + DeserializeOwned + Send + Sync {
    /// The validated configuration the parameters check into.
    type Config: Study;
    /// Small sizes, for tests and a first look.
    fn quick() -> Self;
    /// Validate; the only way to a runnable configuration.
    fn check(&self) -> Result<Self::Config>;
    /// With a weights file among the parameters, take from the spec it
    /// carries what builds its net (arch, depth, width, one seed) for the
    /// parameters `given` says were not set; returns what was taken, as
    /// `name value` pairs. Studies without weights files take nothing.
    fn infer_from_weights(&mut self, given: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        let _ = given;
        Ok(Vec::new())
    }
}

/// Split a study file into its study name (one of `known`) and its parameters table.
pub fn parse_study_file(text: &str, path: &Path, known: &[&str]) -> Result<(String, toml::Table)> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
    let name = match table.remove("study") {
        Some(toml::Value::String(s)) => s,
        Some(_) => {
            return Err(file_error(
                path,
                "`study` must be a string, e.g. study = \"shattered\"",
            ));
        }
        None => {
            return Err(file_error(
                path,
                &format!("missing `study = \"…\"` (known: {})", known.join(", ")),
            ));
        }
    };
    if !known.contains(&name.as_str()) {
        return Err(file_error(
            path,
            &format!("unknown study `{name}` (known: {})", known.join(", ")),
        ));
    }
    Ok((name, table))
}

/// A study's parameters from the rest of its file; unknown keys and bad
/// values are one-line errors naming the file and the key.
pub fn params_from_table<P: Params>(table: toml::Table, path: &Path) -> Result<P> {
    P::deserialize(toml::Value::Table(table))
        .map_err(|e| file_error(path, &one_line(&e.to_string())))
}

/// Parameters serialised back as a study file (`study = "…"` first).
pub fn study_file<P: Params>(name: &str, params: &P) -> Result<String> {
    let body = toml::to_string(params).map_err(|e| StudyError::config("toml", e.to_string()))?;
    Ok(format!("study = \"{name}\"\n{body}"))
}

fn file_error(path: &Path, reason: &str) -> StudyError {
    StudyError::ConfigFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A TOML syntax error as `file: line L, column C: message`.
fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> StudyError {
    let at = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {col}: ")
    });
    file_error(
        path,
        &format!("{}{}", at.unwrap_or_default(), one_line(e.message())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shattered::ShatteredParams;

    const KNOWN: &[&str] = &["shattered", "norms"];

    #[test]
    fn study_files_round_trip_and_bad_files_are_one_line_errors() {
        let p = ShatteredParams {
            depths: vec![3, 9],
            ..ShatteredParams::quick()
        };
        let text = study_file("shattered", &p).unwrap();
        let (name, table) = parse_study_file(&text, Path::new("s.toml"), KNOWN).unwrap();
        assert_eq!(name, "shattered");
        assert_eq!(
            params_from_table::<ShatteredParams>(table, Path::new("s.toml")).unwrap(),
            p
        );
        let cases = [
            ("depths = [1]", "missing `study"),
            ("study = \"nope\"", "unknown study `nope`"),
            ("study = 3", "must be a string"),
            ("study = \"shattered\"\nwidht = 3", "unknown field `widht`"),
            ("study = \"shattered\"\nwidth = \"wide\"", "invalid type"),
            ("study = \"shattered\"\narchs = [\"mlp\"]", "mlp"),
            ("study = \"shattered\"\nwidth = ", "line 2"),
        ];
        for (text, needle) in cases {
            let e = parse_study_file(text, Path::new("bad.toml"), KNOWN).and_then(|(_, t)| {
                params_from_table::<ShatteredParams>(t, Path::new("bad.toml")).map(|_| ())
            });
            let e = e.unwrap_err().to_string();
            assert!(
                e.starts_with("bad.toml: ") && e.contains(needle) && !e.contains('\n'),
                "{text}: {e}"
            );
        }
    }
}
