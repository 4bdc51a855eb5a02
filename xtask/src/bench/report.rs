//! The bench's report: markdown tables (latency with ratios to the original's 1000 ms poll, idle
//! and churn cost, resync time), and its place in docs/benchmarks.md between two markers.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::figures::{Cost, Latencies, Results};

const BEGIN: &str = "<!-- bench results: written by `cargo xtask bench` -->";
const END: &str = "<!-- end of bench results -->";
/// What the ratios are relative to: the original vdev_netvsc's behaviour.
const ORIGINAL: &str = "poll 1000 ms";

/// CPU, core count and kernel of this machine.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    format!("host: {} × {cores}, Linux {kernel}", model.unwrap_or("unknown CPU"))
}

fn latency_table(out: &mut String, title: &str, series: &[Latencies]) {
    if series.is_empty() {
        return;
    }
    let original = series.iter().find(|s| s.source == ORIGINAL).map(Latencies::mean);
    let _ =
        writeln!(out, "\n**{title}**\n\n| source | plugs | mean | p50 | p99 | max | the original's mean ÷ this mean |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for s in series {
        let spread = s.spread();
        let ratio = original.map_or("-".into(), |o| format!("{:.0}×", o / s.mean()));
        let ratio = if s.source == ORIGINAL { "1×".into() } else { ratio };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {ratio} |",
            s.source,
            spread.count,
            duration(s.mean()),
            duration(spread.p50),
            duration(spread.p99),
            duration(spread.max)
        );
    }
    if let Some(warning) = phase_check(series) {
        println!("bench: {warning}");
        let _ = writeln!(out, "\n**{warning}**");
    }
}

/// With plugs at a random phase, the original's 1000 ms poll waits half a period on average on
/// top of what the fastest source pays (the registration itself): 400–600 ms for 20 plugs or
/// more. Outside that, the run is suspect (phase-locked plugs, a stalled machine).
pub fn phase_check(series: &[Latencies]) -> Option<String> {
    let original = series.iter().find(|s| s.source == ORIGINAL)?;
    let floor =
        series.iter().filter(|s| !s.source.starts_with("poll")).map(Latencies::mean).fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() { floor } else { 0.0 };
    let waited_ms = (original.mean() - floor) / 1e3;
    (!(400.0..=600.0).contains(&waited_ms)).then(|| {
        format!(
            "suspect run: {ORIGINAL} waited {waited_ms:.0} ms on average beyond the fastest source, \
             not the 400–600 ms a random plug phase gives"
        )
    })
}

fn cost_table(out: &mut String, title: &str, costs: &[Cost]) {
    if costs.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n**{title}**\n\n| workload | source | agent CPU | wakeups | events delivered |");
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: |");
    for c in costs {
        let unit = if c.per_minute { " /min" } else { "" };
        let cpu = if c.cpu_ms.is_nan() { "-".into() } else { format!("{:.1} ms{unit}", c.cpu_ms) };
        let events = c.events.map_or("-".into(), |e| format!("{e}{unit}"));
        let _ = writeln!(out, "| {} | {} | {cpu} | {}{unit} | {events} |", c.workload, c.source, c.wakeups);
    }
}

/// µs as a readable duration.
fn duration(us: f64) -> String {
    match us {
        us if us >= 1e6 => format!("{:.2} s", us / 1e6),
        us if us >= 1e3 => format!("{:.1} ms", us / 1e3),
        us => format!("{us:.0} µs"),
    }
}

pub fn markdown(results: &Results, plot: &str) -> String {
    let mut out = format!(
        "{BEGIN}\n\nMeasured on: {}. Plugs at a random phase (uniform over 1 s after each unplug; seed {}).\n",
        results.environment.join("; "),
        results.seed
    );
    latency_table(&mut out, "Host, network namespace: VF appears (fake sysfs entry, then `ip link add` via `ip -batch`) → address in the pipe", &results.host_latency);
    latency_table(
        &mut out,
        "VM, real PCI hot-plug: kernel registers the VF (eBPF timestamp) → address in the pipe",
        &results.vm_latency,
    );
    if !results.host_latency.is_empty() || !results.vm_latency.is_empty() {
        let _ = writeln!(out, "\n![latency distributions per source]({plot})");
    }
    cost_table(&mut out, "Host: idle cost and churn (wakeups = the agent's context switches)", &results.host_costs);
    cost_table(&mut out, "VM: unrelated veth churn (wakeups = events that reached the agent)", &results.vm_costs);
    if !results.scale.is_empty() {
        let _ = writeln!(
            out,
            "\n**Full resync (what poll pays every period)**\n\n| interfaces | full scan | per interface |"
        );
        let _ = writeln!(out, "| ---: | ---: | ---: |");
        for (n, ms) in &results.scale {
            let _ = writeln!(out, "| {n} | {ms:.2} ms | {:.1} µs |", ms * 1e3 / f64::from(*n));
        }
    }
    out + "\n" + END + "\n"
}

/// Puts `section` between the markers in `docs` (appending them if absent).
pub fn write_into(docs: &Path, section: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(docs).with_context(|| format!("reading {}", docs.display()))?;
    std::fs::write(docs, replace_section(&text, section))?;
    Ok(())
}

fn replace_section(text: &str, section: &str) -> String {
    match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if end > begin => {
            format!("{}{}{}", &text[..begin], section.trim_end(), &text[end + END.len()..])
        }
        _ => format!("{}\n\n{section}", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(source: &str, samples_us: &[f64]) -> Latencies {
        Latencies { source: source.into(), samples_us: samples_us.to_vec() }
    }

    #[test]
    fn ratios_are_of_means_to_the_original_poll() {
        let results = Results {
            host_latency: vec![latencies("netlink", &[100.0, 300.0]), latencies(ORIGINAL, &[100_000.0, 900_000.0])],
            seed: 42,
            ..Results::default()
        };
        let text = markdown(&results, "plot.svg");
        assert!(text.contains("| netlink | 2 | 200 µs |"), "{text}");
        assert!(text.contains("| 2500× |"), "the ratio of means (500 ms / 200 µs): {text}");
        assert!(text.contains("| poll 1000 ms | 2 | 500.0 ms |"), "{text}");
        assert!(text.contains("seed 42"), "{text}");
        assert!(!text.contains("suspect"), "{text}");
        assert!(text.contains("![latency distributions per source](plot.svg)"), "{text}");
    }

    #[test]
    fn a_phase_locked_original_is_flagged() {
        // Every plug just after a tick: the poller waits nearly the whole period each time.
        let locked = [latencies("netlink", &[200.0; 20]), latencies(ORIGINAL, &[880_000.0; 20])];
        let warning = phase_check(&locked).expect("flagged");
        assert!(warning.contains("880 ms"), "{warning}");
        let fair = [latencies("netlink", &[2_000.0; 20]), latencies(ORIGINAL, &[502_000.0; 20])];
        assert_eq!(phase_check(&fair), None);
        assert_eq!(phase_check(&fair[..1]), None, "no original row, nothing to check");
    }

    #[test]
    fn the_section_is_replaced_in_place() {
        let first = replace_section("# Benchmarks\n\nintro\n", &format!("{BEGIN}\nold\n{END}\n"));
        let second = replace_section(&(first.clone() + "\ntail\n"), &format!("{BEGIN}\nnew\n{END}\n"));
        assert!(second.contains("intro") && second.contains("new") && second.contains("tail"), "{second}");
        assert!(!second.contains("old"), "{second}");
        assert_eq!(second.matches(BEGIN).count(), 1);
    }
}
