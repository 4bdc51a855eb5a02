//! `netvsc-watch monitor` on fake Azure trees with the poll source: hv_netvsc's real captured
//! lines (tests/fixtures/azure-dmesg.txt), played at their captured relative times through a
//! FIFO standing in for /dev/kmsg while the tree changes at the moments they tell, become
//! per-interface kernel outages and metrics, and the tree's changes the agent's own failover;
//! nothing but the --measure file is created. Lines find their interface by the VMBus device in
//! sysfs (names may have been swapped), else by the logged name kept across renames. A MANA
//! vPort's return is joined by mana's own line; a boot is no outage. Without a readable log the
//! agent warns once, says so in its ready line and runs.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netvsc_testkit::openmetrics::sample;
use netvsc_testkit::FakeSysfs;
use netvsc_user::report::lines::{KernelMoments, Line};
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
/// Gaps between lines are played as captured up to this long (the longest within the boot and
/// removal captures is 3.0 s); longer ones are shortened to it: between captures of different VMs,
/// the minute between a removal and its return, MANA's 20 s before eth1's switch.
const MAX_GAP: Duration = Duration::from_millis(3_500);

/// The VMBus id of a captured `<VMBus id> <name>`.
fn vmbus_id(logged_as: &str) -> &str {
    logged_as.split(' ').next().unwrap()
}

/// The (kmsg µs, message) lines of the fixture's capture whose heading contains `heading`.
fn capture(heading: &str) -> Vec<(u64, String)> {
    let paragraph = FIXTURE.split("\n\n").find(|p| p.lines().next().is_some_and(|h| h.contains(heading)));
    let lines = paragraph.unwrap_or_else(|| panic!("no capture {heading:?} in the fixture")).lines();
    lines.filter_map(parse_dmesg_line).map(|(at, message)| (at, message.to_owned())).collect()
}

/// One message as /dev/kmsg serves it: record `seq`, logged at `at`.
fn record(seq: usize, at: u64, message: &str) -> String {
    let record = Record {
        facility: 0,
        level: 6,
        seq: seq as u64,
        timestamp_us: at,
        fragment: false,
        message: message.to_owned(),
        subsystem: None,
        device: None,
    };
    record.to_kmsg()
}

fn time_of(lines: &[(u64, String)], text: &str) -> u64 {
    lines.iter().find(|(_, m)| m.contains(text)).unwrap_or_else(|| panic!("no {text:?}")).0
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

/// What happens at a captured moment: the kernel logs a line, or the fake tree changes.
enum Step<'a> {
    Log(String),
    Tree(Box<dyn FnOnce() + 'a>),
}

fn logged<'a>(lines: &[(u64, String)]) -> Vec<(u64, Step<'a>)> {
    lines.iter().map(|(at, message)| (*at, Step::Log(message.clone()))).collect()
}

/// Plays `steps` in the order of their kmsg times and at their relative times (gaps over
/// [`MAX_GAP`] shortened to it), each line one record written to the FIFO standing in for
/// /dev/kmsg.
fn play(kmsg: &Path, mut steps: Vec<(u64, Step<'_>)>) {
    steps.sort_by_key(|(at, _)| *at);
    let mut writer = std::fs::OpenOptions::new().write(true).open(kmsg).unwrap();
    let start = Instant::now();
    let (mut due, mut last) = (Duration::ZERO, steps.first().map_or(0, |(at, _)| *at));
    for (seq, (at, step)) in steps.into_iter().enumerate() {
        due += Duration::from_micros(at - last).min(MAX_GAP);
        last = at;
        std::thread::sleep((start + due).saturating_duration_since(Instant::now()));
        match step {
            Step::Log(message) => writer.write_all(record(seq, at, &message).as_bytes()).unwrap(),
            Step::Tree(change) => change(),
        }
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

/// `monitor` on the tree at `sys`, reading `kmsg`, with metrics (and `--measure FILE`).
fn monitor(sys: &FakeSysfs, kmsg: &Path, measure: Option<&Path>, work: &Path) -> JsonProcess {
    let mut command = Command::new(NETVSC_WATCH);
    command.current_dir(work).env("RUST_LOG", "warn");
    command.args(["monitor", "--json", "--source", "poll", "--poll-interval", "20", "--metrics-listen", "127.0.0.1:0"]);
    command.arg("--sysfs-root").arg(sys.root()).arg("--kmsg").arg(kmsg);
    if let Some(measure) = measure {
        command.arg("--measure").arg(measure);
    }
    JsonProcess::spawn(command)
}

fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

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
fn lines_logged_under_a_new_name_stay_with_their_interface_by_vmbus_id() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth1", 4, ETH1_MAC).unwrap();
    let kmsg = dir.path().join("kmsg");
    fifo(&kmsg);
    let mut agent = monitor(&sys, &kmsg, None, dir.path());
    let addr = agent.ready().metrics_listen.unwrap();
    // The removal tail's NetVSC is not in the tree (its VMBus device has another id there):
    // its first line ties it to eth1 by name. The kernel renames it eth5 while its VF is away;
    // sysfs (and so the agent) still says eth1 when the lines come.
    let removal = capture("Removal tail");
    let renamed_at = time_of(&removal, "VF slot 2 removed") + 1;
    let rename = (renamed_at, format!("hv_netvsc {} eth5: renamed from eth1", vmbus_id(REMOVED_NETVSC)));
    let back = returned(&capture("Boot with a ConnectX-4"), &removal, &format!("{} eth5", vmbus_id(REMOVED_NETVSC)));
    let fed: Vec<(u64, String)> = removal.iter().chain([&rename]).chain(&back).cloned().collect();
    play(&kmsg, logged(&fed));
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
fn the_vmbus_device_in_sysfs_says_whose_line_it_is_when_names_were_swapped() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    // The removal tail's NetVSC is eth0 now; the name its lines carry, eth1, is another's.
    sys.add_netvsc_on(vmbus_id(REMOVED_NETVSC), "eth0", 3, ETH1_MAC).unwrap();
    sys.add_netvsc_on(vmbus_id(BOOT_NETVSC), "eth1", 4, ETH0_MAC).unwrap();
    let kmsg = dir.path().join("kmsg");
    fifo(&kmsg);
    let mut agent = monitor(&sys, &kmsg, None, dir.path());
    let addr = agent.ready().metrics_listen.unwrap();
    play(&kmsg, logged(&capture("Removal tail")));
    let outages = |netvsc: &str| format!(r#"netvsc_watch_kernel_outages_total{{netvsc="{netvsc}"}}"#);
    let text = await_sample(addr, r#"netvsc_watch_data_path_switches_total{netvsc="eth0",direction="from_vf"}"#);
    assert_eq!(sample(&text, &outages("eth0")), Some(1.0), "{text}");
    assert_eq!(sample(&text, &outages("eth1")), None, "{text}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
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
fn a_line_of_a_vmbus_device_not_followed_is_nobodys_even_under_a_followed_name() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc_on(vmbus_id(BOOT_NETVSC), "eth1", 3, ETH0_MAC).unwrap();
    // The removal tail's NetVSC is eth2 here, not followed; its lines say eth1.
    sys.add_netvsc_on(vmbus_id(REMOVED_NETVSC), "eth2", 4, ETH1_MAC).unwrap();
    let kmsg = dir.path().join("kmsg");
    fifo(&kmsg);
    let mut command = Command::new(NETVSC_WATCH);
    command.env("RUST_LOG", "warn").args(["monitor", "--json", "--source", "poll", "--iface", "eth1"]);
    command.args(["--metrics-listen", "127.0.0.1:0", "--sysfs-root"]).arg(sys.root()).arg("--kmsg").arg(&kmsg);
    let mut agent = JsonProcess::spawn(command);
    let addr = agent.ready().metrics_listen.unwrap();
    let boot: Vec<(u64, String)> =
        capture("Boot with a ConnectX-4").into_iter().filter(|(_, m)| m.contains("switched to VF")).collect();
    let boot: Vec<(u64, String)> =
        boot.into_iter().map(|(at, m)| (at + 2_000_000_000, m.replace("eth0:", "eth1:"))).collect();
    // eth2's removal, then a line of eth1's own device, so that everything before it was read.
    play(&kmsg, [capture("Removal tail").as_slice(), &boot].into_iter().flat_map(logged).collect());
    let to_vf = r#"netvsc_watch_data_path_switches_total{netvsc="eth1",direction="to_vf"}"#;
    let text = await_sample(addr, to_vf);
    assert_eq!(sample(&text, to_vf), Some(1.0), "{text}");
    assert!(!text.contains("netvsc_watch_kernel_outages_total"), "eth2's outage is not eth1's: {text}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
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
