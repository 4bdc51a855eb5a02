//! `netvsc-watch monitor` with the kernel's own rtnetlink events and addresses, in a network
//! namespace (root): the interface carrying an IPv4 address, which `watch` leaves alone, is
//! followed too, and its VF's departure and return are seen. And as an unprivileged user the real
//! /dev/kmsg is refused (kernel.dmesg_restrict): one warning, and it runs.

use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

mod support;
use support::stage::{Stage, StageExt as _, MAC, MAC2};
use support::{skip_unless_root, JsonProcess, NETVSC_WATCH};

#[test]
fn monitor_follows_the_routed_netvsc_too() {
    if skip_unless_root("monitor_follows_the_routed_netvsc_too") {
        return;
    }
    let stage = Stage::new("monitor").unwrap();
    stage.netvsc("eth0", 10, MAC).unwrap();
    stage.netns.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]).unwrap();
    stage.netvsc("eth1", 11, MAC2).unwrap();
    // What watch and exec would take: not eth0, which carries an address.
    let scan = Command::new("ip")
        .args(["netns", "exec", stage.netns.name(), NETVSC_WATCH, "scan", "--json", "--sysfs-root", stage.root()])
        .output()
        .unwrap();
    let states: Vec<(String, String)> = String::from_utf8(scan.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "interface")
        .map(|v| (v["netvsc"].as_str().unwrap().to_owned(), v["state"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(states, [("eth0".into(), "skipped".into()), ("eth1".into(), "waiting".into())]);
    let missing = stage.dir.path().join("no-kmsg");
    let args = ["monitor", "--source", "netlink", "--json", "--sysfs-root", stage.root(), "--kmsg"];
    let mut args: Vec<&str> = args.to_vec();
    args.push(missing.to_str().unwrap());
    let mut agent = JsonProcess::agent(Some(stage.netns.name()), &args);
    let ready = agent.ready();
    let followed: Vec<&str> = ready.interfaces.iter().map(|i| i.netvsc.as_str()).collect();
    assert_eq!(followed, ["eth0", "eth1"], "the routed eth0 too");
    stage.plug_vf("enP1", 20, MAC, "0001:00:02.0").unwrap();
    let joined = agent.change("associated", |_| true);
    assert_eq!((joined.netvsc.as_str(), joined.vf.map(|vf| vf.pci)), ("eth0", Some("0001:00:02.0".to_owned())));
    stage.unplug("enP1").unwrap();
    assert_eq!(agent.change("dissociated", |_| true).netvsc, "eth0");
    assert_eq!(std::fs::read_dir(stage.dir.path()).unwrap().count(), 1, "nothing made beside the tree");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
}

#[test]
fn an_unprivileged_monitor_is_refused_the_kernel_log_and_says_so_once() {
    if skip_unless_root("an_unprivileged_monitor_is_refused_the_kernel_log_and_says_so_once") {
        return;
    }
    let restricted = std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict").unwrap_or_default();
    if restricted.trim() != "1" {
        netvsc_testkit::skip(
            "an_unprivileged_monitor_is_refused_the_kernel_log_and_says_so_once",
            "kernel.dmesg_restrict is off: anyone may read /dev/kmsg",
        );
        return;
    }
    // The build's binary may sit below directories nobody may enter (a checkout in a 0700
    // directory): nobody runs a copy of it.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("netvsc-watch");
    std::fs::copy(NETVSC_WATCH, &bin).unwrap();
    let mut command = Command::new(&bin);
    std::os::unix::process::CommandExt::uid(&mut command, 65534);
    std::os::unix::process::CommandExt::gid(&mut command, 65534);
    command.env("RUST_LOG", "warn").stderr(Stdio::piped()).current_dir("/");
    command.args(["monitor", "--source", "netlink", "--json"]);
    let mut agent = JsonProcess::spawn(command);
    let ready = agent.ready();
    assert_eq!(ready.source, netvsc_user::event::SourceName::Netlink, "netlink needs no capability");
    let moments = ready.kernel_moments.expect("monitor says where the kernel's moments come from");
    assert_eq!(moments.from, "none", "{moments:?}");
    assert!(moments.error.is_some_and(|e| e.contains("needs root or CAP_SYSLOG")));
    let log = agent.terminate_for_log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("kernel's log")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    for needle in ["cannot read the kernel's log (needs root or CAP_SYSLOG)", "/dev/kmsg", "Operation not permitted"] {
        assert!(warnings[0].contains(needle), "{needle:?} in {}", warnings[0]);
    }
}
