//! Where the kernel puts things in sysfs on a Hyper-V/Azure VM, as the captures in
//! `shared/reference/azure-captures.md` (udevadm, `ls -la /sys/class/net`) show them: the device
//! tree under `devices/`, and the relative link text the kernel writes.

use std::path::{Component, Path, PathBuf};

/// VMBus's class id of a "PCI Express pass-through" device, the parent of every VF's PCI bus.
pub const PCI_PASS_THROUGH_CLASS_ID: &str = "{44c4f61d-4444-4400-9d52-802e27ede19f}";

/// Where VMBus sits: Gen2 VMs under ACPI0004, Gen1 VMs under the PCI/ISA bridge's ACPI node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Generation {
    #[default]
    Gen2,
    Gen1,
}

impl Generation {
    pub(super) fn vmbus(self) -> &'static str {
        match self {
            Generation::Gen2 => "devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00",
            Generation::Gen1 => "devices/LNXSYSTM:00/LNXSYBUS:00/PNP0A03:00/device:07/VMBUS:01",
        }
    }
}

/// A VF's make: the ids its function shows in `vendor`/`device` and the driver bound to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Make {
    /// ConnectX-3 VF (mlx4_core).
    ConnectX3,
    /// ConnectX-4 Lx VF (mlx5_core), the VF of Microsoft's boot capture.
    ConnectX4,
    /// ConnectX-5 VF (mlx5_core), the VF of the Fedora CoreOS capture.
    ConnectX5,
    /// MANA: one function, one netdevice per vPort (mana).
    Mana,
}

impl Make {
    /// Vendor id, device id, driver.
    pub fn ids(self) -> (u16, u16, &'static str) {
        match self {
            Make::ConnectX3 => (0x15b3, 0x1004, "mlx4_core"),
            Make::ConnectX4 => (0x15b3, 0x1016, "mlx5_core"),
            Make::ConnectX5 => (0x15b3, 0x1018, "mlx5_core"),
            Make::Mana => (0x1414, 0x00ba, "mana"),
        }
    }
}

/// The VMBus instance id of the pass-through device behind PCI domain `domain`: pci-hyperv takes
/// the domain from bytes 4–5 of the instance id, so it is the id's second group.
pub(super) fn pass_through_guid(domain: &str) -> String {
    format!("2be94203-{domain}-4c73-b9a9-06ee28f2ba7a")
}

/// A NetVSC's VMBus instance id, in the form of the MANA capture (`f8615163-0001-1000-2000-<mac>`).
pub(super) fn netvsc_guid(ifindex: u32, mac: &str) -> String {
    let [_, _, a, b] = ifindex.to_be_bytes();
    format!("f8615163-{a:02x}{b:02x}-1000-2000-{}", mac.replace(':', ""))
}

/// The domain and bus of PCI address `pci` (`0002:00:02.0` → `0002`, `00`).
pub(super) fn domain_and_bus(pci: &str) -> (&str, &str) {
    let mut parts = pci.splitn(3, ':');
    let domain = parts.next().unwrap_or("0000");
    let bus = parts.next().unwrap_or("00");
    (domain, bus)
}

/// The text of a link at `link` to `target`, as the kernel writes it: relative, through the
/// common ancestor of the link and the target's parent, so a link to an ancestor still names it
/// (`device -> ../../../0b99:00:02.0`). Both paths are absolute and `..`-free.
pub(super) fn link_text(link: &Path, target: &Path) -> PathBuf {
    let from: Vec<Component<'_>> = link.parent().unwrap_or(link).components().collect();
    let to: Vec<Component<'_>> = target.components().collect();
    let common = from.iter().zip(&to[..to.len().saturating_sub(1)]).take_while(|(a, b)| a == b).count();
    let mut text: PathBuf = from[common..].iter().map(|_| Component::ParentDir).collect();
    text.extend(&to[common..]);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_text_goes_through_the_common_ancestor_as_the_kernel_writes_it() {
        let function = Path::new("/sys/devices/VMBUS:00/g/pci0b99:00/0b99:00:02.0");
        let link = function.join("net/enP2969s1/device");
        assert_eq!(link_text(&link, function), Path::new("../../../0b99:00:02.0"));
        let class = Path::new("/sys/class/net/enP2969s1");
        assert_eq!(
            link_text(class, &function.join("net/enP2969s1")),
            Path::new("../../devices/VMBUS:00/g/pci0b99:00/0b99:00:02.0/net/enP2969s1")
        );
    }

    #[test]
    fn the_domain_is_the_second_group_of_the_pass_through_id() {
        assert_eq!(domain_and_bus("89a5:00:02.0"), ("89a5", "00"));
        assert_eq!(pass_through_guid("89a5").split('-').nth(1), Some("89a5"));
        assert_eq!(netvsc_guid(0x1_0002, "00:15:5d:00:00:01"), "f8615163-0002-1000-2000-00155d000001");
    }
}
