//! Reading netdevices from fake sysfs trees: classification and odd entries.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use netvsc_testkit::FakeSysfs;
use netvsc_user::netdev::{NetdevKind, PciFunction};
use netvsc_user::system::sysfs::{Hints, ReadError, Sysfs};

fn tree() -> (tempfile::TempDir, FakeSysfs, Sysfs) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::create(dir.path()).unwrap();
    let sysfs = Sysfs::open(dir.path()).unwrap();
    (dir, fake, sysfs)
}

#[test]
fn classifies_netvsc_vf_virtual_and_other_buses() {
    let (_dir, fake, sysfs) = tree();
    fake.add_netvsc("eth1", 3, "00:15:5D:AA:BB:01").unwrap();
    fake.add_vf("enP2p0s2", 5, "00:15:5d:aa:bb:01", "0002:00:02.0").unwrap();
    fake.add_virtual("eth1.100", 6, "00:15:5d:aa:bb:01").unwrap();
    fake.add_virtio("eth0", 2, "52:54:00:12:34:56").unwrap();
    fake.add_non_ethernet("lo", 1, 772).unwrap();

    let netvsc = sysfs.read("eth1").unwrap().unwrap();
    assert_eq!((netvsc.ifindex, netvsc.kind.clone()), (3, NetdevKind::NetVsc));
    assert_eq!(netvsc.mac, "00:15:5d:aa:bb:01".parse().unwrap(), "MACs compare case-insensitively");
    let vf = sysfs.read("enP2p0s2").unwrap().unwrap();
    let function = PciFunction { address: "0002:00:02.0".into(), mana: false, netdevs: 1 };
    assert_eq!(vf.kind, NetdevKind::Pci(function));
    assert_eq!(vf.devargs().as_deref(), Some("0002:00:02.0"), "a VF of its own: the bare address");
    assert_eq!(sysfs.read("eth1.100").unwrap().unwrap().kind, NetdevKind::Other);
    assert_eq!(sysfs.read("eth0").unwrap().unwrap().kind, NetdevKind::Other);
    assert!(sysfs.read("lo").unwrap().is_none(), "non-Ethernet devices are ignored like the original");

    let all = sysfs.enumerate().unwrap();
    let mut names: Vec<_> = all.links.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["enP2p0s2", "eth0", "eth1", "eth1.100"]);
    assert!(all.skipped.is_empty(), "{:?}", all.skipped);
}

/// The shapes of the captures (shared/reference/azure-captures.md), on both VM generations: each
/// make's VF under its pass-through device, MANA's vPorts on one function, a joined VF's master.
#[test]
fn every_make_and_generation_reads_as_on_azure() {
    use netvsc_testkit::fake_sysfs::{Generation, Make};
    for generation in [Generation::Gen2, Generation::Gen1] {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::create_as(dir.path(), generation).unwrap();
        let sysfs = Sysfs::open(dir.path()).unwrap();
        fake.add_netvsc("eth0", 2, "00:0d:3a:f5:76:bd").unwrap();
        let vfs =
            [(Make::ConnectX3, "0b99:00:02.0"), (Make::ConnectX4, "cf63:00:02.0"), (Make::ConnectX5, "89a5:00:02.0")];
        for (i, (make, pci)) in (10..).zip(vfs) {
            fake.add_vf_of(make, &format!("enP{i}s1"), i, "00:0d:3a:f5:76:bd", pci).unwrap();
            let vf = sysfs.read(&format!("enP{i}s1")).unwrap().unwrap();
            assert_eq!(vf.devargs().as_deref(), Some(pci), "{make:?} on {generation:?}");
        }
        fake.set_master("enP10s1", Some("eth0")).unwrap();
        assert_eq!(sysfs.read("enP10s1").unwrap().unwrap().master, Some(2), "joined by hv_netvsc");
        assert_eq!(sysfs.read("enP11s1").unwrap().unwrap().master, None);

        fake.add_mana_vport("enP30832p0s0", 20, "00:22:48:00:00:01", "7870:00:00.0").unwrap();
        fake.add_mana_vport("enP30832p0s1", 21, "00:22:48:00:00:02", "7870:00:00.0").unwrap();
        let vport = sysfs.read("enP30832p0s1").unwrap().unwrap();
        assert_eq!(vport.devargs().as_deref(), Some("7870:00:00.0,mac=00:22:48:00:00:02"));
        assert_eq!(sysfs.read("eth0").unwrap().unwrap().kind, NetdevKind::NetVsc);
        assert!(sysfs.enumerate().unwrap().skipped.is_empty());
    }
}

#[test]
fn fifteen_byte_names_are_read_whole() {
    let (_dir, fake, sysfs) = tree();
    let name = "enP12345p0s2abc";
    assert_eq!(name.len(), 15, "IFNAMSIZ - 1");
    fake.add_vf(name, 9, "00:15:5d:00:00:09", "3039:00:02.0").unwrap();
    assert_eq!(sysfs.read(name).unwrap().unwrap().name, name);
}

#[test]
fn odd_entries_are_skipped_with_a_reason_not_fatal() {
    let (_dir, fake, sysfs) = tree();
    fake.add_netvsc("eth1", 3, "00:15:5d:00:00:01").unwrap();
    fake.add_dangling("enP9", 7, "00:15:5d:00:00:01").unwrap();
    // A file that cannot be read as a file.
    fake.add_virtual("weird0", 8, "00:15:5d:00:00:08").unwrap();
    std::fs::remove_file(fake.netdev("weird0").join("address")).unwrap();
    std::fs::create_dir(fake.netdev("weird0").join("address")).unwrap();
    // A malformed MAC.
    fake.add_virtual("badmac0", 10, "not-a-mac").unwrap();
    // A name that is not UTF-8.
    let raw = fake.root().join("class/net").join(OsStr::from_bytes(b"bad\xffname"));
    std::fs::create_dir(raw).unwrap();

    assert!(matches!(sysfs.read("enP9"), Err(ReadError::DanglingDevice { .. })));
    assert!(matches!(sysfs.read("weird0"), Err(ReadError::Io { .. })));
    assert!(matches!(sysfs.read("badmac0"), Err(ReadError::Malformed { .. })));
    assert!(matches!(sysfs.read("gone0"), Err(ReadError::Vanished { .. })));

    let all = sysfs.enumerate().unwrap();
    assert_eq!(all.links.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["eth1"]);
    assert_eq!(all.skipped.len(), 4, "{:?}", all.skipped);
    for what in ["enP9", "weird0", "badmac0", "not UTF-8"] {
        assert!(all.skipped.iter().any(|s| s.contains(what)), "no reason mentions {what}: {:?}", all.skipped);
    }
}

#[test]
fn a_wrong_root_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Sysfs::open(&dir.path().join("nope")).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

/// A read leaves its descriptors open for the caller to close once its pipes are written, and
/// never more than a few dozen: a scan of many links does not run the process out of them.
#[test]
fn descriptors_of_reads_wait_for_the_close_and_never_pile_up() {
    let (_dir, fake, sysfs) = tree();
    fake.add_vf("enP2p0s2", 5, "00:15:5d:aa:bb:01", "0002:00:02.0").unwrap();
    // What the event said is taken as said: only the ifindex is read, and the function's vendor
    // (a ConnectX's, so its device id is not asked).
    let hints = Hints { mac: Some("00:15:5d:aa:bb:01".parse().unwrap()), master: Some(None) };
    assert!(sysfs.read_with("enP2p0s2", Some(5), hints).unwrap().is_some());
    assert_eq!(sysfs.retired(), 3, "the netdevice's directory, its ifindex and the vendor stay open");
    sysfs.close_retired();
    assert_eq!(sysfs.retired(), 0);

    for i in 0..100 {
        fake.add_virtual(&format!("veth{i}"), 100 + i, "02:00:00:00:00:01").unwrap();
    }
    assert_eq!(sysfs.enumerate().unwrap().links.len(), 101);
    let open_after_scan = sysfs.retired();
    assert!((1..=32).contains(&open_after_scan), "{open_after_scan} descriptors left open by a scan of 101 links");
    sysfs.close_retired();
    assert_eq!(sysfs.retired(), 0);
}

#[test]
fn a_vmbus_device_names_its_netdevice_whatever_it_is_called() {
    let (_dir, fake, sysfs) = tree();
    let id = "000d3af5-76bd-000d-3af5-76bd000d3af5";
    fake.add_netvsc_on(id, "eth0", 3, "00:0d:3a:f5:76:bd").unwrap();
    fake.add_netvsc("eth1", 4, "00:15:5d:aa:bb:01").unwrap();
    assert_eq!(sysfs.netdevs_of_vmbus(id), Some(vec![3]));
    fake.rename("eth0", "eth7").unwrap();
    assert_eq!(sysfs.netdevs_of_vmbus(id), Some(vec![3]), "renamed: the same device");
    fake.remove("eth7").unwrap();
    assert_eq!(sysfs.netdevs_of_vmbus(id), Some(vec![]), "the device without its netdevice");
    for unknown in ["2be94203-0000-4c73-b9a9-06ee28f2ba7a", "", "..", "../../class/net/eth1/device"] {
        assert_eq!(sysfs.netdevs_of_vmbus(unknown), None, "{unknown:?}");
    }
}
