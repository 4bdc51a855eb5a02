//! A first run on a machine without NetVSC interfaces (a laptop, another cloud): every command
//! says plainly that there is nothing to manage and how to try the agent anyway, and `scan`
//! still exits 0.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use netvsc_testkit::FakeSysfs;
use nix::sys::signal::Signal;

mod support;
use support::NETVSC_WATCH;

/// What names the situation, and what says how to try it anyway.
const NOT_AZURE: &str = "this looks like a machine other than a Hyper-V/Azure VM, so there is nothing to manage";
const TRY_IT: &str = "to try it anyway: `sudo -E cargo xtask demo`";

/// An empty sysfs tree, or one with a single NetVSC interface.
fn tree(with_netvsc: bool) -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    if with_netvsc {
        sys.add_netvsc("eth1", 90_101, "00:15:5d:00:01:01").unwrap();
    }
    (dir, sys)
}

fn scan(sys: &FakeSysfs, json: bool) -> std::process::Output {
    let mut command = Command::new(NETVSC_WATCH);
    command.args(["scan", "--sysfs-root"]).arg(sys.root()).env("RUST_LOG", "warn");
    if json {
        command.arg("--json");
    }
    command.output().expect("running netvsc-watch scan")
}

/// Whether CPUID says Hyper-V here: then the first line points at the driver instead.
fn on_hyperv() -> bool {
    netvsc_user::output::dpdk_probe::AutoProbe::detect(&Default::default(), &[], false).hyperv
}

fn expected_first_line(sys: &FakeSysfs) -> String {
    let hyperv = on_hyperv();
    netvsc_user::report::first_run::hint_lines(sys.root(), hyperv)[0].clone()
}

#[test]
fn scan_of_an_empty_tree_says_no_netvsc_was_found_and_how_to_try_anyway_and_exits_0() {
    let (_dir, sys) = tree(false);
    let out = scan(&sys, false);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "hint, how to try it, DPDK's auto-probe: {stdout}");
    assert_eq!(lines[0], expected_first_line(&sys));
    assert!(lines[0].contains(&format!("under {}/class/net", sys.root().display())), "{}", lines[0]);
    if !on_hyperv() {
        assert!(lines[0].ends_with(NOT_AZURE), "{}", lines[0]);
    }
    assert!(lines[1].starts_with(TRY_IT) && lines[1].contains("--force --iface NAME"), "{}", lines[1]);
    assert!(lines[2].contains("vdev_netvsc"), "the auto-probe line stays last: {}", lines[2]);
}

#[test]
fn scan_json_keeps_stdout_to_json_lines_and_logs_the_hint() {
    let (_dir, sys) = tree(false);
    let out = scan(&sys, true);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "only the auto-probe line: {stdout}");
    assert!(stdout.contains("\"dpdk_auto_probe\""), "{stdout}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains(&expected_first_line(&sys)) && stderr.contains(TRY_IT), "{stderr}");
}

#[test]
fn scan_with_a_netvsc_interface_gives_no_hint() {
    let (_dir, sys) = tree(true);
    let out = scan(&sys, false);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("eth1 (ifindex 90101"), "{text}");
    assert!(!text.contains("no NetVSC interface found") && !text.contains(TRY_IT), "{text}");
}

/// Starts `args` (watch or exec) on the tree, waits for its `ready` line, stops it with SIGTERM
/// when `stop` (exec's application ends by itself) and returns its exit code and log.
fn start_up_log(args: &[&str], sys: &FakeSysfs, stop: bool) -> (Option<i32>, String) {
    let mut child = Command::new(NETVSC_WATCH)
        .args(&args[..1])
        .args(["--sysfs-root", sys.root().to_str().unwrap(), "--source", "poll", "--json"])
        .args(&args[1..])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting netvsc-watch");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let ready = stdout.lines().map_while(Result::ok).any(|line| line.contains("\"event\":\"ready\""));
    assert!(ready, "no ready line");
    if stop {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn watch_with_nothing_to_manage_says_so_at_start_up() {
    let (_dir, sys) = tree(false);
    let fifo_dir = tempfile::tempdir().unwrap();
    let (code, log) = start_up_log(&["watch", "--fifo-dir", fifo_dir.path().to_str().unwrap()], &sys, true);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains(&expected_first_line(&sys)) && log.contains(TRY_IT), "{log}");
    assert!(log.contains("watching for NetVSC interfaces to appear"), "{log}");
}

#[test]
fn exec_with_nothing_to_manage_says_so_and_runs_the_application() {
    let (_dir, sys) = tree(false);
    let (code, log) = start_up_log(&["exec", "--", "true"], &sys, false);
    assert_eq!(code, Some(0), "the application's status: {log}");
    assert!(log.contains(&expected_first_line(&sys)) && log.contains(TRY_IT), "{log}");
    assert!(log.contains("the application runs without fail-safe ports"), "{log}");
}

#[test]
fn watch_with_a_netvsc_interface_gives_no_hint() {
    let (_dir, sys) = tree(true);
    let fifo_dir = tempfile::tempdir().unwrap();
    let (code, log) = start_up_log(&["watch", "--fifo-dir", fifo_dir.path().to_str().unwrap()], &sys, true);
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("no NetVSC interface found") && !log.contains(TRY_IT), "{log}");
}
