//! The kernel's own moments of a VF's outage in one log message: hv_netvsc's data path
//! switched to or from the VF, the VF registering, joining, unregistering, the host adding or
//! removing its slot.
//!
//! A driver's line about a netdevice is `<driver> <parent device> <ifname>[ (<state>)]: <text>`
//! (net/core/dev.c `__netdev_printk`). hv_netvsc's parent is its VMBus device, named by its
//! instance GUID; a VF's is its PCI function.

use super::number;
use crate::netdev::is_kernel_name;

/// A moment of a VF's life that the kernel logged, read from one record's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Moment {
    /// A line of hv_netvsc about one NetVSC interface.
    Netvsc {
        /// The NetVSC's VMBus device: its instance GUID, as the kernel names it.
        vmbus_id: String,
        /// The NetVSC interface's name when the line was logged.
        netvsc: String,
        event: NetvscEvent,
    },
    /// hv_netvsc made the VF a slave of its NetVSC interface (`netvsc_vf_join`); logged as the
    /// VF, by the VF's driver: the one line naming the VF's PCI function and its NetVSC.
    VfJoined { driver: String, pci: String, vf: String, netvsc: String },
    /// A PCI function's netdevice was renamed (udev renames a VF ~15 ms after it registers):
    /// what keeps the VF's name across renames.
    VfRenamed { driver: String, pci: String, from: String, to: String },
}

/// What hv_netvsc said of a NetVSC interface (drivers/net/hyperv/netvsc_drv.c, netvsc.c).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetvscEvent {
    /// `Data path switched to VF: <vf>`: the host now sends through the VF.
    DataPathToVf { vf: String },
    /// `Data path switched from VF: <vf>`: traffic is back on the synthetic path.
    DataPathFromVf { vf: String },
    /// `Data path failed to switch to|from VF: <vf>, err: <errno>` (netdev_err).
    DataPathSwitchFailed { to_vf: bool, vf: String, err: i32 },
    /// `VF registering: <vf>`: the VF's netdevice appeared and was matched to this NetVSC.
    VfRegistering { vf: String },
    /// `VF unregistering: <vf>`: the VF's netdevice is going away.
    VfUnregistering { vf: String },
    /// `VF slot <n> added`: the host offered a VF (the serial the VF is matched on).
    VfSlotAdded { slot: u32 },
    /// `VF slot <n> removed`: the host took the VF back.
    VfSlotRemoved { slot: u32 },
    /// `renamed from <old>`: the NetVSC interface itself was renamed.
    Renamed { from: String },
}

impl Moment {
    /// The moment a message tells, or `None` for any other line (another driver's, a device
    /// that is not a netdevice, a name the kernel cannot give).
    pub fn parse(message: &str) -> Option<Moment> {
        let (driver, rest) = message.trim_end().split_once(' ')?;
        let (parent, rest) = rest.split_once(' ')?;
        // Interface names hold no ':', so the first ": " ends the prefix.
        let (ifname, text) = rest.split_once(": ")?;
        let ifname = logged_name(ifname)?;
        if driver == "hv_netvsc" {
            let event = NetvscEvent::parse(text)?;
            return is_vmbus_id(parent).then(|| Moment::Netvsc { vmbus_id: parent.to_owned(), netvsc: ifname, event });
        }
        if driver.is_empty() || !is_pci_address(parent) {
            return None;
        }
        let (driver, pci) = (driver.to_owned(), parent.to_owned());
        if let Some(netvsc) = text.strip_prefix("joined to ") {
            return Some(Moment::VfJoined { driver, pci, vf: ifname, netvsc: name(netvsc)? });
        }
        let from = renamed_from(text)?;
        Some(Moment::VfRenamed { driver, pci, from, to: ifname })
    }
}

impl NetvscEvent {
    fn parse(text: &str) -> Option<NetvscEvent> {
        type Named = fn(String) -> NetvscEvent;
        let named: [(&str, Named); 4] = [
            ("Data path switched to VF: ", |vf| NetvscEvent::DataPathToVf { vf }),
            ("Data path switched from VF: ", |vf| NetvscEvent::DataPathFromVf { vf }),
            ("VF registering: ", |vf| NetvscEvent::VfRegistering { vf }),
            ("VF unregistering: ", |vf| NetvscEvent::VfUnregistering { vf }),
        ];
        for (prefix, event) in named {
            if let Some(vf) = text.strip_prefix(prefix) {
                return name(vf).map(event);
            }
        }
        if let Some(rest) = text.strip_prefix("Data path failed to switch ") {
            let (to_vf, rest) = match rest.split_once(" VF: ")? {
                ("to", rest) => (true, rest),
                ("from", rest) => (false, rest),
                _ => return None,
            };
            let (vf, err) = rest.rsplit_once(", err: ")?;
            // `%d`: a `-` maybe, never a `+`.
            let err = err.parse().ok().filter(|_| !err.starts_with('+'))?;
            return Some(NetvscEvent::DataPathSwitchFailed { to_vf, vf: name(vf)?, err });
        }
        if let Some(rest) = text.strip_prefix("VF slot ") {
            let slot = |digits: &str| number(digits.as_bytes()).and_then(|n| u32::try_from(n).ok());
            return match rest.split_once(' ')? {
                (digits, "added") => Some(NetvscEvent::VfSlotAdded { slot: slot(digits)? }),
                (digits, "removed") => Some(NetvscEvent::VfSlotRemoved { slot: slot(digits)? }),
                _ => None,
            };
        }
        renamed_from(text).map(|from| NetvscEvent::Renamed { from })
    }
}

/// `renamed from <old>[ (while UP)]` (net/core/dev.c `dev_change_name`).
fn renamed_from(text: &str) -> Option<String> {
    let from = text.strip_prefix("renamed from ")?;
    name(from.strip_suffix(" (while UP)").unwrap_or(from))
}

/// A netdevice's name as the kernel can give it. One that was not UTF-8 (U+FFFD here) is no
/// name, as for the other sources.
fn name(text: &str) -> Option<String> {
    (is_kernel_name(text) && !text.contains('\u{fffd}')).then(|| text.to_owned())
}

/// The interface in a netdev line's prefix: its name, then its registration state unless
/// registered (` (unregistering)`, netdevice.h `netdev_reg_state`).
fn logged_name(text: &str) -> Option<String> {
    let (ifname, state) = text.split_once(' ').unwrap_or((text, ""));
    let state_ok = state.is_empty()
        || state
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase()));
    // A name still holding `%` (`eth%d`) is logged as `(unnamed net_device)`: no name.
    state_ok.then(|| name(ifname)).flatten()
}

/// A VMBus device's name: its instance GUID (`%pUl`, 8-4-4-4-12 hex digits).
fn is_vmbus_id(text: &str) -> bool {
    text.len() == 36
        && text
            .bytes()
            .enumerate()
            .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// A PCI function's name: `%04x:%02x:%02x.%d`, domain, bus, device and function.
fn is_pci_address(text: &str) -> bool {
    let hex = |t: &str, lengths: std::ops::RangeInclusive<usize>| {
        lengths.contains(&t.len()) && t.bytes().all(|b| b.is_ascii_hexdigit())
    };
    let Some((rest, function)) = text.rsplit_once('.') else { return false };
    let parts: Vec<&str> = rest.split(':').collect();
    matches!(function.as_bytes(), [b'0'..=b'7'])
        && matches!(parts[..], [domain, bus, device] if hex(domain, 4..=8) && hex(bus, 2..=2) && hex(device, 2..=2))
}

#[cfg(test)]
mod tests;
