//! What the agent knows about one netdevice: the facts pairing decides on.

use macaddr::MacAddr6;

/// sysfs `device/class_id` of a Hyper-V synthetic network adapter (NetVSC).
pub const NETVSC_CLASS_ID: &str = "{f8615163-df3e-46c5-913f-f2d2f965ed0e}";

/// A PCI function's make: its vendor and device ids (sysfs `vendor`/`device`, `struct pci_dev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciId {
    pub vendor: u16,
    pub device: u16,
}

impl PciId {
    /// MANA (Microsoft Azure Network Adapter) functions.
    pub const MANA: PciId = PciId { vendor: 0x1414, device: 0x00ba };

    /// A sysfs id attribute (`0x1414`, newline trimmed).
    pub(crate) fn parse_attribute(text: &str) -> Option<u16> {
        // Digits only: from_str_radix also takes a sign, which the kernel never writes.
        let digits = text.trim_end().strip_prefix("0x").filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit()))?;
        u16::from_str_radix(digits, 16).ok()
    }
}

/// An Ethernet netdevice as read from sysfs (non-Ethernet devices are never represented).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netdev {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr6,
    pub kind: NetdevKind,
    /// The ifindex of the device this one is enslaved to (sysfs `master`): for a VF, hv_netvsc
    /// makes its NetVSC interface the master once it has matched them (the kernel's own
    /// association). A bond or bridge can be a master too.
    pub master: Option<u32>,
}

/// The PCI function a netdevice belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// `0002:00:02.0`.
    pub address: String,
    /// A MANA function (vendor 0x1414, device 0x00ba).
    pub mana: bool,
    /// How many netdevices the function carries (MANA: one per vPort).
    pub netdevs: usize,
}

impl PciFunction {
    /// The line fail-safe needs for `mac`'s netdevice on this function: its sub-device devargs.
    /// A function that carries several netdevices (MANA's vPorts) is bound by MAC
    /// (`<pci>,mac=<mac>`, as Microsoft's DPDK guidance for MANA says); any other is the bare
    /// address, byte for byte what the original vdev_netvsc writes.
    pub fn devargs(&self, mac: &MacAddr6) -> String {
        if self.mana || self.netdevs > 1 {
            format!("{},mac={}", self.address, mac_string(mac))
        } else {
            self.address.clone()
        }
    }
}

/// The parent device of a netdevice, which is what makes it a NetVSC or a VF candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetdevKind {
    /// Hyper-V synthetic NIC: its parent's `class_id` is [`NETVSC_CLASS_ID`].
    NetVsc,
    /// Parent device on the PCI bus: a VF candidate.
    Pci(PciFunction),
    /// No parent (VLAN, bond, bridge, veth, tap ...) or a parent on another bus: never paired.
    Other,
}

impl Netdev {
    pub(crate) fn is_netvsc(&self) -> bool {
        self.kind == NetdevKind::NetVsc
    }

    /// PCI address of the parent device, if the parent is a PCI function.
    pub(crate) fn pci_address(&self) -> Option<&str> {
        self.pci().map(|pci| pci.address.as_str())
    }

    pub fn pci(&self) -> Option<&PciFunction> {
        match &self.kind {
            NetdevKind::Pci(pci) => Some(pci),
            _ => None,
        }
    }

    /// What fail-safe's pipe carries for this link as a VF (see [`PciFunction::devargs`]).
    pub fn devargs(&self) -> Option<String> {
        self.pci().map(|pci| pci.devargs(&self.mac))
    }
}

/// Whether `name` is one the kernel gives a netdevice (`dev_valid_name`: 1 to 15 bytes, not `.`
/// or `..`, no `/`, `:`, NUL or ASCII space). Names from a message or record are joined to sysfs
/// paths and shown in logs: one the kernel cannot have is no name (sysfs is asked instead).
pub(crate) fn is_kernel_name(name: &str) -> bool {
    (1..16).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| matches!(b, b'/' | b':' | b'\0') || b.is_ascii_whitespace() || b == 0x0b)
}

/// Whether `name` can be a device's name in sysfs (a PCI function's `0002:00:02.0`): one path
/// component, no NUL. Anything else from a message or record is no parent's address.
pub(crate) fn is_device_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Lower-case colon form, as sysfs and `ip link` print it.
pub(crate) fn mac_string(mac: &MacAddr6) -> String {
    mac.to_string().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_with_several_netdevices_is_bound_by_mac_whatever_its_make() {
        let mac = MacAddr6::new(0, 0x15, 0x5d, 0, 0, 1);
        let function = |mana, netdevs| PciFunction { address: "0002:00:02.0".into(), mana, netdevs };
        assert_eq!(function(false, 1).devargs(&mac), "0002:00:02.0");
        assert_eq!(function(false, 2).devargs(&mac), "0002:00:02.0,mac=00:15:5d:00:00:01");
        assert_eq!(function(true, 1).devargs(&mac), "0002:00:02.0,mac=00:15:5d:00:00:01");
    }

    #[test]
    fn only_names_the_kernel_gives_are_names() {
        for good in ["eth1", "enP2969s1", "a", "x".repeat(15).as_str(), "vlan.10", "ü"] {
            assert!(is_kernel_name(good), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "../../x", "eth:1", "eth 1", "eth\t1", "\0=\0", &"x".repeat(16)] {
            assert!(!is_kernel_name(bad), "{bad:?}");
        }
        assert!(is_device_name("0002:00:02.0"));
        for bad in ["", ".", "..", "../../../etc", "0002:00\0"] {
            assert!(!is_device_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn pci_id_attributes_are_hex_as_sysfs_writes_them() {
        assert_eq!(PciId::parse_attribute("0x1414\n"), Some(PciId::MANA.vendor));
        assert_eq!(PciId::parse_attribute("0x00ba"), Some(PciId::MANA.device));
        // "0x+0": found by fuzzing (fuzz/regressions/sysfs_attribute/), a sign read as a digit.
        for bad in ["1414", "0x", "0x10000", "0xzz", "", "0x+0", "0x-1", "0x 1"] {
            assert_eq!(PciId::parse_attribute(bad), None, "{bad:?}");
        }
    }
}
