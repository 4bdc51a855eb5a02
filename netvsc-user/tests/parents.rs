//! Events that name the link's parent device (the eBPF record's PCI address, netlink's
//! `IFLA_PARENT_DEV_*`): on the running kernel's own sysfs, a VF is known from its PCI function
//! found by address, without looking its netdevice up by name.

use netvsc_testkit::{FakeSysfs, StaticIfindexes as StaticAddresses};
use netvsc_user::agent::Agent;
use netvsc_user::event::{NetdevEvent, Parent, SourceEvent, SourceName};
use netvsc_user::netdev::PciId;
use netvsc_user::system::sysfs::Sysfs;
use netvsc_user::system::SystemReader;

mod support;
use support::rig::{launcher, pipe};

const MAC: &str = "00:15:5d:00:00:01";

async fn agent(sys: &FakeSysfs, trusted: bool) -> Agent {
    let reader = SystemReader::new(Sysfs::open(sys.root()).unwrap(), Box::new(StaticAddresses::default()), None)
        .trust_event_parents(trusted);
    launcher(reader).await
}

fn registered(ifindex: u32, name: &str, mac: &str, parent: Parent) -> SourceEvent {
    let event =
        NetdevEvent::Changed { ifindex, name: Some(name.into()), mac: Some(mac.parse().unwrap()), master: None };
    SourceEvent { parent: Some(parent), ..SourceEvent::now(event) }
}

/// eth1 with the PCI function 0002:00:02.0 of its VF, whose netdevice sysfs no longer shows
/// under the name the event gave (renamed or gone since).
fn tree() -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    sys.add_vf("eth2", 10, MAC, "0002:00:02.0").unwrap();
    sys.remove("eth2").unwrap();
    (dir, sys)
}

#[tokio::test]
async fn a_vf_is_known_by_the_pci_address_the_event_named() {
    let (_dir, sys) = tree();
    let mut agent = agent(&sys, true).await;
    assert_eq!(agent.reader().retired(), 0, "what the start-up scan read is closed once it is done");
    let event = registered(10, "eth2", MAC, Parent::Pci { address: "0002:00:02.0".into(), id: None });
    agent.handle(&event, SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));
    assert_eq!(agent.reader().retired(), 0, "what was read is closed once the pipe is written");
}

#[tokio::test]
async fn a_fake_tree_never_takes_the_kernels_word() {
    let (_dir, sys) = tree();
    let mut agent = agent(&sys, false).await;
    let event = registered(10, "eth2", MAC, Parent::Pci { address: "0002:00:02.0".into(), id: None });
    agent.handle(&event, SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&agent, 0), None, "looked up by name, and that name is gone");
}

#[tokio::test]
async fn a_mana_function_named_by_the_event_gets_the_mac_line() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    sys.add_mana_vport("enP7p0s0", 10, MAC, "7870:00:00.0").unwrap();
    sys.remove("enP7p0s0").unwrap();
    let mut agent = agent(&sys, true).await;
    let event = registered(10, "enP7p0s0", MAC, Parent::Pci { address: "7870:00:00.0".into(), id: None });
    agent.handle(&event, SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&agent, 0).as_deref(), Some("7870:00:00.0,mac=00:15:5d:00:00:01"));
}

#[tokio::test]
async fn a_link_without_a_parent_is_no_vf_and_a_gone_function_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    // sysfs would call it a VF; the kernel's record says it has no parent.
    sys.add_vf("eth2", 10, MAC, "0002:00:02.0").unwrap();
    let mut agent = agent(&sys, true).await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"), "the start-up scan reads sysfs");
    agent.handle(&SourceEvent::now(NetdevEvent::Removed { ifindex: 10 }), SourceName::Ebpf).await.unwrap();
    agent.handle(&registered(10, "eth2", MAC, Parent::None), SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&agent, 0), None);
    let gone = registered(11, "eth3", MAC, Parent::Pci { address: "0009:00:02.0".into(), id: None });
    assert!(agent.handle(&gone, SourceName::Ebpf).await.unwrap().is_empty());
    assert_eq!(pipe(&agent, 0), None);
}

/// The eBPF record carries the function's make (`struct pci_dev`'s ids): it is taken as said,
/// and sysfs is asked only how many netdevices the function carries.
#[tokio::test]
async fn the_make_an_event_names_is_taken_and_only_the_netdevices_are_counted() {
    let pci = |address: &str, id| Parent::Pci { address: address.into(), id: Some(id) };
    // The fake function has no vendor or device files: MANA can only be known from the event.
    let (_dir, sys) = tree();
    let mut first = agent(&sys, true).await;
    first.handle(&registered(10, "eth2", MAC, pci("0002:00:02.0", PciId::MANA)), SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&first, 0).as_deref(), Some("0002:00:02.0,mac=00:15:5d:00:00:01"));

    // Another make, on a function that carries two netdevices: bound by MAC all the same.
    let mellanox = PciId { vendor: 0x15b3, device: 0x101a };
    let (_dir, sys) =
        netvsc_and_vfs(&[("eth5", 12, "00:15:5d:00:00:09", "0003:00:02.0"), ("eth6", 13, MAC, "0003:00:02.0")]);
    let mut two = agent(&sys, true).await;
    two.handle(&registered(13, "eth6", MAC, pci("0003:00:02.0", mellanox)), SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&two, 0).as_deref(), Some("0003:00:02.0,mac=00:15:5d:00:00:01"));

    // One netdevice on a function of that make: the bare address, as the original writes it.
    let (_dir, single) = netvsc_and_vfs(&[("eth6", 13, MAC, "0003:00:02.0")]);
    let mut lone = agent(&single, true).await;
    lone.handle(&registered(13, "eth6", MAC, pci("0003:00:02.0", mellanox)), SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&lone, 0).as_deref(), Some("0003:00:02.0"));

    // A function whose netdevices cannot be counted by a stat (no `net` directory): read whole,
    // the make still the event's.
    let (_dir, uncounted) = netvsc_and_vfs(&[("eth7", 14, MAC, "0004:00:02.0")]);
    std::fs::remove_dir_all(uncounted.pci_function("0004:00:02.0").join("net")).unwrap();
    let mut whole = agent(&uncounted, true).await;
    whole.handle(&registered(14, "eth7", MAC, pci("0004:00:02.0", PciId::MANA)), SourceName::Ebpf).await.unwrap();
    assert_eq!(pipe(&whole, 0).as_deref(), Some("0004:00:02.0,mac=00:15:5d:00:00:01"));

    // A function that is gone by the time the event is read: nothing changes.
    let gone = registered(14, "eth7", MAC, pci("0009:00:02.0", mellanox));
    assert!(two.handle(&gone, SourceName::Ebpf).await.unwrap().is_empty());
}

/// eth1 and the VFs `(name, ifindex, mac, pci)`.
fn netvsc_and_vfs(vfs: &[(&str, u32, &str, &str)]) -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    for (name, ifindex, mac, pci) in vfs {
        sys.add_vf(name, *ifindex, mac, pci).unwrap();
    }
    (dir, sys)
}
