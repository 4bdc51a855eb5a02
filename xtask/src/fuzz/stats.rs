//! What one libFuzzer run says about itself, from its log.

use std::path::PathBuf;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inputs run.
    pub execs: u64,
    /// Coverage points reached (`cov:`).
    pub coverage: u64,
    /// Inputs in the corpus at the end (`corp:`).
    pub corpus: u64,
    /// The input that crashed, as libFuzzer saved it.
    pub crash: Option<PathBuf>,
}

impl Stats {
    /// Reads the last status line (`#1234 DONE cov: 380 ft: 1087 corp: 321/31Kb ...`; the
    /// last `#N` line when it crashed), the final execution count and the saved crash.
    pub fn parse(log: &str) -> Self {
        let mut stats = Stats::default();
        for line in log.lines() {
            if let Some(status) = line.strip_prefix('#') {
                let mut words = status.split_whitespace();
                stats.execs = words.next().and_then(|n| n.parse().ok()).unwrap_or(stats.execs);
                while let Some(word) = words.next() {
                    let value = || words.clone().next().and_then(|v| v.split('/').next()?.parse().ok());
                    match word {
                        "cov:" => stats.coverage = value().unwrap_or(stats.coverage),
                        "corp:" => stats.corpus = value().unwrap_or(stats.corpus),
                        _ => {}
                    }
                }
            }
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units: ") {
                stats.execs = n.trim().parse().unwrap_or(stats.execs);
            }
            if let Some((_, path)) = line.split_once("Test unit written to ") {
                stats.crash = Some(PathBuf::from(path.trim()));
            }
        }
        stats
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let crashes = usize::from(self.crash.is_some());
        write!(f, "{} execs, coverage {}, corpus {}, {crashes} crashes", self.execs, self.coverage, self.corpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_and_a_crash_are_read_from_libfuzzers_log() {
        let done = "INFO: Seed: 1\n#2\tINITED cov: 12 ft: 13 corp: 4/40b exec/s: 0 rss: 30Mb\n\
                    #960160\tDONE   cov: 380 ft: 1087 corp: 321/31Kb lim: 4096 exec/s: 106684 rss: 680Mb\n\
                    stat::number_of_executed_units: 960161\n";
        assert_eq!(Stats::parse(done), Stats { execs: 960161, coverage: 380, corpus: 321, crash: None });
        let crashed = "#8192\tpulse  cov: 90 ft: 100 corp: 20/300b lim: 80 exec/s: 4096 rss: 40Mb\n\
                       thread '<unnamed>' panicked at tests/src/fuzz/mod.rs:50:13:\n\
                       artifact_prefix='target/fuzz/artifacts/rtnetlink/'; Test unit written to target/fuzz/artifacts/rtnetlink/crash-9a17\n";
        let stats = Stats::parse(crashed);
        assert_eq!((stats.execs, stats.coverage), (8192, 90));
        assert_eq!(stats.crash, Some(PathBuf::from("target/fuzz/artifacts/rtnetlink/crash-9a17")));
        assert_eq!(stats.to_string(), "8192 execs, coverage 90, corpus 20, 1 crashes");
    }
}
