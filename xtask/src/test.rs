//! `cargo xtask test`: installs what the suite needs (setup.rs), runs every test target relayed
//! as it runs, the lint gates and the checks that need the whole build (VM, image, bench), then
//! lists the skips grouped by reason and one closing line that totals them
//! (`summary: N passed, N failed, N skipped`), skips being the tests that said `SKIP name: why`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;

use anyhow::{bail, Context as _};

#[derive(clap::Args)]
pub struct TestArgs {
    /// Install nothing: what needs a missing package is skipped, and the summary says so
    #[arg(long)]
    no_install: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// (test, reason) of every skip, in the order they were said.
    pub skips: Vec<(String, String)>,
}

impl Totals {
    /// Adds what one line of cargo's output says.
    pub fn add_line(&mut self, line: &str) {
        if let Some(skip) = line.strip_prefix("SKIP ") {
            let (test, reason) = skip.split_once(": ").unwrap_or((skip, "no reason given"));
            self.skip(test, reason, 0);
        }
        if let Some(result) = line.trim().strip_prefix("test result: ") {
            for part in result.split(['.', ';']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next().and_then(|n| n.parse::<u64>().ok()), words.next()) {
                    match what {
                        "passed" => self.passed += n,
                        "failed" => self.failed += n,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Counts `test` as skipped for `reason`; `counted_as_passed` of them also count as passed
    /// (libtest counts a skipping test as passed; a check of ours does not count itself).
    pub(crate) fn skip(&mut self, test: &str, reason: &str, counted_as_passed: u64) {
        self.skipped += 1;
        self.passed += counted_as_passed;
        self.skips.push((test.to_owned(), reason.to_owned()));
    }

    /// The skips grouped by reason, most frequent first: one line per reason naming its tests.
    pub fn skips_by_reason(&self) -> Vec<String> {
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
        for (test, reason) in &self.skips {
            match groups.iter_mut().find(|(known, _)| known == reason) {
                Some((_, tests)) => tests.push(test),
                None => groups.push((reason, vec![test])),
            }
        }
        groups.sort_by_key(|(_, tests)| std::cmp::Reverse(tests.len()));
        groups
            .into_iter()
            .map(|(reason, tests)| format!("{} skipped: {reason}: {}", tests.len(), tests.join(", ")))
            .collect()
    }
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    crate::setup::prepare(args.no_install).context("installing what the suite needs")?;
    // The agent under test embeds the kernel program, as `cargo xtask build` makes it.
    crate::toolchain::ensure().context("setting up nightly rust-src and bpf-linker for the eBPF object")?;
    let mut totals = Totals::default();
    // DPDK releases besides the host's, each in a root of its own packages (tests/dpdk*.rs).
    let (dpdk_roots, dpdk_failures) = crate::dpdk_root::environment();
    for failure in dpdk_failures {
        println!("dpdk root: FAIL {failure}");
        totals.failed += 1;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // --all-targets also runs each benchmark once in test mode: they must keep working; their
    // figures come from `cargo bench`.
    let mut child = Command::new(&cargo)
        .args(["test", "--workspace", "--all-targets"])
        .env("NETVSC_BUILD_EBPF", "1")
        .envs(dpdk_roots)
        .current_dir(crate::workspace::root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cargo} test"))?;
    let (tx, lines) = channel::<(bool, String)>();
    let relays: Vec<_> = [
        (false, child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>)),
        (true, child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>)),
    ]
    .into_iter()
    .map(|(is_err, stream)| {
        let tx = tx.clone();
        let stream = stream.expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send((is_err, line));
            }
        })
    })
    .collect();
    drop(tx);
    for (is_err, line) in lines {
        totals.add_line(&line);
        if is_err {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    relays.into_iter().for_each(|r| r.join().expect("relay thread"));
    let status = child.wait()?;
    if status.success() {
        lint_gates(&mut totals);
        fuzz_check(&mut totals);
        rebuild_check(&mut totals);
        failover_bench_check(&mut totals);
        soak_checks(&mut totals);
        vm_scenarios(&mut totals);
        vm_dpdk_check(&mut totals);
        image_check(&mut totals);
        package_check(&mut totals);
        kube_check(&mut totals);
    }
    for line in totals.skips_by_reason() {
        println!("{line}");
    }
    // libtest counts a skipped test as passed.
    let passed = totals.passed.saturating_sub(totals.skipped);
    println!("summary: {passed} passed, {} failed, {} skipped", totals.failed, totals.skipped);
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if totals.failed > 0 {
        bail!("{} test(s) failed", totals.failed);
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// One check counted as one test: skipped, saying why, when `unavailable` names a reason; else
/// passed or failed on `run`'s result.
fn check(totals: &mut Totals, name: &str, unavailable: Option<String>, run: impl FnOnce() -> anyhow::Result<()>) {
    if let Some(reason) = unavailable {
        println!("SKIP {name}: {reason}");
        totals.skip(name, &reason, 1);
        return;
    }
    match run() {
        Ok(()) => {
            println!("{name}: ok");
            totals.passed += 1;
        }
        Err(err) => {
            println!("{name}: FAIL {err:#}");
            totals.failed += 1;
        }
    }
}

/// The fuzz targets' bounded run, a test per target.
fn fuzz_check(totals: &mut Totals) {
    match crate::fuzz::suite() {
        Err(reason) => {
            for target in netvsc_testkit::fuzz::TARGETS {
                let name = format!("fuzz {target}");
                println!("SKIP {name}: {reason}");
                totals.skip(&name, &reason, 1);
            }
        }
        Ok(verdicts) => {
            for (name, verdict) in verdicts {
                match verdict {
                    Ok(summary) => {
                        println!("{name}: ok ({summary})");
                        totals.passed += 1;
                    }
                    Err(err) => {
                        println!("{name}: FAIL {err:#}");
                        totals.failed += 1;
                    }
                }
            }
        }
    }
}

/// `cargo fmt --check` and clippy with warnings denied over every target (one test each).
fn lint_gates(totals: &mut Totals) {
    let missing = |component: &str| {
        (!crate::setup::has_component(component)).then(|| format!("no {component} (rustup component add {component})"))
    };
    check(totals, "rustfmt", missing("rustfmt"), || crate::workspace::cargo(&["fmt", "--all", "--check"]));
    check(totals, "clippy", missing("clippy"), || {
        // With the test build's environment, so its build scripts are not rerun.
        crate::workspace::cargo_with_env(
            &["clippy", "--quiet", "--workspace", "--all-targets", "--", "-D", "warnings"],
            &[("NETVSC_BUILD_EBPF", "1")],
        )
    });
}

/// A change to the shared types must reach the embedded kernel object (one test).
fn rebuild_check(totals: &mut Totals) {
    check(totals, "ebpf-rebuild-check", None, crate::rebuild_check::run);
}

/// The host failover bench's three rows with a few plugs each: the reference listener, the
/// minimal reactor and the agent in both modes keep working (one test; needs root).
fn failover_bench_check(totals: &mut Totals) {
    let unavailable = (!nix::unistd::geteuid().is_root()).then(|| "needs root for a network namespace".to_owned());
    check(totals, "failover bench check", unavailable, || crate::bench::failover_check(5));
}

/// Short servicing soaks, host (a sidecar restarted with SIGTERM and SIGKILL on the way) and
/// guest (real hot-plug, eBPF): no stale read, no missed VF, nothing grown (a test each).
fn soak_checks(totals: &mut Totals) {
    let unavailable = (!nix::unistd::geteuid().is_root()).then(|| "needs root for a network namespace".to_owned());
    check(totals, "soak host", unavailable, crate::soak::host_check);
    check(totals, "soak guest", crate::vm::unavailable(), crate::soak::guest_check);
}

/// The container image builds offline within its budget and its binary runs (one test).
fn image_check(totals: &mut Totals) {
    check(totals, "container image", crate::image::unavailable(), crate::image::check);
}

/// The .deb installs, verifies and purges cleanly here; the RPM's files, metadata and scripts
/// hold and it installs into a scratch root; the tarball's checksums hold (one test).
fn package_check(totals: &mut Totals) {
    check(totals, "packages", crate::package::check::unavailable(), crate::package::check::run);
}

/// The DaemonSet manifests played by `podman kube play`: the agent healthy, its directory shared
/// with the consumer pod; monitor healthy and reading the node's /dev/kmsg (one test).
fn kube_check(totals: &mut Totals) {
    check(totals, "kubernetes manifests (podman kube play)", crate::kube::unavailable(), crate::kube::check);
}

/// DPDK's real fail-safe in the guest, fed by the agent: two plugs at two addresses, fail-safe
/// switching to each and never reading a stale one (one test).
fn vm_dpdk_check(totals: &mut Totals) {
    check(totals, "vm dpdk", crate::vm::dpdk_unavailable(), crate::vm::dpdk_check);
}

/// The QEMU hot-plug scenarios: every source on the default kernel; the eBPF source (the code
/// that differs between kernels: hooks, BTF offsets, the fentry → kprobe fallback) also on the
/// kernel Azure's Debian images boot, trixie's cloud kernel, with the VF stand-in's driver built
/// for it. A machine that cannot run them says why and counts them as skipped.
fn vm_scenarios(totals: &mut Totals) {
    const RUNS: [(&str, &[&str]); 2] =
        [(crate::vm::DEFAULT_KERNEL, &["ebpf", "netlink", "poll"]), ("trixie-cloud", &["ebpf"])];
    let count = |sources: &[&str]| sources.iter().map(|s| u64::from(crate::vm::scenario_count(s))).sum::<u64>();
    if let Some(reason) = crate::vm::unavailable() {
        let scenarios: u64 = RUNS.iter().map(|(_, sources)| count(sources)).sum();
        println!("SKIP vm scenarios ({scenarios} checks): {reason}");
        for _ in 0..scenarios {
            totals.skip("vm scenario", &reason, 1);
        }
        return;
    }
    for (kernel, sources) in RUNS {
        let args = crate::vm::TestArgs {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            kernels: vec![kernel.to_owned()],
            cycles: 3,
            names: Vec::new(),
            list: false,
        };
        match crate::vm::test(&args) {
            Ok(outcome) => {
                totals.passed += u64::from(outcome.passed);
                totals.failed += u64::from(outcome.failed);
            }
            Err(err) => {
                println!("vm[{kernel}]: FAIL setting up the guest: {err:#}");
                totals.failed += count(sources);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_cargo_result_lines_and_skips() {
        let mut totals = Totals::default();
        for line in [
            "test result: ok. 10 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "SKIP netlink_events: needs root",
            "test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.17s",
            "running 4 tests",
        ] {
            totals.add_line(line);
        }
        assert_eq!(
            totals,
            Totals { passed: 13, failed: 2, skipped: 1, skips: vec![("netlink_events".into(), "needs root".into())] }
        );
    }

    #[test]
    fn skips_are_grouped_by_reason_most_frequent_first() {
        let mut totals = Totals::default();
        for line in [
            "SKIP a: dpdk-testpmd not installed",
            "SKIP b: needs root",
            "SKIP c: needs root",
            "SKIP d: dpdk-testpmd not installed",
            "SKIP e: needs root",
            "SKIP odd",
        ] {
            totals.add_line(line);
        }
        assert_eq!(
            totals.skips_by_reason(),
            [
                "3 skipped: needs root: b, c, e",
                "2 skipped: dpdk-testpmd not installed: a, d",
                "1 skipped: no reason given: odd",
            ]
        );
        assert_eq!((totals.skipped, totals.passed), (6, 0));
    }
}
