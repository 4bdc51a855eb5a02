//! `cargo xtask soak`: servicing cycles, a VF going and coming back at random phase, for as long
//! as Azure's worst VMs see them (one report counts ~900 in an hour), with a fail-safe-like
//! reader on every pipe or FIFO. Passes only with no stale read, no missed VF and nothing the
//! agent holds (descriptors, memory, tasks, queued work) grown within a run. In the QEMU guest
//! (real hot-plug, the default) or on the host (`--host`: network namespace, fake sysfs, the
//! sidecar restarted with SIGTERM and SIGKILL on the way).

mod host;

use std::time::Duration;

use anyhow::bail;

use crate::soaked::{growth, judge, Soaked};

/// How much resident memory a run may gain over its second half (the allocator keeps pages it
/// once needed, and the first half fills what is kept between safety resyncs): over the second
/// half of a third of 100 000 cycles, a leak of 32 bytes per cycle is above it; over the
/// suite's short soak only one of hundreds of bytes is.
const RSS_SLACK_KIB: u64 = 512;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// On the host (network namespace, fake sysfs, sidecar with restarts) instead of the QEMU guest
    #[arg(long)]
    host: bool,
    /// Servicing cycles (default: 100000 on the host, a few minutes; 400 in the guest, about ten
    /// minutes under TCG)
    #[arg(long)]
    cycles: Option<u32>,
    /// Event source: netlink or poll on the host; ebpf, netlink or poll in the guest
    #[arg(long)]
    source: Option<String>,
    /// Guest kernel (as `cargo xtask vm --kernel` takes it)
    #[arg(long, default_value = crate::vm::DEFAULT_KERNEL)]
    kernel: String,
    /// Seed of the random phase (printed, so that a run can be repeated)
    #[arg(long)]
    seed: Option<u64>,
    /// Host: how often the reader looks at each FIFO, in microseconds
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    read_us: u64,
    /// Host: the longest a VF stays present, and absent, in one cycle, in microseconds (each
    /// stay is uniform under it)
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    dwell_us: u64,
}

pub fn run(args: SoakArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let (where_, source) = match (args.host, args.source.as_deref()) {
        (true, None | Some("netlink")) => ("host", "netlink"),
        (true, Some("poll")) => ("host", "poll"),
        (false, None | Some("ebpf")) => ("guest", "ebpf"),
        (false, Some(source @ ("netlink" | "poll"))) => ("guest", source),
        (host, Some(other)) => {
            let sources = if host { "netlink, poll" } else { "ebpf, netlink, poll" };
            eprintln!("xtask soak: no source {other:?} here (the sources: {sources})");
            std::process::exit(2);
        }
    };
    let cycles = args.cycles.unwrap_or(if args.host { 100_000 } else { 400 });
    if cycles == 0 {
        eprintln!("xtask soak: --cycles 0: nothing to soak");
        std::process::exit(2);
    }
    println!("soak[{where_}/{source}]: {cycles} cycles, seed {seed}");
    let soaked = if args.host {
        host_soak(source, cycles, seed, Duration::from_micros(args.read_us), Duration::from_micros(args.dwell_us))?
    } else {
        crate::vm::soak(&args.kernel, source, cycles, seed)?
    };
    report(&format!("{where_}/{source}"), &soaked)
}

/// Cycles of the suite's short soaks: seconds on the host, about a minute in the guest.
const SUITE_HOST_CYCLES: u32 = 3000;
const SUITE_GUEST_CYCLES: u32 = 12;

/// The suite's short host soak (restarts included), at a seed of its own each run.
pub fn host_check() -> anyhow::Result<()> {
    let seed = fastrand::u64(..);
    println!("soak[host/netlink]: {SUITE_HOST_CYCLES} cycles, seed {seed}");
    let soaked = host_soak("netlink", SUITE_HOST_CYCLES, seed, Duration::from_millis(1), Duration::from_millis(2))?;
    report("host/netlink", &soaked)
}

/// The suite's short guest soak: the eBPF source on the default kernel.
pub fn guest_check() -> anyhow::Result<()> {
    let seed = fastrand::u64(..);
    println!("soak[guest/ebpf]: {SUITE_GUEST_CYCLES} cycles, seed {seed}");
    let soaked = crate::vm::soak(crate::vm::DEFAULT_KERNEL, "ebpf", SUITE_GUEST_CYCLES, seed)?;
    report("guest/ebpf", &soaked)
}

/// The host soak with the agent built; `source` is netlink or poll.
pub fn host_soak(
    source: &str,
    cycles: u32,
    seed: u64,
    read_period: Duration,
    dwell: Duration,
) -> anyhow::Result<Soaked> {
    let bin = crate::toolchain::build_agent()?;
    let options: &[&str] = match source {
        "poll" => &["--source", "poll", "--poll-interval", "100"],
        _ => &["--source", "netlink"],
    };
    host::run(&host::HostArgs { bin: &bin, source: options, cycles, seed, read_period, dwell })
}

/// Prints what the soak saw and fails on a stale read, a missed VF or growth.
pub fn report(label: &str, soaked: &Soaked) -> anyhow::Result<()> {
    let verdict = judge(&soaked.presences, &soaked.passes);
    println!(
        "soak[{label}]: {} cycles in {:.0} s; {} addresses written, {} with a chance to be read, {} reads, {} stale, {} missed",
        soaked.cycles,
        soaked.elapsed.as_secs_f64(),
        soaked.presences.len(),
        verdict.chances,
        verdict.reads,
        verdict.stale,
        verdict.missed,
    );
    println!("soak[{label}]: {:>4} {:<22} {:>8} {:>8} {:>6} {:>8}", "run", "", "fds", "rss KiB", "tasks", "waiting");
    for sample in &soaked.samples {
        let held = sample.held;
        println!(
            "soak[{label}]: {:>4} {:<22} {:>8} {:>8} {:>6} {:>8}",
            sample.run, sample.label, held.open_fds, held.rss_kib, held.tasks, held.waiting
        );
    }
    let grown = growth(&soaked.samples, RSS_SLACK_KIB);
    for example in verdict.examples.iter().chain(&grown) {
        println!("soak[{label}]: {example}");
    }
    if verdict.stale > 0 || verdict.missed > 0 || !grown.is_empty() {
        bail!("{} stale, {} missed, {} grown", verdict.stale, verdict.missed, grown.len());
    }
    if verdict.reads == 0 || verdict.chances == 0 {
        bail!("the reader read nothing, or never had the chance: nothing was judged");
    }
    Ok(())
}
