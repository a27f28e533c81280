#![warn(missing_docs)]
//! The `gradscope` command line: the study registry ([`registry`]), from
//! which the study commands, `run`, `merge`, `report` and `reproduce` are
//! derived; the other commands' arguments ([`args`]); and the high-level
//! runs ([`run`]).

// Clap turns doc comments into help text: the options document themselves
// in `gradscope <command> --help`, the containers need none.
// Their brackets and <placeholders> are help text, not rustdoc markup.
#[allow(
    missing_docs,
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod args;
mod bench;
mod progress;
#[allow(
    missing_docs,
    rustdoc::broken_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod recipe;
pub mod registry;
pub mod run;
pub mod runs;
pub mod summary;

use std::process::ExitCode;

use clap::error::ErrorKind;

/// Parse the command line, run, and turn any error into one line on stderr
/// and a non-zero exit code.
pub fn main() -> ExitCode {
    let matches = match registry::command().try_get_matches() {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A bare `gradscope`: the whole help, and the status of a usage error.
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // clap's message, on one line; `--help` has the rest.
            eprintln!("{} (see --help)", clap_one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match run::run(matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            if e.downcast_ref::<run::Interrupted>().is_some() {
                ExitCode::from(130)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An error and its causes on one line, without repeating a cause the
/// message already contains.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string().replace('\n', " ");
        if !out.contains(&s) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&s);
        }
    }
    out
}

/// clap's error message on one line: the first line, with the indented
/// lines that continue it (e.g. the missing arguments), before the usage.
fn clap_one_line(text: &str) -> String {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let mut out = lines
        .next()
        .unwrap_or("error: bad arguments")
        .trim_end()
        .to_string();
    let rest: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') || l.starts_with('\t'))
        .map(str::trim)
        .collect();
    if !rest.is_empty() {
        out.push(' ');
        out.push_str(&rest.join(", "));
    }
    out
}
