//! The `gradscope` command line: argument parsing ([`args`]) apart from the
//! high-level runs ([`run`]).

pub mod args;
mod progress;
pub mod run;

use std::process::ExitCode;

use clap::Parser;

/// Parse the command line, run, and turn any error into one line on stderr
/// and a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
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
