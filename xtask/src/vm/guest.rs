//! One guest booted for the scenarios and checks, and the moves played on it: plug and unplug a
//! VF stand-in over QMP and wait for the agent's typed lines and failsafe-sim's reads.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use netvsc_user::report::lines::Ready;
use serde_json::Value;

use super::qemu::{BootConfig, Nic, Vm};

pub(super) const MAC_A: &str = "52:54:00:aa:00:01";
pub(super) const MAC_B: &str = "52:54:00:bb:00:02";
/// failsafe-sim's read period in the guest (fail-safe's hotplug_poll).
pub(super) const READ_POLL_MS: u64 = 20;

pub struct Setup {
    pub kernel: PathBuf,
    /// `uname -r` of the guest, as the results name it.
    pub kernel_version: String,
    pub initramfs: PathBuf,
    pub work_dir: PathBuf,
}

/// PCI address the guest gives a device in root port `rp<port>` (the firmware numbers the
/// ports' buses in order).
pub(super) fn pci_of(port: u32) -> String {
    format!("0000:{port:02x}:00.0")
}

/// The guest and what the host knows about it.
pub(super) struct Guest {
    pub vm: Vm,
    /// The agent's `ready` line (source, hooks, interfaces).
    pub ready: Ready,
    /// fail-safe instance names of the NetVSC stand-ins with MAC A and MAC B.
    pub ctx_a: String,
    pub ctx_b: String,
    /// The VF stand-in of each MAC currently plugged: (QMP id, port).
    pub vf_a: Option<(String, u32)>,
    pub vf_b: Option<(String, u32)>,
    plugs: u32,
}

pub(super) fn boot(setup: &Setup, source: &str, agent_args: &[&str]) -> anyhow::Result<Guest> {
    boot_as(setup, None, Mode::Exec, source, agent_args)
}

/// How the agent runs in the guest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// `exec`, failsafe-sim as the application reading the pipes.
    Exec,
    /// `monitor`: no pipes, no reader; the guest's /dev/kmsg read.
    Monitor,
}

/// [`boot`] with the agent in `mode`, started by `wrapper` (a program in the guest's /bin, such
/// as a script dropping privileges), which must exec it in place.
pub(super) fn boot_as(
    setup: &Setup,
    wrapper: Option<&str>,
    mode: Mode,
    source: &str,
    agent_args: &[&str],
) -> anyhow::Result<Guest> {
    let agent = wrapper.map_or("netvsc-watch".to_owned(), |wrapper| format!("{wrapper} /bin/netvsc-watch"));
    let (subcommand, application) = match mode {
        Mode::Exec => ("exec", format!(" -- /bin/failsafe-sim --poll-ms {READ_POLL_MS}")),
        Mode::Monitor => ("monitor", String::new()),
    };
    let command = format!(
        "{agent} {subcommand} --json --source {source} {} --mac {MAC_A} --mac {MAC_B} --force{application}",
        agent_args.join(" ")
    );
    let config = BootConfig {
        kernel: setup.kernel.clone(),
        initramfs: setup.initramfs.clone(),
        command: command.split_whitespace().map(str::to_owned).collect(),
        nics: vec![
            Nic::Virtio { mac: MAC_A.into() },
            Nic::Virtio { mac: MAC_B.into() },
            Nic::Vf { id: "a0".into(), port: 1, mac: MAC_A.into() },
        ],
        root_ports: 4,
        work_dir: setup.work_dir.clone(),
        memory_mib: 512,
        cpus: 1,
        append: Vec::new(),
        cpu_properties: Vec::new(),
    };
    let mut vm = Vm::boot(&config)?;
    let ready = vm.ready()?;
    ensure!(ready.source.as_str() == source, "asked for the {source} source, the agent runs {}", ready.source);
    let context = |mac: &str| -> anyhow::Result<String> {
        let found = ready
            .interfaces
            .iter()
            .find(|i| i.mac == mac)
            .with_context(|| format!("no context for {mac}: {ready:?}"))?;
        found.failsafe.clone().with_context(|| format!("{mac} is not managed: {found:?}"))
    };
    let (ctx_a, ctx_b) = (context(MAC_A)?, context(MAC_B)?);
    Ok(Guest { vm, ready, ctx_a, ctx_b, vf_a: Some(("a0".into(), 1)), vf_b: None, plugs: 0 })
}

pub(super) fn cold_start(guest: &mut Guest) -> anyhow::Result<()> {
    let ctx = guest.ctx_a.clone();
    let written = guest.vm.change("the start-up association", "associated", |c| c.failsafe == ctx)?;
    let pci = written.vf.map(|vf| vf.pci);
    ensure!(pci.as_deref() == Some(pci_of(1).as_str()), "expected {}, got {pci:?}", pci_of(1));
    guest.vm.expect("the reader to read it", |v| v["failsafe"] == ctx && v["read"] == pci_of(1))?;
    Ok(())
}

pub(super) fn migration_cycles(guest: &mut Guest, cycles: u32) -> anyhow::Result<()> {
    for cycle in 1..=cycles {
        let (id, port) = guest.vf_a.clone().context("VF A present")?;
        let (released, emptied) = unplug(guest, &id, Side::A)?;
        // Return at the same address on odd cycles, at another on even ones.
        let new_port = if cycle % 2 == 1 { port } else { 3 - port };
        let plugged = plug(guest, Side::A, new_port)?;
        println!(
            "  cycle {cycle}: unplug {}: released by the guest in {:.2} s, pipe emptied {:.1} µs after the source saw it; \
             plug at {}: address in the pipe {:.1} µs after the source saw it, {:.2} s after device_add",
            pci_of(port),
            released.as_secs_f64(),
            emptied,
            pci_of(new_port),
            plugged.reaction_us,
            plugged.host_elapsed.as_secs_f64(),
        );
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    A,
    B,
}

pub(super) struct Plugged {
    pub reaction_us: f64,
    pub host_elapsed: Duration,
}

/// Hot-plugs the VF of `side` into `port`; waits until its address is written and read.
pub(super) fn plug(guest: &mut Guest, side: Side, port: u32) -> anyhow::Result<Plugged> {
    guest.plugs += 1;
    let (ctx, mac, tag) = match side {
        Side::A => (guest.ctx_a.clone(), MAC_A, "a"),
        Side::B => (guest.ctx_b.clone(), MAC_B, "b"),
    };
    let id = format!("{tag}{}", guest.plugs);
    let pci = pci_of(port);
    let started = Instant::now();
    guest.vm.plug_vf(&id, port, mac)?;
    let written = guest.vm.change(&format!("{pci} in {ctx}'s pipe"), "associated", |c| c.failsafe == ctx)?;
    let host_elapsed = started.elapsed();
    let got = written.vf.as_ref().map(|vf| vf.pci.as_str());
    ensure!(got == Some(pci.as_str()), "{ctx} got {got:?} instead of {pci}");
    guest
        .vm
        .expect(&format!("the reader to read {pci}"), |v| v["failsafe"] == ctx.as_str() && v["read"] == pci.as_str())?;
    match side {
        Side::A => guest.vf_a = Some((id, port)),
        Side::B => guest.vf_b = Some((id, port)),
    }
    Ok(Plugged { reaction_us: written.reaction_us, host_elapsed })
}

/// Hot-unplugs `id`; waits until the pipe is emptied, then checks that the reader never reads the
/// old address again. Returns (time to release, guest reaction in µs).
pub(super) fn unplug(guest: &mut Guest, id: &str, side: Side) -> anyhow::Result<(Duration, f64)> {
    let ctx = match side {
        Side::A => guest.ctx_a.clone(),
        Side::B => guest.ctx_b.clone(),
    };
    let old = match side {
        Side::A => guest.vf_a.take(),
        Side::B => guest.vf_b.take(),
    };
    let old_pci = pci_of(old.map(|(_, port)| port).unwrap_or(0));
    let released = guest.vm.unplug(id)?;
    Ok((released, emptied(guest, &ctx, &old_pci)?))
}

/// Waits until `ctx`'s pipe is emptied of `old_pci`, then checks that the reader never reads it
/// again. Returns the guest's reaction in µs.
pub(super) fn emptied(guest: &mut Guest, ctx: &str, old_pci: &str) -> anyhow::Result<f64> {
    let emptied = guest.vm.change(&format!("{ctx}'s pipe to be emptied"), "dissociated", |c| c.failsafe == ctx)?;
    let got = emptied.vf.as_ref().map(|vf| vf.pci.as_str());
    if got != Some(old_pci) {
        bail!("{ctx} dissociated {got:?} instead of {old_pci}");
    }
    let emptied_at = emptied.at_ns;
    guest.vm.collect_for(Duration::from_millis(READ_POLL_MS * 10));
    let seen = guest.vm.seen_others();
    let stale: Vec<&Value> = seen
        .iter()
        .filter(|v| v["failsafe"] == ctx && v["read"] == old_pci)
        .filter(|v| v["t_ns"].as_u64().is_some_and(|t| t > emptied_at))
        .collect();
    ensure!(stale.is_empty(), "the reader read {old_pci} after the pipe was emptied: {stale:?}");
    Ok(emptied.reaction_us)
}
