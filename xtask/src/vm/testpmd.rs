//! testpmd in the DPDK guest: the wrapper that starts it, and its prompt, through which the rig
//! stops and starts forwarding and reads testpmd's own count of the frames it sent.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::Value;

use super::qemu::Vm;

/// The DPDK application in the guest: testpmd with the plugins fail-safe needs (`-d`, not the
/// plugin directory: the directory's copies would load a second time beside testpmd's own
/// links), in memory on hugepages, txonly forwarding through the fail-safe port from the start,
/// its log stamped onto stdout. The feeder's `--vdev` arguments come in `$@`.
///
/// Interactive, its prompt reading [`COMMANDS`]: the rig stops forwarding after the
/// switch, and testpmd's statistics then say exactly how many frames fail-safe's sub-devices
/// accepted, to be set against how many the host received. A sleeping writer holds the FIFO
/// open, so that testpmd never reads an end of file between two commands. Interactive testpmd
/// flushes its output only when it fills a buffer: `stdbuf -oL` makes it line by line.
///
/// `--no-lsc-interrupt --disable-link-check`: fail-safe (22.11) gives a newly probed sub-device
/// its own recorded link status with `rte_eth_dev_set_link_up` when the two differ, and DPDK's
/// e1000 and vmxnet3 PMDs do not implement that call (mlx5 and mana do): the sub-device's
/// configuration then fails ("Failed to apply link_status") and fail-safe never switches. So
/// fail-safe must have recorded its link as down, as a new sub-device's is: it records it once,
/// when it starts (from the tap, which is down while the NetVSC stand-in has no carrier; the rig
/// turns the carrier on once fail-safe has started), and, without link checks and LSC events,
/// never again.
pub const WRAPPER: &str = r#"#!/bin/sh
set -o pipefail
lib=/usr/lib/x86_64-linux-gnu
rm -f /tmp/testpmd.in && mkfifo /tmp/testpmd.in
sleep 1000000 > /tmp/testpmd.in &
holder=$!
/usr/bin/stdbuf -oL /usr/bin/dpdk-testpmd -d $lib/librte_net_failsafe.so.23 -d $lib/librte_net_tap.so.23 \
    -d $lib/librte_net_e1000.so.23 -d $lib/librte_net_vdev_netvsc.so.23 -d $lib/librte_mempool_ring.so.23 \
    -l 0-1 -n 1 --in-memory --log-level=pmd.net.failsafe:debug --log-level=pmd.net.vdev_netvsc:debug \
    "$@" -- -i --auto-start --tx-ip=198.18.0.1,198.18.0.2 --total-num-mbufs 2048 --forward-mode=txonly \
    --no-lsc-interrupt --disable-link-check --hot-plug < /tmp/testpmd.in 2>&1 | /bin/stamp-lines
status=$?
kill $holder
exit $status
"#;

/// The FIFO testpmd's prompt reads (see [`WRAPPER`]).
const COMMANDS: &str = "/tmp/testpmd.in";

/// How long frames sent before a stop may still be on their way to the host (QEMU, the UDP
/// socket, the listener's thread under TCG).
pub const SETTLE: Duration = Duration::from_millis(500);

/// A command to testpmd's prompt. The FIFO is opened read-write, so that the write never waits
/// for a reader (a testpmd that has gone).
pub fn command(vm: &mut Vm, command: &str) -> anyhow::Result<()> {
    vm.guest_run(&format!("echo {command} 1<>{COMMANDS}"))
}

pub fn start_forwarding(vm: &mut Vm) -> anyhow::Result<()> {
    command(vm, "start")?;
    vm.expect_within("testpmd to forward again", Duration::from_secs(60), app_line_contains("forwards packets"))?;
    Ok(())
}

/// Stops forwarding; returns testpmd's count of the frames sent since forwarding started (those
/// fail-safe's sub-devices accepted: TX-packets).
pub fn stop_forwarding(vm: &mut Vm) -> anyhow::Result<u64> {
    let from = vm.seen_others().len();
    command(vm, "stop")?;
    vm.expect_within("testpmd's statistics at the stop", Duration::from_secs(60), |v| {
        v["app"].as_str().is_some_and(|line| line.trim_end().ends_with("Done."))
    })?;
    let lines: Vec<String> =
        vm.seen_others().split_off(from).iter().filter_map(|v| v["app"].as_str().map(str::to_owned)).collect();
    tx_packets(&lines).with_context(|| format!("no TX-packets in testpmd's statistics: {lines:?}"))
}

/// The last `TX-packets:` figure among testpmd's lines (its accumulated statistics of all ports).
fn tx_packets(lines: &[String]) -> Option<u64> {
    lines.iter().rev().find_map(|line| {
        let after = line.split_once("TX-packets:")?.1;
        after.split_whitespace().next()?.parse().ok()
    })
}

/// A testpmd log line (stamped by the guest) that contains `needle`.
pub fn app_line_contains(needle: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v: &Value| v["app"].as_str().is_some_and(|line| line.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frames_sent_are_read_from_testpmds_statistics() {
        // testpmd 22.11's block at a stop.
        let stop = [
            "testpmd> stop",
            "Telling cores to stop...",
            "Waiting for lcores to finish...",
            "  ---------------------- Forward statistics for port 0  ----------------------",
            "  RX-packets: 0              RX-dropped: 0             RX-total: 0",
            "  TX-packets: 2161376        TX-dropped: 25946336      TX-total: 28107712",
            "  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++",
            "  RX-packets: 0              RX-dropped: 0             RX-total: 0",
            "  TX-packets: 2161377        TX-dropped: 25946336      TX-total: 28107713",
            "Done.",
        ]
        .map(str::to_owned);
        assert_eq!(tx_packets(&stop), Some(2161377), "the accumulated figure, the last");
        assert_eq!(tx_packets(&stop[..6]), Some(2161376));
        assert_eq!(tx_packets(&stop[..3]), None);
        assert_eq!(tx_packets(&["  TX-packets: many".to_owned()]), None);
    }
}
