//! Progress bars on stderr, hidden when stderr is not a terminal or with --quiet.

use std::sync::Arc;

use gradscope_studies::{Progress, ProgressFn};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn new(label: &str, total: usize, quiet: bool) -> Self {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total as u64), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len} cells, {elapsed} (ETA {eta}) {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Bar { bar }
    }

    /// A callback for the study runner.
    pub fn callback(&self) -> ProgressFn {
        let bar = self.bar.clone();
        Arc::new(move |p: Progress<'_>| {
            bar.set_position(p.done as u64);
            bar.set_message(p.key.to_string());
        })
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
