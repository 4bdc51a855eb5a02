//! Debian's real `dpdk-testpmd` (DPDK 22.11 with fail-safe, tap, null and vdev_netvsc), run
//! without hugepages or PCI as a development machine allows.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub const TESTPMD: &str = "dpdk-testpmd";

/// Whether testpmd can run here; prints why the test `test` skips if not.
pub fn available(test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(TESTPMD).is_file()));
    if !found {
        netvsc_testkit::skip(test, "dpdk-testpmd not installed (apt-get install dpdk-dev librte-net-failsafe23 ...)");
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        netvsc_testkit::skip(test, "dpdk-testpmd needs root here (EAL's runtime directory)");
        return false;
    }
    true
}

/// EAL arguments of one run: no hugepages, no PCI, fail-safe's and vdev_netvsc's debug logs, and
/// a file prefix of its own (EAL locks its runtime directory by prefix; tests run in parallel).
pub fn eal_args() -> Vec<String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let prefix = format!("nvw{}-{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
    ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", &prefix]
        .into_iter()
        .map(str::to_owned)
        .chain(["--log-level=pmd.net.vdev_netvsc:debug".into(), "--log-level=pmd.net.failsafe:debug".into()])
        .collect()
}

/// `netvsc-watch exec --source poll <flags> --sysfs-root <root> -- dpdk-testpmd <EAL arguments>`:
/// the caller adds more EAL arguments, then `--` and testpmd's own.
pub fn under_exec(root: &std::path::Path, flags: &[&str]) -> Command {
    let mut command = Command::new(super::NETVSC_WATCH);
    command.args(["exec", "--source", "poll"]).args(flags).arg("--sysfs-root").arg(root);
    command.args(["--", TESTPMD]).args(eal_args());
    command
}

/// testpmd's own arguments (after `--`): a mempool small enough for `-m 256`.
pub const APP_ARGS: [&str; 2] = ["--total-num-mbufs", "2048"];

/// stdout and stderr of a finished run, as one text.
pub fn log_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The device strings fail-safe parsed, in order (its debug line `net_failsafe: <devargs>`
/// after reading a pipe, a command's output or a `dev()`).
pub fn parsed(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|line| line.strip_prefix("net_failsafe: "))
        .filter(|rest| !rest.contains(' ') && !rest.is_empty())
        .collect()
}

/// `sh -c SCRIPT`, non-interactive testpmd reading EOF from stdin: runs to its end.
pub fn shell(script: &str) -> Output {
    Command::new("sh").args(["-c", script]).stdin(std::process::Stdio::null()).output().unwrap()
}
