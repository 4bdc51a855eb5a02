//! Build tasks: `cargo xtask test` (the whole suite, as CI runs it) and `cargo xtask demo`
//! (the agent at work in a private network namespace, no Azure needed).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

mod demo;
mod test;
mod vm;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netvsc-watch build tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every test (unit, fake-sysfs, CLI; network-namespace tests when root) and check that
    /// the benchmarks still run
    Test,
    /// Show the agent feeding a fail-safe reader while a VF stand-in comes and goes (needs root)
    ///
    /// In a private network namespace: a veth plays the NetVSC interface, another (same MAC)
    /// plays the VF, a fake sysfs tree says which is which; prints what the fail-safe pipe
    /// received and how fast.
    Demo(demo::DemoArgs),
    /// QEMU guest with real PCI hot-plug (fetch the guest, run the VF scenarios)
    Vm(vm::VmArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Test => test::run(),
        Task::Demo(args) => demo::run(args),
        Task::Vm(args) => vm::run(args),
    }
}

/// The workspace root (this crate lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_owned()
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
