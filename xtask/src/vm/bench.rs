//! The VM workload of `cargo xtask bench`: real PCI hot-plug under each source. The reference
//! moment is the kernel's own: the eBPF program's record of the VF's `register_netdevice`. The
//! eBPF source measures from it itself (`reaction_us`); for the others an observing agent (`--source ebpf
//! --trace-events`, writing to its own FIFO) runs beside the one measured.

use anyhow::Context as _;
use netvsc_user::event::SourceName;
use netvsc_user::report::lines::{Change, Line};

use super::ebpf_checks::churn;
use super::guest::{boot, pci_of, Guest, Setup, MAC_A};
use crate::figures::{Cost, Latencies, Results};
use crate::phase::Phase;

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

pub fn run(setup: &Setup, cycles: u32, churn_pairs: u32, seed: u64, results: &mut Results) -> anyhow::Result<()> {
    for (label, source, options) in SOURCES {
        let mut guest = boot(setup, source, options).with_context(|| format!("booting the guest for {label}"))?;
        if results.environment.len() < 2 {
            results
                .environment
                .push(format!("VM: QEMU q35, {}, Debian kernel 6.1, 1 vCPU, 512 MiB", guest.vm.accel.name()));
        }
        if source != "ebpf" {
            guest.vm.guest_run(OBSERVER)?;
            guest.vm.line("the observer to start", |line| match line {
                Line::Ready(ready) if ready.source == SourceName::Ebpf => Some(()),
                _ => None,
            })?;
        }
        // The start-up association, so that later ones are the plugs'.
        guest.vm.change("the start-up association", "associated", |c| c.source != SourceName::Ebpf)?;
        println!("bench[vm/{label}]: {cycles} hot-plug cycles ({})", guest.vm.accel.name());
        let samples = hotplug(&mut guest, source, cycles, &mut Phase::new(seed))?;
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
fn hotplug(guest: &mut Guest, source: &str, cycles: u32, phase: &mut Phase) -> anyhow::Result<Vec<f64>> {
    // The measured agent's own lines (an observer agent may share the port), including changes
    // its safety resync found.
    let measured = |c: &Change| c.source.as_str() == source || (source != "ebpf" && c.source == SourceName::Resync);
    let mut samples = Vec::new();
    for cycle in 0..cycles {
        let (id, port) = guest.vf_a.take().context("VF A present")?;
        guest.vm.unplug(&id)?;
        guest.vm.change("the pipe emptied", "dissociated", measured)?;
        // Not right after the tick that reported the unplug: at a random phase.
        std::thread::sleep(phase.next_delay());
        let (id, port) = (format!("bench{cycle}"), 3 - port);
        guest.vm.plug_vf(&id, port, MAC_A)?;
        let pci = pci_of(port);
        let written = guest.vm.change(&format!("{pci} in the pipe"), "associated", |c| {
            measured(c) && c.vf.as_ref().is_some_and(|vf| vf.pci == pci)
        })?;
        if source == "ebpf" {
            samples.push(written.reaction_us);
            guest.vf_a = Some((id, port));
            continue;
        }
        let iface = written.vf.as_ref().map(|vf| vf.iface.clone()).unwrap_or_default();
        let kernel_ns = guest.vm.line(&format!("the kernel's record of {iface}"), |line| match line {
            Line::Source(trace) => {
                trace.kernel.as_ref().filter(|k| k.kind == "registered" && k.name == iface).map(|k| k.timestamp_ns)
            }
            _ => None,
        })?;
        samples.push(written.at_ns.saturating_sub(kernel_ns) as f64 / 1e3);
        guest.vf_a = Some((id, port));
    }
    Ok(samples)
}
