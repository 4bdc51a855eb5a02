//! `cargo xtask fuzz`: builds the fuzz targets of fuzz/ with cargo-fuzz (nightly, libFuzzer) and
//! runs each for a while from its checked-in seeds (fuzz/corpus/<target>/ and the saved crashes
//! of fuzz/regressions/<target>/). What libFuzzer adds goes to target/fuzz/corpus/<target>/, so
//! the tree stays clean; a crash is kept under target/fuzz/artifacts/ and named with the command
//! that replays it. The suite runs every target for a few seconds (`check`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context as _};
use netvsc_testkit::fuzz::TARGETS;

mod capture;
mod stats;

use stats::Stats;

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Capture this machine's kernel's RTM_NEWLINK and RTM_NEWADDR messages (its own links and
    /// those of a network namespace with a veth pair, a bridge and a macvlan) into
    /// fuzz/corpus/rtnetlink/ as seeds, then stop (needs root)
    #[arg(long)]
    capture_seeds: bool,
    /// Targets to run, all when none is given: rtnetlink, ebpf_record, devargs, sysfs_attribute,
    /// sysfs_tree, sidecar_lock, kmsg
    targets: Vec<String>,
}

/// Seconds each target runs in the suite: enough for every seed and a few hundred thousand
/// mutations of the fast targets.
const SUITE_SECS: u64 = 5;

pub fn run(args: FuzzArgs) -> anyhow::Result<()> {
    if let Some(unknown) = args.targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
        eprintln!("xtask fuzz: no target {unknown:?} (the targets: {})", TARGETS.join(", "));
        std::process::exit(2);
    }
    if args.capture_seeds {
        return capture::run(&fuzz_dir().join("corpus/rtnetlink"));
    }
    if let Some(reason) = unavailable() {
        bail!("cannot fuzz here: {reason}");
    }
    let targets: Vec<&str> = match args.targets.is_empty() {
        true => TARGETS.to_vec(),
        false => args.targets.iter().map(String::as_str).collect(),
    };
    build()?;
    let mut crashed = Vec::new();
    let mut results = Vec::new();
    for target in &targets {
        println!("xtask fuzz: {target}: {} s from {} seeds", args.secs, seeds(target));
        let stats = fuzz(target, args.secs)?;
        println!("xtask fuzz: {target}: {stats}");
        if let Some(crash) = &stats.crash {
            println!("xtask fuzz: {target}: CRASH {}", crash.display());
            println!("  reproduce: {}", reproduce(target, crash));
            crashed.push(*target);
        }
        results.push((*target, stats));
    }
    println!("xtask fuzz: summary ({} s each):", args.secs);
    for (target, stats) in &results {
        println!("  {target:<16} {stats}");
    }
    if !crashed.is_empty() {
        bail!("crashed: {}", crashed.join(", "));
    }
    Ok(())
}

/// Why the targets cannot run here, if they cannot: libFuzzer needs nightly's sanitizer flags.
pub fn unavailable() -> Option<String> {
    let nightly = Command::new("rustup").args(["run", "nightly", "rustc", "--version"]).output();
    (!nightly.is_ok_and(|out| out.status.success()))
        .then(|| "no nightly toolchain (rustup toolchain install nightly)".to_owned())
}

/// The suite's bounded run: every target for a few seconds, each a test named `fuzz <target>`
/// with its verdict (a summary, or the crash and how to replay it); a failed build fails the
/// first. `Err` is why none can run (the suite counts them all as skipped).
pub fn suite() -> Result<Vec<(String, anyhow::Result<String>)>, String> {
    let started = Instant::now();
    // The setup step installs cargo-fuzz; without it here, it was told not to.
    let no_tool = || {
        crate::setup::which(crate::toolchain::CARGO_FUZZ.0)
            .is_none()
            .then(|| "no cargo-fuzz (cargo install --locked cargo-fuzz)".into())
    };
    if let Some(reason) = unavailable().or_else(no_tool) {
        return Err(reason);
    }
    if let Err(err) = build() {
        return Ok(vec![("fuzz build".into(), Err(err))]);
    }
    let verdicts = TARGETS
        .iter()
        .map(|target| {
            let verdict = fuzz(target, SUITE_SECS).and_then(|stats| match &stats.crash {
                None => Ok(stats.to_string()),
                Some(crash) => bail!("crash {}; reproduce: {}", crash.display(), reproduce(target, crash)),
            });
            (format!("fuzz {target}"), verdict)
        })
        .collect();
    println!("fuzz: {} targets in {:.0} s, the build included", TARGETS.len(), started.elapsed().as_secs_f64());
    Ok(verdicts)
}

fn fuzz_dir() -> PathBuf {
    crate::workspace::root().join("fuzz")
}

/// Where the targets are built, what they add to their corpora and what they crash on: under
/// the workspace's target/, apart from the ordinary builds (their flags differ).
fn work_dir() -> PathBuf {
    crate::workspace::root().join("target/fuzz")
}

/// Installs cargo-fuzz if missing and builds every target: release with debug assertions
/// (overflow checks too), AddressSanitizer off: the code under test is safe Rust but for the
/// ring record's one bounded read, which its target checks, and without it the suite's build
/// takes half as long.
fn build() -> anyhow::Result<()> {
    let (name, version) = crate::toolchain::CARGO_FUZZ;
    crate::toolchain::ensure_cargo_tool(name, version)?;
    let status = Command::new("cargo")
        .args(["+nightly", "fuzz", "build"])
        .args(build_flags())
        .current_dir(crate::workspace::root())
        .status()
        .context("running cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("cargo +nightly fuzz build failed ({status})");
    }
    Ok(())
}

/// cargo-fuzz's flags for [`build`], which the command that replays a crash repeats so that it
/// reuses the build: 16 codegen units rather than cargo-fuzz's one build the targets in half the
/// time on two cores.
fn build_flags() -> [&'static str; 9] {
    [
        "--fuzz-dir",
        "fuzz",
        "--debug-assertions",
        "--sanitizer",
        "none",
        "--codegen-units",
        "16",
        "--target-dir",
        "target/fuzz",
    ]
}

fn binary(target: &str) -> PathBuf {
    work_dir().join("x86_64-unknown-linux-gnu/release").join(target)
}

/// The checked-in inputs of `target`: its seeds and its saved crashes.
fn seed_dirs(target: &str) -> Vec<PathBuf> {
    ["corpus", "regressions"].iter().map(|kind| fuzz_dir().join(kind).join(target)).filter(|d| d.is_dir()).collect()
}

fn seeds(target: &str) -> usize {
    seed_dirs(target).iter().filter_map(|dir| std::fs::read_dir(dir).ok()).map(Iterator::count).sum()
}

/// Runs `target` for `secs` seconds: libFuzzer writes what it finds to the work corpus (the first
/// directory it is given) and reads the checked-in ones.
fn fuzz(target: &str, secs: u64) -> anyhow::Result<Stats> {
    let corpus = work_dir().join("corpus").join(target);
    let artifacts = work_dir().join("artifacts").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let binary = binary(target);
    let out = Command::new(&binary)
        .arg(format!("-max_total_time={secs}"))
        // A hang is a finding too: libFuzzer's own default waits 20 minutes.
        .arg("-timeout=10")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .arg(&corpus)
        .args(seed_dirs(target))
        .stdout(Stdio::null())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let stats = Stats::parse(&log);
    if !out.status.success() && stats.crash.is_none() {
        bail!("{} exited with {} and saved no input:\n{}", binary.display(), out.status, tail(&log));
    }
    if stats.crash.is_some() {
        println!("{}", tail(&log));
    }
    Ok(stats)
}

fn reproduce(target: &str, crash: &Path) -> String {
    format!("cargo +nightly fuzz run {} {target} {}", build_flags().join(" "), crash.display())
}

/// The last lines of libFuzzer's log: the panic and where.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
