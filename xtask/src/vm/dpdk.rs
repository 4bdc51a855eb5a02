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
use netvsc_testkit::dpdk_log::failsafe_parsed;
use serde_json::Value;

use super::dpdk_rows::{Cycle, Feeder};
use super::guest::{pci_of, Setup, MAC_A};
use super::qemu::{BootConfig, Nic, Vm};
use super::testpmd::{self, app_line_contains, start_forwarding, stop_forwarding, SETTLE};
use super::traffic::{self, Listener};
use crate::phase::Phase;

/// Host files the guest needs for DPDK (installed at the same paths, with their libraries).
pub fn host_files() -> Vec<std::path::PathBuf> {
    let lib = std::path::Path::new("/usr/lib/x86_64-linux-gnu");
    // stdbuf (coreutils) and its preloaded library: testpmd's prompt output line by line.
    let mut files = ["/usr/bin/dpdk-testpmd", "/usr/bin/stdbuf", "/usr/libexec/coreutils/libstdbuf.so"]
        .map(std::path::PathBuf::from)
        .to_vec();
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

/// Boots one guest for `feeder` and plays `cycles` plugs (ports 1, 2, 1, ...), one testpmd run
/// each.
pub fn run(
    setup: &Setup,
    feeder: &Feeder,
    cycles: u32,
    phase: &mut Phase,
) -> anyhow::Result<(Vec<Cycle>, super::qemu::Accel)> {
    let listener = Listener::start()?;
    let mut vm = boot(setup, listener.synthetic_port, &[])?;
    vm.ready().context("the observing agent's ready line")?;
    let mut done = Vec::new();
    for cycle in 0..cycles {
        let port = 1 + cycle % 2;
        let mut result = one_plug(&mut vm, &listener, feeder, port, &format!("v{cycle}"), phase);
        if result.is_err() && emulation_artefact(&vm, &pci_of(port)) {
            // See testpmd::WRAPPER: fail-safe read the right address and probed it, then could
            // not hand the emulated NIC its link state (e1000's PMD has no set_link_up; Azure's
            // mlx5 and mana have). Said, and the plug played again in a fresh testpmd run.
            println!("  {}: fail-safe could not set the emulated VF's link (\"Failed to apply link_status\"); plug played again", pci_of(port));
            abandon(&mut vm, &format!("v{cycle}"))?;
            result = one_plug(&mut vm, &listener, feeder, port, &format!("v{cycle}again"), phase);
        }
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

/// Whether this run's testpmd failed only through the emulated NIC: fail-safe parsed `pci`, the
/// only address it parsed, and then could not apply its link state to the probed sub-device.
fn emulation_artefact(vm: &Vm, pci: &str) -> bool {
    let app: Vec<String> = vm.seen_others().iter().filter_map(|v| v["app"].as_str().map(str::to_owned)).collect();
    let start = app.iter().rposition(|line| line.contains("Switching tx_dev to sub_device 1")).unwrap_or(0);
    let run = &app[start..];
    let parsed: Vec<&str> =
        run.iter().filter_map(|line| failsafe_parsed(line)).filter(|p| p.starts_with("0000:")).collect();
    !parsed.is_empty()
        && parsed.iter().all(|p| *p == pci)
        && run.iter().any(|line| line.contains("Failed to apply link_status"))
}

/// Ends a plug that went wrong: the VF unplugged (if it is still there), testpmd and its
/// launcher gone.
fn abandon(vm: &mut Vm, id: &str) -> anyhow::Result<()> {
    let _ = vm.unplug_with_backend(id);
    vm.guest_run(STOP_TESTPMD)
}

/// Ends testpmd (asked to quit first) and waits, at most 10 s, until neither it nor a launching
/// agent (`netvsc-watch exec`, found by its command line: busybox has `pidof` but no `pgrep`)
/// runs.
const STOP_TESTPMD: &str = "for i in $(seq 50); do pidof dpdk-testpmd >/dev/null || break; sleep 0.1; done; \
     kill $(pidof dpdk-testpmd) 2>/dev/null; \
     launcher() { for p in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $p 2>/dev/null | grep -q '^netvsc-watch exec' && return 0; done; return 1; }; \
     for i in $(seq 100); do pidof dpdk-testpmd >/dev/null || launcher || break; sleep 0.1; done";

/// The guest, its NetVSC stand-in's frames sent to the listener's `synthetic_port`.
fn boot(setup: &Setup, synthetic_port: u16, cpu_properties: &[&str]) -> anyhow::Result<Vm> {
    let command = format!("netvsc-watch watch --json --source ebpf --fifo-dir /tmp --mac {MAC_A} --force");
    let config = BootConfig {
        kernel: setup.kernel.clone(),
        initramfs: setup.initramfs.clone(),
        command: command.split_whitespace().map(str::to_owned).collect(),
        nics: vec![Nic::VirtioUdp { mac: MAC_A.into(), to: synthetic_port }],
        root_ports: 2,
        work_dir: setup.work_dir.clone(),
        // testpmd: 256 MiB of hugepages (2048 mbufs and the rings need far less), two lcores.
        memory_mib: 1024,
        cpus: 2,
        append: vec!["nvw.hugepages=128".into()],
        cpu_properties: cpu_properties.iter().map(|p| p.to_string()).collect(),
    };
    Vm::boot(&config)
}

/// A line of testpmd's statistics, periodic or printed when forwarding stops (or a rule, or
/// blank).
fn is_statistics(line: &str) -> bool {
    let stats = ["statistics", "RX-", "TX-", "Throughput", "#####", "\u{1b}["];
    let rule = line.trim().chars().all(|c| matches!(c, '-' | '+' | '=' | '#' | ' '));
    rule || stats.iter().any(|s| line.contains(s))
}

fn t_ns(v: &Value) -> u64 {
    v["t_ns"].as_u64().unwrap_or(0)
}

fn one_plug(
    vm: &mut Vm,
    listener: &Listener,
    feeder: &Feeder,
    port: u32,
    id: &str,
    phase: &mut Phase,
) -> anyhow::Result<Cycle> {
    let pci = pci_of(port);
    listener.clear();
    vm.discard_others(|v| v.get("app").is_some());
    // See testpmd::WRAPPER: fail-safe records the tap's link as down, then the carrier returns.
    vm.set_link("net0", false)?;
    vm.guest_run(&feeder.start_command())?;
    let tap = app_line_contains("Switching tx_dev to sub_device 1");
    let started = vm.expect_within("fail-safe to start on its tap", Duration::from_secs(180), tap)?;
    let run_start = t_ns(&started);
    vm.expect_within("testpmd to start forwarding", Duration::from_secs(60), app_line_contains("forwards packets"))?;
    vm.set_link("net0", true)?;
    // Frames sent while the stand-in had no carrier never left the guest: the count starts from
    // a fresh start of forwarding, once the frames before it have arrived.
    stop_forwarding(vm)?;
    std::thread::sleep(SETTLE);
    let traffic_from = listener.now();
    start_forwarding(vm)?;

    std::thread::sleep(phase.next_delay_under(Duration::from_millis(2000)));
    let plugged_at = Instant::now();
    vm.plug_vf_udp(id, port, MAC_A, listener.vf_port)?;
    let seen = vm.change(&format!("the observer to see {pci}"), "associated", |c| {
        c.vf.as_ref().is_some_and(|vf| vf.pci == pci)
    })?;
    // The eBPF observer measures its reaction from the kernel's timestamp of the registration.
    let registered_ns = seen.at_ns - (seen.reaction_us * 1e3) as u64;
    let parsed = vm.expect_within(&format!("fail-safe to parse {pci}"), Duration::from_secs(60), |v: &Value| {
        v["app"].as_str().and_then(failsafe_parsed) == Some(pci.as_str())
    })?;
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

    // Forwarding stopped: how many frames fail-safe's sub-devices accepted since the start, and,
    // once the last have arrived, how many the host received.
    vm.collect_for(Duration::from_millis(300));
    let frames_sent = stop_forwarding(vm)?;
    std::thread::sleep(SETTLE);
    let traffic = traffic::switch(&listener.between(traffic_from, listener.now()));
    start_forwarding(vm)?;

    // Everything testpmd printed before the unplug has arrived by now: the unplug's boundary.
    vm.collect_for(Duration::from_millis(300));
    let unplugged_ns = vm.seen_others().iter().filter(|v| v.get("app").is_some()).map(t_ns).max().unwrap_or(0);
    vm.unplug_with_backend(id)?;
    let unplugged = listener.now();
    let watch = Duration::from_millis(u64::from(feeder.poll_ms()) * 2 + 2000);
    vm.collect_for(watch);
    let frames_after_unplug = listener.between(unplugged, listener.now()).len();
    let run_lines: Vec<Value> =
        vm.seen_others().into_iter().filter(|v| v.get("app").is_some() && t_ns(v) >= run_start).collect();
    let after_unplug: Vec<String> = run_lines
        .iter()
        .filter(|v| t_ns(v) > unplugged_ns)
        // testpmd's prompt, written without a newline, ends up in front of the next line.
        .filter_map(|v| v["app"].as_str().map(|line| line.trim_start_matches("testpmd> ")))
        // Indented lines are testpmd's configuration dumps and rates, not events.
        .filter(|line| !is_statistics(line) && !line.starts_with(char::is_whitespace))
        .map(str::to_owned)
        .collect();
    let fell_back = after_unplug.iter().any(|line| line.contains("Switching tx_dev to sub_device 1"));

    // Never a stale address: everything fail-safe parsed from its pipe in this run is this VF.
    let parsed_all: Vec<&str> = run_lines
        .iter()
        .filter_map(|v| failsafe_parsed(v["app"].as_str()?))
        .filter(|rest| rest.starts_with("0000:"))
        .collect();
    ensure!(parsed_all.iter().all(|p| *p == pci), "fail-safe parsed {parsed_all:?}, only {pci} is true");

    testpmd::command(vm, "quit")?;
    vm.guest_run(STOP_TESTPMD)?;
    let ms = |ns: u64| ns.saturating_sub(registered_ns) as f64 / 1e6;
    println!(
        "  {pci}: parsed {:.1} ms, switched {:.1} ms after the kernel registered the VF ({:.1} s on the host from device_add); \
         testpmd sent {frames_sent} frames, the host received {} by the NetVSC stand-in, then {} by the VF, gap at the switch {}, longest {:.1} ms; \
         unplugged: {}, {frames_after_unplug} frames in the {:.1} s after",
        ms(t_ns(&parsed)),
        ms(t_ns(&switched)),
        host_elapsed.as_secs_f64(),
        traffic.synthetic_frames,
        traffic.vf_frames,
        traffic.gap_ms.map_or("none".into(), |g| format!("{g:.1} ms")),
        traffic.longest_gap_ms,
        if fell_back { "fail-safe fell back to the tap" } else { "fail-safe stayed on the removed VF" },
        watch.as_secs_f64(),
    );
    let mut said: Vec<&String> = Vec::new();
    for line in &after_unplug {
        if !said.contains(&line) {
            said.push(line);
        }
    }
    println!("    fail-safe, EAL and testpmd in the {:.1} s after the unplug: {said:?}", watch.as_secs_f64());
    Ok(Cycle {
        parsed_ms: ms(t_ns(&parsed)),
        switched_ms: ms(t_ns(&switched)),
        rebind_to_switch_ms: rebind_to_switch.as_secs_f64() * 1e3,
        after_unplug,
        fell_back,
        traffic,
        frames_sent,
        frames_after_unplug,
    })
}

/// CPU properties asking QEMU for Hyper-V's CPUID (vendor "Microsoft Hv"), which DPDK's
/// auto-probe of vdev_netvsc looks for.
const HYPERV_CPU: &[&str] = &["hv-relaxed", "hv-vendor-id=Microsoft Hv"];

/// Boots the DPDK guest asking QEMU for Hyper-V's CPUID and returns what the guest's agent saw
/// (its ready line's `dpdk_auto_probe`): whether DPDK would auto-probe vdev_netvsc there.
pub fn hyperv_cpuid(setup: &Setup) -> anyhow::Result<netvsc_user::output::dpdk_probe::AutoProbe> {
    let listener = Listener::start()?;
    let mut vm = boot(setup, listener.synthetic_port, HYPERV_CPU)?;
    Ok(vm.ready().context("the observing agent's ready line")?.dpdk_auto_probe)
}
