//! `cargo xtask vm dpdk`: DPDK's own fail-safe PMD (Debian's testpmd and PMD plugins, copied
//! into the guest) switching to and from real hot-plugged PCI devices, fed by netvsc-watch or,
//! side by side, by DPDK's original `net_vdev_netvsc`.
//!
//! The guest has a virtio-net NIC (the NetVSC stand-in, fail-safe's tap fallback through
//! `net_tap,remote=eth0`) and two free PCIe root ports where an e1000e (the VF stand-in, same
//! MAC) is hot-plugged. A watching agent (`watch --source ebpf`) is the guest's main program:
//! only an observer, its `associated` line gives the kernel's own timestamp of the VF's
//! registration (the eBPF record), the reference every row is measured from. Each plug is one
//! testpmd run, its log stamped line by line on arrival (`stamp-lines`):
//!
//! 1. testpmd starts; fail-safe brings up the tap: `Switching tx_dev to sub_device 1`.
//! 2. After a random delay (uniform under the longest poll, so plugs fall at random phase to
//!    fail-safe's alarm), the VF is hot-plugged at one port or the other.
//! 3. The kernel's e1000e registers its netdevice; the feeder writes the PCI address to its pipe;
//!    fail-safe reads it on its next alarm: `net_failsafe: <pci>` (the *parsed* time).
//! 4. Emulation step: e1000e is not a bifurcated driver (Azure's mlx5 and mana are: the VF's
//!    netdevice stays while DPDK drives it), so DPDK can only drive the VF once the kernel lets it
//!    go. The rig rebinds it to uio_pci_generic after fail-safe has parsed the address; fail-safe
//!    re-probes the parsed address on each alarm until that succeeds: `Switching tx_dev to
//!    preferred sub_device` (the *switched* time).
//! 5. The VF is hot-unplugged. e1000 does not raise RTE_ETH_EVENT_INTR_RMV (only mlx4, mlx5 and
//!    mana do), so fail-safe is not told; what it does instead is recorded.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::Value;

use super::guest::{pci_of, Setup, MAC_A};
use super::qemu::{BootConfig, Nic, Vm};
use crate::phase::Phase;

/// The DPDK application in the guest: testpmd with the plugins fail-safe needs (`-d`, not the
/// plugin directory: the directory's copies would load a second time beside testpmd's own
/// links), in memory on hugepages, txonly forwarding through the fail-safe port, its stats
/// every 5 s, its log stamped onto stdout. The feeder's `--vdev` arguments come in `$@`.
///
/// `--no-lsc-interrupt --disable-link-check`: fail-safe (22.11) gives a newly probed sub-device
/// its own recorded link status with `rte_eth_dev_set_link_up` when the two differ, and DPDK's
/// e1000 and vmxnet3 PMDs do not implement that call (mlx5 and mana do): the sub-device's
/// configuration then fails ("Failed to apply link_status") and fail-safe never switches. So
/// fail-safe must have recorded its link as down, as a new sub-device's is: it records it once,
/// when it starts (from the tap, which is down while the NetVSC stand-in has no carrier; the rig
/// turns the carrier on once fail-safe has started), and, without link checks and LSC events,
/// never again.
pub const TESTPMD_WRAPPER: &str = r#"#!/bin/sh
set -o pipefail
lib=/usr/lib/x86_64-linux-gnu
/usr/bin/dpdk-testpmd -d $lib/librte_net_failsafe.so.23 -d $lib/librte_net_tap.so.23 \
    -d $lib/librte_net_e1000.so.23 -d $lib/librte_net_vdev_netvsc.so.23 -d $lib/librte_mempool_ring.so.23 \
    -l 0-1 -n 1 --in-memory --log-level=pmd.net.failsafe:debug --log-level=pmd.net.vdev_netvsc:debug \
    "$@" -- --total-num-mbufs 2048 --forward-mode=txonly --stats-period 5 --no-lsc-interrupt --disable-link-check --hot-plug \
    2>&1 | /bin/stamp-lines
"#;
pub const TESTPMD_PATH: &str = "/etc/nvw/testpmd";


/// Host files the guest needs for DPDK (installed at the same paths, with their libraries).
pub fn host_files() -> Vec<std::path::PathBuf> {
    let lib = std::path::Path::new("/usr/lib/x86_64-linux-gnu");
    let mut files = vec![std::path::PathBuf::from("/usr/bin/dpdk-testpmd")];
    for plugin in ["net_failsafe", "net_tap", "net_e1000", "net_vdev_netvsc", "mempool_ring"] {
        files.push(lib.join(format!("librte_{plugin}.so.23")));
    }
    files
}

/// The installed DPDK's Debian version (`dpdk-dev`).
pub fn dpdk_version() -> String {
    let out = std::process::Command::new("dpkg-query").args(["-W", "-f=${Version}", "dpdk-dev"]).output();
    out.ok().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).filter(|v| !v.is_empty()).unwrap_or("?".into())
}

/// Why DPDK cannot go into the guest from this machine, if it cannot.
pub fn unavailable() -> Option<String> {
    host_files().into_iter().find(|f| !f.exists()).map(|missing| {
        format!(
            "{} missing (apt-get install dpdk-dev librte-net-failsafe23 librte-net-tap23 librte-net-e1000-23 \
             librte-net-vdev-netvsc23 librte-mempool-ring23)",
            missing.display()
        )
    })
}

/// Who feeds fail-safe's pipe in a row.
#[derive(Clone, Debug)]
pub enum Feeder {
    /// DPDK's own `net_vdev_netvsc` (`force=1` on the virtio stand-in), its 1 s scan and
    /// fail-safe's default poll.
    Original,
    /// `netvsc-watch exec --source <source> --failsafe-poll <ms>`.
    Agent { source: String, poll_ms: u32 },
}

impl Feeder {
    pub fn label(&self) -> String {
        match self {
            Feeder::Original => "original vdev_netvsc (poll 2000 ms)".into(),
            Feeder::Agent { source, poll_ms } => format!("netvsc-watch {source}, poll {poll_ms} ms"),
        }
    }

    /// fail-safe's hotplug_poll in this row.
    pub fn poll_ms(&self) -> u32 {
        match self {
            Feeder::Original => 2000,
            Feeder::Agent { poll_ms, .. } => *poll_ms,
        }
    }

    /// The guest shell command that starts testpmd in the background, its stamped log on the
    /// results port.
    fn start_command(&self) -> String {
        let app = match self {
            Feeder::Original => format!("{TESTPMD_PATH} --vdev net_vdev_netvsc0,iface=eth0,force=1"),
            Feeder::Agent { source, poll_ms } => format!(
                "netvsc-watch exec --source {source} --mac {MAC_A} --force --failsafe-poll {poll_ms} -- {TESTPMD_PATH}"
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
}

/// Boots one guest for `feeder` and plays `cycles` plugs (ports 1, 2, 1, ...), one testpmd run
/// each.
pub fn run(
    setup: &Setup,
    feeder: &Feeder,
    cycles: u32,
    phase: &mut Phase,
) -> anyhow::Result<(Vec<Cycle>, super::qemu::Accel)> {
    let mut vm = boot(setup)?;
    vm.ready().context("the observing agent's ready line")?;
    let mut done = Vec::new();
    for cycle in 0..cycles {
        let port = 1 + cycle % 2;
        let result = one_plug(&mut vm, feeder, port, &format!("v{cycle}"), phase);
        match result {
            Ok(c) => done.push(c),
            Err(err) => {
                let app: Vec<String> = vm
                    .seen_others()
                    .iter()
                    .filter_map(|v| v["app"].as_str().map(str::to_owned))
                    .filter(|line| !is_statistics(line))
                    .collect();
                bail!(
                    "{}: cycle {}: {err:#}\ntestpmd's log:\n{}\nconsole:\n{}",
                    feeder.label(),
                    cycle + 1,
                    app[app.len().saturating_sub(80)..].join("\n"),
                    vm.console_tail(40)
                )
            }
        }
    }
    Ok((done, vm.accel))
}

fn boot(setup: &Setup) -> anyhow::Result<Vm> {
    let command = format!("netvsc-watch watch --json --source ebpf --fifo-dir /tmp --mac {MAC_A} --force");
    let config = BootConfig {
        kernel: setup.kernel.clone(),
        initramfs: setup.initramfs.clone(),
        command: command.split_whitespace().map(str::to_owned).collect(),
        nics: vec![Nic::Virtio { mac: MAC_A.into() }],
        root_ports: 2,
        work_dir: setup.work_dir.clone(),
        // testpmd: 256 MiB of hugepages (2048 mbufs and the rings need far less), two lcores.
        memory_mib: 1024,
        cpus: 2,
        append: vec!["nvw.hugepages=128".into()],
    };
    Vm::boot(&config)
}

/// A line of testpmd's periodic statistics (or blank).
fn is_statistics(line: &str) -> bool {
    let stats = ["Port statistics", "RX-", "TX-", "Throughput", "#####", "\u{1b}["];
    line.trim().is_empty() || stats.iter().any(|s| line.contains(s))
}

fn app_line_contains(needle: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v: &Value| v["app"].as_str().is_some_and(|line| line.contains(needle))
}

fn t_ns(v: &Value) -> u64 {
    v["t_ns"].as_u64().unwrap_or(0)
}

fn one_plug(vm: &mut Vm, feeder: &Feeder, port: u32, id: &str, phase: &mut Phase) -> anyhow::Result<Cycle> {
    let pci = pci_of(port);
    vm.discard_others(|v| v.get("app").is_some());
    // See TESTPMD_WRAPPER: fail-safe records the tap's link as down, then the carrier returns.
    vm.set_link("net0", false)?;
    vm.guest_run(&feeder.start_command())?;
    let tap = app_line_contains("Switching tx_dev to sub_device 1");
    let started = vm.expect_within("fail-safe to start on its tap", Duration::from_secs(180), tap)?;
    let run_start = t_ns(&started);
    vm.expect_within("testpmd to start forwarding", Duration::from_secs(60), app_line_contains("forwards packets"))?;
    vm.set_link("net0", true)?;

    std::thread::sleep(phase.next_delay_under(Duration::from_millis(2000)));
    let plugged_at = Instant::now();
    vm.plug_vf(id, port, MAC_A)?;
    let seen = vm.change(&format!("the observer to see {pci}"), "associated", |c| {
        c.vf.as_ref().is_some_and(|vf| vf.pci == pci)
    })?;
    // The eBPF observer measures its reaction from the kernel's timestamp of the registration.
    let registered_ns = seen.at_ns - (seen.reaction_us * 1e3) as u64;
    let parsed = vm.expect_within(
        &format!("fail-safe to parse {pci}"),
        Duration::from_secs(60),
        app_line_contains(&format!("net_failsafe: {pci}")),
    )?;
    let rebind = format!(
        "echo uio_pci_generic > /sys/bus/pci/devices/{pci}/driver_override && \
         echo {pci} > /sys/bus/pci/devices/{pci}/driver/unbind && echo {pci} > /sys/bus/pci/drivers_probe"
    );
    vm.guest_run(&rebind)?;
    let rebound_at = Instant::now();
    let switched = vm.expect_within(
        &format!("fail-safe to switch to {pci}"),
        Duration::from_secs(60),
        app_line_contains("Switching tx_dev to preferred sub_device"),
    )?;
    let rebind_to_switch = rebound_at.elapsed();
    let host_elapsed = plugged_at.elapsed();

    // Everything testpmd printed before the unplug has arrived by now: the unplug's boundary.
    vm.collect_for(Duration::from_millis(300));
    let unplugged_ns = vm.seen_others().iter().filter(|v| v.get("app").is_some()).map(t_ns).max().unwrap_or(0);
    vm.unplug(id)?;
    let watch = Duration::from_millis(u64::from(feeder.poll_ms()) * 2 + 2000);
    vm.collect_for(watch);
    let run_lines: Vec<Value> =
        vm.seen_others().into_iter().filter(|v| v.get("app").is_some() && t_ns(v) >= run_start).collect();
    let after_unplug: Vec<String> = run_lines
        .iter()
        .filter(|v| t_ns(v) > unplugged_ns)
        .filter_map(|v| v["app"].as_str())
        .filter(|line| !is_statistics(line))
        .map(str::to_owned)
        .collect();
    let fell_back = after_unplug.iter().any(|line| line.contains("Switching tx_dev to sub_device 1"));

    // Never a stale address: everything fail-safe parsed from its pipe in this run is this VF.
    let parsed_all: Vec<&str> = run_lines
        .iter()
        .filter_map(|v| v["app"].as_str()?.strip_prefix("net_failsafe: "))
        .filter(|rest| rest.starts_with("0000:"))
        .collect();
    ensure!(parsed_all.iter().all(|p| *p == pci), "fail-safe parsed {parsed_all:?}, only {pci} is true");

    vm.guest_run(
        "kill $(pidof dpdk-testpmd) 2>/dev/null; \
         while pidof dpdk-testpmd >/dev/null || pgrep -f 'netvsc-watch exec' >/dev/null; do sleep 0.1; done",
    )?;
    let ms = |ns: u64| ns.saturating_sub(registered_ns) as f64 / 1e6;
    println!(
        "  {pci}: parsed {:.1} ms, switched {:.1} ms after the kernel registered the VF ({:.1} s on the host from device_add); \
         unplugged: {}",
        ms(t_ns(&parsed)),
        ms(t_ns(&switched)),
        host_elapsed.as_secs_f64(),
        if fell_back { "fail-safe fell back to the tap" } else { "fail-safe stayed on the removed VF" }
    );
    let mut said: Vec<&String> = Vec::new();
    for line in &after_unplug {
        if !said.contains(&line) {
            said.push(line);
        }
    }
    println!("    fail-safe and EAL in the {:.1} s after the unplug: {said:?}", watch.as_secs_f64());
    Ok(Cycle {
        parsed_ms: ms(t_ns(&parsed)),
        switched_ms: ms(t_ns(&switched)),
        rebind_to_switch_ms: rebind_to_switch.as_secs_f64() * 1e3,
        after_unplug,
        fell_back,
    })
}

/// `original` or `<source>:<poll ms>`.
pub fn parse_row(row: &str) -> anyhow::Result<Feeder> {
    if row == "original" {
        return Ok(Feeder::Original);
    }
    let (source, poll) = row.split_once(':').with_context(|| format!("row {row:?}: expected original or SOURCE:POLL_MS"))?;
    ensure!(["ebpf", "netlink", "poll"].contains(&source), "row {row:?}: unknown source {source:?}");
    let poll_ms = poll.parse().ok().filter(|ms| (1..=60_000).contains(ms));
    let poll_ms = poll_ms.with_context(|| format!("row {row:?}: poll {poll:?} is not 1–60000 ms"))?;
    Ok(Feeder::Agent { source: source.to_owned(), poll_ms })
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
         rebind → switched, ms p50 | on unplug | read p50 ÷ original's |\n| --- | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for (feeder, cycles) in results {
        let parsed: Vec<f64> = cycles.iter().map(|c| c.parsed_ms).collect();
        let switched: Vec<f64> = cycles.iter().map(|c| c.switched_ms).collect();
        let rebind: Vec<f64> = cycles.iter().map(|c| c.rebind_to_switch_ms).collect();
        let fell_back = cycles.iter().filter(|c| c.fell_back).count();
        let ratio = match original {
            Some(o) if o > 0.0 => format!("{:.2}", quantile(&parsed, 0.5) / o),
            _ => "–".into(),
        };
        out += &format!(
            "| {} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} | {:.0} | fell back to the tap: {fell_back} of {} | {ratio} |\n",
            feeder.label(),
            cycles.len(),
            quantile(&parsed, 0.5),
            quantile(&parsed, 0.99),
            quantile(&parsed, 1.0),
            quantile(&switched, 0.5),
            quantile(&switched, 1.0),
            quantile(&rebind, 0.5),
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
        let said = if said.is_empty() { "nothing".to_owned() } else { said.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ") };
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
        for bad in ["ebpf", "ebpf:0", "ebpf:fast", "pigeon:100", "netlink:60001"] {
            let err = parse_row(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn quantiles_are_exact_ranks() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!((quantile(&v, 0.5), quantile(&v, 0.99), quantile(&v, 1.0)), (3.0, 5.0, 5.0));
        assert!(quantile(&[], 0.5).is_nan());
    }
}
