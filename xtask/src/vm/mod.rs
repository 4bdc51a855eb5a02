//! `cargo xtask vm`: a QEMU guest with real PCI hot-plug, where VF stand-ins (e1000e) come and go
//! under a running agent while NetVSC stand-ins (virtio-net, same MAC) stay.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

mod assets;
mod bench;
mod ebpf_checks;
mod guest;
mod initramfs;
mod qemu;
mod scenarios;

pub use scenarios::{count as scenario_count, Outcome};

#[derive(clap::Args)]
pub struct VmArgs {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(clap::Subcommand)]
enum VmCommand {
    /// Download and unpack the guest kernel and busybox into the cache (done by `test` if needed)
    Fetch,
    /// Boot the guest once per source and play the hot-plug scenarios, asserting on what a
    /// fail-safe-style reader in the guest read
    Test(TestArgs),
}

#[derive(clap::Args, Clone)]
pub struct TestArgs {
    /// Event sources to test, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "ebpf,netlink,poll")]
    pub sources: Vec<String>,
    /// Migration cycles (VF removed, returns) in the cycles scenario
    #[arg(long, default_value_t = 3)]
    pub cycles: u32,
}

pub fn run(args: VmArgs) -> anyhow::Result<()> {
    match args.command {
        VmCommand::Fetch => {
            let assets = assets::ensure()?;
            println!("vm: kernel {} cached in {}", assets.kernel_version, assets::cache_dir().display());
            Ok(())
        }
        VmCommand::Test(args) => {
            let outcome = test(&args)?;
            if outcome.failed > 0 {
                bail!("{} VM scenario(s) failed", outcome.failed);
            }
            Ok(())
        }
    }
}

/// Why the VM scenarios cannot run on this machine, if they cannot.
pub fn unavailable() -> Option<String> {
    let qemu = std::process::Command::new("qemu-system-x86_64").arg("--version").output();
    if !qemu.is_ok_and(|o| o.status.success()) {
        return Some("qemu-system-x86_64 not found (apt-get install qemu-system-x86)".into());
    }
    for tool in ["apt-get", "dpkg-deb", "ldd"] {
        if which(tool).is_none() && !assets::cache_dir().join("root").exists() {
            return Some(format!("{tool} not found and no cached guest kernel"));
        }
    }
    None
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(tool)).find(|p| p.exists())
}

/// Builds the agent and the guest's initramfs in a fresh work directory.
fn prepare() -> anyhow::Result<(guest::Setup, tempfile::TempDir)> {
    let assets = assets::ensure()?;
    let release = crate::toolchain::build_agent()?;
    let work = tempfile::Builder::new().prefix("netvsc-vm.").tempdir().context("creating a work directory")?;
    let initramfs = work.path().join("initramfs.cpio");
    initramfs::build(&assets, &[release.join("netvsc-watch"), release.join("failsafe-sim")], &initramfs)?;
    println!(
        "vm: guest kernel {}, initramfs {:.1} MiB",
        assets.kernel_version,
        std::fs::metadata(&initramfs)?.len() as f64 / (1 << 20) as f64
    );
    let setup = guest::Setup { kernel: assets.kernel, initramfs, work_dir: work.path().to_owned() };
    Ok((setup, work))
}

/// The VM workload of `cargo xtask bench`.
pub fn bench(cycles: u32, churn_pairs: u32, seed: u64, results: &mut crate::figures::Results) -> anyhow::Result<()> {
    let (setup, _work) = prepare()?;
    bench::run(&setup, cycles, churn_pairs, seed, results)
}

/// Builds the agent, prepares the guest and runs every scenario for every source.
pub fn test(args: &TestArgs) -> anyhow::Result<Outcome> {
    let (setup, work) = prepare()?;
    let mut outcome = Outcome::default();
    for source in &args.sources {
        outcome.add(scenarios::run(&setup, source, args.cycles));
    }
    println!("vm: {} passed, {} failed", outcome.passed, outcome.failed);
    if outcome.failed > 0 {
        println!("vm: console logs kept in {}", work.keep().display());
    }
    Ok(outcome)
}
