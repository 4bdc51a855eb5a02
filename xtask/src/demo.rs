//! `cargo xtask demo`: VF stand-ins come and go in a private network namespace while the agent
//! feeds a fail-safe-style reader; prints what the pipe received and how fast.

use std::time::Duration;

use anyhow::bail;
use netvsc_user::clock::monotonic_ns;

use crate::stage::{Agent, Stage};

const NETVSC: &str = "eth1";
const NETVSC_IFINDEX: u32 = 10;
const MAC: &str = "00:15:5d:de:40:01";
const VF: &str = "enP2p0s2";
const PCI: [&str; 2] = ["0002:00:02.0", "0003:00:02.0"];

#[derive(clap::Args)]
pub struct DemoArgs {
    /// How many VF remove/add cycles to play
    #[arg(long, default_value_t = 5)]
    cycles: u32,
    /// The reader's poll period in ms (fail-safe's hotplug_poll; DPDK's default is 2000)
    #[arg(long, default_value_t = 100)]
    hotplug_poll: u64,
    /// Event source for the agent: netlink or poll (poll shows the original's behaviour)
    #[arg(long, default_value = "netlink")]
    source: String,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the demo needs root: it creates a network namespace and veth devices (try: sudo -E cargo xtask demo)");
    }
    let bin = crate::toolchain::build_agent()?;
    let stage = Stage::new("demo")?;
    println!("netns {}: {NETVSC} (ifindex {NETVSC_IFINDEX}, {MAC}) plays the NetVSC interface", stage.netns.name());
    stage.netvsc(NETVSC, NETVSC_IFINDEX, MAC)?;

    let options = ["--source", &args.source, "--poll-interval", "1000"];
    let mut agent = Agent::start(&stage, &bin, &options, args.hotplug_poll)?;
    agent.ready()?;
    println!("agent running (source {}), reader polling every {} ms\n", args.source, args.hotplug_poll);

    let mut plug_us = Vec::new();
    let mut plug_wall_ms = Vec::new();
    let mut unplug_us = Vec::new();
    let mut stale_reads = 0;
    for cycle in 0..args.cycles {
        let pci = PCI[cycle as usize % 2];
        let ifindex = 20 + cycle;
        stage.sys.add_vf(VF, ifindex, MAC, pci)?;
        let plugged_at = monotonic_ns();
        stage.netns.add_veth(VF, ifindex, MAC)?;
        let written = agent.change("the VF address in the pipe", "associated", |_| true)?;
        let read = agent.app_line("the reader to read it", |v| v["read"] == pci)?;
        let reaction = written.reaction_us;
        plug_us.push(reaction);
        let wall_ms = ms_between(plugged_at, written.at_ns);
        plug_wall_ms.push(wall_ms);
        println!(
            "cycle {}: VF {pci} plugged   -> pipe got \"{pci}\\n\" {reaction:>8.1} µs after the event ({wall_ms:.2} ms after `ip link add`); reader read it {:.1} ms later",
            cycle + 1,
            ms_between(written.at_ns, read["t_ns"].as_u64().unwrap_or(0)),
        );

        // The kernel announces the removal, then tears down sysfs: same order here.
        stage.unplug(VF)?;
        let emptied = agent.change("the pipe to be emptied", "dissociated", |_| true)?;
        let emptied_at = emptied.at_ns;
        let reaction = emptied.reaction_us;
        unplug_us.push(reaction);
        let later = agent.collect_for(Duration::from_millis(args.hotplug_poll * 2));
        let stale =
            later.iter().filter(|v| v["read"] == pci && v["t_ns"].as_u64().is_some_and(|t| t > emptied_at)).count();
        stale_reads += stale;
        println!("cycle {}: VF {pci} unplugged -> pipe emptied {reaction:>8.1} µs after the event; stale reads afterwards: {stale}", cycle + 1);
    }
    drop(agent);
    println!(
        "\nsummary over {} cycles, source {} (event -> pipe; for poll the event is its tick):",
        args.cycles, args.source
    );
    println!("  plug:   median {:>8.1} µs, max {:>8.1} µs", median(&mut plug_us), max(&plug_us));
    println!(
        "  plug, from `ip link add` (includes running ip): median {:.2} ms, max {:.2} ms",
        median(&mut plug_wall_ms),
        max(&plug_wall_ms)
    );
    println!("  unplug: median {:>8.1} µs, max {:>8.1} µs", median(&mut unplug_us), max(&unplug_us));
    println!("  stale addresses read after removal: {stale_reads}");
    println!("  the original vdev_netvsc rescans every 1000 ms: a returning VF waits 500 ms on average");
    if stale_reads > 0 {
        bail!("the reader saw {stale_reads} stale address(es)");
    }
    Ok(())
}

fn ms_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e6
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}
