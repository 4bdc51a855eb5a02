//! Azure's MANA NIC and the kernel's own NetVSC↔VF association, in-process on fake trees: the
//! pipe carries exactly the sub-device devargs fail-safe needs, and the kernel's association
//! wins over MAC matching without ever rewriting a line that is already right.

use netvsc_user::decide::pairing::Match;
use netvsc_user::decide::selection::Selection;
use netvsc_user::event::{NetdevEvent, SourceEvent, SourceName};

mod support;
use support::rig::{changed, pending, pipe, removed, Rig};

const MAC_A: &str = "00:22:48:00:00:0a";
const MAC_B: &str = "00:22:48:00:00:0b";
const MANA: &str = "7870:00:00.0";

/// eth1 (MAC A, context 0) and eth2 (MAC B, context 1), both managed.
fn two_netvscs(rig: &Rig) {
    rig.sys.add_netvsc("eth1", 3, MAC_A).unwrap();
    rig.sys.add_netvsc("eth2", 4, MAC_B).unwrap();
}

/// A link event as rtnetlink reports it: with the link's master (or none).
async fn netlink_changed(
    agent: &mut netvsc_user::agent::Agent,
    ifindex: u32,
    name: &str,
    master: Option<u32>,
) -> usize {
    let event = NetdevEvent::Changed { ifindex, name: Some(name.into()), mac: None, master: Some(master) };
    agent.handle(&SourceEvent::now(event), SourceName::Netlink).await.unwrap().len()
}

#[tokio::test]
async fn each_mana_vport_gets_its_own_line_and_leaves_alone() {
    let rig = Rig::new();
    two_netvscs(&rig);
    rig.sys.add_mana_vport("enP30832s1", 10, MAC_A, MANA).unwrap();
    rig.sys.add_mana_vport("enP30832s1d1", 11, MAC_B, MANA).unwrap();
    let mut agent = rig.agent(Selection::default(), true).await.unwrap();
    assert_eq!(pipe(&agent, 0), Some(format!("{MANA},mac={MAC_A}")));
    assert_eq!(pipe(&agent, 1), Some(format!("{MANA},mac={MAC_B}")));
    agent.refill();
    let reports = agent.interface_reports();
    let devargs: Vec<_> = reports.iter().map(|r| r.vf.as_ref().map(|vf| vf.devargs.clone())).collect();
    assert_eq!(devargs, [Some(format!("{MANA},mac={MAC_A}")), Some(format!("{MANA},mac={MAC_B}"))]);

    // eth2's vPort goes: only eth2's pipe is emptied; eth1's line stays as written.
    let eth1_bytes = agent.outputs().channel(0).unwrap().pending_bytes().unwrap();
    removed(&mut agent, 11).await;
    rig.sys.remove("enP30832s1d1").unwrap();
    assert_eq!(agent.outputs().channel(1).unwrap().pending_bytes().unwrap(), 0);
    assert_eq!(agent.outputs().channel(0).unwrap().pending_bytes().unwrap(), eth1_bytes);
    assert_eq!(pipe(&agent, 0), Some(format!("{MANA},mac={MAC_A}")));
}

#[tokio::test]
async fn a_vf_of_its_own_gets_the_bare_address_as_the_original_writes_it() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC_A).unwrap();
    let mut agent = rig.agent(Selection::default(), true).await.unwrap();
    rig.sys.add_vf("enP2p0s2", 10, MAC_A, "0002:00:02.0").unwrap();
    changed(&mut agent, 10, "enP2p0s2").await;
    agent.refill();
    assert_eq!(pending(&agent), "0002:00:02.0\n".len(), "exactly the address and its newline");
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));
}

#[tokio::test]
async fn the_kernel_enslaving_the_vf_it_was_given_rewrites_nothing() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC_A).unwrap();
    let mut agent = rig.agent(Selection::default(), true).await.unwrap();
    rig.sys.add_vf("enP2p0s2", 10, MAC_A, "0002:00:02.0").unwrap();
    // Written at registration, by MAC: no waiting for the kernel's ~100 ms.
    assert_eq!(netlink_changed(&mut agent, 10, "enP2p0s2", None).await, 1);
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));
    agent.refill();
    // hv_netvsc makes eth1 the VF's master: the same line, so nothing is written.
    rig.sys.set_master("enP2p0s2", Some("eth1")).unwrap();
    assert_eq!(netlink_changed(&mut agent, 10, "enP2p0s2", Some(3)).await, 0);
    assert_eq!(pending(&agent), "0002:00:02.0\n".len(), "the line is still there, not rewritten");
    let vf = agent.pairing().contexts()[0].vf.clone().unwrap();
    assert_eq!(vf.matched, Match::Kernel);
}

#[tokio::test]
async fn the_kernels_association_overrides_a_mac_match_that_disagrees() {
    let rig = Rig::new();
    two_netvscs(&rig);
    let mut agent = rig.agent(Selection::default(), true).await.unwrap();
    // A VF carrying eth1's MAC is, by serial number, eth2's (its MAC was changed inside the VM).
    rig.sys.add_vf("enP5", 10, MAC_A, "0005:00:02.0").unwrap();
    changed(&mut agent, 10, "enP5").await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0005:00:02.0"), "by MAC, at registration");
    rig.sys.set_master("enP5", Some("eth2")).unwrap();
    netlink_changed(&mut agent, 10, "enP5", Some(4)).await;
    assert_eq!(pipe(&agent, 0), None, "taken from eth1");
    assert_eq!(pipe(&agent, 1).as_deref(), Some("0005:00:02.0"), "given to eth2");
    assert_eq!(agent.pairing().contexts()[1].vf.as_ref().unwrap().matched, Match::Kernel);
    agent.refill();
    // hv_netvsc unlinks it just before it unregisters: eth1 must not get it by MAC meanwhile.
    rig.sys.set_master("enP5", None).unwrap();
    assert_eq!(netlink_changed(&mut agent, 10, "enP5", None).await, 0);
    assert_eq!(pending(&agent), 0, "eth1's pipe stays empty");
    // Its removal empties eth2's pipe, though the VF's MAC is not eth2's.
    removed(&mut agent, 10).await;
    assert_eq!(agent.outputs().channel(1).unwrap().pending_bytes().unwrap(), 0);
}

#[tokio::test]
async fn a_bridge_as_master_is_no_association() {
    let rig = Rig::new();
    rig.sys.add_netvsc("eth1", 3, MAC_A).unwrap();
    rig.sys.add_virtual("br0", 20, "02:00:00:00:00:20").unwrap();
    rig.sys.add_vf("enP5", 10, MAC_A, "0005:00:02.0").unwrap();
    rig.sys.set_master("enP5", Some("br0")).unwrap();
    let agent = rig.agent(Selection::default(), true).await.unwrap();
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0005:00:02.0"));
    assert_eq!(agent.pairing().contexts()[0].vf.as_ref().unwrap().matched, Match::Mac);
}

#[tokio::test]
async fn a_rescan_finds_the_kernels_association_too() {
    // The poll source (and every safety resync) sees the master link in sysfs.
    let rig = Rig::new();
    two_netvscs(&rig);
    let mut agent = rig.agent(Selection::default(), true).await.unwrap();
    rig.sys.add_vf("enP5", 10, MAC_A, "0005:00:02.0").unwrap();
    rig.sys.set_master("enP5", Some("eth2")).unwrap();
    let resync = NetdevEvent::Resync { reason: "poll", lost: false };
    agent.handle(&SourceEvent::now(resync), SourceName::Poll).await.unwrap();
    assert_eq!(pipe(&agent, 0), None, "not eth1's, whatever its MAC");
    assert_eq!(pipe(&agent, 1).as_deref(), Some("0005:00:02.0"));
}
