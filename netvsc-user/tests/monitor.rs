//! `netvsc-watch monitor` on fake Azure trees with the poll source: hv_netvsc's real captured
//! lines (tests/fixtures/azure-dmesg.txt), played at their captured relative times through a
//! FIFO standing in for /dev/kmsg while the tree changes at the moments they tell, become
//! per-interface kernel outages and metrics, and the tree's changes the agent's own failover;
//! nothing but the --measure file is created (which interface a line is about: monitor_ties.rs).
//! A stand-in file read to its end keeps its outages for the report. A MANA vPort's return is joined by mana's own line; a boot is no outage. Without a readable log the
//! agent warns once, says so in its ready line and runs.

use std::process::{Command, Stdio};
use std::time::Duration;

use netvsc_testkit::openmetrics::sample;
use netvsc_testkit::FakeSysfs;
use netvsc_user::report::lines::{KernelMoments, Line};
use netvsc_user::report::timeline::kernel::KernelOutage;
use netvsc_user::report::timeline::Report;
use nix::sys::signal::Signal;

mod support;
use support::replay::*;
use support::{JsonProcess, NETVSC_WATCH};

#[test]
fn captured_hv_netvsc_lines_become_each_interfaces_outages_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc_on(vmbus_id(BOOT_NETVSC), "eth0", 3, ETH0_MAC).unwrap();
    sys.add_vf("enP53091s1np0", 10, ETH0_MAC, "cf63:00:02.0").unwrap();
    sys.set_master("enP53091s1np0", Some("eth0")).unwrap();
    sys.add_netvsc_on(vmbus_id(REMOVED_NETVSC), "eth1", 4, ETH1_MAC).unwrap();
    sys.add_vf("enP44703s2np0", 11, ETH1_MAC, "ae9f:00:02.0").unwrap();
    sys.set_master("enP44703s2np0", Some("eth1")).unwrap();
    let kmsg = dir.path().join("kmsg");
    fifo(&kmsg);
    let measure = dir.path().join("outages.json");
    let work = tempfile::tempdir().unwrap();
    let mut agent = monitor(&sys, &kmsg, Some(&measure), work.path());
    let ready = agent.ready();
    let addr = ready.metrics_listen.expect("the ready line names the metrics address");
    let followed: Vec<&str> = ready.interfaces.iter().map(|i| i.netvsc.as_str()).collect();
    assert_eq!(followed, ["eth0", "eth1"]);
    let from_kmsg = KernelMoments { from: "kmsg".into(), path: kmsg.clone(), error: None };
    assert_eq!(ready.kernel_moments, Some(from_kmsg));

    // The boot capture as logged for eth0, the removal tail for eth1, then eth1's return: the
    // boot capture's return lines (slot added, VF registering, data path to the VF) as logged for
    // eth1, a minute after its slot was removed (no public capture has both ends of one outage).
    // The tree changes at the moments the kernel logged: the VF netdevice goes as it unregisters,
    // its PCI function when the bus removes it; back, the function as hv_pci's bus appears, the
    // netdevice as the VF registers, joined to eth1 as udev renames it (hv_netvsc joins it just
    // before).
    let boot = capture("Boot with a ConnectX-4");
    let removal = capture("Removal tail");
    let back = returned(&boot, &removal, REMOVED_NETVSC);
    let back_at = time_of(&back, "VF slot 1 added");
    let bridge_at = time_of(&boot, "PCI host bridge") - time_of(&boot, "VF slot 1 added") + back_at;
    let registered_at = time_of(&back, "VF registering");
    let renamed_at = time_of(&boot, "renamed from") - time_of(&boot, "VF registering") + registered_at;
    let mut steps: Vec<(u64, Step<'_>)> = [&boot, &removal, &back].into_iter().flat_map(|l| logged(l)).collect();
    steps.extend([
        (time_of(&removal, "VF unregistering") + 1, Step::Tree(Box::new(|| sys.remove("enP44703s2np0").unwrap()))),
        (
            time_of(&removal, "remove device ae9f"),
            Step::Tree(Box::new(|| sys.remove_function("ae9f:00:02.0").unwrap())),
        ),
        (
            bridge_at,
            Step::Tree(Box::new(|| {
                drop(sys.add_function(netvsc_testkit::fake_sysfs::Make::ConnectX4, "ae9f:00:02.0").unwrap())
            })),
        ),
        (registered_at, Step::Tree(Box::new(|| sys.add_vf("enP44703s2np0", 12, ETH1_MAC, "ae9f:00:02.0").unwrap()))),
        (renamed_at, Step::Tree(Box::new(|| sys.set_master("enP44703s2np0", Some("eth1")).unwrap()))),
    ]);
    play(&kmsg, steps);

    let to_vf =
        |netvsc: &str| format!(r#"netvsc_watch_data_path_switches_total{{netvsc="{netvsc}",direction="to_vf"}}"#);
    let from_vf =
        |netvsc: &str| format!(r#"netvsc_watch_data_path_switches_total{{netvsc="{netvsc}",direction="from_vf"}}"#);
    let per = |name: &str, netvsc: &str| format!(r#"netvsc_watch_{name}{{netvsc="{netvsc}"}}"#);
    let text = await_sample(addr, &per("vf_back_to_data_path_seconds_count", "eth1"));
    let eth1_outage = KernelOutage {
        netvsc: "eth1".into(),
        vmbus_id: vmbus_id(REMOVED_NETVSC).into(),
        vf: Some("enP44703s2np0".into()),
        data_path_from_vf_us: Some(time_of(&removal, "Data path switched from VF: enP44703s2np0")),
        vf_unregistering_us: Some(time_of(&removal, "VF unregistering: enP44703s2np0")),
        slot_removed_us: Some(time_of(&removal, "VF slot 2 removed")),
        slot_added_us: Some(back_at),
        vf_registering_us: Some(registered_at),
        vf_joined_us: None,
        switch_to_vf_failed_us: None,
        data_path_to_vf_us: Some(time_of(&back, "Data path switched to VF")),
        new_vf: Some("enP53091s1np0".into()),
        flap: false,
    };
    let absent = eth1_outage.absent_s().unwrap();
    let back_to_data_path = eth1_outage.back_to_data_path_s().unwrap();
    let want = [
        (to_vf("eth0"), 1.0),
        (from_vf("eth0"), 1.0),
        (per("kernel_outages_total", "eth0"), 1.0),
        (per("data_path_flaps_total", "eth0"), 1.0),
        (to_vf("eth1"), 1.0),
        (from_vf("eth1"), 1.0),
        (per("kernel_outages_total", "eth1"), 1.0),
        (per("kernel_vf_absent_seconds_count", "eth1"), 1.0),
        (per("kernel_vf_absent_seconds_sum", "eth1"), absent),
        (per("vf_back_to_data_path_seconds_count", "eth1"), 1.0),
        (per("vf_back_to_data_path_seconds_sum", "eth1"), back_to_data_path),
    ];
    for (series, value) in want {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    assert_eq!(sample(&text, &per("kernel_vf_absent_seconds_count", "eth0")), None, "eth0's VF is not back");
    assert_eq!(
        sample(&text, &per("data_path_flaps_total", "eth1")),
        None,
        "no switch to eth1's VF came before it left"
    );

    // The same outage as a JSON line (written after the metrics changed), once.
    agent.line("eth1's kernel outage", |line| matches!(line, Line::KernelOutage { .. }));
    agent.drain_for(Duration::from_millis(100));
    let lines: Vec<&KernelOutage> = agent
        .seen()
        .iter()
        .filter_map(|o| match o.line() {
            Some(Line::KernelOutage { outage }) => Some(outage),
            _ => None,
        })
        .collect();
    assert_eq!(lines, [&eth1_outage]);

    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    let report: Report = serde_json::from_slice(&std::fs::read(&measure).unwrap()).unwrap();
    let eth0_outage = KernelOutage {
        netvsc: "eth0".into(),
        vmbus_id: vmbus_id(BOOT_NETVSC).into(),
        vf: Some("enP53091s1np0".into()),
        data_path_from_vf_us: Some(time_of(&boot, "Data path switched from VF")),
        flap: true,
        ..KernelOutage::default()
    };
    assert_eq!(report.kernel_outages, [eth1_outage, eth0_outage], "ended first, then the one in progress");
    // The agent's own account of eth1's outage, from the tree: gone, back, joined, in order.
    let [failover] = report.failovers.as_slice() else { panic!("{:?}", report.failovers) };
    let pcis = (failover.netvsc.as_str(), failover.old_pci.as_str(), failover.new_pci.as_deref());
    assert_eq!(pcis, ("eth1", "ae9f:00:02.0", Some("ae9f:00:02.0")));
    let (registered, joined) = (failover.netdev_registered_ns.unwrap(), failover.vf_joined_ns.unwrap());
    assert!(failover.netdev_gone_ns < registered && registered <= joined, "{failover:?}");
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0, "no file created in the working directory");
    let made: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let mut made = made;
    made.sort();
    assert_eq!(made, ["kmsg", "outages.json", "sys"]);
}

#[test]
fn a_mana_vports_return_is_joined_by_manas_own_line_and_a_boot_is_no_outage() {
    const E2: &str = "f8615163-0000-1000-2000-70a8a53148a8 e2";
    const E3: &str = "f8615163-0001-1000-2000-70a8a5314d8b e3";
    const ETH1: &str = "f8615163-0002-1000-2000-6045bdf3fe82 eth1";
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    for (logged_as, ifindex, mac) in [(E2, 3, "00:22:48:00:00:02"), (E3, 4, "00:22:48:00:00:03"), (ETH1, 5, ETH1_MAC)] {
        let name = logged_as.split(' ').nth(1).unwrap();
        sys.add_netvsc_on(vmbus_id(logged_as), name, ifindex, mac).unwrap();
    }
    let kmsg = dir.path().join("kmsg");
    fifo(&kmsg);
    let measure = dir.path().join("outages.json");
    let mut agent = monitor(&sys, &kmsg, Some(&measure), dir.path());
    let addr = agent.ready().metrics_listen.unwrap();
    // e2's VF leaves (the removal tail's lines, as logged for e2); a minute later the MANA boot:
    // both vPorts registering and joined by mana's own lines, then eth1's data path on its VF.
    let removal: Vec<(u64, String)> =
        capture("Removal tail").into_iter().map(|(at, m)| (at, m.replace(REMOVED_NETVSC, E2))).collect();
    let back_at = time_of(&removal, "VF slot 2 removed") + 60_000_000;
    let mana = capture("MANA: one PCI function");
    let first = mana[0].0;
    let mana: Vec<(u64, String)> = mana.into_iter().map(|(at, m)| (at - first + back_at, m)).collect();
    play(&kmsg, [removal.as_slice(), &mana].into_iter().flat_map(logged).collect());
    let to_vf = r#"netvsc_watch_data_path_switches_total{netvsc="eth1",direction="to_vf"}"#;
    let text = await_sample(addr, to_vf);
    let switches: Vec<&str> = text.lines().filter(|l| l.starts_with("netvsc_watch_data_path_switches_total")).collect();
    let e2_from = r#"netvsc_watch_data_path_switches_total{netvsc="e2",direction="from_vf"}"#;
    let mut want = [format!("{to_vf} 1"), format!("{e2_from} 1")];
    want.sort();
    let mut switches: Vec<String> = switches.into_iter().map(str::to_owned).collect();
    switches.sort();
    assert_eq!(switches, want, "{text}");
    let outages: Vec<&str> = text.lines().filter(|l| l.starts_with("netvsc_watch_kernel_outages_total")).collect();
    assert_eq!(outages, [r#"netvsc_watch_kernel_outages_total{netvsc="e2"} 1"#], "{text}");
    let absent = r#"netvsc_watch_kernel_vf_absent_seconds_count{netvsc="e2"}"#;
    assert_eq!(sample(&text, absent), Some(1.0), "the absence is known as the VF registers: {text}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    let report: Report = serde_json::from_slice(&std::fs::read(&measure).unwrap()).unwrap();
    let e2 = KernelOutage {
        netvsc: "e2".into(),
        vmbus_id: vmbus_id(E2).into(),
        vf: Some("enP44703s2np0".into()),
        data_path_from_vf_us: Some(time_of(&removal, "Data path switched from VF")),
        vf_unregistering_us: Some(time_of(&removal, "VF unregistering")),
        slot_removed_us: Some(time_of(&removal, "VF slot 2 removed")),
        vf_registering_us: Some(time_of(&mana, "e2: VF registering")),
        vf_joined_us: Some(time_of(&mana, "joined to e2")),
        new_vf: Some("eth0".into()),
        ..KernelOutage::default()
    };
    assert_eq!(report.kernel_outages, [e2], "in progress: no switch to e2's VF was logged; e3's boot is none");
}

#[test]
fn without_a_readable_kernel_log_it_warns_once_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth1", 4, ETH1_MAC).unwrap();
    let kmsg = dir.path().join("no-kmsg");
    let mut command = Command::new(NETVSC_WATCH);
    command.env("RUST_LOG", "warn").stderr(Stdio::piped());
    command.args(["monitor", "--json", "--source", "poll", "--sysfs-root"]).arg(sys.root()).arg("--kmsg").arg(&kmsg);
    let mut agent = JsonProcess::spawn(command);
    let ready = agent.ready();
    assert_eq!(ready.interfaces.iter().map(|i| i.netvsc.as_str()).collect::<Vec<_>>(), ["eth1"]);
    let none = ready.kernel_moments.expect("monitor says where the kernel's moments come from");
    assert_eq!((none.from.as_str(), &none.path), ("none", &kmsg));
    assert!(none.error.as_deref().is_some_and(|e| e.contains("No such file or directory")), "{none:?}");
    sys.add_vf("enP2p0s2", 10, ETH1_MAC, "0002:00:02.0").unwrap();
    agent.change("associated", |c| c.netvsc == "eth1");
    let log = agent.terminate_for_log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("kernel's log")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    let path = kmsg.display().to_string();
    for needle in ["WARN", "cannot read the kernel's log", path.as_str(), "No such file or directory"] {
        assert!(warnings[0].contains(needle), "{needle:?} in {}", warnings[0]);
    }
}

#[test]
fn a_stand_in_file_read_to_its_end_keeps_its_outages_for_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc_on(vmbus_id(REMOVED_NETVSC), "eth1", 4, ETH1_MAC).unwrap();
    let removal = capture("Removal tail");
    let back = returned(&capture("Boot with a ConnectX-4"), &removal, REMOVED_NETVSC);
    let kmsg = dir.path().join("kmsg.txt");
    let text: String = removal.iter().chain(&back).enumerate().map(|(seq, (at, m))| record(seq, *at, m)).collect();
    std::fs::write(&kmsg, text).unwrap();
    let measure = dir.path().join("outages.json");
    let mut agent = monitor(&sys, &kmsg, Some(&measure), dir.path());
    agent.ready();
    agent.line("the kernel outage", |line| matches!(line, Line::KernelOutage { .. }));
    agent.drain_for(Duration::from_millis(100));
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    let report: Report = serde_json::from_slice(&std::fs::read(&measure).unwrap()).unwrap();
    let ended: Vec<(&str, Option<u64>)> =
        report.kernel_outages.iter().map(|o| (o.netvsc.as_str(), o.data_path_to_vf_us)).collect();
    assert_eq!(ended, [("eth1", Some(time_of(&back, "Data path switched to VF")))], "after the file's end");
}
