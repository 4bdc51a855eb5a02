//! The agent in-process against fake sysfs trees, driven by synthetic events: what ends up in
//! the fail-safe pipes, read as fail-safe reads them.

use netvsc_testkit::StaticIfindexes as StaticNetdevList;
use netvsc_user::agent::Agent;
use netvsc_user::decide::selection::{parse_mac, Selection, Spec};
use netvsc_user::event::{NetdevEvent, SourceEvent, SourceName};
use netvsc_user::output::failsafe::{OutputMode, Outputs};
use netvsc_user::report::lines::InterfaceState;
use netvsc_user::report::Reporter;
use netvsc_user::system::sysfs::Sysfs;
use netvsc_user::system::SystemReader;
use netvsc_user::usage::UsageError;

mod support;
use support::rig::{changed, names, pending, pipe, removed, Rig};

const MAC: &str = "00:15:5d:00:00:01";
const MAC2: &str = "00:15:5d:00:00:02";

#[tokio::test]
async fn vf_comes_and_goes_and_the_pipe_follows() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    let mut agent = rig.agent(Selection::default(), false).await.unwrap();
    assert_eq!(pipe(&agent, 0), None);

    rig.sys.add_vf("enP2p0s2", 10, MAC, "0002:00:02.0").unwrap();
    changed(&mut agent, 10, "enP2p0s2").await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));

    // The kernel announces removal before sysfs is torn down: the event alone must empty the pipe.
    agent
        .handle(&SourceEvent::now(NetdevEvent::Resync { reason: "test", lost: false }), SourceName::Netlink)
        .await
        .unwrap();
    assert_eq!(pending(&agent), 0, "a rescan with the VF still present writes nothing new");
    agent.refill();
    assert_eq!(pending(&agent), "0002:00:02.0\n".len());
    removed(&mut agent, 10).await;
    assert_eq!(pending(&agent), 0, "the removal event emptied the pipe");
    rig.sys.remove("enP2p0s2").unwrap();

    // It returns at another address.
    rig.sys.add_vf("enP3p0s2", 11, MAC, "0003:00:02.0").unwrap();
    changed(&mut agent, 11, "enP3p0s2").await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0003:00:02.0"));
}

#[tokio::test]
async fn routed_netvsc_is_skipped_unless_named() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth0", 2, MAC2).unwrap();
    rig.sys.add_vf("enP1", 4, MAC2, "0001:00:02.0").unwrap();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.route(2, true);

    let agent = rig.agent(Selection::default(), false).await.unwrap();
    assert_eq!(names(&agent), ["eth1"]);
    let reports = agent.interface_reports();
    let eth0 = reports.iter().find(|r| r.netvsc == "eth0").unwrap();
    assert_eq!(eth0.state, InterfaceState::Skipped);
    assert!(eth0.reason.as_deref().unwrap().contains("routed"));

    let named = Selection { specs: vec![Spec::Name("eth0".into())], ..Default::default() };
    let agent = rig.agent(named, false).await.unwrap();
    assert_eq!(names(&agent), ["eth0"]);
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0001:00:02.0"));
}

#[tokio::test]
async fn vlan_and_bond_sharing_the_mac_never_match() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.sys.add_virtual("eth1.100", 20, MAC).unwrap();
    rig.sys.add_virtual("bond0", 21, MAC).unwrap();
    let mut agent = rig.agent(Selection::default(), false).await.unwrap();
    changed(&mut agent, 20, "eth1.100").await;
    changed(&mut agent, 21, "bond0").await;
    assert_eq!(pipe(&agent, 0), None);
}

#[tokio::test]
async fn two_vfs_at_once_pick_the_newest_and_fall_back() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.sys.add_vf("old", 10, MAC, "0001:00:02.0").unwrap();
    let mut agent = rig.agent(Selection::default(), false).await.unwrap();
    rig.sys.add_vf("new", 12, MAC, "0002:00:02.0").unwrap();
    changed(&mut agent, 12, "new").await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));
    removed(&mut agent, 12).await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0001:00:02.0"));
}

#[tokio::test]
async fn renames_are_followed_on_both_sides() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.sys.add_vf("eth2", 10, MAC, "0001:00:02.0").unwrap();
    let mut agent =
        rig.agent(Selection { specs: vec![Spec::Name("eth1".into())], ..Default::default() }, false).await.unwrap();
    let _ = pipe(&agent, 0);
    rig.sys.rename("eth1", "lan0").unwrap();
    changed(&mut agent, 3, "lan0").await;
    assert_eq!(names(&agent), ["lan0"]);
    rig.sys.rename("eth2", "enP1s2").unwrap();
    assert_eq!(changed(&mut agent, 10, "enP1s2").await, 0, "a VF rename writes nothing");
    assert_eq!(agent.pairing().contexts()[0].vf.as_ref().unwrap().name, "enP1s2");
    assert_eq!(pipe(&agent, 0), None, "the line was consumed above and not rewritten by the rename");
}

#[tokio::test]
async fn mac_change_is_re_evaluated() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.sys.add_vf("enP1", 10, MAC2, "0001:00:02.0").unwrap();
    let mut agent = rig.agent(Selection::default(), false).await.unwrap();
    assert_eq!(pipe(&agent, 0), None);
    rig.sys.set_mac("enP1", MAC).unwrap();
    let event = SourceEvent::now(NetdevEvent::Changed {
        ifindex: 10,
        name: Some("enP1".into()),
        mac: Some(parse_mac(MAC).unwrap()),
        master: None,
    });
    agent.handle(&event, SourceName::Netlink).await.unwrap();
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0001:00:02.0"));
}

#[tokio::test]
async fn dangling_device_link_is_skipped_not_fatal() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.sys.add_dangling("enP9", 9, MAC).unwrap();
    let mut agent = rig.agent(Selection::default(), false).await.unwrap();
    changed(&mut agent, 9, "enP9").await;
    assert_eq!(pipe(&agent, 0), None);
    assert!(agent.view().get(9).is_none());
}

#[tokio::test]
async fn selection_errors_are_usage_errors_naming_the_value() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.sys.add_virtio("eth0", 2, MAC2).unwrap();
    let usage = |err: anyhow::Error| err.downcast::<UsageError>().expect("a usage error");
    let missing = Selection { specs: vec![Spec::Name("eth7".into())], ..Default::default() };
    assert_eq!(usage(rig.agent(missing, false).await.err().unwrap()), UsageError::NotFound("eth7".into()));
    let not_netvsc = Selection { specs: vec![Spec::Name("eth0".into())], ..Default::default() };
    assert_eq!(usage(rig.agent(not_netvsc.clone(), false).await.err().unwrap()), UsageError::NotNetvsc("eth0".into()));
    let forced = Selection { force: true, ..not_netvsc };
    assert_eq!(names(&rig.agent(forced, false).await.unwrap()), ["eth0"]);
}

#[tokio::test]
async fn an_event_reads_only_what_it_names() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    for i in 0..50 {
        rig.sys.add_virtual(&format!("veth{i}"), 100 + i, "02:00:00:00:00:01").unwrap();
    }
    let mut agent = rig.agent(Selection::default(), false).await.unwrap();
    // Changed behind the agent's back, without an event: a full rescan would notice.
    rig.sys.remove("veth7").unwrap();
    rig.sys.add_vf("enP1", 10, MAC, "0001:00:02.0").unwrap();
    changed(&mut agent, 10, "enP1").await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0001:00:02.0"));
    assert!(agent.view().get(107).is_some(), "the event caused a full rescan");
    // A repeat of what is known (carrier flap) does not even read sysfs.
    rig.sys.remove("enP1").unwrap();
    let event = SourceEvent::now(NetdevEvent::Changed {
        ifindex: 10,
        name: Some("enP1".into()),
        mac: Some(parse_mac(MAC).unwrap()),
        master: None,
    });
    assert!(agent.handle(&event, SourceName::Netlink).await.unwrap().is_empty());
    assert!(agent.view().get(10).is_some());
    // A resync does read everything.
    agent
        .handle(&SourceEvent::now(NetdevEvent::Resync { reason: "test", lost: false }), SourceName::Netlink)
        .await
        .unwrap();
    assert!(agent.view().get(107).is_none() && agent.view().get(10).is_none());
}

#[tokio::test]
async fn sidecar_picks_up_late_netvsc_and_releases_one_that_gains_an_address() {
    let rig = Rig::new();
    let mut agent = rig.agent(Selection::default(), true).await.unwrap();
    assert!(names(&agent).is_empty());
    rig.sys.add_netvsc("eth3", 30, MAC).unwrap();
    rig.sys.add_vf("enP3", 31, MAC, "0003:00:02.0").unwrap();
    changed(&mut agent, 30, "eth3").await;
    changed(&mut agent, 31, "enP3").await;
    assert_eq!(names(&agent), ["eth3"]);
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0003:00:02.0"));
    agent.refill();
    assert!(pending(&agent) > 0);

    rig.route(30, true);
    agent.handle(&SourceEvent::now(NetdevEvent::AddressChanged { ifindex: 30 }), SourceName::Netlink).await.unwrap();
    assert!(agent.pairing().contexts()[0].vf.is_none(), "released: it is the VM's own path now");
    assert_eq!(pipe(&agent, 0), None);
}

#[tokio::test]
async fn a_rescan_never_brings_back_a_removed_vf() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC).unwrap();
    rig.sys.add_vf("enP2p0s2", 10, MAC, "0002:00:02.0").unwrap();
    let kernel = StaticNetdevList::new([3, 10]);
    let reader = SystemReader::new(
        Sysfs::open(rig.sys.root()).unwrap(),
        Box::new(rig.addresses.clone()),
        Some(Box::new(kernel.clone())),
    );
    let outputs = Outputs::new(OutputMode::Pipes).unwrap();
    let mut agent = Agent::start(reader, Selection::default(), false, outputs, Reporter::new(false)).await.unwrap();
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));
    let resync = |lost| SourceEvent::now(NetdevEvent::Resync { reason: "test", lost });

    // The kernel unlisted the VF and announced it; its sysfs entry is still there.
    kernel.set(10, false);
    removed(&mut agent, 10).await;
    assert!(
        agent.handle(&resync(false), SourceName::Netlink).await.unwrap().is_empty(),
        "the rescan did not resurrect it"
    );
    agent.refill();
    assert_eq!(pipe(&agent, 0), None);

    // Announced (eBPF sees the unregister call) but still listed for a moment: the removal stands.
    rig.sys.add_vf("enP3p0s2", 11, MAC, "0003:00:02.0").unwrap();
    kernel.set(11, true);
    changed(&mut agent, 11, "enP3p0s2").await;
    removed(&mut agent, 11).await;
    assert!(agent.handle(&resync(false), SourceName::Netlink).await.unwrap().is_empty());
    agent.refill();
    assert_eq!(pipe(&agent, 0), None);

    // After lost events, only the kernel's list counts: ifindex 11 may be a new device now.
    assert_eq!(agent.handle(&resync(true), SourceName::Netlink).await.unwrap().len(), 1);
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0003:00:02.0"));
}
