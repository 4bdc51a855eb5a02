//! `monitor`'s tests: the captured kernel lines of tests/fixtures/azure-dmesg.txt, replayed at
//! their captured relative times through a FIFO standing in for /dev/kmsg while a fake tree
//! changes, and the agent's metrics read back.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netvsc_testkit::openmetrics::sample;
use netvsc_testkit::FakeSysfs;
use netvsc_user::system::kmsg::{parse_dmesg_line, Record};

use super::{JsonProcess, NETVSC_WATCH, WAIT};

pub const FIXTURE: &str = include_str!("../fixtures/azure-dmesg.txt");
/// The NetVSC of the boot capture (registration, rename, a data-path flap) and of the removal tail.
pub const BOOT_NETVSC: &str = "000d3af5-76bd-000d-3af5-76bd000d3af5 eth0";
pub const REMOVED_NETVSC: &str = "4179c815-5d8a-4915-976e-9ea2378e382b eth1";
pub const ETH0_MAC: &str = "00:0d:3a:f5:76:bd";
pub const ETH1_MAC: &str = "00:15:5d:00:00:01";
/// Gaps between lines are played as captured up to this long (the longest within the boot and
/// removal captures is 3.0 s); longer ones are shortened to it: between captures of different VMs,
/// the minute between a removal and its return, MANA's 20 s before eth1's switch.
pub const MAX_GAP: Duration = Duration::from_millis(3_500);

/// The VMBus id of a captured `<VMBus id> <name>`.
pub fn vmbus_id(logged_as: &str) -> &str {
    logged_as.split(' ').next().unwrap()
}

/// The (kmsg µs, message) lines of the fixture's capture whose heading contains `heading`.
pub fn capture(heading: &str) -> Vec<(u64, String)> {
    let paragraph = FIXTURE.split("\n\n").find(|p| p.lines().next().is_some_and(|h| h.contains(heading)));
    let lines = paragraph.unwrap_or_else(|| panic!("no capture {heading:?} in the fixture")).lines();
    lines.filter_map(parse_dmesg_line).map(|(at, message)| (at, message.to_owned())).collect()
}

/// One message as /dev/kmsg serves it: record `seq`, logged at `at`.
pub fn record(seq: usize, at: u64, message: &str) -> String {
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

pub fn time_of(lines: &[(u64, String)], text: &str) -> u64 {
    lines.iter().find(|(_, m)| m.contains(text)).unwrap_or_else(|| panic!("no {text:?}")).0
}

/// The boot capture's return lines (slot added, VF registering, data path to the VF) as logged
/// for the removal tail's NetVSC, now called `logged_as` (`<VMBus id> <name>`), a minute after
/// its slot was removed: no public capture has both ends of one outage.
pub fn returned(boot: &[(u64, String)], removal: &[(u64, String)], logged_as: &str) -> Vec<(u64, String)> {
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
pub enum Step<'a> {
    Log(String),
    Tree(Box<dyn FnOnce() + 'a>),
}

pub fn logged<'a>(lines: &[(u64, String)]) -> Vec<(u64, Step<'a>)> {
    lines.iter().map(|(at, message)| (*at, Step::Log(message.clone()))).collect()
}

/// Plays `steps` in the order of their kmsg times and at their relative times (gaps over
/// [`MAX_GAP`] shortened to it), each line one record written to the FIFO standing in for
/// /dev/kmsg.
pub fn play(kmsg: &Path, mut steps: Vec<(u64, Step<'_>)>) {
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

pub fn metrics(addr: SocketAddr) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    agent.get(&format!("http://{addr}/metrics")).call().unwrap().body_mut().read_to_string().unwrap()
}

/// The sample `series`, once `/metrics` has it (the FIFO is read on a thread of its own).
pub fn await_sample(addr: SocketAddr, series: &str) -> String {
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
pub fn monitor(sys: &FakeSysfs, kmsg: &Path, measure: Option<&Path>, work: &Path) -> JsonProcess {
    let mut command = Command::new(NETVSC_WATCH);
    command.current_dir(work).env("RUST_LOG", "warn");
    command.args(["monitor", "--json", "--source", "poll", "--poll-interval", "20", "--metrics-listen", "127.0.0.1:0"]);
    command.arg("--sysfs-root").arg(sys.root()).arg("--kmsg").arg(kmsg);
    if let Some(measure) = measure {
        command.arg("--measure").arg(measure);
    }
    JsonProcess::spawn(command)
}

pub fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}
