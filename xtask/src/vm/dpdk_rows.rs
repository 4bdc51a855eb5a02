//! The rows of `cargo xtask vm dpdk`: who feeds fail-safe's pipe, what each plug measured, and
//! the report (the table, what was logged after the unplugs, the section of docs/benchmarks.md).

use anyhow::{ensure, Context as _};

use super::guest::MAC_A;
use super::traffic;

/// Where the guest's testpmd wrapper (`testpmd::WRAPPER`) is installed.
pub const TESTPMD_PATH: &str = "/etc/nvw/testpmd";

/// Who feeds fail-safe's pipe in a row.
#[derive(Clone, Debug)]
pub enum Feeder {
    /// DPDK's own `net_vdev_netvsc` (`force=1` on the virtio stand-in), its 1 s scan and
    /// fail-safe's default poll.
    Original,
    /// `netvsc-watch exec --source <source> --failsafe-poll <ms>`.
    Agent { source: String, poll_ms: u32 },
    /// The guest's sidecar (`watch --source ebpf --fifo-dir /tmp`, also the observer): testpmd
    /// opens its FIFO on descriptor 9 as the README shows, `hotplug_poll=<ms>`.
    Sidecar { poll_ms: u32 },
}

impl Feeder {
    pub fn label(&self) -> String {
        match self {
            Feeder::Original => "original vdev_netvsc (poll 2000 ms)".into(),
            Feeder::Agent { source, poll_ms } => format!("netvsc-watch {source}, poll {poll_ms} ms"),
            Feeder::Sidecar { poll_ms } => format!("netvsc-watch sidecar FIFO (ebpf), poll {poll_ms} ms"),
        }
    }

    /// fail-safe's hotplug_poll in this row.
    pub fn poll_ms(&self) -> u32 {
        match self {
            Feeder::Original => 2000,
            Feeder::Agent { poll_ms, .. } | Feeder::Sidecar { poll_ms } => *poll_ms,
        }
    }

    /// The guest shell command that starts testpmd in the background, its stamped log on the
    /// results port.
    pub(super) fn start_command(&self) -> String {
        let app = match self {
            Feeder::Original => format!("{TESTPMD_PATH} --vdev net_vdev_netvsc0,iface=eth0,force=1"),
            Feeder::Agent { source, poll_ms } => format!(
                "netvsc-watch exec --source {source} --mac {MAC_A} --force --failsafe-poll {poll_ms} -- {TESTPMD_PATH}"
            ),
            Feeder::Sidecar { poll_ms } => format!(
                "(exec 9<>/tmp/eth0.pipe; exec {TESTPMD_PATH} \
                 --vdev 'net_failsafe_vsc0,fd(9),dev(net_tap_vsc0,remote=eth0),hotplug_poll={poll_ms}')"
            ),
        };
        format!("{app} >/dev/ttyS1 2>/dev/console &")
    }
}

/// One plug, as fail-safe lived it. Times in ms from the kernel's registration of the VF.
#[derive(Clone, Debug)]
pub struct Cycle {
    /// fail-safe parsed the VF's address (read its pipe).
    pub parsed_ms: f64,
    /// fail-safe switched its TX to the VF (after the rig's rebind, see the module doc).
    pub switched_ms: f64,
    /// From the rig's rebind to the switch: DPDK's probe plus one more alarm.
    pub rebind_to_switch_ms: f64,
    /// What fail-safe logged after the VF was unplugged, within the watch period.
    pub after_unplug: Vec<String>,
    /// Whether it switched TX back to the tap on its own.
    pub fell_back: bool,
    /// The frames the host received from both NICs from the start of forwarding to its stop
    /// after the switch.
    pub traffic: traffic::Switch,
    /// The frames fail-safe's sub-devices accepted in that time (testpmd's TX-packets).
    pub frames_sent: u64,
    /// Frames the host received from either NIC in the watch period after the unplug.
    pub frames_after_unplug: usize,
}

impl Cycle {
    /// Frames sent through fail-safe but never received by the host, from the start of
    /// forwarding to its stop after the switch: exact, by testpmd's own count against the host's.
    pub fn frames_lost(&self) -> i64 {
        let received = self.traffic.synthetic_frames + self.traffic.vf_frames;
        self.frames_sent as i64 - received as i64
    }
}

/// `original`, `sidecar:<poll ms>` or `<source>:<poll ms>`.
pub fn parse_row(row: &str) -> anyhow::Result<Feeder> {
    if row == "original" {
        return Ok(Feeder::Original);
    }
    if let Some(poll) = row.strip_prefix("sidecar:") {
        return Ok(Feeder::Sidecar { poll_ms: poll_ms(row, poll)? });
    }
    let (source, poll) =
        row.split_once(':').with_context(|| format!("row {row:?}: expected original or SOURCE:POLL_MS"))?;
    ensure!(["ebpf", "netlink", "poll"].contains(&source), "row {row:?}: unknown source {source:?}");
    Ok(Feeder::Agent { source: source.to_owned(), poll_ms: poll_ms(row, poll)? })
}

fn poll_ms(row: &str, poll: &str) -> anyhow::Result<u32> {
    let ms = poll.parse().ok().filter(|ms| (1..=60_000).contains(ms));
    ms.with_context(|| format!("row {row:?}: poll {poll:?} is not 1–60000 ms"))
}

/// Quantile `q` of `values`, exact (nearest rank).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    crate::docs::quantile(&sorted, q)
}

/// The rows as a Markdown table; the ratio column compares with the original's p50 (above 1:
/// slower than the original).
pub fn table(results: &[(Feeder, Vec<Cycle>)]) -> String {
    let original = results
        .iter()
        .find(|(f, _)| matches!(f, Feeder::Original))
        .map(|(_, c)| quantile(&c.iter().map(|c| c.parsed_ms).collect::<Vec<_>>(), 0.5));
    let mut out = String::from(
        "| feeder | plugs | VF registered → fail-safe read it, ms p50 / p99 / max | → switched TX to it, ms p50 / max | \
         rebind → switched, ms p50 | host: gap in frames at the switch, ms p50 / max | \
         frames lost (sent − received), p50 / max | on unplug | read p50 ÷ original's |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for (feeder, cycles) in results {
        let parsed: Vec<f64> = cycles.iter().map(|c| c.parsed_ms).collect();
        let switched: Vec<f64> = cycles.iter().map(|c| c.switched_ms).collect();
        let rebind: Vec<f64> = cycles.iter().map(|c| c.rebind_to_switch_ms).collect();
        let fell_back = cycles.iter().filter(|c| c.fell_back).count();
        let gaps: Vec<f64> = cycles.iter().filter_map(|c| c.traffic.gap_ms).collect();
        let silent = cycles.iter().filter(|c| c.frames_after_unplug == 0).count();
        let gap = if gaps.len() == cycles.len() {
            format!("{:.1} / {:.1}", quantile(&gaps, 0.5), quantile(&gaps, 1.0))
        } else {
            format!("{} of {} switches seen", gaps.len(), cycles.len())
        };
        let lost: Vec<f64> = cycles.iter().map(|c| c.frames_lost() as f64).collect();
        let ratio = match original {
            Some(o) if o > 0.0 => format!("{:.2}", quantile(&parsed, 0.5) / o),
            _ => "–".into(),
        };
        out += &format!(
            "| {} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.0} | {gap} | {:.0} / {:.0} | fell back to the tap: {fell_back} of {}; \
             no frame after it: {silent} of {} | {ratio} |\n",
            feeder.label(),
            cycles.len(),
            quantile(&parsed, 0.5),
            quantile(&parsed, 0.99),
            quantile(&parsed, 1.0),
            quantile(&switched, 0.5),
            quantile(&switched, 1.0),
            quantile(&rebind, 0.5),
            quantile(&lost, 0.5),
            quantile(&lost, 1.0),
            cycles.len(),
            cycles.len(),
        );
    }
    out
}

/// What fail-safe, EAL and testpmd said after the unplugs, per row: each distinct line once,
/// numbers (descriptors, ports) kept.
pub fn unplug_evidence(results: &[(Feeder, Vec<Cycle>)]) -> String {
    let mut out = String::new();
    for (feeder, cycles) in results {
        let mut said: Vec<&str> = Vec::new();
        for line in cycles.iter().flat_map(|c| c.after_unplug.iter()) {
            if !said.contains(&line.as_str()) {
                said.push(line);
            }
        }
        let said = if said.is_empty() {
            "nothing".to_owned()
        } else {
            said.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
        };
        out += &format!("- {}: {said}\n", feeder.label());
    }
    out
}

const BEGIN: &str = "<!-- vm dpdk results: written by `cargo xtask vm dpdk` -->";
const END: &str = "<!-- end of vm dpdk results -->";

/// The section of docs/benchmarks.md.
pub fn markdown(results: &[(Feeder, Vec<Cycle>)], setup_line: &str) -> String {
    format!(
        "{BEGIN}\n\n{setup_line}\n\n{}\nWhat fail-safe, EAL and testpmd logged in the seconds after each VF was hot-unplugged:\n\n{}\n{END}\n",
        table(results),
        unplug_evidence(results)
    )
}

/// Writes the section into docs/benchmarks.md.
pub fn write_docs(section: &str) -> anyhow::Result<()> {
    let docs = crate::workspace::root().join("docs/benchmarks.md");
    crate::docs::write_between(&docs, (BEGIN, END), section)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_and_bad_ones_name_the_value() {
        assert!(matches!(parse_row("original"), Ok(Feeder::Original)));
        let Ok(Feeder::Agent { source, poll_ms }) = parse_row("netlink:100") else { panic!() };
        assert_eq!((source.as_str(), poll_ms), ("netlink", 100));
        assert!(matches!(parse_row("sidecar:50"), Ok(Feeder::Sidecar { poll_ms: 50 })));
        for bad in ["ebpf", "ebpf:0", "ebpf:fast", "pigeon:100", "netlink:60001", "sidecar:", "sidecar:x"] {
            let err = parse_row(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    fn cycle(frames_sent: u64, synthetic_frames: usize, vf_frames: usize) -> Cycle {
        Cycle {
            parsed_ms: 120.0,
            switched_ms: 250.0,
            rebind_to_switch_ms: 110.0,
            after_unplug: Vec::new(),
            fell_back: false,
            traffic: traffic::Switch { synthetic_frames, vf_frames, gap_ms: Some(2.0), longest_gap_ms: 3.0 },
            frames_sent,
            frames_after_unplug: 0,
        }
    }

    #[test]
    fn frames_lost_are_sent_minus_received_on_both_paths() {
        assert_eq!(cycle(1000, 600, 390).frames_lost(), 10);
        assert_eq!(cycle(500, 200, 300).frames_lost(), 0);
        assert_eq!(cycle(10, 8, 4).frames_lost(), -2, "more received than sent is shown, not hidden");
        let table = table(&[(Feeder::Sidecar { poll_ms: 100 }, vec![cycle(1000, 600, 390), cycle(500, 200, 300)])]);
        assert!(table.contains("| 2.0 / 2.0 | 0 / 10 | fell back to the tap: 0 of 2;"), "{table}");
    }

    #[test]
    fn quantiles_are_exact_ranks() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)), (3.0, 5.0, 5.0));
        assert!(quantile(&[], 0.5).is_nan());
    }
}
