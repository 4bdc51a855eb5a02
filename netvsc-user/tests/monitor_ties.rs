//! `netvsc-watch monitor`: which interface a kernel log line is about. Where sysfs has the
//! line's VMBus device, it alone says (names may have been swapped; a device nobody follows is
//! nobody's line); else the logged name, kept across renames.

use std::process::Command;

use netvsc_testkit::openmetrics::sample;
use netvsc_testkit::FakeSysfs;
use nix::sys::signal::Signal;

mod support;
use support::replay::*;
use support::{JsonProcess, NETVSC_WATCH};

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
