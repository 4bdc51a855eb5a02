//! `exec` and DPDK's own vdev_netvsc: on Hyper-V the launcher switches off DPDK's auto-probe
//! with `--vdev net_vdev_netvsc0,ignore=1`. The argv the application receives, and Debian's real
//! `dpdk-testpmd` accepting it (skipped, with the reason, where DPDK is not installed).

use std::process::Command;

use netvsc_testkit::{dpdk_log, FakeSysfs};
use netvsc_user::output::dpdk_probe::AutoProbe;

mod support;
use support::testpmd::{self, Release};
use support::{JsonProcess, FAILSAFE_SIM, NETVSC_WATCH};

const IGNORE: &str = "net_vdev_netvsc0,ignore=1";

fn tree(netvsc: bool) -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    if netvsc {
        sys.add_netvsc("eth1", 90_001, "00:15:5d:00:00:01").unwrap();
    }
    // A virtio stand-in, managed only when forced: no evidence of Hyper-V.
    sys.add_virtio("eth0", 90_010, "52:54:00:00:00:10").unwrap();
    (dir, sys)
}

/// The argv failsafe-sim received and what the agent's ready line says about DPDK's auto-probe,
/// for `exec [flags] -- failsafe-sim app_args`.
fn exec_argv(sys: &FakeSysfs, flags: &[&str], app_args: &[&str]) -> (Vec<String>, AutoProbe) {
    let mut command = Command::new(NETVSC_WATCH);
    command.args(["exec", "--json", "--source", "poll", "--sysfs-root", sys.root().to_str().unwrap()]);
    command.args(flags).arg("--").arg(FAILSAFE_SIM).args(["--duration-ms", "300"]).args(app_args);
    let mut agent = JsonProcess::spawn(command);
    // The two lines come from two processes, in either order.
    let ready = agent.ready();
    let argv = match agent.seen().iter().filter_map(|o| o.other()).find(|v| v.get("argv").is_some()) {
        Some(line) => line["argv"].clone(),
        None => agent.app_line("the application's argv", |v| v.get("argv").is_some())["argv"].clone(),
    };
    let argv = argv.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect();
    assert_eq!(agent.wait().code(), Some(0));
    (argv, ready.dpdk_auto_probe)
}

fn ignore_vdevs(argv: &[String]) -> usize {
    argv.windows(2).filter(|w| w[0] == "--vdev" && w[1] == IGNORE).count()
}

#[test]
fn on_hyperv_exec_switches_off_dpdks_own_vdev_netvsc() {
    let (_dir, sys) = tree(true);
    let (argv, ready) = exec_argv(&sys, &[], &[]);
    assert_eq!(argv[1..3], ["--vdev", IGNORE], "{argv:?}");
    assert_eq!(argv[3..5], ["--vdev".to_owned(), argv[4].clone()]);
    assert!(argv[4].starts_with("net_failsafe_vsc0,fd("), "{argv:?}");
    assert!(ready.hyperv);
    assert_eq!(ready.evidence, "NetVSC interface eth1");
    assert_eq!(ready.vdev.as_deref(), Some(IGNORE));

    // The user's own choice wins, and the switch opts out.
    let (argv, ready) = exec_argv(&sys, &[], &["--vdev", "net_vdev_netvsc0,iface=eth1"]);
    assert_eq!(ignore_vdevs(&argv), 0, "{argv:?}");
    assert_eq!(ready.not_inserted.as_deref(), Some("the application's arguments name net_vdev_netvsc"));
    let (argv, ready) = exec_argv(&sys, &["--keep-dpdk-vdev-netvsc"], &[]);
    assert_eq!(ignore_vdevs(&argv), 0, "{argv:?}");
    assert_eq!(ready.not_inserted.as_deref(), Some("--keep-dpdk-vdev-netvsc"));
}

#[test]
fn off_hyperv_exec_adds_nothing_for_it() {
    let (_dir, sys) = tree(false);
    let (argv, ready) = exec_argv(&sys, &["--iface", "eth0", "--force"], &[]);
    let evidence = ready.evidence.clone();
    if evidence.contains("Microsoft Hv") {
        netvsc_testkit::skip(
            "off_hyperv_exec_adds_nothing_for_it",
            &format!("this machine is a Hyper-V guest ({evidence})"),
        );
        return;
    }
    assert!(evidence.starts_with("CPUID") || evidence.starts_with("no NetVSC"), "{evidence}");
    assert!(!ready.hyperv);
    assert_eq!(ignore_vdevs(&argv), 0, "{argv:?}");
    assert!(argv[2].starts_with("net_failsafe_vsc0,fd("), "{argv:?}");
}

/// `netvsc-watch exec -- dpdk-testpmd` without hugepages or PCI, non-interactive: its output.
fn run_testpmd(release: &Release, sys: &FakeSysfs, app_vdevs: &[&str]) -> std::process::Output {
    let mut command = release.under_exec(sys.root(), &[]);
    command.args(app_vdevs).arg("--").args(testpmd::APP_ARGS);
    command.stdin(std::process::Stdio::null()).output().unwrap()
}

dpdk_tests!(real_testpmd_accepts_the_inserted_switch_and_creates_nothing_from_it, |release| {
    let (_dir, sys) = tree(true);
    let out = run_testpmd(release, &sys, &[]);
    let log = testpmd::log_of(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(dpdk_log::vdev_netvsc_invoked(&log), [r#""net_vdev_netvsc0", using arguments "ignore=1""#], "{log}");
    assert_eq!(log.matches("Initializing Fail-safe PMD for").count(), 1, "only our fail-safe port: {log}");
    assert!(log.contains("Initializing Fail-safe PMD for net_failsafe_vsc0"), "{log}");

    // The user's own net_vdev_netvsc argument: nothing added, no duplicate device.
    let out = run_testpmd(release, &sys, &["--vdev", IGNORE]);
    let log = testpmd::log_of(&out);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert_eq!(dpdk_log::vdev_netvsc_invoked(&log).len(), 1, "{log}");
});

dpdk_tests!(real_failsafe_takes_a_mana_line_as_one_sub_device_with_its_mac, |release| {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 90_001, "00:22:48:00:00:0a").unwrap();
    sys.add_mana_vport("enP30832s1", 90_002, "00:22:48:00:00:0a", "7870:00:00.0").unwrap();
    sys.add_netvsc("eth2", 90_003, "00:22:48:00:00:0b").unwrap();
    sys.add_mana_vport("enP30832s1d1", 90_004, "00:22:48:00:00:0b", "7870:00:00.0").unwrap();
    let out = run_testpmd(release, &sys, &[]);
    let log = testpmd::log_of(&out);
    // Each fail-safe instance read its own line from its pipe and parsed it whole: the vPort's
    // PCI function with the MAC that selects the port.
    let parsed = dpdk_log::parsed(&log);
    for line in ["7870:00:00.0,mac=00:22:48:00:00:0a", "7870:00:00.0,mac=00:22:48:00:00:0b"] {
        assert!(parsed.contains(&line), "fail-safe did not parse {line}: {log}");
    }
    assert_eq!(log.matches("Initializing Fail-safe PMD for").count(), 2, "{log}");
});
