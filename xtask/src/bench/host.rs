//! The host workload: in a network namespace, veth devices stand in for the NetVSC interface and
//! its VF, a fake sysfs tree says which is which, and the agent runs against both.

use std::path::Path;
use std::time::Duration;

use netvsc_user::clock::monotonic_ns;

use super::failover::{self, Reactor, PLUG_SPACING};
use super::usage::Usage;
use super::BenchArgs;
use crate::figures::{Cost, Latencies, Results};
use crate::phase::Phase;
use crate::stage::{Agent, Stage};

const MAC: &str = "00:15:5d:be:00:01";
const NETVSC_IFINDEX: u32 = 10;
const PCI: [&str; 2] = ["0002:00:02.0", "0003:00:02.0"];
/// failsafe-sim's read period.
const HOTPLUG_POLL_MS: u64 = 20;

/// (label, agent options) of every source this kernel runs.
pub const SOURCES: [(&str, &[&str]); 3] = [
    ("netlink", &["--source", "netlink"]),
    ("poll 100 ms", &["--source", "poll", "--poll-interval", "100"]),
    ("poll 1000 ms", &["--source", "poll", "--poll-interval", "1000"]),
];

pub fn run(bin: &Path, args: &BenchArgs, seed: u64, results: &mut Results) -> anyhow::Result<()> {
    failover(bin, args, seed, results)?;
    for (label, options) in SOURCES {
        println!("bench[host/{label}]: {} hot-plug cycles", args.cycles);
        let samples_us = latency(bin, options, args.cycles, &mut Phase::new(seed))?;
        results.host_latency.push(Latencies { source: label.into(), samples_us });
        for interfaces in [10, 1000] {
            println!("bench[host/{label}]: idle for {} s with {interfaces} interfaces", args.idle_secs);
            results.host_costs.push(idle(bin, label, options, interfaces, args.idle_secs)?);
        }
        println!("bench[host/{label}]: {} unrelated veth pairs created and deleted", args.churn_pairs);
        results.host_costs.push(churn(bin, label, options, args.churn_pairs)?);
    }
    Ok(())
}

/// The failover table: every [`Reactor`] over the same plug sequence.
pub fn failover(bin: &Path, args: &BenchArgs, seed: u64, results: &mut Results) -> anyhow::Result<()> {
    let kernel_object = failover::kernel_object();
    for reactor in Reactor::ALL {
        println!(
            "bench[host/{}]: {} plugs, each within {} ms of the last unplug",
            reactor.label(),
            args.plugs,
            PLUG_SPACING.as_millis()
        );
        results.host_failover.push(failover::row(bin, reactor, args.plugs, seed, kernel_object.as_deref())?);
    }
    Ok(())
}

/// A stage with the NetVSC stand-in and `extra` virtual interfaces in the fake tree.
fn stage(extra: u32) -> anyhow::Result<Stage> {
    let stage = Stage::new("bench")?;
    stage.netvsc("eth1", NETVSC_IFINDEX, MAC)?;
    for i in 0..extra {
        stage.sys.add_virtual(
            &format!("veth{i}"),
            1000 + i,
            &format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff),
        )?;
    }
    Ok(stage)
}

fn start(stage: &Stage, bin: &Path, options: &[&str]) -> anyhow::Result<Agent> {
    let mut agent = Agent::start(stage, bin, options, HOTPLUG_POLL_MS)?;
    agent.ready()?;
    Ok(agent)
}

/// From just before the VF appears (fake sysfs entry, then the veth) to the address in the pipe.
/// Each plug at a random phase after the previous unplug (see crate::phase).
fn latency(bin: &Path, options: &[&str], cycles: u32, phase: &mut Phase) -> anyhow::Result<Vec<f64>> {
    let stage = stage(0)?;
    let mut agent = start(&stage, bin, options)?;
    let mut batch = stage.netns.batch()?;
    let mut samples = Vec::new();
    for cycle in 0..cycles {
        std::thread::sleep(phase.next_delay());
        let (name, ifindex, pci) = (format!("vf{cycle}"), 100 + cycle, PCI[cycle as usize % 2]);
        let appeared = monotonic_ns();
        stage.sys.add_vf(&name, ifindex, MAC, pci)?;
        batch.send(&format!("link add {name} index {ifindex} address {MAC} type veth peer name q{cycle}"))?;
        let written =
            agent.change("the address in the pipe", "associated", |c| c.vf.as_ref().is_some_and(|vf| vf.pci == pci))?;
        samples.push(written.at_ns.saturating_sub(appeared) as f64 / 1e3);
        batch.send(&format!("link del {name}"))?;
        stage.sys.remove(&name)?;
        agent.change("the pipe emptied", "dissociated", |_| true)?;
    }
    batch.finish()?;
    Ok(samples)
}

fn idle(bin: &Path, label: &str, options: &[&str], interfaces: u32, secs: u64) -> anyhow::Result<Cost> {
    let stage = stage(interfaces.saturating_sub(1))?;
    let mut agent = start(&stage, bin, options)?;
    std::thread::sleep(Duration::from_secs(1));
    let (before, events_before) = (Usage::of(agent.pid())?, agent.events()?);
    std::thread::sleep(Duration::from_secs(secs));
    let (used, events) = (Usage::of(agent.pid())?.since(before), agent.events()? - events_before);
    let scale = 60.0 / secs as f64;
    Ok(Cost {
        source: label.into(),
        workload: format!("idle, {interfaces} interfaces"),
        cpu_ms: used.cpu_ms * scale,
        wakeups: (used.switches as f64 * scale) as u64,
        events: Some((events as f64 * scale) as u64),
        per_minute: true,
    })
}

fn churn(bin: &Path, label: &str, options: &[&str], pairs: u32) -> anyhow::Result<Cost> {
    let stage = stage(0)?;
    let mut agent = start(&stage, bin, options)?;
    let (before, events_before) = (Usage::of(agent.pid())?, agent.events()?);
    let mut batch = stage.netns.batch()?;
    for i in 0..pairs {
        batch.send(&format!("link add c{i} type veth peer name d{i}"))?;
    }
    for i in 0..pairs {
        batch.send(&format!("link del c{i}"))?;
    }
    batch.finish()?;
    std::thread::sleep(Duration::from_millis(500));
    let (used, events) = (Usage::of(agent.pid())?.since(before), agent.events()? - events_before);
    Ok(Cost {
        source: label.into(),
        workload: format!("{pairs} veth pairs created and deleted"),
        cpu_ms: used.cpu_ms,
        wakeups: used.switches,
        events: Some(events),
        per_minute: false,
    })
}
