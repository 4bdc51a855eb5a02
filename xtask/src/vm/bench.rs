//! The VM workload of `cargo xtask bench`: real PCI hot-plug under each source. The reference
//! moment is the kernel's own: the eBPF program's record of the VF's `register_netdevice`. The
//! eBPF source measures from it itself (`reaction_us`); for the others an observing agent (`--source ebpf
//! --trace-events`, writing to its own FIFO) runs beside the one measured.

use anyhow::Context as _;
use serde_json::Value;

use super::ebpf_checks::churn;
use super::scenarios::{boot, pci_of, Guest, Setup, MAC_A};
use crate::bench::{Cost, Latencies, Results};

/// (label, --source, extra agent options)
const SOURCES: [(&str, &str, &[&str]); 4] = [
    // Its own reaction time runs from the kernel's timestamp: no trace lines needed (printing
    // them on the emulated serial port would delay the write being measured).
    ("ebpf", "ebpf", &[]),
    ("netlink", "netlink", &[]),
    ("poll 100 ms", "poll", &["--poll-interval", "100"]),
    ("poll 1000 ms", "poll", &["--poll-interval", "1000"]),
];

const OBSERVER: &str = "mkdir -p /tmp/observer && netvsc-watch watch --source ebpf --json --trace-events \
    --mac 52:54:00:aa:00:01 --force --fifo-dir /tmp/observer --resync-interval 0 >/dev/ttyS1 2>/dev/null &";

pub fn run(setup: &Setup, cycles: u32, churn_pairs: u32, results: &mut Results) -> anyhow::Result<()> {
    for (label, source, options) in SOURCES {
        let mut guest = boot(setup, source, options).with_context(|| format!("booting the guest for {label}"))?;
        if results.environment.len() < 2 {
            results
                .environment
                .push(format!("VM: QEMU q35, {}, Debian kernel 6.1, 1 vCPU, 512 MiB", guest.vm.accel.name()));
        }
        if source != "ebpf" {
            guest.vm.guest_run(OBSERVER)?;
            guest.vm.expect("the observer to start", |v| v["event"] == "ready" && v["source"] == "ebpf")?;
        }
        // The start-up association, so that later ones are the plugs'.
        guest.vm.expect("the start-up association", |v| v["event"] == "associated" && v["source"] != "ebpf")?;
        println!("bench[vm/{label}]: {cycles} hot-plug cycles ({})", guest.vm.accel.name());
        let samples = hotplug(&mut guest, source, cycles)?;
        results.vm_latency.push(Latencies { source: label.into(), samples_us: samples });
        if source != "poll" || options.contains(&"100") {
            let pairs = churn_pairs.min(200);
            println!("bench[vm/{label}]: {pairs} unrelated veth pairs created and deleted");
            let events = churn(&mut guest, pairs)?;
            results.vm_costs.push(Cost {
                source: label.into(),
                workload: format!("{pairs} veth pairs created and deleted"),
                cpu_ms: f64::NAN,
                wakeups: events,
                events: Some(events),
                per_minute: false,
            });
        }
    }
    Ok(())
}

/// Moves VF A between two ports `cycles` times; returns kernel registration → pipe in µs.
fn hotplug(guest: &mut Guest, source: &str, cycles: u32) -> anyhow::Result<Vec<f64>> {
    let measured = |v: &Value| v["source"] == source || (source != "ebpf" && v["source"] == "resync");
    let mut samples = Vec::new();
    for cycle in 0..cycles {
        let (id, port) = guest.vf_a.take().context("VF A present")?;
        guest.vm.unplug(&id)?;
        guest.vm.expect("the pipe emptied", |v| v["event"] == "dissociated" && measured(v))?;
        let (id, port) = (format!("bench{cycle}"), 3 - port);
        guest.vm.plug_vf(&id, port, MAC_A)?;
        let pci = pci_of(port);
        let written = guest.vm.expect(&format!("{pci} in the pipe"), |v| {
            v["event"] == "associated" && measured(v) && v["vf"]["pci"] == pci.as_str()
        })?;
        if source == "ebpf" {
            samples.push(written["reaction_us"].as_f64().context("reaction time")?);
            guest.vf_a = Some((id, port));
            continue;
        }
        let iface = written["vf"]["iface"].as_str().unwrap_or_default().to_owned();
        let registered = guest.vm.expect(&format!("the kernel's record of {iface}"), |v| {
            v["event"] == "source" && v["kernel"]["kind"] == "registered" && v["kernel"]["name"] == iface.as_str()
        })?;
        let kernel_ns = registered["kernel"]["timestamp_ns"].as_u64().context("kernel timestamp")?;
        samples.push(written["at_ns"].as_u64().unwrap_or(0).saturating_sub(kernel_ns) as f64 / 1e3);
        guest.vf_a = Some((id, port));
    }
    Ok(samples)
}
