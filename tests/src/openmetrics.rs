//! Reading the agent's `/metrics` text (OpenMetrics) in tests.

/// The value of the sample line `series` — the metric name and its labels exactly as the
/// exposition prints them, e.g. `netvsc_watch_events_total{source="ebpf"}` — if `text` has it.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn a_series_is_matched_whole_with_its_labels() {
        let text = "a_total{x=\"1\"} 3\na_total{x=\"10\"} 4\nb 2.5\n# EOF\n";
        assert_eq!(sample(text, "a_total{x=\"1\"}"), Some(3.0));
        assert_eq!(sample(text, "a_total{x=\"10\"}"), Some(4.0));
        assert_eq!(sample(text, "b"), Some(2.5));
        assert_eq!(sample(text, "a_total"), None, "labels are part of the series");
    }
}
