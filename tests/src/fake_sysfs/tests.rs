//! The fake tree against the shapes of the real captures (shared/reference/azure-captures.md).

use std::fs;
use std::path::Path;

use super::*;

const MAC: &str = "00:15:5d:00:00:01";

fn tree() -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    (dir, sys)
}

fn link(path: &Path) -> String {
    fs::read_link(path).unwrap().display().to_string()
}

#[test]
fn a_vf_sits_under_its_pass_through_device_as_in_the_coreos_capture() {
    let (_dir, sys) = tree();
    sys.add_vf_of(Make::ConnectX5, "enP35237s1", 5, MAC, "89a5:00:02.0").unwrap();
    assert_eq!(
        link(&sys.netdev("enP35237s1")),
        "../../devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00/2be94203-89a5-4c73-b9a9-06ee28f2ba7a/\
         pci89a5:00/89a5:00:02.0/net/enP35237s1"
    );
    assert_eq!(link(&sys.netdev("enP35237s1").join("device")), "../../../89a5:00:02.0");
    let function = sys.netdev("enP35237s1").join("device");
    assert_eq!(fs::read_to_string(function.join("vendor")).unwrap(), "0x15b3\n");
    assert_eq!(fs::read_to_string(function.join("device")).unwrap(), "0x1018\n");
    assert!(link(&function.join("subsystem")).ends_with("/bus/pci"));
    assert!(link(&function.join("driver")).ends_with("/bus/pci/drivers/mlx5_core"));
    let pass_through = fs::canonicalize(&function).unwrap().parent().unwrap().parent().unwrap().to_owned();
    assert_eq!(fs::read_to_string(pass_through.join("class_id")).unwrap().trim(), PCI_PASS_THROUGH_CLASS_ID);
    assert_eq!(
        fs::canonicalize(sys.root().join("bus/pci/devices/89a5:00:02.0")).unwrap(),
        fs::canonicalize(&function).unwrap()
    );
}

#[test]
fn a_netvsc_sits_under_vmbus_and_gen1_moves_vmbus() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create_as(dir.path(), Generation::Gen1).unwrap();
    sys.add_netvsc("eth0", 2, MAC).unwrap();
    let target = link(&sys.netdev("eth0"));
    assert!(target.starts_with("../../devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A03:00/device:07/VMBUS:01/"), "{target}");
    assert_eq!(link(&sys.netdev("eth0").join("device")), "../../../f8615163-0002-1000-2000-00155d000001");
    assert!(link(&sys.netdev("eth0").join("device/subsystem")).ends_with("/bus/vmbus"));
}

#[test]
fn joining_sets_the_adjacency_links_and_iff_slave_and_leaving_clears_them() {
    let (_dir, sys) = tree();
    sys.add_netvsc("eth1", 3, MAC).unwrap();
    sys.add_vf("enP2p0s2", 4, MAC, "0002:00:02.0").unwrap();
    sys.set_master("enP2p0s2", Some("eth1")).unwrap();
    let vf = sys.netdev("enP2p0s2");
    assert_eq!(fs::read_to_string(vf.join("flags")).unwrap(), "0x1803\n");
    assert_eq!(fs::read_to_string(vf.join("master/ifindex")).unwrap(), "3\n");
    assert_eq!(fs::read_to_string(vf.join("upper_eth1/ifindex")).unwrap(), "3\n");
    assert_eq!(fs::read_to_string(sys.netdev("eth1").join("lower_enP2p0s2/ifindex")).unwrap(), "4\n");

    sys.rename("eth1", "eth7").unwrap();
    assert_eq!(fs::read_to_string(vf.join("upper_eth7/ifindex")).unwrap(), "3\n");
    assert_eq!(fs::read_to_string(vf.join("master/ifindex")).unwrap(), "3\n");
    assert!(!vf.join("upper_eth1").exists());

    sys.set_master("enP2p0s2", None).unwrap();
    assert_eq!(fs::read_to_string(vf.join("flags")).unwrap(), "0x1003\n");
    assert!(!vf.join("master").exists() && !vf.join("upper_eth7").exists());
    assert!(!sys.netdev("eth7").join("lower_enP2p0s2").exists());
}

#[test]
fn mana_vports_share_one_function_and_an_eject_takes_them_all() {
    let (_dir, sys) = tree();
    sys.add_mana_vport("eth2", 5, MAC, "7870:00:00.0").unwrap();
    sys.add_mana_vport("eth3", 6, "00:15:5d:00:00:02", "7870:00:00.0").unwrap();
    let function = sys.pci_function("7870:00:00.0");
    assert_eq!(fs::read_dir(function.join("net")).unwrap().count(), 2);
    assert_eq!(fs::read_to_string(function.join("vendor")).unwrap(), "0x1414\n");

    sys.remove_function("7870:00:00.0").unwrap();
    assert!(!sys.netdev("eth2").exists() && !sys.netdev("eth3").exists());
    assert!(!sys.root().join("bus/pci/devices/7870:00:00.0").exists());
    assert!(!function.parent().unwrap().parent().unwrap().exists(), "the pass-through device goes too");
}

#[test]
fn a_renamed_vf_moves_under_its_function_and_virtual_devices_have_no_device() {
    let (_dir, sys) = tree();
    sys.add_vf("eth1", 4, MAC, "cf63:00:02.0").unwrap();
    sys.rename("eth1", "enP53091s1np0").unwrap();
    let function = sys.pci_function("cf63:00:02.0");
    assert!(function.join("net/enP53091s1np0/ifindex").exists() && !function.join("net/eth1").exists());
    assert!(!sys.netdev("eth1").exists());
    sys.add_virtual("bond0", 9, MAC).unwrap();
    assert_eq!(link(&sys.netdev("bond0")), "../../devices/virtual/net/bond0");
    assert!(!sys.netdev("bond0").join("device").exists());
}
