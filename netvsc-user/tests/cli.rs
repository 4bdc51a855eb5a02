//! The binary as users run it, against fake sysfs trees (no root needed): reports, exit codes,
//! the launcher and the sidecar with a fail-safe-style reader.

use std::process::Command;
use std::time::Duration;

use netvsc_testkit::FakeSysfs;
use netvsc_user::decide::pairing::Match;
use netvsc_user::report::lines::Line;
use netvsc_user::report::lines::{InterfaceReport, InterfaceState, VfReport};
use nix::sys::signal::Signal;

mod support;
use support::{dir_names, is_root, open_fifo, scan_lines, JsonProcess, FAILSAFE_SIM, NETVSC_WATCH};

const MAC: &str = "00:15:5d:00:00:01";

fn fake() -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    // ifindexes far above anything the kernel has, so no real address is found for them.
    sys.add_netvsc("eth1", 90_001, MAC).unwrap();
    sys.add_vf("enP2p0s2", 90_003, MAC, "0002:00:02.0").unwrap();
    sys.add_netvsc("eth2", 90_002, "00:15:5d:00:00:02").unwrap();
    sys.add_virtual("eth1.100", 90_004, MAC).unwrap();
    (dir, sys)
}

fn netvsc_watch(args: &[&str]) -> std::process::Output {
    Command::new(NETVSC_WATCH).args(args).output().expect("running netvsc-watch")
}

/// `watch` on the fake tree with a fast poll source, JSON on.
fn sidecar(sys: &FakeSysfs, fifo_dir: &std::path::Path) -> JsonProcess {
    let root = root_arg(sys);
    let args = ["watch", "--sysfs-root", &root, "--fifo-dir", fifo_dir.to_str().unwrap(), "--source", "poll"];
    JsonProcess::agent(None, &[&args[..], &["--poll-interval", "20", "--json"]].concat())
}

/// The `interface` lines of a scan.
fn interfaces(lines: Vec<Line>) -> Vec<InterfaceReport> {
    lines
        .into_iter()
        .filter_map(|line| match line {
            Line::Interface(report) => Some(report),
            _ => None,
        })
        .collect()
}

fn root_arg(sys: &FakeSysfs) -> String {
    sys.root().to_str().unwrap().to_owned()
}

#[test]
fn scan_reports_every_netvsc_interface() {
    let (_dir, sys) = fake();
    let out = netvsc_watch(&["scan", "--sysfs-root", &root_arg(&sys), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines = scan_lines(&out.stdout);
    let Some(Line::DpdkAutoProbe { dpdk_auto_probe }) = lines.pop() else { panic!("no auto-probe line last") };
    assert_eq!(dpdk_auto_probe.vdev.as_deref(), Some("net_vdev_netvsc0,ignore=1"), "{dpdk_auto_probe:?}");
    assert_eq!(dpdk_auto_probe.evidence, "NetVSC interface eth1", "{dpdk_auto_probe:?}");
    let lines = interfaces(lines);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].netvsc, "eth1");
    assert_eq!(lines[0].ifindex, 90_001);
    assert_eq!(lines[0].mac, MAC);
    assert_eq!(lines[0].state, InterfaceState::Paired);
    let vf = VfReport {
        iface: "enP2p0s2".into(),
        pci: "0002:00:02.0".into(),
        devargs: "0002:00:02.0".into(),
        matched: Match::Mac,
    };
    assert_eq!(lines[0].vf, Some(vf));
    assert_eq!(lines[1].netvsc, "eth2");
    assert_eq!(lines[1].state, InterfaceState::Waiting);
    assert_eq!(lines[1].vf, None);

    let out = netvsc_watch(&["scan", "--sysfs-root", &root_arg(&sys)]);
    let text = String::from_utf8(out.stdout).unwrap();
    let first =
        format!("eth1 (ifindex 90001, {MAC}) [net_failsafe_vsc0]: paired with enP2p0s2 (0002:00:02.0, matched by mac)");
    assert_eq!(text.lines().next(), Some(first.as_str()), "{text}");

    let out = netvsc_watch(&["scan", "--sysfs-root", &root_arg(&sys), "--iface", "eth2"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("eth1") && text.contains("skipped: not selected"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("Hyper-V (NetVSC interface eth1): exec adds --vdev net_vdev_netvsc0,ignore=1"),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_naming_the_value() {
    let (_dir, sys) = fake();
    let root = root_arg(&sys);
    let cases: &[(&[&str], &str)] = &[
        (&["scan", "--sysfs-root", &root, "--iface", "eth9"], "eth9"),
        (&["scan", "--sysfs-root", &root, "--iface", "eth1.100"], "eth1.100"),
        (&["scan", "--sysfs-root", &root, "--mac", "00:15:5d:zz:00:01"], "00:15:5d:zz:00:01"),
        (&["scan", "--sysfs-root", &root, "--devargs", "iface=eth1,speed=10"], "speed"),
        (&["scan", "--sysfs-root", &root, "--devargs", "force=yes"], "yes"),
        (&["scan", "--sysfs-root", &root, "--devargs", "mac=01:02"], "01:02"),
        (&["scan", "--sysfs-root", "/nonexistent-sysfs"], "/nonexistent-sysfs"),
        (&["watch", "--sysfs-root", &root, "--fifo-dir", "/nonexistent-dir"], "/nonexistent-dir"),
        (&["watch", "--sysfs-root", &root, "--fifo-dir", "/tmp", "--file-mode", "999"], "999"),
        (&["watch", "--sysfs-root", &root, "--fifo-dir", "/tmp", "--file-mode", "7777"], "7777"),
        (&["watch", "--sysfs-root", &root, "--fifo-dir", "/tmp", "--file-mode", "+644"], "+644"),
        (&["watch", "--sysfs-root", &root, "--fifo-dir", "/tmp", "--source", "carrier-pigeon"], "carrier-pigeon"),
        (&["exec", "--sysfs-root", &root, "--failsafe-poll", "0", "--", "true"], "0"),
        (&["exec", "--sysfs-root", &root, "--failsafe-poll", "60001", "--", "true"], "60001"),
        (&["exec", "--sysfs-root", &root, "--failsafe-poll", "2s", "--", "true"], "2s"),
        (&["exec", "--sysfs-root", &root, "--realtime-priority", "0", "--", "true"], "0"),
        (&["watch", "--sysfs-root", &root, "--fifo-dir", "/tmp", "--realtime-priority", "100"], "100"),
        (&["monitor", "--sysfs-root", &root, "--flap-window", "0"], "\"0\""),
        (&["monitor", "--sysfs-root", &root, "--flap-window", "3601"], "3601"),
        (&["monitor", "--sysfs-root", &root, "--flap-window", "NaN"], "NaN"),
        (&["monitor", "--sysfs-root", &root, "--flap-window", "10s"], "10s"),
    ];
    for (args, named) in cases {
        let out = netvsc_watch(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?} should name {named}: {stderr}");
    }
}

#[test]
fn force_and_devargs_accept_a_non_netvsc_interface() {
    let (_dir, sys) = fake();
    sys.add_virtio("eth0", 90_010, "52:54:00:00:00:10").unwrap();
    sys.add_vf("eth5", 90_011, "52:54:00:00:00:10", "0000:01:00.0").unwrap();
    for args in [vec!["--iface", "eth0", "--force"], vec!["--devargs", "iface=eth0,force=1"]] {
        let mut full = vec!["scan", "--json", "--sysfs-root", sys.root().to_str().unwrap()];
        full.extend(args);
        let out = netvsc_watch(&full);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines = interfaces(scan_lines(&out.stdout));
        let eth0 = lines.iter().find(|l| l.netvsc == "eth0").expect("forced interface reported");
        assert_eq!(
            (eth0.state, eth0.vf.as_ref().map(|vf| vf.pci.as_str())),
            (InterfaceState::Paired, Some("0000:01:00.0"))
        );
        let eth1 = lines.iter().find(|l| l.netvsc == "eth1").unwrap();
        assert_eq!(eth1.state, InterfaceState::Skipped);
    }
}

#[test]
fn ignore_does_nothing_and_exits_0() {
    let (dir, sys) = fake();
    let fifo_dir = dir.path().join("out");
    std::fs::create_dir(&fifo_dir).unwrap();
    for args in [
        vec!["watch", "--ignore", "--fifo-dir", fifo_dir.to_str().unwrap()],
        vec!["watch", "--devargs", "ignore=1", "--fifo-dir", fifo_dir.to_str().unwrap()],
        vec!["scan", "--ignore"],
    ] {
        let mut full = args.clone();
        full.extend(["--sysfs-root", sys.root().to_str().unwrap()]);
        let out = netvsc_watch(&full);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", String::from_utf8_lossy(&out.stdout));
    }
    assert_eq!(std::fs::read_dir(&fifo_dir).unwrap().count(), 0, "ignore creates nothing");
}

#[test]
fn help_explains_every_mode_with_examples() {
    let out = netvsc_watch(&["--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["scan", "watch", "exec", "Examples:", "RUST_LOG"] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
    let out = netvsc_watch(&["watch", "--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--fifo-dir",
        "--iface",
        "--mac",
        "--force",
        "--ignore",
        "--devargs",
        "--source",
        "--poll-interval",
        "--resync-interval",
        "--json",
        "Example:",
    ] {
        assert!(text.contains(needle), "watch --help lacks {needle}:\n{text}");
    }
}

#[test]
fn exec_inserts_vdevs_feeds_the_pipe_and_returns_the_exit_status() {
    let (_dir, sys) = fake();
    let root = root_arg(&sys);
    let mut command = Command::new(NETVSC_WATCH);
    command.args([
        "exec",
        "--sysfs-root",
        &root,
        "--iface",
        "eth1",
        "--source",
        "poll",
        "--poll-interval",
        "20",
        "--json",
        "--",
    ]);
    command.args([FAILSAFE_SIM, "--poll-ms", "10", "--exit-code", "7", "--", "-i"]);
    let mut agent = JsonProcess::spawn(command);
    let argv = agent.app_line("the application's argv", |v| v.get("argv").is_some())["argv"].clone();
    let argv: Vec<&str> = argv.as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(argv[0], FAILSAFE_SIM);
    // The fake tree has NetVSC interfaces: Hyper-V, so DPDK's own vdev_netvsc is switched off.
    assert_eq!(argv[1..3], ["--vdev", "net_vdev_netvsc0,ignore=1"]);
    assert_eq!(argv[3], "--vdev");
    let fd = argv[4].strip_prefix("net_failsafe_vsc0,fd(").and_then(|r| r.split_once(')')).unwrap().0;
    assert_eq!(argv[4], format!("net_failsafe_vsc0,fd({fd}),dev(net_tap_vsc0,remote=eth1),hotplug_poll=100"));
    assert_eq!(&argv[5..], ["--poll-ms", "10", "--exit-code", "7", "--", "-i"]);
    agent.app_line("the VF address read from the pipe", |v| v["read"] == "0002:00:02.0");

    // The VF goes away: fail-safe must never read its address again.
    sys.remove("enP2p0s2").unwrap();
    let gone = agent.change("dissociated", |_| true);
    let emptied_at = gone.at_ns;
    let later = agent.drain_for(Duration::from_millis(150));
    let stale: Vec<_> =
        later.iter().filter_map(|o| o.other()).filter(|v| v["t_ns"].as_u64().is_some_and(|t| t > emptied_at)).collect();
    assert!(stale.is_empty(), "stale reads after the pipe was emptied: {stale:?}");

    // It returns at another address.
    sys.add_vf("enP3p0s2", 90_005, MAC, "0003:00:02.0").unwrap();
    agent.app_line("the new address read", |v| v["read"] == "0003:00:02.0");

    agent.signal(Signal::SIGTERM);
    let status = agent.wait();
    assert_eq!(status.code(), Some(128 + 15), "SIGTERM was forwarded and the child's fate returned");
}

/// `--realtime-priority`: the agent runs at SCHED_FIFO, the application it starts at the normal
/// policy (it asks `chrt` about its parent, the agent, and itself). Without the privilege (not
/// root) the agent says which one is missing, exits 1 and starts nothing.
#[test]
fn exec_runs_the_agent_real_time_and_the_application_not() {
    let (dir, sys) = fake();
    let app = dir.path().join("policies.sh");
    std::fs::write(&app, "#!/bin/sh\nchrt -p $PPID\nchrt -p $$\n").unwrap();
    std::fs::set_permissions(&app, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let root = root_arg(&sys);
    let out = netvsc_watch(&["exec", "--sysfs-root", &root, "--realtime-priority", "10", "--", app.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !is_root() {
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("--realtime-priority 10") && stderr.contains("CAP_SYS_NICE"), "{stderr}");
        assert!(stdout.is_empty(), "nothing started: {stdout}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let policies: Vec<&str> = stdout.lines().map(|line| line.rsplit(": ").next().unwrap()).collect();
    assert_eq!(policies, ["SCHED_FIFO|SCHED_RESET_ON_FORK", "10", "SCHED_OTHER", "0"], "{stdout}");
}

#[test]
fn exec_returns_the_applications_own_exit_code() {
    let (_dir, sys) = fake();
    let out = netvsc_watch(&[
        "exec",
        "--sysfs-root",
        &root_arg(&sys),
        "--",
        FAILSAFE_SIM,
        "--duration-ms",
        "50",
        "--exit-code",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn watch_keeps_fifo_and_state_file_and_cleans_up_on_sigint() {
    let (dir, sys) = fake();
    let fifo_dir = dir.path().join("run");
    std::fs::create_dir(&fifo_dir).unwrap();
    let mut agent = sidecar(&sys, &fifo_dir);
    let ready = agent.ready();
    assert_eq!(ready.interfaces.len(), 2);
    let state = fifo_dir.join("eth1.addr");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "0002:00:02.0\n");
    let fifo = open_fifo(fifo_dir.join("eth1.pipe"));
    assert_eq!(
        netvsc_user::output::failsafe::reader::read_like_failsafe(&fifo).unwrap().as_deref(),
        Some("0002:00:02.0")
    );

    sys.remove("enP2p0s2").unwrap();
    let gone = agent.change("dissociated", |_| true);
    assert_eq!(gone.source, netvsc_user::event::SourceName::Poll);
    assert!(gone.reaction_us > 0.0);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "");
    assert_eq!(netvsc_user::output::failsafe::reader::read_like_failsafe(&fifo).unwrap(), None);

    // A NetVSC interface that appears later is picked up.
    sys.add_netvsc("eth3", 90_020, "00:15:5d:00:00:03").unwrap();
    let managed = agent.change("managed", |_| true);
    assert_eq!(managed.netvsc, "eth3");
    assert!(fifo_dir.join("eth3.pipe").exists());

    agent.signal(Signal::SIGINT);
    assert_eq!(agent.wait().code(), Some(0));
    assert_eq!(
        dir_names(&fifo_dir),
        [".netvsc-watch.lock", "eth1.pipe", "eth2.pipe", "eth3.pipe"],
        "state files removed at exit; FIFOs kept for DPDK, which may hold them open"
    );
    for fifo in ["eth1.pipe", "eth2.pipe", "eth3.pipe"] {
        let fifo = open_fifo(fifo_dir.join(fifo));
        assert_eq!(netvsc_user::output::failsafe::reader::read_like_failsafe(&fifo).unwrap(), None, "emptied at exit");
    }
}

#[test]
fn watch_keeps_serving_when_one_late_interface_cannot_get_its_files() {
    let (dir, sys) = fake();
    let fifo_dir = dir.path().join("run");
    std::fs::create_dir(&fifo_dir).unwrap();
    let precious = dir.path().join("precious");
    std::fs::write(&precious, "keep me").unwrap();
    std::os::unix::fs::symlink(&precious, fifo_dir.join("eth3.pipe")).unwrap();
    let mut agent = sidecar(&sys, &fifo_dir);
    agent.ready();
    sys.add_netvsc("eth3", 90_020, "00:15:5d:00:00:03").unwrap();
    agent.change("managed", |c| c.netvsc == "eth3");
    sys.remove("enP2p0s2").unwrap();
    agent.change("dissociated", |c| c.netvsc == "eth1");
    assert_eq!(std::fs::read_to_string(fifo_dir.join("eth1.addr")).unwrap(), "");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me", "the symlink was not followed");
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent is still running");
}

#[test]
fn on_mana_scan_and_the_sidecar_files_carry_the_line_with_the_mac() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth1", 90_001, "00:22:48:00:00:0a").unwrap();
    sys.add_mana_vport("enP30832s1", 90_002, "00:22:48:00:00:0a", "7870:00:00.0").unwrap();
    let line = "7870:00:00.0,mac=00:22:48:00:00:0a";
    let out = netvsc_watch(&["scan", "--sysfs-root", &root_arg(&sys), "--json"]);
    let reports = interfaces(scan_lines(&out.stdout));
    assert_eq!(reports[0].vf.as_ref().map(|vf| vf.devargs.as_str()), Some(line), "{reports:?}");

    let fifo_dir = dir.path().join("run");
    std::fs::create_dir(&fifo_dir).unwrap();
    let mut agent = sidecar(&sys, &fifo_dir);
    agent.ready();
    assert_eq!(std::fs::read_to_string(fifo_dir.join("eth1.addr")).unwrap(), format!("{line}\n"));
    let fifo = open_fifo(fifo_dir.join("eth1.pipe"));
    assert_eq!(netvsc_user::output::failsafe::reader::read_like_failsafe(&fifo).unwrap().as_deref(), Some(line));
}
