//! The hot-plug scenarios, played from the host over QMP and judged on the JSON lines the agent
//! (launcher mode) and failsafe-sim (reading its pipes as fail-safe does) print in the guest.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::Value;

use super::ebpf_checks;
use super::qemu::{BootConfig, Nic, Vm};

pub(super) const MAC_A: &str = "52:54:00:aa:00:01";
pub(super) const MAC_B: &str = "52:54:00:bb:00:02";
/// failsafe-sim's read period in the guest (fail-safe's hotplug_poll).
pub(super) const READ_POLL_MS: u64 = 20;

pub struct Setup {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub work_dir: PathBuf,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: u32,
    pub failed: u32,
}

impl Outcome {
    pub fn add(&mut self, other: Outcome) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
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
    pub ready: Value,
    /// fail-safe instance names of the NetVSC stand-ins with MAC A and MAC B.
    pub ctx_a: String,
    pub ctx_b: String,
    /// The VF stand-in of each MAC currently plugged: (QMP id, port).
    pub vf_a: Option<(String, u32)>,
    pub vf_b: Option<(String, u32)>,
    plugs: u32,
}

type Check = Box<dyn Fn(&mut Guest) -> anyhow::Result<()>>;

/// One guest boot: extra agent arguments and the checks played on it, in order.
struct Run {
    label: String,
    agent_args: &'static [&'static str],
    checks: Vec<(&'static str, Check)>,
}

fn plan(source: &str, cycles: u32) -> Vec<Run> {
    let mut checks: Vec<(&'static str, Check)> = vec![
        ("cold start with the VF present", Box::new(cold_start)),
        ("migration cycles", Box::new(move |g: &mut Guest| migration_cycles(g, cycles))),
        ("two NetVSC, interleaved VFs", Box::new(interleaved)),
        ("the VF never returns", Box::new(never_returns)),
    ];
    if source != "ebpf" {
        return vec![Run { label: source.to_owned(), agent_args: &[], checks }];
    }
    checks.extend(ebpf_checks::filtered_guest());
    vec![
        Run { label: "ebpf".into(), agent_args: ebpf_checks::FILTERED_ARGS, checks },
        Run {
            label: "ebpf/kprobe".into(),
            agent_args: ebpf_checks::UNFILTERED_ARGS,
            checks: ebpf_checks::unfiltered_guest(),
        },
    ]
}

/// How many checks `run` plays for `source` (what is skipped when the VM cannot run).
pub fn count(source: &str) -> u32 {
    plan(source, 1).iter().map(|run| run.checks.len() as u32).sum()
}

/// Boots a guest per run of `source` and plays its checks; prints a line per check and cycle.
pub fn run(setup: &Setup, source: &str, cycles: u32) -> Outcome {
    let mut outcome = Outcome::default();
    for run in plan(source, cycles) {
        outcome.add(play(setup, source, run));
    }
    outcome
}

fn play(setup: &Setup, source: &str, run: Run) -> Outcome {
    let label = &run.label;
    let mut outcome = Outcome::default();
    let mut guest = match boot(setup, source, run.agent_args) {
        Ok(guest) => guest,
        Err(err) => {
            println!("vm[{label}]: FAIL boot: {err:#}");
            outcome.failed = run.checks.len() as u32;
            return outcome;
        }
    };
    println!(
        "vm[{label}]: accelerator {}, boot {:.1} s (QEMU start to the guest's first line)",
        guest.vm.accel.name(),
        guest.vm.boot_time.as_secs_f64()
    );
    // Checks build on each other's state: after one fails, the rest count as failed unplayed.
    let mut broken = false;
    for (name, check) in &run.checks {
        if broken {
            outcome.failed += 1;
            continue;
        }
        match check(&mut guest) {
            Ok(()) => {
                outcome.passed += 1;
                println!("vm[{label}]: PASS {name}");
            }
            Err(err) => {
                broken = true;
                outcome.failed += 1;
                println!("vm[{label}]: FAIL {name}: {err:#}");
                println!("--- guest console (tail) ---\n{}\n---", guest.vm.console_tail(30));
            }
        }
    }
    outcome
}

pub(super) fn boot(setup: &Setup, source: &str, agent_args: &[&str]) -> anyhow::Result<Guest> {
    let command = format!(
        "netvsc-watch exec --json --source {source} {} --mac {MAC_A} --mac {MAC_B} --force -- /bin/failsafe-sim --poll-ms {READ_POLL_MS}",
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
    };
    let mut vm = Vm::boot(&config)?;
    let ready = vm.expect("the agent to be ready", |v| v["event"] == "ready")?;
    ensure!(ready["source"] == source, "asked for the {source} source, the agent runs {}", ready["source"]);
    let context = |mac: &str| -> anyhow::Result<String> {
        let interfaces = ready["interfaces"].as_array().context("ready lists interfaces")?;
        let found =
            interfaces.iter().find(|i| i["mac"] == mac).with_context(|| format!("no context for {mac}: {ready}"))?;
        Ok(found["failsafe"].as_str().unwrap_or_default().to_owned())
    };
    let (ctx_a, ctx_b) = (context(MAC_A)?, context(MAC_B)?);
    Ok(Guest { vm, ready, ctx_a, ctx_b, vf_a: Some(("a0".into(), 1)), vf_b: None, plugs: 0 })
}

pub(super) fn cold_start(guest: &mut Guest) -> anyhow::Result<()> {
    let ctx = guest.ctx_a.clone();
    let written =
        guest.vm.expect("the start-up association", |v| v["event"] == "associated" && v["failsafe"] == ctx)?;
    ensure!(written["vf"]["pci"] == pci_of(1), "expected {}, got {written}", pci_of(1));
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

fn interleaved(guest: &mut Guest) -> anyhow::Result<()> {
    plug(guest, Side::B, 3)?;
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    unplug(guest, &id, Side::A)?;
    plug(guest, Side::A, 4)?;
    let (id, _) = guest.vf_b.clone().context("VF B present")?;
    unplug(guest, &id, Side::B)?;
    plug(guest, Side::B, 3)?;
    // No context was ever given the other one's VF.
    let seen = guest.vm.seen();
    let crossed: Vec<&Value> = seen
        .iter()
        .filter(|v| v["event"] == "associated")
        .filter(|v| (v["failsafe"] == guest.ctx_a.as_str()) == (v["vf"]["pci"] == pci_of(3)))
        .collect();
    ensure!(crossed.is_empty(), "VFs given to the wrong NetVSC: {crossed:?}");
    Ok(())
}

fn never_returns(guest: &mut Guest) -> anyhow::Result<()> {
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    let (_, _) = unplug(guest, &id, Side::A)?;
    let quiet = guest.vm.collect_for(Duration::from_secs(3));
    let ctx = guest.ctx_a.clone();
    let wrong: Vec<&Value> = quiet
        .iter()
        .filter(|v| {
            v["guest"] == "exited"
                || (v["failsafe"] == ctx.as_str() && (v["event"] == "associated" || v.get("read").is_some()))
        })
        .collect();
    ensure!(wrong.is_empty(), "with no VF, nothing may be written, read, or exit: {wrong:?}");
    // Still alive and serving the other interface.
    let (id, _) = guest.vf_b.clone().context("VF B present")?;
    unplug(guest, &id, Side::B)?;
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
    let written = guest
        .vm
        .expect(&format!("{pci} in {ctx}'s pipe"), |v| v["event"] == "associated" && v["failsafe"] == ctx.as_str())?;
    let host_elapsed = started.elapsed();
    ensure!(written["vf"]["pci"] == pci.as_str(), "{ctx} got {} instead of {pci}", written["vf"]["pci"]);
    guest
        .vm
        .expect(&format!("the reader to read {pci}"), |v| v["failsafe"] == ctx.as_str() && v["read"] == pci.as_str())?;
    match side {
        Side::A => guest.vf_a = Some((id, port)),
        Side::B => guest.vf_b = Some((id, port)),
    }
    Ok(Plugged { reaction_us: written["reaction_us"].as_f64().unwrap_or(f64::NAN), host_elapsed })
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
    let emptied = guest.vm.expect(&format!("{ctx}'s pipe to be emptied"), |v| {
        v["event"] == "dissociated" && v["failsafe"] == ctx.as_str()
    })?;
    if emptied["vf"]["pci"] != old_pci.as_str() {
        bail!("{ctx} dissociated {} instead of {old_pci}", emptied["vf"]["pci"]);
    }
    let emptied_at = emptied["at_ns"].as_u64().unwrap_or(u64::MAX);
    guest.vm.collect_for(Duration::from_millis(READ_POLL_MS * 10));
    let seen = guest.vm.seen();
    let stale: Vec<&Value> = seen
        .iter()
        .filter(|v| v["failsafe"] == ctx.as_str() && v["read"] == old_pci.as_str())
        .filter(|v| v["t_ns"].as_u64().is_some_and(|t| t > emptied_at))
        .collect();
    ensure!(stale.is_empty(), "the reader read {old_pci} after the pipe was emptied: {stale:?}");
    Ok((released, emptied["reaction_us"].as_f64().unwrap_or(f64::NAN)))
}
