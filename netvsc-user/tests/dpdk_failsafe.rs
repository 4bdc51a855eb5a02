//! The real consumer: Debian's `dpdk-testpmd` with DPDK's own fail-safe PMD reading what
//! netvsc-watch writes, in the three forms the README documents (launcher pipe, sidecar FIFO,
//! sidecar state file through `exec(cat ...)`), run exactly as the README writes them, for each
//! DPDK release (22.11 on the host, 24.11 from a trixie root sharing only the sidecar's
//! directory). What fail-safe parsed is taken from its own debug log. Skipped, with the reason,
//! without DPDK/root.
//!
//! Without PCI here, fail-safe's probe of the VF address fails; it then re-probes the address it
//! parsed every `hotplug_poll` (which is how the poll set by `exec` is observed).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use netvsc_testkit::{dpdk_log, FakeSysfs};

mod support;
use support::testpmd::{self, Release};
use support::{JsonProcess, NETVSC_WATCH};

const VF_PCI: &str = "0001:00:02.0";

/// eth1 (NetVSC) with its VF at `VF_PCI`.
fn tree() -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 90_001, "00:15:5d:00:00:01").unwrap();
    sys.add_vf("enP1p0s2", 90_002, "00:15:5d:00:00:01", VF_PCI).unwrap();
    (dir, sys)
}

/// The README's sidecar example whose fail-safe argument contains `form` (`fd(9)` or
/// `exec(cat`): its lines from the first shell line to the `dpdk-testpmd` line, with `/run/netvsc`
/// → `dir` (as the shell sees it, and as testpmd sees it on its own line), `dpdk-testpmd` →
/// `release`'s, and the trailing `...` → a development machine's EAL arguments.
fn readme_example(release: &Release, form: &str, dir: &std::path::Path) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("dpdk-testpmd") && l.contains(form))
        .unwrap_or_else(|| panic!("README has no dpdk-testpmd example with {form}"));
    let first = if lines[at - 1].starts_with("exec ") { at - 1 } else { at };
    assert!(lines[at].ends_with(" ..."), "{}", lines[at]);
    let shell_lines = lines[first..at].iter().map(|line| line.replace("/run/netvsc", dir.to_str().unwrap()));
    let testpmd_line = lines[at]
        .trim_end_matches(" ...")
        .replacen("dpdk-testpmd", release.testpmd.to_str().unwrap(), 1)
        .replace("/run/netvsc", &release.inside(dir));
    let eal = testpmd::eal_args().join(" ");
    let app = testpmd::APP_ARGS.join(" ");
    let script: Vec<String> = shell_lines.chain([format!("{testpmd_line} {eal} -- {app}")]).collect();
    script.join("\n")
}

/// The sidecar on `sys` with its files in `dir`, ready.
fn sidecar(sys: &FakeSysfs, dir: &std::path::Path) -> JsonProcess {
    let root = sys.root().to_str().unwrap();
    let mut agent = JsonProcess::agent(
        None,
        &["watch", "--json", "--source", "poll", "--sysfs-root", root, "--fifo-dir", dir.to_str().unwrap()],
    );
    agent.ready();
    agent
}

/// The README's sidecar example for `form` run against a sidecar on eth1 with its VF: asserts
/// that testpmd ran and fail-safe parsed the VF's address; stops the sidecar. Its log and the
/// sidecar's directory.
fn readme_form_feeds_real_failsafe(release: &Release, form: &str) -> (String, tempfile::TempDir) {
    let (_tree_dir, sys) = tree();
    let run = release.shared_dir();
    let agent = sidecar(&sys, run.path());
    let out = testpmd::shell(&readme_example(release, form, run.path()));
    let log = testpmd::log_of(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(dpdk_log::parsed(&log).first(), Some(&VF_PCI), "fail-safe did not read {form}: {log}");
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    (log, run)
}

dpdk_tests!(fifo_form_from_the_readme_feeds_real_failsafe, |release| {
    let (log, _run) = readme_form_feeds_real_failsafe(release, "fd(9)");
    assert!(log.contains("Initializing Fail-safe PMD for net_failsafe_vsc0"), "{log}");
    // Only our port: the example switches off DPDK's own vdev_netvsc.
    assert!(
        dpdk_log::vdev_netvsc_invoked(&log).contains(&r#""net_vdev_netvsc0", using arguments "ignore=1""#),
        "{log}"
    );
});

dpdk_tests!(state_file_form_from_the_readme_feeds_real_failsafe, |release| {
    let (_, run) = readme_form_feeds_real_failsafe(release, "exec(cat");

    // After the agent stopped the state file is gone: fail-safe reads no address (and no stale one).
    let out = testpmd::shell(&readme_example(release, "exec(cat", run.path()));
    let log = testpmd::log_of(&out);
    assert!(!dpdk_log::parsed(&log).contains(&VF_PCI), "{log}");
});

/// Interactive testpmd under `exec --failsafe-poll poll_ms`, kept running for `held` after its
/// first probe of the VF's address (so that how long EAL takes to start, which grows with the
/// machine's load, does not change what is counted): its log.
fn exec_held(release: &Release, sys: &FakeSysfs, poll_ms: &str, held: Duration) -> String {
    let mut command = release.under_exec(sys.root(), &["--failsafe-poll", poll_ms]);
    command.args(["--", "-i"]).args(testpmd::APP_ARGS);
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (first_probe, probed) = std::sync::mpsc::channel();
    let readers = [
        read_lines(child.stdout.take().unwrap(), first_probe.clone()),
        read_lines(child.stderr.take().unwrap(), first_probe),
    ];
    let started = probed.recv_timeout(Duration::from_secs(60)).is_ok();
    if started {
        std::thread::sleep(held);
    }
    // testpmd's prompt ends with stdin.
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"quit\n");
    drop(stdin);
    let status = child.wait().unwrap();
    let log: String = readers.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(started, "no probe of {VF_PCI} within 60 s: {log}");
    assert_eq!(status.code(), Some(0), "{log}");
    log
}

/// The lines of `stream` until it ends, as one text; says on `first_probe` when one is a probe
/// of the VF's address.
fn read_lines(
    stream: impl std::io::Read + Send + 'static,
    first_probe: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stream)).map_while(Result::ok) {
            if line.contains(&probe_line()) {
                let _ = first_probe.send(());
            }
            text += &line;
            text.push('\n');
        }
        text
    })
}

/// What EAL says when fail-safe's probe of the VF's address finds no such PCI device.
fn probe_line() -> String {
    format!("Cannot find device ({VF_PCI})")
}

dpdk_tests!(exec_sets_failsafes_poll_and_failsafe_keeps_it, |release| {
    let (_tree_dir, sys) = tree();
    let probes = |log: &str| log.matches(&probe_line()).count();
    let held = Duration::from_millis(2000);
    let fast = exec_held(release, &sys, "50", held);
    assert_eq!(dpdk_log::parsed(&fast).first(), Some(&VF_PCI), "{fast}");
    let slow = exec_held(release, &sys, "1000", held);
    // The probe of the parsed address fails here (no PCI) and is retried every hotplug_poll: at
    // most 3 times in the 2 s after the first at 1000 ms; at 50 ms up to 40, fewer when the
    // machine is busy, since each retry also fails to create the tap sub-device (CI, running
    // both releases at once, saw 10-12). More than twice what 1000 ms allows is what says the
    // poll was set. Never a re-read of the pipe.
    let slowest = 3;
    assert!(probes(&fast) > 2 * slowest, "{} probes at 50 ms: {fast}", probes(&fast));
    assert!((1..=slowest).contains(&probes(&slow)), "{} probes at 1000 ms: {slow}", probes(&slow));
    assert_eq!(dpdk_log::parsed(&fast).iter().filter(|p| **p == VF_PCI).count(), 1, "{fast}");
});

dpdk_tests!(exec_returns_testpmds_own_exit_status, |release| {
    let (_tree_dir, sys) = tree();
    // An EAL argument testpmd rejects: its status, run directly and under exec. `-v` first: EAL
    // says which DPDK this is before it refuses.
    let bad = ["-v", "--no-such-eal-option"];
    let direct = Command::new(&release.testpmd).args(bad).stdin(Stdio::null()).output().unwrap();
    let code = direct.status.code().expect("exited");
    let log = testpmd::log_of(&direct);
    assert_ne!(code, 0, "{log}");
    assert!(log.contains(&format!("RTE Version: 'DPDK {}.", release.name)), "not DPDK {}: {log}", release.name);
    let under = Command::new(NETVSC_WATCH)
        .args(["exec", "--source", "poll", "--sysfs-root"])
        .arg(sys.root())
        .arg("--")
        .arg(&release.testpmd)
        .args(bad)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(under.status.code(), Some(code), "{}", testpmd::log_of(&under));
});
