//! What crosses between the kernel program and the agent: the event written to the ring buffer
//! and the kernel struct offsets the agent resolves from BTF at load time. Plain `#[repr(C)]`.
#![no_std]

/// Kinds of [`KernelEvent`].
pub mod kind {
    pub const REGISTERED: u32 = 1;
    pub const UNREGISTERED: u32 = 2;
    pub const RENAMED: u32 = 3;
    pub const MAC_CHANGED: u32 = 4;
    pub const PCI_ADDED: u32 = 5;
    pub const PCI_REMOVED: u32 = 6;
    /// The netdevice gained or lost its master (hv_netvsc taking a VF as its lower device, or
    /// a bridge/bond): the agent re-reads who the master is.
    pub const MASTER_CHANGED: u32 = 7;

    /// The kind's name in traces and reports.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            REGISTERED => "registered",
            UNREGISTERED => "unregistered",
            RENAMED => "renamed",
            MAC_CHANGED => "mac_changed",
            PCI_ADDED => "pci_added",
            PCI_REMOVED => "pci_removed",
            MASTER_CHANGED => "master_changed",
            _ => "unknown",
        }
    }
}

/// Names of the kernel program's fentry/fexit programs, one per hook: the loader attaches them
/// by these names, the `ready` line reports them, the VM checks look for them. The programs in
/// netvsc-ebpf are functions of these names (a Rust function cannot be named by a constant);
/// the agent's object test checks that every name is in the built object.
pub mod hook {
    pub const NETDEV_REGISTERED: &str = "netdev_registered";
    pub const NETDEV_UNREGISTERING: &str = "netdev_unregistering";
    pub const NETDEV_RENAMED: &str = "netdev_renamed";
    pub const NETDEV_MAC_CHANGED: &str = "netdev_mac_changed";
    pub const PCI_ADDED: &str = "pci_added";
    pub const PCI_REMOVING: &str = "pci_removing";
    /// The same moment through `pci_stop_and_remove_bus_device_locked`, which sysfs `remove`
    /// calls: its call of the unlocked function is in the same file and may be inlined, so the
    /// hook above does not see that path.
    pub const PCI_REMOVING_LOCKED: &str = "pci_removing_locked";
    pub const NETDEV_MASTER_LINKED: &str = "netdev_master_linked";
    pub const NETDEV_MASTER_UNLINKED: &str = "netdev_master_unlinked";
    pub const ALL: [&str; 9] = [
        NETDEV_REGISTERED,
        NETDEV_UNREGISTERING,
        NETDEV_RENAMED,
        NETDEV_MAC_CHANGED,
        PCI_ADDED,
        PCI_REMOVING,
        PCI_REMOVING_LOCKED,
        NETDEV_MASTER_LINKED,
        NETDEV_MASTER_UNLINKED,
    ];
}

/// Bus of a netdevice's parent device, as far as the kernel program tells them apart.
pub mod bus {
    pub const NONE: u8 = 0;
    pub const PCI: u8 = 1;
    pub const VMBUS: u8 = 2;
    pub const OTHER: u8 = 3;

    pub fn name(bus: u8) -> &'static str {
        match bus {
            NONE => "none",
            PCI => "pci",
            VMBUS => "vmbus",
            _ => "other",
        }
    }
}

pub const NAME_LEN: usize = 16;
/// A PCI device name (`0002:00:02.0`, or with a 32-bit Hyper-V domain) and its NUL.
pub const PCI_NAME_LEN: usize = 32;
/// `ARPHRD_ETHER`.
pub const ARPHRD_ETHER: u16 = 1;

/// One kernel event. Netdevice events fill the netdevice fields, and `pci`, `pci_vendor` and
/// `pci_device` when the parent is a PCI function; PCI events fill `pci`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC, comparable with the agent's clock.
    pub timestamp_ns: u64,
    pub kind: u32,
    pub ifindex: u32,
    /// Inode number of the device's network namespace.
    pub netns: u32,
    /// `ARPHRD_*` link type.
    pub dev_type: u16,
    /// One of [`bus`].
    pub parent_bus: u8,
    pub _pad: u8,
    pub name: [u8; NAME_LEN],
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
    pub pci: [u8; PCI_NAME_LEN],
    /// The PCI parent's vendor and device ids (`struct pci_dev`), so that the agent need not
    /// ask sysfs what make the function is; 0 when there is no PCI parent or they could not be
    /// read.
    pub pci_vendor: u16,
    pub pci_device: u16,
    pub _pad3: [u8; 4],
}

impl KernelEvent {
    /// The netdevice name, without the NUL padding.
    pub fn name_bytes(&self) -> &[u8] {
        until_nul(&self.name)
    }

    /// The PCI device name, without the NUL padding.
    pub fn pci_bytes(&self) -> &[u8] {
        until_nul(&self.pci)
    }
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// Byte offsets into kernel structs, resolved from the running kernel's BTF by the agent, plus
/// the program's settings. One read-only global of the kernel program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    pub netdev_ifindex: u32,
    pub netdev_name: u32,
    /// `net_device.dev_addr`, a pointer.
    pub netdev_dev_addr: u32,
    pub netdev_type: u32,
    /// `net_device.nd_net.net`, a pointer to `struct net`.
    pub netdev_net: u32,
    /// `net.ns.inum`.
    pub net_inum: u32,
    /// `net_device.dev.parent`, a pointer to `struct device`.
    pub netdev_parent: u32,
    /// `device.bus`, a pointer to `struct bus_type`.
    pub device_bus: u32,
    /// `bus_type.name`, a pointer to a string.
    pub bus_name: u32,
    /// `pci_dev.dev.kobj.name`, a pointer to the PCI device name.
    pub pci_dev_name: u32,
    /// `device.kobj.name`, a pointer to a device's name (a netdevice's parent: its PCI address).
    pub device_name: u32,
    /// `pci_dev.vendor` and `pci_dev.device` relative to `pci_dev.dev` (the `struct device` a
    /// netdevice's parent pointer points to), as two's complement: they come before it.
    pub pci_dev_vendor: u32,
    pub pci_dev_device: u32,
    /// Network namespace inode of the agent: events from others are dropped in the kernel.
    pub agent_netns: u32,
    /// 1: pass only NetVSC (VMBus parent), PCI-parented, or watched-MAC devices.
    pub filter: u32,
    /// 1: emit aya-log diagnostics.
    pub log: u32,
}

// The layout both sides rely on, checked at compile time. This crate is compiled once for the
// kernel program (bpfel) and once for the agent (the host): each build checks the same numbers,
// so a field added, moved or resized on one side only cannot build. Change them together with the
// struct, and the kernel object is rebuilt with it (netvsc-ebpf is the agent's build-dependency).
const _: () = {
    use core::mem::{align_of, offset_of, size_of};
    assert!(size_of::<KernelEvent>() == 88 && align_of::<KernelEvent>() == 8);
    assert!(offset_of!(KernelEvent, timestamp_ns) == 0);
    assert!(offset_of!(KernelEvent, kind) == 8);
    assert!(offset_of!(KernelEvent, ifindex) == 12);
    assert!(offset_of!(KernelEvent, netns) == 16);
    assert!(offset_of!(KernelEvent, dev_type) == 20);
    assert!(offset_of!(KernelEvent, parent_bus) == 22);
    assert!(offset_of!(KernelEvent, name) == 24);
    assert!(offset_of!(KernelEvent, mac) == 40);
    assert!(offset_of!(KernelEvent, pci) == 48);
    assert!(offset_of!(KernelEvent, pci_vendor) == 80);
    assert!(offset_of!(KernelEvent, pci_device) == 82);
    assert!(size_of::<Config>() == 16 * 4 && align_of::<Config>() == 4);
    assert!(offset_of!(Config, netdev_ifindex) == 0);
    assert!(offset_of!(Config, pci_dev_name) == 9 * 4);
    assert!(offset_of!(Config, device_name) == 10 * 4);
    assert!(offset_of!(Config, pci_dev_vendor) == 11 * 4);
    assert!(offset_of!(Config, pci_dev_device) == 12 * 4);
    assert!(offset_of!(Config, agent_netns) == 13 * 4);
    assert!(offset_of!(Config, filter) == 14 * 4);
    assert!(offset_of!(Config, log) == 15 * 4);
};

/// When the kernel delivered one rtnetlink broadcast to the socket the `rtnl_broadcast_stamp`
/// socket filter is attached to (the bench's reference listener): its message type and link
/// (`ifinfomsg.ifi_index`), and `bpf_ktime_get_ns` (CLOCK_MONOTONIC) as the filter ran, before
/// any reader of the broadcast was woken.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BroadcastStamp {
    pub at_ns: u64,
    pub ifindex: u32,
    pub message_type: u16,
    pub _pad: u16,
}

/// Key of the watched-MAC map: the six MAC bytes and two zero bytes.
pub type MacKey = [u8; 8];

pub fn mac_key(mac: [u8; 6]) -> MacKey {
    [mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers and byte arrays, valid for any bit pattern.
    unsafe impl aya::Pod for super::KernelEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BroadcastStamp {}
}
