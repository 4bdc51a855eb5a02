//! Build tasks: `cargo xtask test` (the whole suite, as CI runs it) and `cargo xtask demo`
//! (the agent at work in a private network namespace, no Azure needed).

use std::process::Command;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod bench;
mod debian;
mod demo;
mod docs;
mod dpdk_root;
mod figures;
mod fuzz;
mod image;
mod kube;
mod licenses;
mod mutants;
mod package;
mod phase;
mod rebuild_check;
mod setup;
mod soak;
mod soaked;
mod stage;
mod structure;
mod test;
mod toolchain;
mod vm;
mod workspace;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "netvsc-watch build tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the agent with its eBPF object (installs nightly rust-src and bpf-linker if missing)
    Build,
    /// Build, then run the agent with these arguments (as root), e.g. `cargo xtask run -- watch --fifo-dir /run/netvsc`
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the whole suite: unit, fake-sysfs, CLI, network-namespace, DPDK, QEMU hot-plug, image,
    /// lint and format gates; the benchmarks run once each
    ///
    /// As root on Debian it first installs what the suite needs and is missing (QEMU, DPDK,
    /// podman, ...; one line says what); otherwise, or with --no-install, it says what will be
    /// skipped and how to enable it. Ends with the skips grouped by reason and a summary line.
    Test(test::TestArgs),
    /// Show the agent feeding a fail-safe reader while a VF stand-in comes and goes (needs root)
    ///
    /// In a private network namespace: a veth plays the NetVSC interface, another (same MAC)
    /// plays the VF, a fake sysfs tree says which is which; prints what the fail-safe pipe
    /// received and how fast.
    Demo(demo::DemoArgs),
    /// Compare the event sources: reaction latency, idle cost, churn and resync time, on the host
    /// (network namespace) and in the QEMU guest (real PCI hot-plug); writes docs/benchmarks.md
    Bench(bench::BenchArgs),
    /// Show that changing netvsc-common alone rebuilds the kernel object embedded in the agent
    EbpfRebuildCheck,
    /// QEMU guest with real PCI hot-plug (fetch the guest, run the VF scenarios)
    Vm(vm::VmArgs),
    /// Build the container image (deploy/container/Containerfile) offline with podman (or
    /// docker): a static agent with its eBPF object on an empty base; prints the tag and size
    Image(image::ImageArgs),
    /// Build the .deb, the RPM and a release tarball (static agent with its eBPF object, unit,
    /// sysusers file, man pages and completions from the CLI, docs) into target/package
    ///
    /// Installs cargo-deb and cargo-generate-rpm with `cargo install --locked` the first time;
    /// after that the build needs no network. Metadata: netvsc-user/Cargo.toml.
    Package(package::PackageArgs),
    /// Fuzz what reaches the agent from outside (cargo-fuzz, libFuzzer, on nightly; installs
    /// cargo-fuzz the first time): each target for --secs from its seeds in fuzz/corpus/
    ///
    /// Prints each target's progress and a summary (executions, coverage, corpus, crashes);
    /// exits non-zero on a crash, naming the saved input and the command that replays it.
    /// What the run adds to the corpora stays in target/fuzz/. An unknown target exits with 2.
    Fuzz(fuzz::FuzzArgs),
    /// Servicing soak: VFs removed and returning at random phase, a fail-safe-like reader on
    /// every pipe; fails on a stale read, a missed VF, or growth of what the agent holds
    ///
    /// In the QEMU guest by default (real hot-plug, `--source ebpf`); `--host` plays it in a
    /// network namespace with a fake sysfs tree and restarts the sidecar midway (SIGTERM, then
    /// SIGKILL). Prints progress, the agent's descriptors, memory, tasks and queued work once
    /// warm and at the end of each of its runs, and a summary. Needs root.
    Soak(soak::SoakArgs),
    /// Mutation testing of the pure core (cargo-mutants, installed on first use): score and
    /// survivors, with the accepted ones of docs/mutants.md marked. Takes a long while.
    Mutants(mutants::MutantsArgs),
    /// The bench's floor: rtnetlink → one pipe write, nothing else (run by `bench` itself)
    #[command(hide = true)]
    MinimalReactor(bench::floor::FloorArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Build => toolchain::build_agent().map(|dir| println!("built {}", dir.join("netvsc-watch").display())),
        Task::Run { args } => run_agent(&args),
        Task::Test(args) => test::run(args),
        Task::Demo(args) => demo::run(args),
        Task::Vm(args) => vm::run(args),
        Task::Bench(args) => bench::run(args),
        Task::EbpfRebuildCheck => rebuild_check::run(),
        Task::MinimalReactor(args) => bench::floor::run(args),
        Task::Mutants(args) => mutants::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Soak(args) => soak::run(args),
        Task::Image(args) => image::run(args),
        Task::Package(args) => package::run(args),
    }
}

fn run_agent(args: &[String]) -> anyhow::Result<()> {
    let binary = toolchain::build_agent()?.join("netvsc-watch");
    let mut command = if nix::unistd::geteuid().is_root() {
        Command::new(&binary)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&binary);
        sudo
    };
    let status = command.args(args).status().with_context(|| format!("running {}", binary.display()))?;
    std::process::exit(status.code().unwrap_or(1));
}
