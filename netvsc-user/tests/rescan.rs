//! A full rescan from the kernel's dump (`Listing::Netdevs`): sysfs is asked only about parent
//! devices, and the result is what a rescan from sysfs alone finds.

use netvsc_testkit::{FakeSysfs, StaticDump, StaticIfindexes as StaticAddresses};
use netvsc_user::event::{NetdevEvent, SourceEvent, SourceName};
use netvsc_user::netdev::Netdev;
use netvsc_user::system::netdev_list::{ListedNetdev, NetdevList};
use netvsc_user::system::sysfs::Sysfs;
use netvsc_user::system::SystemReader;

mod support;
use support::rig::{launcher, pipe};

const MAC: &str = "00:15:5d:00:00:01";

fn reader(sys: &FakeSysfs, links: Option<Box<dyn NetdevList>>) -> SystemReader {
    SystemReader::new(Sysfs::open(sys.root()).unwrap(), Box::new(StaticAddresses::default()), links)
}

fn listed(link: &Netdev) -> ListedNetdev {
    ListedNetdev { ifindex: link.ifindex, name: link.name.clone(), mac: link.mac, master: link.master }
}

fn sorted(links: impl Iterator<Item = Netdev>) -> Vec<Netdev> {
    let mut links: Vec<Netdev> = links.collect();
    links.sort_by_key(|l| l.ifindex);
    links
}

#[tokio::test]
async fn a_rescan_from_the_dump_finds_what_sysfs_alone_finds() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    sys.add_vf("enP2p0s2", 10, MAC, "0002:00:02.0").unwrap();
    sys.add_netvsc("eth2", 4, "00:15:5d:00:00:02").unwrap();
    sys.add_mana_vport("enP7p0s0", 11, "00:15:5d:00:00:02", "7870:00:00.0").unwrap();
    sys.add_mana_vport("enP7p0s0v1", 12, "00:15:5d:00:00:03", "7870:00:00.0").unwrap();
    sys.add_virtio("eth0", 2, "52:54:00:00:00:01").unwrap();
    sys.add_virtual("br0", 5, "02:00:00:00:00:05").unwrap();
    sys.set_master("enP2p0s2", Some("eth1")).unwrap();
    sys.add_unrelated(20, 100).unwrap();
    let from_sysfs = reader(&sys, None).full_scan().await.unwrap();
    assert_eq!(from_sysfs.links().count(), 27, "the tree as sysfs shows it");

    let dump = StaticDump::new(from_sysfs.links().map(listed));
    let from_dump = reader(&sys, Some(Box::new(dump))).full_scan().await.unwrap();
    assert_eq!(sorted(from_dump.links().cloned()), sorted(from_sysfs.links().cloned()));
}

#[tokio::test]
async fn a_link_without_a_parent_device_is_all_in_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    // Its sysfs MAC is unreadable: only a rescan that reads it would notice.
    sys.add_virtual("veth0", 7, "not-a-mac").unwrap();
    let dump = StaticDump::new([ListedNetdev {
        ifindex: 7,
        name: "veth0".into(),
        mac: "02:00:00:00:00:07".parse().unwrap(),
        master: Some(5),
    }]);
    let view = reader(&sys, Some(Box::new(dump))).full_scan().await.unwrap();
    let link = view.get(7).expect("listed by the kernel");
    assert_eq!((link.mac.to_string(), link.master), ("02:00:00:00:00:07".into(), Some(5)));
    assert_eq!(reader(&sys, None).full_scan().await.unwrap().get(7), None, "sysfs alone skips it as odd");
}

#[tokio::test]
async fn a_vf_renamed_after_the_dump_is_taken_up_by_its_rename_event() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    let netvsc = ListedNetdev { ifindex: 3, name: "eth1".into(), mac: MAC.parse().unwrap(), master: None };
    let dump = StaticDump::new([netvsc.clone()]);
    let reader = reader(&sys, Some(Box::new(dump.clone())));
    let mut agent = launcher(reader).await;
    assert_eq!(pipe(&agent, 0), None);

    // The kernel listed the VF as eth2; udev renamed it before sysfs was asked.
    sys.add_vf("enP2p0s2", 10, MAC, "0002:00:02.0").unwrap();
    let vf = ListedNetdev { ifindex: 10, name: "eth2".into(), mac: MAC.parse().unwrap(), master: None };
    dump.set([netvsc, vf]);
    let resync = SourceEvent::now(NetdevEvent::Resync { reason: "test", lost: false });
    agent.handle(&resync, SourceName::Resync).await.unwrap();
    assert_eq!(pipe(&agent, 0), None, "a name sysfs no longer has says nothing about a VF");

    let renamed =
        SourceEvent::now(NetdevEvent::Changed { ifindex: 10, name: Some("enP2p0s2".into()), mac: None, master: None });
    agent.handle(&renamed, SourceName::Netlink).await.unwrap();
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));
}

#[tokio::test]
async fn a_known_vf_missing_from_the_dump_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    sys.add_vf("enP2p0s2", 10, MAC, "0002:00:02.0").unwrap();
    let netvsc = ListedNetdev { ifindex: 3, name: "eth1".into(), mac: MAC.parse().unwrap(), master: None };
    let vf = ListedNetdev { ifindex: 10, name: "enP2p0s2".into(), mac: MAC.parse().unwrap(), master: None };
    let dump = StaticDump::new([netvsc.clone(), vf]);
    let reader = reader(&sys, Some(Box::new(dump.clone())));
    let mut agent = launcher(reader).await;
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));

    // Unlisted by the kernel; its sysfs entry outlives the announcement for a moment.
    dump.set([netvsc]);
    let resync = SourceEvent::now(NetdevEvent::Resync { reason: "test", lost: false });
    agent.handle(&resync, SourceName::Resync).await.unwrap();
    assert_eq!(pipe(&agent, 0), None);
}

#[tokio::test]
async fn a_link_known_plain_is_read_again_only_after_events_were_lost() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    sys.add_virtual("enP2p0s2", 10, MAC).unwrap();
    let netvsc = ListedNetdev { ifindex: 3, name: "eth1".into(), mac: MAC.parse().unwrap(), master: None };
    let other = ListedNetdev { ifindex: 10, name: "enP2p0s2".into(), mac: MAC.parse().unwrap(), master: None };
    let reader = reader(&sys, Some(Box::new(StaticDump::new([netvsc, other]))));
    let mut agent = launcher(reader).await;
    assert_eq!(pipe(&agent, 0), None, "a plain link is no VF");

    // Not something a kernel does without a new ifindex: the rescan trusts what it knew...
    sys.remove("enP2p0s2").unwrap();
    sys.add_vf("enP2p0s2", 10, MAC, "0002:00:02.0").unwrap();
    let resync = |lost| SourceEvent::now(NetdevEvent::Resync { reason: "test", lost });
    agent.handle(&resync(false), SourceName::Resync).await.unwrap();
    assert_eq!(pipe(&agent, 0), None, "known plain, the link is taken from the dump");
    // ...until events were lost: then every link is read for what it is.
    agent.handle(&resync(true), SourceName::Resync).await.unwrap();
    assert_eq!(pipe(&agent, 0).as_deref(), Some("0002:00:02.0"));
}
