//! What one ring-buffer record of the kernel program says: the bytes taken as a record, the
//! event the agent re-reads, and the parent device a netdevice record names.

use macaddr::MacAddr6;
use netvsc_common::{bus, kind, KernelEvent};

use crate::event::{NetdevEvent, Parent};
use crate::netdev::PciId;

/// The parent device a netdevice record names (the kernel program fills the PCI address of a
/// PCI parent); `None` for PCI records and a PCI parent whose address could not be read.
pub fn parent(event: &KernelEvent) -> Option<Parent> {
    if !matches!(event.kind, kind::REGISTERED | kind::RENAMED | kind::MAC_CHANGED | kind::MASTER_CHANGED) {
        return None;
    }
    match event.parent_bus {
        bus::NONE => Some(Parent::None),
        bus::PCI => {
            let address = std::str::from_utf8(event.pci_bytes()).ok().filter(|a| crate::netdev::is_device_name(a))?;
            // No function has vendor 0 (and 0xffff is "none"): such ids were not read.
            let id = (!matches!(event.pci_vendor, 0 | 0xffff))
                .then_some(PciId { vendor: event.pci_vendor, device: event.pci_device });
            Some(Parent::Pci { address: address.into(), id })
        }
        bus::VMBUS => Some(Parent::Vmbus),
        _ => Some(Parent::Other),
    }
}

/// The record of one ring-buffer item; `None` for an item shorter than a record (the kernel
/// program writes whole records only, so that is not one of its items). Bytes past a record are
/// ignored.
pub(crate) fn record(item: &[u8]) -> Option<KernelEvent> {
    if item.len() < size_of::<KernelEvent>() {
        return None;
    }
    // SAFETY: `item` holds at least a KernelEvent's bytes, and every bit pattern is one (plain
    // integers and byte arrays); read unaligned, as the ring gives no alignment guarantee.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<KernelEvent>()) })
}

/// Maps a kernel event to what the agent re-reads; names that are not UTF-8 or not what the
/// kernel names a netdevice or a device are left to sysfs.
pub fn translate(event: &KernelEvent) -> Option<NetdevEvent> {
    let text =
        |bytes: &[u8], valid: fn(&str) -> bool| std::str::from_utf8(bytes).ok().filter(|s| valid(s)).map(str::to_owned);
    let name = |event: &KernelEvent| text(event.name_bytes(), crate::netdev::is_kernel_name);
    Some(match event.kind {
        kind::REGISTERED | kind::RENAMED | kind::MAC_CHANGED => NetdevEvent::Changed {
            ifindex: event.ifindex,
            name: name(event),
            mac: Some(MacAddr6::from(event.mac)),
            master: None,
        },
        // Who the master is now is for sysfs to say: no name/MAC hint, so it is always re-read.
        kind::MASTER_CHANGED => {
            NetdevEvent::Changed { ifindex: event.ifindex, name: name(event), mac: None, master: None }
        }
        kind::UNREGISTERED => NetdevEvent::Removed { ifindex: event.ifindex },
        kind::PCI_ADDED | kind::PCI_REMOVED => NetdevEvent::PciDevice {
            address: text(event.pci_bytes(), crate::netdev::is_device_name)?,
            added: event.kind == kind::PCI_ADDED,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u32, ifindex: u32, name: &[u8], pci: &[u8]) -> KernelEvent {
        let mut event = KernelEvent { kind, ifindex, mac: [0, 0x15, 0x5d, 0, 0, 1], ..KernelEvent::default() };
        event.name[..name.len()].copy_from_slice(name);
        event.pci[..pci.len()].copy_from_slice(pci);
        event
    }

    #[test]
    fn a_record_is_read_only_from_an_item_that_holds_a_whole_one() {
        // At offset 1, with bytes to spare: the ring buffer promises no alignment, and what
        // follows a record is not read.
        let mut bytes = [0u8; 1 + size_of::<KernelEvent>() + 3];
        bytes[1 + 8] = kind::UNREGISTERED as u8;
        bytes[1 + 12] = 7;
        assert_eq!(record(&bytes[1..size_of::<KernelEvent>()]), None, "one byte short");
        let whole = record(&bytes[1..]).expect("a whole record");
        assert_eq!((whole.kind, whole.ifindex), (kind::UNREGISTERED, 7));
    }

    #[test]
    fn a_netdevice_record_names_its_parent() {
        let with_bus = |kind: u32, parent_bus: u8, pci: &[u8]| {
            let mut record = event(kind, 7, b"enP2s2", pci);
            record.parent_bus = parent_bus;
            parent(&record)
        };
        let pci = |id| Some(Parent::Pci { address: "0002:00:02.0".into(), id });
        assert_eq!(with_bus(kind::REGISTERED, bus::PCI, b"0002:00:02.0"), pci(None), "ids not read");
        let mut mana = event(kind::REGISTERED, 7, b"enP2s2", b"0002:00:02.0");
        (mana.parent_bus, mana.pci_vendor, mana.pci_device) = (bus::PCI, 0x1414, 0x00ba);
        assert_eq!(parent(&mana), pci(Some(PciId::MANA)));
        mana.pci_vendor = 0xffff;
        assert_eq!(parent(&mana), pci(None), "0xffff: no function answered");
        assert_eq!(with_bus(kind::REGISTERED, bus::PCI, b""), None, "an address that could not be read");
        assert_eq!(with_bus(kind::REGISTERED, bus::PCI, b"../../.."), None, "no path is an address");
        assert_eq!(with_bus(kind::RENAMED, bus::NONE, b""), Some(Parent::None));
        assert_eq!(with_bus(kind::MAC_CHANGED, bus::VMBUS, b""), Some(Parent::Vmbus));
        assert_eq!(with_bus(kind::MASTER_CHANGED, bus::OTHER, b""), Some(Parent::Other));
        assert_eq!(with_bus(kind::UNREGISTERED, bus::PCI, b"0002:00:02.0"), None, "a removal needs no parent");
        assert_eq!(with_bus(kind::PCI_ADDED, bus::NONE, b"0002:00:02.0"), None, "a PCI record is no netdevice");
    }

    #[test]
    fn each_kernel_record_becomes_the_event_it_stands_for() {
        let mac = Some(MacAddr6::new(0, 0x15, 0x5d, 0, 0, 1));
        let changed =
            |name: Option<&str>| NetdevEvent::Changed { ifindex: 7, name: name.map(str::to_owned), mac, master: None };
        let cases = [
            ("registered", event(kind::REGISTERED, 7, b"enP2s2", b""), Some(changed(Some("enP2s2")))),
            ("renamed", event(kind::RENAMED, 7, b"lan1", b""), Some(changed(Some("lan1")))),
            ("MAC changed", event(kind::MAC_CHANGED, 7, b"enP2s2", b""), Some(changed(Some("enP2s2")))),
            // A name that is not UTF-8 is left for sysfs to read.
            ("non-UTF-8 name", event(kind::REGISTERED, 7, &[0xff, 0xfe], b""), Some(changed(None))),
            ("unregistered", event(kind::UNREGISTERED, 7, b"enP2s2", b""), Some(NetdevEvent::Removed { ifindex: 7 })),
            (
                "PCI added",
                event(kind::PCI_ADDED, 0, b"", b"0002:00:02.0"),
                Some(NetdevEvent::PciDevice { address: "0002:00:02.0".into(), added: true }),
            ),
            (
                "PCI removed",
                event(kind::PCI_REMOVED, 0, b"", b"0002:00:02.0"),
                Some(NetdevEvent::PciDevice { address: "0002:00:02.0".into(), added: false }),
            ),
            ("PCI event without a name", event(kind::PCI_ADDED, 0, b"", b""), None),
            (
                "master changed",
                event(kind::MASTER_CHANGED, 7, b"enP2s2", b""),
                Some(NetdevEvent::Changed { ifindex: 7, name: Some("enP2s2".into()), mac: None, master: None }),
            ),
            ("unknown kind", event(99, 7, b"enP2s2", b""), None),
            // Names and addresses the kernel cannot give a device are left to sysfs.
            ("a name with a slash", event(kind::REGISTERED, 7, b"../../etc", b""), Some(changed(None))),
            ("a PCI address with a slash", event(kind::PCI_ADDED, 0, b"", b"../../../etc"), None),
        ];
        for (what, record, expected) in cases {
            assert_eq!(translate(&record), expected, "{what}");
        }
    }
}
