//! Where a result came from: version, commit, time, threads, run time.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Recorded in every summary; the type is the data contract's.
pub use gradscope_contract::Provenance;

/// A clock started at the beginning of a run.
pub struct RunClock {
    started: SystemTime,
    instant: Instant,
    fallbacks: std::collections::BTreeMap<String, u64>,
}

impl RunClock {
    /// Start the clock now.
    pub fn start() -> Self {
        RunClock {
            started: SystemTime::now(),
            instant: Instant::now(),
            fallbacks: gradscope_engine::fallbacks(),
        }
    }

    /// The nets run on candle since the clock started, with why.
    pub fn fallbacks(&self) -> Vec<String> {
        gradscope_engine::fallbacks()
            .into_iter()
            .filter(|(what, n)| self.fallbacks.get(what) != Some(n))
            .map(|(what, _)| what)
            .collect()
    }

    /// Provenance of a run started at this clock's start and ending now.
    pub fn provenance(&self, threads: usize, command: Option<String>) -> Provenance {
        Provenance {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: git_commit(),
            started: rfc3339(self.started),
            seconds: (self.instant.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            threads,
            command,
            engine_fallbacks: self.fallbacks(),
        }
    }
}

/// The commit of the current directory's git checkout, with `-dirty` when its
/// sources have uncommitted changes (results under `notebooks-data/` and
/// `reports/`, which a running `reproduce` rewrites, do not count); `None`
/// outside a checkout or without git.
pub fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
    };
    let out = git(&["rev-parse", "--short=12", "HEAD"])?;
    let commit = out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())?;
    let sources = [
        "diff",
        "--quiet",
        "HEAD",
        "--",
        ".",
        ":(exclude)notebooks-data",
        ":(exclude)reports",
    ];
    let dirty = git(&sources).is_some_and(|o| o.status.code() == Some(1));
    Some(if dirty { commit + "-dirty" } else { commit })
}

/// UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
    }
}
