//! `cargo xtask bench`: the same hot-plug workload against every event source, side by side:
//! reaction latency (VF registered → address in the pipe), idle cost, cost under unrelated veth
//! churn, and full-resync time. Host workload: a network namespace with veth stand-ins and a fake
//! sysfs tree (no eBPF on this kernel). VM workload: the QEMU rig with real PCI hot-plug and all
//! sources. Prints one report, writes it into docs/benchmarks.md with an SVG plot of the latency
//! distributions.

use std::path::PathBuf;

use anyhow::Context as _;

mod failover;
pub mod floor;
mod host;
mod listener;
mod plot;
mod report;
mod rtnl;
mod usage;

use crate::figures::{Results, ScanTimes};
use crate::phase;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Hot-plug cycles per source
    #[arg(long, default_value_t = 20)]
    cycles: u32,
    /// Plugs per row of the host failover table (kernel broadcast → address written)
    #[arg(long, default_value_t = 1000)]
    plugs: u32,
    /// Seconds of idleness measured per source and interface count
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
    /// Unrelated veth pairs created and deleted in the churn workload
    #[arg(long, default_value_t = 1000)]
    churn_pairs: u32,
    /// Only the host failover table (kernel broadcast → address written), nothing else; the
    /// report is printed, docs/benchmarks.md left alone
    #[arg(long)]
    failover_only: bool,
    /// Skip the host (network namespace) workload
    #[arg(long)]
    no_host: bool,
    /// Skip the VM (real PCI hot-plug) workload
    #[arg(long)]
    no_vm: bool,
    /// Seed of the random plug delays (printed by every run, so a run can be repeated)
    #[arg(long)]
    seed: Option<u64>,
    /// Where the report and the plot go (the report replaces the results section there)
    #[arg(long, default_value = "docs/benchmarks.md")]
    docs: PathBuf,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let bin = crate::toolchain::build_agent()?;
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    println!(
        "bench: each plug waits a random delay in [0, {} ms) after the unplug; seed {seed} (--seed {seed} repeats it)",
        phase::PERIOD.as_millis()
    );
    let mut results = Results { seed, ..Results::default() };
    results.environment.push(crate::docs::machine());
    if args.failover_only {
        anyhow::ensure!(nix::unistd::geteuid().is_root(), "--failover-only needs root for a network namespace");
        host::failover(&bin, &args, seed, &mut results)?;
        println!("\n{}", report::markdown(&results, ""));
        return Ok(());
    }
    if args.no_host {
        println!("bench: host workload skipped (--no-host)");
    } else if !nix::unistd::geteuid().is_root() {
        println!("bench: host workload skipped: needs root for a network namespace");
    } else {
        host::run(&bin, &args, seed, &mut results)?;
    }
    results.scale = full_scan_times()?;
    if args.no_vm {
        println!("bench: VM workload skipped (--no-vm)");
    } else if let Some(reason) = crate::vm::unavailable() {
        println!("bench: VM workload skipped: {reason}");
    } else {
        crate::vm::bench(args.cycles, args.churn_pairs, seed, &mut results)?;
    }
    let docs = crate::workspace::root().join(&args.docs);
    let plot_name = "benchmarks-latency.svg";
    let plot_path = docs.with_file_name(plot_name);
    plot::latency_cdf(&plot_path, &[("host", &results.host_latency), ("VM", &results.vm_latency)])?;
    let markdown = report::markdown(&results, plot_name);
    println!("\n{markdown}");
    report::write_into(&docs, &markdown).with_context(|| format!("updating {}", docs.display()))?;
    println!("bench: results written to {} and {}", docs.display(), plot_path.display());
    Ok(())
}

/// Every row of the failover table with `plugs` plugs: each must yield one sample per plug, and
/// the table must show every row.
pub fn failover_check(plugs: u32) -> anyhow::Result<()> {
    let bin = crate::toolchain::build_agent()?;
    let mut results = Results::default();
    let kernel_object = failover::kernel_object();
    for reactor in failover::Reactor::ALL {
        let row = failover::row(&bin, reactor, plugs, 1, kernel_object.as_deref())?;
        let counts = (row.latencies.samples_us.len(), row.own_us.len());
        anyhow::ensure!(
            counts == (plugs as usize, plugs as usize),
            "{}: {counts:?} samples (broadcast → written, own share) for {plugs} plugs",
            reactor.label(),
        );
        // By the writer's own clock, from its receive to its write: never negative, never a second.
        anyhow::ensure!(
            row.own_us.iter().all(|own| (0.0..1e6).contains(own)),
            "{}: the writer's own share of a plug out of range: {:?}",
            reactor.label(),
            row.own_us
        );
        // The kernel stamps the broadcast before it wakes anyone: no writer can come before it.
        if kernel_object.as_ref().is_some_and(|object| !object.is_empty()) {
            anyhow::ensure!(row.kernel_reference, "{}: timed without the kernel's stamps", reactor.label());
            anyhow::ensure!(
                row.latencies.samples_us.iter().all(|sample| *sample > 0.0),
                "{}: a write before the kernel's broadcast stamp: {:?}",
                reactor.label(),
                row.latencies.samples_us
            );
        }
        results.host_failover.push(row);
    }
    let table = report::markdown(&results, "");
    for reactor in failover::Reactor::ALL {
        anyhow::ensure!(
            table.contains(&format!("| {} | {plugs} |", reactor.label())),
            "{} missing from\n{table}",
            reactor.label()
        );
    }
    Ok(())
}

/// Rescan times for 10, 100 and 1000 interfaces: the `full_scan` and `resync_kernel_dump` groups
/// of the agent's criterion benchmark (`cargo bench -p netvsc-user --bench scan`), run and read
/// back.
fn full_scan_times() -> anyhow::Result<Vec<ScanTimes>> {
    println!("bench: rescans of 10, 100 and 1000 interfaces (cargo bench --bench scan)");
    crate::workspace::cargo(&[
        "bench",
        "--package",
        "netvsc-user",
        "--bench",
        "scan",
        "--",
        "full_scan|resync_kernel_dump",
    ])?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| crate::workspace::root().join("target"), PathBuf::from);
    let median_ms = |group: &str, interfaces: u32| -> anyhow::Result<Option<f64>> {
        let path = target.join(format!("criterion/{group}/{interfaces}/new/estimates.json"));
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
        let estimates: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        let median_ns = estimates["median"]["point_estimate"].as_f64().context("no median in criterion's estimates")?;
        Ok(Some(median_ns / 1e6))
    };
    // Without root the kernel-dump group does not run; figures an earlier run left are not used.
    let root = nix::unistd::geteuid().is_root();
    [10, 100, 1000]
        .into_iter()
        .map(|interfaces| {
            let sysfs_walk_ms = median_ms("full_scan", interfaces)?.context("criterion wrote no full_scan figures")?;
            let kernel_dump_ms = if root { median_ms("resync_kernel_dump", interfaces)? } else { None };
            Ok(ScanTimes { interfaces, sysfs_walk_ms, kernel_dump_ms })
        })
        .collect()
}
