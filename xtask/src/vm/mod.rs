//! `cargo xtask vm`: a QEMU guest with real PCI hot-plug, where VF stand-ins (e1000e) come and go
//! under a running agent while NetVSC stand-ins (virtio-net, same MAC) stay.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

mod assets;
mod bench;
mod dpdk;
mod dpdk_rows;
mod ebpf_checks;
mod guest;
mod initramfs;
mod kbuild;
mod monitor;
mod qemu;
mod scenarios;
mod sequences;
mod soak;
mod testpmd;
mod traffic;

pub use assets::DEFAULT_KERNEL;
pub use scenarios::{count as scenario_count, Outcome};

#[derive(clap::Args)]
pub struct VmArgs {
    #[command(subcommand)]
    command: VmCommand,
}

#[derive(clap::Subcommand)]
enum VmCommand {
    /// Download and unpack a guest kernel and busybox into the cache (done by `test` if needed)
    Fetch {
        /// Kernel: a linux-image-* package of bookworm, trixie or bullseye, or an alias for the
        /// newest of one (bookworm, bookworm-cloud, trixie, trixie-cloud, bullseye, bullseye-cloud)
        #[arg(long, default_value = assets::DEFAULT_KERNEL)]
        kernel: String,
    },
    /// Boot the guest once per source and play the hot-plug scenarios, asserting on what a
    /// fail-safe-style reader in the guest read
    Test(TestArgs),
    /// DPDK's real fail-safe in the guest, fed by netvsc-watch and by DPDK's original
    /// vdev_netvsc, switching to hot-plugged VFs: one testpmd run per plug, times from the
    /// kernel's registration of the VF
    Dpdk(DpdkArgs),
}

#[derive(clap::Args, Clone)]
pub struct DpdkArgs {
    /// Rows: `original`; `<source>:<poll ms>` for netvsc-watch exec with that fail-safe poll;
    /// `sidecar:<poll ms>` for testpmd reading the guest's sidecar FIFO (eBPF source)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "original,ebpf:2000,ebpf:100,netlink:2000,netlink:100,sidecar:100"
    )]
    pub rows: Vec<String>,
    /// Plugs per row (one testpmd run each), alternating between two PCI addresses
    #[arg(long, default_value_t = 6)]
    pub cycles: u32,
    /// Seed of the random delays before plugs (printed; the same for every row)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Only print the results; by default they also replace the section "End to end with DPDK
    /// fail-safe" of docs/benchmarks.md
    #[arg(long)]
    pub no_docs: bool,
    /// Only boot the guest asking QEMU for Hyper-V's CPUID (`hv-*` CPU properties) and print
    /// whether DPDK would auto-probe its own vdev_netvsc there
    #[arg(long)]
    pub hyperv_cpuid: bool,
}

#[derive(clap::Args, Clone)]
pub struct TestArgs {
    /// Event sources to test, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "ebpf,netlink,poll")]
    pub sources: Vec<String>,
    /// Guest kernels, comma-separated: linux-image-* packages of bookworm, trixie or bullseye
    /// (generic or cloud), or aliases for the newest of one: bookworm, bookworm-cloud, trixie,
    /// trixie-cloud, bullseye, bullseye-cloud. A kernel without e1000e (the cloud kernels) gets it
    /// built from Debian's linux-source for that kernel, once
    #[arg(long = "kernel", value_delimiter = ',', default_value = assets::DEFAULT_KERNEL)]
    pub kernels: Vec<String>,
    /// Migration cycles (VF removed, returns) in the cycles scenario
    #[arg(long, default_value_t = 3)]
    pub cycles: u32,
    /// Play only the checks whose name contains one of these (case-insensitive), e.g.
    /// `cargo xtask vm test "never returns"`; the checks before a chosen one in its boot play
    /// too, since they build its state. `--list` shows the names.
    pub names: Vec<String>,
    /// Print every check's name per boot, play nothing
    #[arg(long)]
    pub list: bool,
}

pub fn run(args: VmArgs) -> anyhow::Result<()> {
    match args.command {
        VmCommand::Fetch { kernel } => {
            let assets = assets::ensure(&kernel)?;
            println!(
                "vm: kernel {} ({}) cached in {}",
                assets.kernel_version,
                assets.package,
                assets::cache_dir().display()
            );
            Ok(())
        }
        VmCommand::Dpdk(args) => dpdk_rows(&args),
        VmCommand::Test(args) => {
            let unknown = scenarios::unknown_names(&args.sources, &args.names);
            if !unknown.is_empty() {
                eprintln!("vm test: no check is named like {unknown:?} (see `cargo xtask vm test --list`)");
                std::process::exit(2);
            }
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
    ["apt-get", "dpkg-deb", "ldd"]
        .into_iter()
        .find(|tool| crate::setup::which(tool).is_none())
        .map(|tool| format!("{tool} not found (the guest is made from Debian packages)"))
}

/// Builds the agent and the guest's initramfs for `kernel` in a fresh work directory; with
/// `with_dpdk`, Debian's testpmd and fail-safe's plugins go in too.
fn prepare_with(with_dpdk: bool, kernel: &str) -> anyhow::Result<(guest::Setup, tempfile::TempDir)> {
    let assets = assets::ensure(kernel)?;
    let release = crate::toolchain::build_agent()?;
    let work = tempfile::Builder::new().prefix("netvsc-vm.").tempdir().context("creating a work directory")?;
    let initramfs = work.path().join("initramfs.cpio");
    let mut contents = initramfs::Contents {
        // setpriv (util-linux): the least-privilege guest runs the agent through it.
        binaries: vec![
            release.join("netvsc-watch"),
            release.join("failsafe-sim"),
            release.join("stamp-lines"),
            PathBuf::from("/usr/bin/setpriv"),
        ],
        texts: vec![(
            format!("/bin/{}", ebpf_checks::LEAST_PRIVILEGE),
            ebpf_checks::LEAST_PRIVILEGE_SCRIPT.into(),
            0o755,
        )],
        ..Default::default()
    };
    if with_dpdk {
        contents.host_files = dpdk::host_files();
        contents.texts.push((dpdk_rows::TESTPMD_PATH.into(), testpmd::WRAPPER.into(), 0o755));
    }
    initramfs::build(&assets, &contents, &initramfs)?;
    println!(
        "vm: guest kernel {} ({}), initramfs {:.1} MiB",
        assets.kernel_version,
        assets.package,
        std::fs::metadata(&initramfs)?.len() as f64 / (1 << 20) as f64
    );
    let setup = guest::Setup {
        kernel: assets.kernel,
        kernel_version: assets.kernel_version,
        initramfs,
        work_dir: work.path().to_owned(),
    };
    Ok((setup, work))
}

fn prepare(kernel: &str) -> anyhow::Result<(guest::Setup, tempfile::TempDir)> {
    prepare_with(false, kernel)
}

/// Why DPDK's fail-safe cannot be played in the guest here, if it cannot.
pub fn dpdk_unavailable() -> Option<String> {
    unavailable().or_else(dpdk::unavailable)
}

/// The short version `cargo xtask test` runs: netvsc-watch (netlink) feeding fail-safe, two
/// plugs at two addresses; fails if fail-safe does not switch to either VF or ever reads a
/// stale address.
pub fn dpdk_check() -> anyhow::Result<()> {
    let args = DpdkArgs { rows: vec!["netlink:100".into()], cycles: 2, seed: None, no_docs: true, hyperv_cpuid: false };
    dpdk_rows(&args)
}

/// `cargo xtask vm dpdk`: every row, then the summary.
fn dpdk_rows(args: &DpdkArgs) -> anyhow::Result<()> {
    if let Some(why) = dpdk_unavailable() {
        bail!("cannot run: {why}");
    }
    let feeders = args.rows.iter().map(|row| dpdk_rows::parse_row(row)).collect::<anyhow::Result<Vec<_>>>()?;
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    println!("vm dpdk: seed {seed}, {} plugs a row", args.cycles);
    let (setup, work) = prepare_with(true, assets::DEFAULT_KERNEL)?;
    if args.hyperv_cpuid {
        let seen = dpdk::hyperv_cpuid(&setup)?;
        println!(
            "vm dpdk: with Hyper-V CPU properties the guest is {}Hyper-V to DPDK: {}",
            if seen.hyperv { "" } else { "not " },
            seen.evidence
        );
        return Ok(());
    }
    let mut results = Vec::new();
    let mut accel = None;
    for feeder in &feeders {
        println!("vm dpdk: {}", feeder.label());
        let mut phase = crate::phase::Phase::new(seed);
        match dpdk::run(&setup, feeder, args.cycles, &mut phase) {
            Ok((cycles, used)) => {
                results.push((feeder.clone(), cycles));
                accel = Some(used);
            }
            Err(err) => {
                println!("vm dpdk: console logs kept in {}", work.keep().display());
                return Err(err);
            }
        }
    }
    print!("{}\n{}", dpdk_rows::table(&results), dpdk_rows::unplug_evidence(&results));
    if !args.no_docs {
        let setup_line = format!(
            "Measured on: {}; guest: QEMU q35, {}, Debian kernel {}, 2 vCPUs, 1 GiB, DPDK {} (Debian's packages); \
             {} plugs a row at random phase (uniform over 2 s before each plug; seed {seed}).",
            crate::docs::machine(),
            accel.map_or("?", |a| a.name()),
            assets::ensure(assets::DEFAULT_KERNEL)?.kernel_version,
            dpdk::dpdk_version(),
            args.cycles,
        );
        dpdk_rows::write_docs(&dpdk_rows::markdown(&results, &setup_line))?;
        println!("vm dpdk: results written to docs/benchmarks.md");
    }
    Ok(())
}

/// The VM workload of `cargo xtask bench`.
pub fn bench(cycles: u32, churn_pairs: u32, seed: u64, results: &mut crate::figures::Results) -> anyhow::Result<()> {
    let (setup, _work) = prepare(assets::DEFAULT_KERNEL)?;
    bench::run(&setup, cycles, churn_pairs, seed, results)
}

/// `cargo xtask soak`'s guest: `cycles` servicing cycles of VF A on `kernel` with `source`; the
/// console log is kept when the soak fails.
pub fn soak(kernel: &str, source: &str, cycles: u32, seed: u64) -> anyhow::Result<crate::soaked::Soaked> {
    let (setup, work) = prepare(kernel)?;
    soak::run(&setup, source, cycles, seed).inspect_err(|_| {
        println!("soak[guest]: console log kept in {}", work.keep().display());
    })
}

/// Builds the agent, prepares a guest per kernel and runs the chosen scenarios for every source;
/// prints the results by kernel and source. A kernel whose guest cannot be made counts every
/// check of it as failed.
pub fn test(args: &TestArgs) -> anyhow::Result<Outcome> {
    if args.list {
        for source in &args.sources {
            scenarios::list(source);
        }
        return Ok(Outcome::default());
    }
    let mut outcome = Outcome::default();
    let mut table = Vec::new();
    for kernel in &args.kernels {
        let (setup, work) = match prepare(kernel) {
            Ok(prepared) => prepared,
            Err(err) => {
                let checks: u32 = args.sources.iter().map(|source| scenarios::count(source)).sum();
                println!("vm[{kernel}]: FAIL preparing the guest: {err:#}");
                outcome.failed += checks;
                table.push(format!("  {kernel}: guest not made, {checks} checks failed"));
                continue;
            }
        };
        let version = setup.kernel_version.clone();
        let mut row = Vec::new();
        let mut failed = 0;
        for source in &args.sources {
            let result = scenarios::run(&setup, source, args.cycles, &args.names);
            row.push(format!("{source} {}/{}", result.passed, result.passed + result.failed));
            failed += result.failed;
            outcome.add(result);
        }
        table.push(format!("  {version} ({kernel}): {}", row.join(", ")));
        if failed > 0 {
            println!("vm: console logs of {version} kept in {}", work.keep().display());
        }
    }
    println!("vm: by kernel and source (passed/played):\n{}", table.join("\n"));
    println!("vm: {} passed, {} failed", outcome.passed, outcome.failed);
    Ok(outcome)
}
