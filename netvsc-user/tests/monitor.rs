//! `netvsc-watch monitor` on a fake Azure tree with the poll source: hv_netvsc's real captured
//! lines (tests/fixtures/azure-dmesg.txt) fed through a FIFO standing in for /dev/kmsg become
//! per-interface kernel outages and metrics, the VF's removal and return in sysfs become the
//! agent's own failover, and nothing but the --measure file is created; a MANA boot (two vPorts
//! registering, mana's own lines) is one switch and no outage. Without a readable log
//! the agent warns once and runs.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netvsc_testkit::openmetrics::sample;
use netvsc_testkit::FakeSysfs;
use netvsc_user::report::lines::Line;
use netvsc_user::report::timeline::kernel::KernelOutage;
use netvsc_user::report::timeline::Report;
use netvsc_user::system::kmsg::{parse_dmesg_line, Record};
use nix::sys::signal::Signal;

mod support;
use support::{JsonProcess, NETVSC_WATCH, WAIT};

const FIXTURE: &str = include_str!("fixtures/azure-dmesg.txt");
/// The NetVSC of the boot capture (registration, rename, a data-path flap) and of the removal tail.
const BOOT_NETVSC: &str = "000d3af5-76bd-000d-3af5-76bd000d3af5 eth0";
const REMOVED_NETVSC: &str = "4179c815-5d8a-4915-976e-9ea2378e382b eth1";
const ETH0_MAC: &str = "00:0d:3a:f5:76:bd";
const ETH1_MAC: &str = "00:15:5d:00:00:01";

/// The (kmsg µs, message) lines of the fixture's capture whose heading contains `heading`.
fn capture(heading: &str) -> Vec<(u64, String)> {
    let paragraph = FIXTURE.split("\n\n").find(|p| p.lines().next().is_some_and(|h| h.contains(heading)));
    let lines = paragraph.unwrap_or_else(|| panic!("no capture {heading:?} in the fixture")).lines();
    lines.filter_map(parse_dmesg_line).map(|(at, message)| (at, message.to_owned())).collect()
}

/// What the kernel logged, as /dev/kmsg serves it: one record per message, at its time.
fn records(lines: &[(u64, String)]) -> Vec<String> {
    let record = |(seq, (at, message)): (usize, &(u64, String))| Record {
        facility: 0,
        level: 6,
        seq: seq as u64,
        timestamp_us: *at,
        fragment: false,
        message: message.clone(),
        subsystem: None,
        device: None,
    };
    lines.iter().enumerate().map(|l| record(l).to_kmsg()).collect()
}

fn time_of(lines: &[(u64, String)], text: &str) -> u64 {
    lines.iter().find(|(_, m)| m.ends_with(text) || m.contains(text)).unwrap_or_else(|| panic!("no {text:?}")).0
}

/// The boot capture's return lines (slot added, VF registering, data path to the VF) as logged
/// for the removal tail's NetVSC, now called `logged_as` (`<VMBus id> <name>`), a minute after
/// its slot was removed: no public capture has both ends of one outage.
fn returned(boot: &[(u64, String)], removal: &[(u64, String)], logged_as: &str) -> Vec<(u64, String)> {
    let back_at = time_of(removal, "VF slot 2 removed") + 60_000_000;
    let first_back = time_of(boot, "VF slot 1 added");
    let back: Vec<(u64, String)> = boot
        .iter()
        .filter(|(_, m)| m.starts_with("hv_netvsc") && !m.contains("switched from VF"))
        .map(|(at, m)| (at - first_back + back_at, m.replace(BOOT_NETVSC, logged_as)))
        .collect();
    assert_eq!(back.len(), 3, "{back:?}");
    back
}

/// Writes `lines` into the FIFO standing in for /dev/kmsg, one record per write.
fn feed(kmsg: &std::path::Path, lines: &[(u64, String)]) {
    let mut writer = std::fs::OpenOptions::new().write(true).open(kmsg).unwrap();
    for record in records(lines) {
        writer.write_all(record.as_bytes()).unwrap();
    }
}

fn metrics(addr: SocketAddr) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    agent.get(&format!("http://{addr}/metrics")).call().unwrap().body_mut().read_to_string().unwrap()
}

/// The sample `series`, once `/metrics` has it (the FIFO is read on a thread of its own).
fn await_sample(addr: SocketAddr, series: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics(addr);
        if sample(&text, series).is_some() || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn captured_hv_netvsc_lines_become_each_interfaces_outages_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth0", 3, ETH0_MAC).unwrap();
    sys.add_vf("enP53091s1np0", 10, ETH0_MAC, "cf63:00:02.0").unwrap();
    sys.set_master("enP53091s1np0", Some("eth0")).unwrap();
    sys.add_netvsc("eth1", 4, ETH1_MAC).unwrap();
    sys.add_vf("enP44703s2np0", 11, ETH1_MAC, "ae9f:00:02.0").unwrap();
    sys.set_master("enP44703s2np0", Some("eth1")).unwrap();
    let kmsg = dir.path().join("kmsg");
    nix::unistd::mkfifo(&kmsg, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let measure = dir.path().join("outages.json");
    let work = tempfile::tempdir().unwrap();
    let mut command = Command::new(NETVSC_WATCH);
    command.current_dir(work.path()).env("RUST_LOG", "warn");
    command.args(["monitor", "--json", "--source", "poll", "--poll-interval", "20", "--metrics-listen", "127.0.0.1:0"]);
    command.arg("--sysfs-root").arg(sys.root()).arg("--kmsg").arg(&kmsg).arg("--measure").arg(&measure);
    let mut agent = JsonProcess::spawn(command);
    let ready = agent.ready();
    let addr = ready.metrics_listen.expect("the ready line names the metrics address");
    let followed: Vec<&str> = ready.interfaces.iter().map(|i| i.netvsc.as_str()).collect();
    assert_eq!(followed, ["eth0", "eth1"]);

    // The boot capture as logged for eth0, the removal tail for eth1, then eth1's return: the
    // boot capture's return lines (slot added, VF registering, data path to the VF) as logged for
    // eth1, a minute after its slot was removed (no public capture has both ends of one outage).
    let boot = capture("Boot with a ConnectX-4");
    let removal = capture("Removal tail");
    let back = returned(&boot, &removal, REMOVED_NETVSC);
    let back_at = time_of(&back, "VF slot 1 added");
    let fed: Vec<(u64, String)> = boot.iter().chain(&removal).chain(&back).cloned().collect();
    feed(&kmsg, &fed);

    // The agent's own view of eth1's VF going and coming back, from sysfs.
    sys.remove("enP44703s2np0").unwrap();
    agent.change("dissociated", |c| c.netvsc == "eth1");
    sys.add_vf("enP44703s2np0", 12, ETH1_MAC, "ae9f:00:02.0").unwrap();
    agent.change("associated", |c| c.netvsc == "eth1");

    let to_vf =
        |netvsc: &str| format!(r#"netvsc_watch_data_path_switches_total{{netvsc="{netvsc}",direction="to_vf"}}"#);
    let from_vf =
        |netvsc: &str| format!(r#"netvsc_watch_data_path_switches_total{{netvsc="{netvsc}",direction="from_vf"}}"#);
    let per = |name: &str, netvsc: &str| format!(r#"netvsc_watch_{name}{{netvsc="{netvsc}"}}"#);
    let text = await_sample(addr, &per("vf_back_to_data_path_seconds_count", "eth1"));
    let eth1_outage = KernelOutage {
        netvsc: "eth1".into(),
        vmbus_id: "4179c815-5d8a-4915-976e-9ea2378e382b".into(),
        vf: Some("enP44703s2np0".into()),
        data_path_from_vf_us: Some(time_of(&removal, "Data path switched from VF: enP44703s2np0")),
        vf_unregistering_us: Some(time_of(&removal, "VF unregistering: enP44703s2np0")),
        slot_removed_us: Some(time_of(&removal, "VF slot 2 removed")),
        slot_added_us: Some(back_at),
        vf_registering_us: Some(time_of(&back, "VF registering: eth1")),
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

    // The same outage as a JSON line, once (written before the metrics changed).
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
        vmbus_id: "000d3af5-76bd-000d-3af5-76bd000d3af5".into(),
        vf: Some("enP53091s1np0".into()),
        data_path_from_vf_us: Some(time_of(&boot, "Data path switched from VF")),
        flap: true,
        ..KernelOutage::default()
    };
    assert_eq!(report.kernel_outages, [eth1_outage, eth0_outage], "ended first, then the one in progress");
    let failovers: Vec<(&str, &str, Option<&str>)> =
        report.failovers.iter().map(|f| (f.netvsc.as_str(), f.old_pci.as_str(), f.new_pci.as_deref())).collect();
    assert_eq!(failovers, [("eth1", "ae9f:00:02.0", Some("ae9f:00:02.0"))]);
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0, "no file created in the working directory");
    let made: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let mut made = made;
    made.sort();
    assert_eq!(made, ["kmsg", "outages.json", "sys"]);
}

#[test]
fn lines_logged_under_a_new_name_stay_with_their_interface_by_vmbus_id() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth1", 4, ETH1_MAC).unwrap();
    let kmsg = dir.path().join("kmsg");
    nix::unistd::mkfifo(&kmsg, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut command = Command::new(NETVSC_WATCH);
    command.env("RUST_LOG", "warn").args(["monitor", "--json", "--source", "poll", "--metrics-listen", "127.0.0.1:0"]);
    command.arg("--sysfs-root").arg(sys.root()).arg("--kmsg").arg(&kmsg);
    let mut agent = JsonProcess::spawn(command);
    let addr = agent.ready().metrics_listen.unwrap();
    // The kernel renames eth1 to eth5 while its VF is away; sysfs (and so the agent) still says
    // eth1 when the lines come.
    let removal = capture("Removal tail");
    let renamed_at = time_of(&removal, "VF slot 2 removed") + 1;
    let vmbus_id = REMOVED_NETVSC.split(' ').next().unwrap();
    let rename = (renamed_at, format!("hv_netvsc {vmbus_id} eth5: renamed from eth1"));
    let back = returned(&capture("Boot with a ConnectX-4"), &removal, &format!("{vmbus_id} eth5"));
    let fed: Vec<(u64, String)> = removal.iter().chain([&rename]).chain(&back).cloned().collect();
    feed(&kmsg, &fed);
    let series = r#"netvsc_watch_vf_back_to_data_path_seconds_count{netvsc="eth1"}"#;
    let text = await_sample(addr, series);
    assert_eq!(sample(&text, series), Some(1.0), "{text}");
    let to_vf = r#"netvsc_watch_data_path_switches_total{netvsc="eth1",direction="to_vf"}"#;
    assert_eq!(sample(&text, to_vf), Some(1.0), "{text}");
    assert!(!text.contains(r#"netvsc="eth5""#), "labelled by the agent's name for it: {text}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
}

#[test]
fn a_mana_boot_counts_one_switch_and_no_outage() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    for (name, ifindex, mac) in [("e2", 3, "00:22:48:00:00:02"), ("e3", 4, "00:22:48:00:00:03"), ("eth1", 5, ETH1_MAC)]
    {
        sys.add_netvsc(name, ifindex, mac).unwrap();
    }
    let kmsg = dir.path().join("kmsg");
    nix::unistd::mkfifo(&kmsg, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let measure = dir.path().join("outages.json");
    let mut command = Command::new(NETVSC_WATCH);
    command.env("RUST_LOG", "warn").args(["monitor", "--json", "--source", "poll", "--metrics-listen", "127.0.0.1:0"]);
    command.arg("--sysfs-root").arg(sys.root()).arg("--kmsg").arg(&kmsg).arg("--measure").arg(&measure);
    let mut agent = JsonProcess::spawn(command);
    let addr = agent.ready().metrics_listen.unwrap();
    // Two vPorts registering (and mana's own "joined to" lines), then eth1's data path on its VF.
    feed(&kmsg, &capture("MANA: one PCI function"));
    let to_vf = r#"netvsc_watch_data_path_switches_total{netvsc="eth1",direction="to_vf"}"#;
    let text = await_sample(addr, to_vf);
    let switches: Vec<&str> = text.lines().filter(|l| l.starts_with("netvsc_watch_data_path_switches_total")).collect();
    assert_eq!(switches, [format!("{to_vf} 1")], "{text}");
    assert!(!text.lines().any(|l| l.starts_with("netvsc_watch_kernel_outages_total")), "{text}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    let report: Report = serde_json::from_slice(&std::fs::read(&measure).unwrap()).unwrap();
    assert_eq!(report.kernel_outages, [], "a VF registering at boot ends no outage");
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
