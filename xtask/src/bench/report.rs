//! The bench's report: markdown tables (latency with ratios to the original's 1000 ms poll, idle
//! and churn cost, resync time), and its place in docs/benchmarks.md between two markers.

use std::fmt::Write as _;
use std::path::Path;

use crate::docs::quantile;
use crate::figures::{Cost, FailoverRow, Latencies, Results};

const BEGIN: &str = "<!-- bench results: written by `cargo xtask bench` -->";
const END: &str = "<!-- end of bench results -->";
/// What the ratios are relative to: the original vdev_netvsc's behaviour.
const ORIGINAL: &str = "poll 1000 ms";

/// CPU, core count and kernel of this machine.
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

/// The targets for the agent's rows (µs): p50, p99, max, and p50 within 2× of the floor.
const TARGET_P50_US: f64 = 50.0;
const TARGET_P99_US: f64 = 200.0;
const TARGET_MAX_US: f64 = 1000.0;
const TARGET_FLOOR_RATIO: f64 = 2.0;

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Kernel broadcast → address written; each row's ratio to the floor of its scheduling policy,
/// and the writer's own share (its receive → its write) beside the whole.
fn failover_table(out: &mut String, rows: &[FailoverRow]) {
    if rows.is_empty() {
        return;
    }
    // (p50, p99) of the floor at the normal policy and at SCHED_FIFO.
    let floor_of = |realtime: bool| {
        let floor = rows.iter().find(|row| row.floor && row.realtime == realtime)?;
        let v = sorted(&floor.latencies.samples_us);
        Some((quantile(&v, 0.5), quantile(&v, 0.99)))
    };
    let start = if rows.iter().all(|row| row.kernel_reference) {
        "the kernel broadcasts the VF's `RTM_NEWLINK` (stamped with bpf_ktime_get_ns by a socket filter on the \
         bench's own rtnetlink listener, before any reader is woken)"
    } else {
        "the VF's `RTM_NEWLINK` received by the bench's own rtnetlink listener"
    };
    let _ = writeln!(
        out,
        "\n**Host, failover from the kernel's broadcast: {start} → address written (writer's clock after write(2)); \
         one plug every 0–{} ms. \"own\": the writer's own share, from its receive of the message to its write; the \
         rest is the kernel waking it. Each row is compared with the floor of its scheduling policy**\n",
        super::failover::PLUG_SPACING.as_millis()
    );
    let _ = writeln!(
        out,
        "| writer | plugs | p50 | p90 | p99 | max | own p50 / max | p50 from the listener's receive | p50 ÷ floor's | p99 ÷ floor's | targets (p50 ≤ 50 µs, p99 ≤ 200 µs, max < 1 ms, p50 ≤ 2× floor's) |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for row in rows {
        let v = sorted(&row.latencies.samples_us);
        let (p50, p90, p99, max) = (quantile(&v, 0.5), quantile(&v, 0.9), quantile(&v, 0.99), quantile(&v, 1.0));
        let own = sorted(&row.own_us);
        let (own_p50, own_max) = (quantile(&own, 0.5), quantile(&own, 1.0));
        let from_receive_p50 = quantile(&sorted(&row.from_receive_us), 0.5);
        let floor = floor_of(row.realtime);
        let targets = if row.floor {
            "(the floor)".to_owned()
        } else {
            let missed: Vec<&str> = [
                (p50 > TARGET_P50_US, "p50"),
                (p99 > TARGET_P99_US, "p99"),
                (max >= TARGET_MAX_US, "max"),
                (floor.is_some_and(|(floor_p50, _)| p50 > TARGET_FLOOR_RATIO * floor_p50), "2× floor"),
            ]
            .into_iter()
            .filter_map(|(missed, what)| missed.then_some(what))
            .collect();
            if missed.is_empty() {
                "met".to_owned()
            } else {
                format!("missed: {}", missed.join(", "))
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {targets} |",
            row.latencies.source,
            v.len(),
            signed_duration(p50),
            signed_duration(p90),
            signed_duration(p99),
            signed_duration(max),
            duration(own_p50),
            duration(own_max),
            signed_duration(from_receive_p50),
            floor.map_or("–".to_owned(), |(floor_p50, _)| ratio(p50, floor_p50)),
            floor.map_or("–".to_owned(), |(_, floor_p99)| ratio(p99, floor_p99)),
        );
    }
    let below_zero: usize = rows.iter().map(|r| r.latencies.samples_us.iter().filter(|s| **s < 0.0).count()).sum();
    if below_zero > 0 {
        let _ = writeln!(
            out,
            "\n{below_zero} samples are below zero: the writer had written before the listener, woken by the same \
             broadcast, read its clock. They are kept as measured."
        );
    }
    for row in rows {
        let (fullest, emptiest) = row.phase;
        if row.latencies.samples_us.len() >= 200 && (fullest > 15.0 || emptiest < 5.0) {
            let warning = format!(
                "suspect run: the plugs of {} fell unevenly across the second ({fullest:.0} % in the fullest tenth, \
                 {emptiest:.0} % in the emptiest)",
                row.latencies.source
            );
            println!("bench: {warning}");
            let _ = writeln!(out, "\n**{warning}**");
        }
    }
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

/// `value ÷ floor`, or "-" when the floor is too close to zero to divide by (its writer woke
/// before the reference listener): a huge or negative ratio would say nothing.
fn ratio(value: f64, floor: f64) -> String {
    if floor < 1.0 {
        "-".into()
    } else {
        format!("{:.1}×", value / floor)
    }
}

/// µs as a readable duration, below zero too.
fn signed_duration(us: f64) -> String {
    if us < 0.0 {
        format!("−{}", duration(-us))
    } else {
        duration(us)
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
    failover_table(&mut out, &results.host_failover);
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
            "\n**Full rescan: a sysfs tree walked whole (poll without a kernel link list, as the original), and an \
             event source's resync (the kernel's dump of that many veths, sysfs asked about parent devices only)**\n\n\
             | interfaces | sysfs walk | per interface | resync from the kernel's dump | per interface |"
        );
        let _ = writeln!(out, "| ---: | ---: | ---: | ---: | ---: |");
        for scan in &results.scale {
            let n = f64::from(scan.interfaces);
            let (dump, per) = scan
                .kernel_dump_ms
                .map_or(("-".into(), "-".into()), |ms| (format!("{ms:.2} ms"), format!("{:.1} µs", ms * 1e3 / n)));
            let _ = writeln!(
                out,
                "| {} | {:.2} ms | {:.1} µs | {dump} | {per} |",
                scan.interfaces,
                scan.sysfs_walk_ms,
                scan.sysfs_walk_ms * 1e3 / n
            );
        }
    }
    out + "\n" + END + "\n"
}

/// Puts `section` between the markers in `docs` (appending them if absent).
pub fn write_into(docs: &Path, section: &str) -> anyhow::Result<()> {
    crate::docs::write_between(docs, (BEGIN, END), section)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(source: &str, samples_us: &[f64]) -> Latencies {
        Latencies { source: source.into(), samples_us: samples_us.to_vec() }
    }

    /// Plugs spread evenly across the second.
    const EVEN: (f64, f64) = (10.0, 10.0);

    /// A failover row whose writer's own share is a fifth of every sample; `source` "floor…"
    /// makes a floor, "…rt" a real-time row.
    fn failover_row(source: &str, samples_us: &[f64], phase: (f64, f64)) -> FailoverRow {
        let own_us = samples_us.iter().map(|s| s.max(0.0) / 5.0).collect();
        let (floor, realtime) = (source.starts_with("floor"), source.ends_with("rt"));
        // The listener's receive 2 µs after the kernel's stamp.
        let from_receive_us = samples_us.iter().map(|s| s - 2.0).collect();
        let latencies = latencies(source, samples_us);
        FailoverRow { latencies, from_receive_us, own_us, phase, floor, realtime, kernel_reference: true }
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
    fn the_failover_table_compares_every_row_with_the_floor() {
        let agent: Vec<f64> = (1..=100).map(f64::from).collect();
        let floor: Vec<f64> = (1..=100).map(|v| f64::from(v) / 4.0).collect();
        let results = Results {
            host_failover: vec![failover_row("exec", &agent, EVEN), failover_row("floor", &floor, EVEN)],
            ..Results::default()
        };
        let text = markdown(&results, "plot.svg");
        // p50 50, p90 90, p99 99, max 100; the floor's p50 12.5 and p99 24.75.
        assert!(
            text.contains(
                "| exec | 100 | 50 µs | 90 µs | 99 µs | 100 µs | 10 µs / 20 µs | 48 µs | 4.0× | 4.0× | missed: 2× floor |"
            ),
            "{text}"
        );
        assert!(text.contains("| floor | 100 | 12 µs |"), "{text}");
        assert!(text.contains("(the floor)"), "{text}");
        assert!(!text.contains("below zero"), "{text}");

        let early = Results {
            host_failover: vec![
                failover_row("exec", &[-5.0, 300.0, 1500.0], EVEN),
                failover_row("floor", &[1.0, 2.0, 3.0], EVEN),
            ],
            ..Results::default()
        };
        let text = markdown(&early, "plot.svg");
        assert!(text.contains("| exec | 3 | 300 µs |"), "{text}");
        assert!(text.contains("missed: p50, p99, max, 2× floor"), "{text}");
        assert!(text.contains("1 samples are below zero"), "{text}");
    }

    /// A real-time row is compared with the real-time floor, a normal one with the normal floor.
    #[test]
    fn each_row_is_compared_with_the_floor_of_its_scheduling_policy() {
        let results = Results {
            host_failover: vec![
                failover_row("exec", &[60.0; 10], EVEN),
                failover_row("floor", &[40.0; 10], EVEN),
                failover_row("exec rt", &[60.0; 10], EVEN),
                failover_row("floor rt", &[20.0; 10], EVEN),
            ],
            ..Results::default()
        };
        let text = markdown(&results, "plot.svg");
        assert!(
            text.contains(
                "| exec | 10 | 60 µs | 60 µs | 60 µs | 60 µs | 12 µs / 12 µs | 58 µs | 1.5× | 1.5× | missed: p50 |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| exec rt | 10 | 60 µs | 60 µs | 60 µs | 60 µs | 12 µs / 12 µs | 58 µs | 3.0× | 3.0× | missed: p50, 2× floor |"),
            "{text}"
        );
        assert_eq!(text.matches("(the floor)").count(), 2, "{text}");

        assert!(text.contains("stamped with bpf_ktime_get_ns"), "the kernel's stamp is the reference: {text}");

        let received = FailoverRow { kernel_reference: false, ..failover_row("exec rt", &[60.0; 10], EVEN) };
        let floorless = Results { host_failover: vec![received], ..Results::default() };
        let text = markdown(&floorless, "plot.svg");
        assert!(text.contains("| 12 µs / 12 µs | 58 µs | – | – | missed: p50 |"), "no floor to compare with: {text}");
        assert!(text.contains("received by the bench's own rtnetlink listener →"), "{text}");
        assert!(!text.contains("bpf_ktime_get_ns"), "{text}");
    }

    #[test]
    fn uneven_plug_phases_are_flagged() {
        let many: Vec<f64> = vec![10.0; 300];
        let results = Results {
            host_failover: vec![failover_row("exec", &many, (40.0, 0.0)), failover_row("floor", &many, EVEN)],
            ..Results::default()
        };
        let text = markdown(&results, "plot.svg");
        assert!(text.contains("suspect run: the plugs of exec fell unevenly"), "{text}");
        assert!(!text.contains("plugs of floor"), "{text}");
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
}
