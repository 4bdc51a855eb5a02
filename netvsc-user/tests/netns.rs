//! As root, in a private network namespace: real rtnetlink events from veth devices drive the
//! agent, with a fake sysfs tree that says which veth plays the NetVSC and which the VF
//! ([`netvsc_testkit::netns::Stage`]).

use std::process::Command;
use std::time::Duration;

use netvsc_user::output::failsafe::reader::read_like_failsafe;
use nix::sys::signal::Signal;

mod support;
use netvsc_testkit::netns::Netns;
use netvsc_user::decide::pairing::Release;
use netvsc_user::event::SourceName;
use netvsc_user::report::lines::Line;
use netvsc_user::report::timeline::{Clock, Report};
use support::stage::{Stage, StageExt as _, MAC, MAC2};
use support::{open_fifo, skip_unless_root, JsonProcess, FAILSAFE_SIM, NETVSC_WATCH};

#[test]
fn netlink_events_alone_follow_vf_hotplug() {
    if skip_unless_root("netlink_events_alone_follow_vf_hotplug") {
        return;
    }
    let stage = Stage::new("hotplug").unwrap();
    stage.netvsc("eth1", 10, MAC).unwrap();
    let mut agent = stage.watch(&[]);
    let fifo = open_fifo(format!("{}/eth1.pipe", stage.fifos()));

    for (cycle, pci) in ["0002:00:02.0", "0003:00:02.0", "0002:00:02.0"].iter().enumerate() {
        let name = format!("enP{cycle}");
        stage.plug_vf(&name, 20 + cycle as u32, MAC, pci).unwrap();
        let up = agent.change("associated", |_| true);
        assert_eq!((up.source, up.vf.map(|vf| vf.pci)), (SourceName::Netlink, Some(pci.to_string())));
        assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some(*pci));
        // Removal while the fake sysfs entry still exists: the DELLINK event is what counts.
        stage.unplug(&name).unwrap();
        let down = agent.change("dissociated", |_| true);
        assert_eq!(down.source, SourceName::Netlink);
        assert_eq!(read_like_failsafe(&fifo).unwrap(), None);
    }
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
}

#[test]
fn renames_and_mac_changes_arrive_as_events() {
    if skip_unless_root("renames_and_mac_changes_arrive_as_events") {
        return;
    }
    let stage = Stage::new("rename").unwrap();
    stage.netvsc("eth1", 10, MAC).unwrap();
    stage.plug_vf("enP1", 20, MAC2, "0001:00:02.0").unwrap();
    let mut agent = stage.watch(&["--iface", "eth1"]);

    stage.sys.rename("eth1", "lan1").unwrap();
    stage.netns.ip(&["link", "set", "eth1", "name", "lan1"]).unwrap();
    let renamed = agent.change("renamed", |_| true);
    assert_eq!((renamed.renamed_from.as_deref(), renamed.netvsc.as_str()), (Some("eth1"), "lan1"));

    stage.sys.set_mac("enP1", MAC).unwrap();
    stage.netns.ip(&["link", "set", "enP1", "address", MAC]).unwrap();
    let up = agent.change("associated", |_| true);
    assert_eq!((up.netvsc.as_str(), up.vf.map(|vf| vf.pci)), ("lan1", Some("0001:00:02.0".to_owned())));
}

#[test]
fn interfaces_with_ip_addresses_are_left_alone() {
    if skip_unless_root("interfaces_with_ip_addresses_are_left_alone") {
        return;
    }
    let stage = Stage::new("routed").unwrap();
    stage.netvsc("eth0", 10, MAC).unwrap();
    stage.netvsc("eth1", 11, MAC2).unwrap();
    stage.netns.ip(&["addr", "add", "192.0.2.10/24", "dev", "eth0"]).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", stage.netns.name(), NETVSC_WATCH, "scan", "--json", "--sysfs-root", stage.root()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let state = |name: &str| lines.iter().find(|l| l["netvsc"] == name).unwrap()["state"].as_str().unwrap().to_owned();
    assert_eq!(state("eth0"), "skipped");
    assert_eq!(state("eth1"), "waiting");

    // An automatically chosen interface that gains an IPv6 address at run time is released.
    stage.plug_vf("enP1", 20, MAC2, "0001:00:02.0").unwrap();
    let mut agent = stage.watch(&[]);
    let fifo = open_fifo(format!("{}/eth1.pipe", stage.fifos()));
    assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some("0001:00:02.0"));
    stage.netns.ip(&["addr", "add", "2001:db8::11/64", "dev", "eth1", "nodad"]).unwrap();
    let released = agent.change("dissociated", |_| true);
    assert_eq!(released.reason, Some(Release::Routed));
    assert_eq!(read_like_failsafe(&fifo).unwrap(), None);
}

#[test]
fn exec_follows_netlink_events_and_nothing_stale_is_read() {
    if skip_unless_root("exec_follows_netlink_events_and_nothing_stale_is_read") {
        return;
    }
    let stage = Stage::new("exec").unwrap();
    stage.netvsc("eth1", 10, MAC).unwrap();
    let mut command = Command::new("ip");
    command.args([
        "netns",
        "exec",
        stage.netns.name(),
        NETVSC_WATCH,
        "exec",
        "--sysfs-root",
        stage.root(),
        "--json",
        "--",
    ]);
    command.args([FAILSAFE_SIM, "--poll-ms", "5"]);
    let mut agent = JsonProcess::spawn(command);
    agent.ready();
    for cycle in 0..3u32 {
        let pci = format!("000{}:00:02.0", cycle + 1);
        stage.plug_vf("enP1", 20 + cycle, MAC, &pci).unwrap();
        agent.app_line("the address read by the application", |v| v["read"] == pci.as_str());
        stage.unplug("enP1").unwrap();
        let emptied = agent.change("dissociated", |_| true).at_ns;
        let after = agent.drain_for(Duration::from_millis(50));
        let stale: Vec<_> = after
            .iter()
            .filter_map(|o| o.other())
            .filter(|v| v["t_ns"].as_u64().is_some_and(|t| t > emptied))
            .collect();
        assert!(stale.is_empty(), "cycle {cycle}: read after the pipe was emptied: {stale:?}");
    }
    agent.signal(Signal::SIGINT);
    assert_eq!(agent.wait().code(), Some(128 + 2), "SIGINT forwarded; the application's death reported");
}

#[test]
fn measure_records_each_failover_and_its_read() {
    if skip_unless_root("measure_records_each_failover_and_its_read") {
        return;
    }
    let stage = Stage::new("measure").unwrap();
    stage.netvsc("eth1", 10, MAC).unwrap();
    stage.plug_vf("enP0", 20, MAC, "0002:00:02.0").unwrap();
    let report_path = stage.dir.path().join("failovers.json");
    let mut agent = stage.watch(&["--measure", report_path.to_str().unwrap()]);
    let fifo = open_fifo(format!("{}/eth1.pipe", stage.fifos()));
    assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some("0002:00:02.0"));

    let pcis = ["0003:00:02.0", "0002:00:02.0"];
    for (cycle, pci) in pcis.iter().enumerate() {
        let old = if cycle == 0 { "enP0".to_owned() } else { format!("enP{cycle}") };
        stage.unplug(&old).unwrap();
        agent.change("dissociated", |_| true);
        let name = format!("enP{}", cycle + 1);
        stage.plug_vf(&name, 21 + cycle as u32, MAC, pci).unwrap();
        let line = agent.line("failover", |l| matches!(l, Line::Failover { .. }));
        let Line::Failover { failover } = &line else { unreachable!() };
        assert_eq!(failover.new_pci.as_deref(), Some(*pci), "{line:?}");
        assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some(*pci));
        let read = agent.line("read", |l| matches!(l, Line::Read { .. }));
        let Line::Read { after_write_us, .. } = read else { unreachable!() };
        assert!(after_write_us.is_some_and(|us| us >= 0.0), "{after_write_us:?}");
    }
    agent.signal(Signal::SIGUSR1);
    let live = agent.line("measurement on SIGUSR1", |l| matches!(l, Line::Measurement { .. }));
    let Line::Measurement { report } = live else { unreachable!() };
    assert_eq!(report.summary.event_to_pipe_us.count, 2, "{report:?}");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));

    let report: Report = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(report.failovers.len(), 2, "{report:#?}");
    for (f, (old, new)) in report.failovers.iter().zip([("0002:00:02.0", pcis[0]), (pcis[0], pcis[1])]) {
        assert_eq!((f.old_pci.as_str(), f.new_pci.as_deref()), (old, Some(new)), "{f:?}");
        assert_eq!(f.clock, Clock::Netlink);
        let registered = f.netdev_registered_ns.expect("registered");
        let (written, read) = (f.written_ns.expect("written"), f.read_ns.expect("read"));
        assert!(f.netdev_gone_ns <= f.pipe_emptied_ns, "{f:?}");
        assert!(f.pipe_emptied_ns < registered, "{f:?}");
        assert!(registered <= written && written <= read, "{f:?}");
        // Netlink cannot see PCI devices.
        assert!(f.pci_added_ns.is_none() && f.pci_removed_ns.is_none(), "{f:?}");
    }
    assert_eq!(report.summary.absent_s.count, 2);
}

#[test]
fn a_resync_in_the_removal_window_does_not_resurrect_the_vf() {
    if skip_unless_root("a_resync_in_the_removal_window_does_not_resurrect_the_vf") {
        return;
    }
    let stage = Stage::new("window").unwrap();
    stage.netvsc("eth1", 10, MAC).unwrap();
    let fifo_dir = stage.fifos();
    let args = ["watch", "--source", "netlink", "--sysfs-root", stage.root(), "--fifo-dir", &fifo_dir, "--json"];
    let mut agent = JsonProcess::agent(
        Some(stage.netns.name()),
        &[&args[..], &["--link-list", "kernel", "--resync-interval", "100"]].concat(),
    );
    agent.ready();
    stage.plug_vf("enP1", 20, MAC, "0002:00:02.0").unwrap();
    agent.change("associated", |_| true);

    // The kernel has announced the removal; sysfs still shows the VF for a while.
    stage.netns.ip(&["link", "del", "enP1"]).unwrap();
    agent.change("dissociated", |_| true);
    let later = agent.drain_for(Duration::from_millis(1_500));
    stage.sys.remove("enP1").unwrap();
    assert!(
        later.iter().all(|o| !matches!(o.line(), Some(Line::Associated(_)))),
        "a resync brought the removed VF back: {later:#?}"
    );
    let fifo = open_fifo(format!("{fifo_dir}/eth1.pipe"));
    assert_eq!(read_like_failsafe(&fifo).unwrap(), None);
}

#[test]
fn an_overrun_discards_the_messages_queued_before_the_rescan() {
    if skip_unless_root("an_overrun_discards_the_messages_queued_before_the_rescan") {
        return;
    }
    use netvsc_user::event::NetdevEvent;
    use netvsc_user::source::netlink::NetlinkSource;
    use netvsc_user::source::Source as _;

    let ns = Netns::new("overrun").unwrap();
    ns.ip(&["link", "add", "old", "index", "500", "type", "veth", "peer", "name", "oldpeer"]).unwrap();
    let netns_path = format!("/run/netns/{}", ns.name());
    let ns_name = ns.name().to_owned();
    let delivered = std::thread::spawn(move || {
        let netns = std::fs::File::open(&netns_path).unwrap();
        // SAFETY: setns on this thread only, with a namespace descriptor we hold open.
        assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) }, 0);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let ip =
                |args: &[&str]| netvsc_testkit::netns::run("ip", &[&["-n", ns_name.as_str()], args].concat()).unwrap();
            let mut source = NetlinkSource::subscribe_links_with_buffer(4096).unwrap();
            // Queued first: the removal of ifindex 500. Then far more than the buffer holds.
            ip(&["link", "del", "old"]);
            for i in 0..40 {
                let name = format!("churn{i}");
                ip(&["link", "add", &name, "type", "veth", "peer", "name", &format!("cpeer{i}")]);
                ip(&["link", "del", &name]);
            }
            let first = source.next().await.unwrap().event;
            // Index 500 comes back as a new device after the rescan.
            ip(&["link", "add", "new", "index", "500", "type", "veth", "peer", "name", "newpeer"]);
            let mut events = vec![first];
            while !matches!(events.last(), Some(NetdevEvent::Changed { ifindex: 500, .. })) {
                match tokio::time::timeout(Duration::from_secs(3), source.next()).await {
                    Ok(next) => events.push(next.unwrap().event),
                    Err(_) => break,
                }
            }
            events
        })
    });
    let events = delivered.join().unwrap();
    assert!(matches!(events[0], NetdevEvent::Resync { lost: true, .. }), "the overrun comes first: {events:?}");
    assert!(
        !events.contains(&NetdevEvent::Removed { ifindex: 500 }),
        "the removal queued before the overrun was replayed after the rescan: {events:?}"
    );
    assert!(matches!(events.last(), Some(NetdevEvent::Changed { ifindex: 500, .. })), "events flow again: {events:?}");
}

#[test]
fn the_kernels_master_link_overrides_mac_matching() {
    if skip_unless_root("the_kernels_master_link_overrides_mac_matching") {
        return;
    }
    // The NetVSC stand-in is a bridge, so the kernel can make it a VF's master (as hv_netvsc
    // makes a NetVSC interface its VF's) and announce that with IFLA_MASTER.
    let stage = Stage::new("master").unwrap();
    stage.sys.add_netvsc("eth1", 10, MAC).unwrap();
    let index = "10";
    stage.netns.ip(&["link", "add", "eth1", "index", index, "address", MAC, "type", "bridge"]).unwrap();
    stage.plug_vf("enP1", 20, MAC, "0001:00:02.0").unwrap();
    stage.plug_vf("enP2", 21, MAC, "0002:00:02.0").unwrap();
    let mut agent = stage.watch(&["--iface", "eth1"]);
    let fifo = open_fifo(format!("{}/eth1.pipe", stage.fifos()));
    assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some("0002:00:02.0"), "by MAC: the newest");

    // The kernel takes the older VF for eth1.
    stage.sys.set_master("enP1", Some("eth1")).unwrap();
    stage.netns.ip(&["link", "set", "enP1", "master", "eth1"]).unwrap();
    let moved = agent.change("associated", |c| c.vf.as_ref().is_some_and(|vf| vf.pci == "0001:00:02.0"));
    assert_eq!(moved.vf.unwrap().matched, netvsc_user::decide::pairing::Match::Kernel);
    assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some("0001:00:02.0"));
    assert_eq!(std::fs::read_to_string(format!("{}/eth1.addr", stage.fifos())).unwrap(), "0001:00:02.0\n");
}
