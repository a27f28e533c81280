//! Every study by its parameters type: what `gradscope run` (a study from a
//! TOML file) and `gradscope merge` (shards into a summary) need to know.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::correlation::{CorrelationConfig, CorrelationParams};
use crate::ensemble::{EnsembleConfig, EnsembleParams};
use crate::norms::{NormsConfig, NormsParams};
use crate::shattered::{ShatteredConfig, ShatteredParams};
use crate::skips::{SkipsConfig, SkipsParams};
use crate::study::Study;
use crate::training::{TrainingConfig, TrainingParams};
use crate::{Result, StudyError};

/// A study's unchecked parameters.
pub trait Params: Clone + Default + Serialize + DeserializeOwned + Send + Sync {
    /// The validated configuration the parameters check into.
    type Config: Study;
    /// Small sizes, for tests and a first look.
    fn quick() -> Self;
    /// Validate; the only way to a runnable configuration.
    fn check(&self) -> Result<Self::Config>;
}

impl Params for ShatteredParams {
    type Config = ShatteredConfig;
    fn quick() -> Self {
        ShatteredParams::quick()
    }
    fn check(&self) -> Result<ShatteredConfig> {
        crate::shattered::check(self)
    }
}

impl Params for TrainingParams {
    type Config = TrainingConfig;
    fn quick() -> Self {
        TrainingParams::quick()
    }
    fn check(&self) -> Result<TrainingConfig> {
        crate::training::check(self)
    }
}

impl Params for EnsembleParams {
    type Config = EnsembleConfig;
    fn quick() -> Self {
        EnsembleParams::quick()
    }
    fn check(&self) -> Result<EnsembleConfig> {
        crate::ensemble::check(self)
    }
}

impl Params for CorrelationParams {
    type Config = CorrelationConfig;
    fn quick() -> Self {
        CorrelationParams::quick()
    }
    fn check(&self) -> Result<CorrelationConfig> {
        crate::correlation::check(self)
    }
}

impl Params for NormsParams {
    type Config = NormsConfig;
    fn quick() -> Self {
        NormsParams::quick()
    }
    fn check(&self) -> Result<NormsConfig> {
        crate::norms::check(self)
    }
}

impl Params for SkipsParams {
    type Config = SkipsConfig;
    fn quick() -> Self {
        SkipsParams::quick()
    }
    fn check(&self) -> Result<SkipsConfig> {
        crate::skips::check(self)
    }
}

/// The studies `run` and `merge` know, by the name a TOML file gives in `study = "…"`.
pub const STUDY_NAMES: &[&str] = &[
    crate::shattered::NAME,
    crate::training::NAME,
    crate::ensemble::NAME,
    crate::correlation::NAME,
    crate::norms::NAME,
    crate::skips::NAME,
];

/// Split a study file into its study name and its parameters table.
pub fn parse_study_file(text: &str, path: &Path) -> Result<(String, toml::Table)> {
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
                &format!(
                    "missing `study = \"…\"` (known: {})",
                    STUDY_NAMES.join(", ")
                ),
            ));
        }
    };
    if !STUDY_NAMES.contains(&name.as_str()) {
        return Err(file_error(
            path,
            &format!("unknown study `{name}` (known: {})", STUDY_NAMES.join(", ")),
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

    #[test]
    fn study_files_round_trip_and_bad_files_are_one_line_errors() {
        let p = ShatteredParams {
            depths: vec![3, 9],
            ..ShatteredParams::quick()
        };
        let text = study_file("shattered", &p).unwrap();
        let (name, table) = parse_study_file(&text, Path::new("s.toml")).unwrap();
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
            let e = parse_study_file(text, Path::new("bad.toml")).and_then(|(_, t)| {
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
