//! What the agent knows about one netdevice: the facts pairing decides on.

use macaddr::MacAddr6;

/// sysfs `device/class_id` of a Hyper-V synthetic network adapter (NetVSC).
pub const NETVSC_CLASS_ID: &str = "{f8615163-df3e-46c5-913f-f2d2f965ed0e}";

/// An Ethernet netdevice as read from sysfs (non-Ethernet devices are never represented).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr6,
    pub kind: LinkKind,
}

/// The parent device of a netdevice, which is what makes it a NetVSC or a VF candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// Hyper-V synthetic NIC: its parent's `class_id` is [`NETVSC_CLASS_ID`].
    NetVsc,
    /// Parent device on the PCI bus: a VF candidate; `address` is the PCI function (`0002:00:02.0`).
    Pci { address: String },
    /// No parent (VLAN, bond, bridge, veth, tap ...) or a parent on another bus: never paired.
    Other,
}

impl Link {
    pub fn is_netvsc(&self) -> bool {
        self.kind == LinkKind::NetVsc
    }

    /// PCI address of the parent device, if the parent is a PCI function.
    pub fn pci_address(&self) -> Option<&str> {
        match &self.kind {
            LinkKind::Pci { address } => Some(address),
            _ => None,
        }
    }
}

/// Lower-case colon form, as sysfs and `ip link` print it.
pub fn mac_string(mac: &MacAddr6) -> String {
    mac.to_string().to_ascii_lowercase()
}
