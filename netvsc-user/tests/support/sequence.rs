//! Plays a captured Azure event sequence (shared/reference/azure-captures.md) on the fake tree
//! and hands the agent what each source would have delivered: real rtnetlink datagrams through
//! the agent's decoder, kernel records through the eBPF source's translation, or the poll's
//! rescans.

use std::collections::HashMap;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkLayerType, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netvsc_common::{bus, kind, KernelEvent};
use netvsc_testkit::fake_sysfs::Make;
use netvsc_testkit::FakeSysfs;
use netvsc_user::event::{NetdevEvent, SourceEvent, SourceName};
use netvsc_user::source::ebpf;
use netvsc_user::system::rtnetlink;

/// One moment of a sequence, as the kernel lives it.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// hv_pci adds the VF's PCI function; no netdevice yet.
    PciAdded { pci: &'static str, make: Make },
    /// The VF's driver registers its netdevice under the kernel's name.
    Registered { name: &'static str, ifindex: u32, mac: &'static str, pci: &'static str, make: Make },
    /// udev renames a netdevice (a VF ~15 ms after registration, or a NetVSC interface).
    Renamed { from: &'static str, to: &'static str },
    /// hv_netvsc joins the VF to its NetVSC interface (`master`), ~100 ms after registration.
    Joined { vf: &'static str, netvsc: &'static str },
    /// hv_netvsc lets the VF go (`Data path switched from VF`, then `VF unregistering`).
    Left { vf: &'static str },
    /// The VF's link goes down or up (the boot-time data-path flap): a link message, no more.
    Flapped { name: &'static str },
    /// The VF's netdevice unregisters.
    Unregistered { name: &'static str },
    /// The PCI function goes (eject, or `echo 1 > remove`), ~1–2.5 s after unregistering.
    PciRemoved { pci: &'static str },
}

/// Which source, and which kernel for netlink: `IFLA_PARENT_DEV_*` came with Linux 5.15.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Netlink { parents: bool },
    Ebpf,
    Poll,
}

impl Source {
    pub const ALL: [Source; 4] =
        [Source::Netlink { parents: true }, Source::Netlink { parents: false }, Source::Ebpf, Source::Poll];

    pub fn name(self) -> SourceName {
        match self {
            Source::Netlink { .. } => SourceName::Netlink,
            Source::Ebpf => SourceName::Ebpf,
            Source::Poll => SourceName::Poll,
        }
    }
}

struct Netdev {
    ifindex: u32,
    mac: &'static str,
    /// The PCI function and its make, for a VF.
    pci: Option<(&'static str, Make)>,
    master: Option<u32>,
}

/// The fake tree and what the kernel knows of each netdevice, stepped through a sequence.
pub struct Player<'a> {
    sys: &'a FakeSysfs,
    source: Source,
    netdevs: HashMap<&'static str, Netdev>,
}

impl<'a> Player<'a> {
    /// `netvscs` (name, ifindex, mac) are on the tree already.
    pub fn new(sys: &'a FakeSysfs, source: Source, netvscs: &[(&'static str, u32, &'static str)]) -> Self {
        let netdevs = netvscs
            .iter()
            .map(|&(name, ifindex, mac)| (name, Netdev { ifindex, mac, pci: None, master: None }))
            .collect();
        Self { sys, source, netdevs }
    }

    /// Changes the tree as `step` does and returns what the source delivers for it.
    pub fn play(&mut self, step: Step) -> Vec<SourceEvent> {
        let sys = self.sys;
        let delivered = match step {
            Step::PciAdded { pci, make } => {
                sys.add_function(make, pci).unwrap();
                self.pci_record(kind::PCI_ADDED, pci)
            }
            Step::Registered { name, ifindex, mac, pci, make } => {
                sys.add_vf_of(make, name, ifindex, mac, pci).unwrap();
                self.netdevs.insert(name, Netdev { ifindex, mac, pci: Some((pci, make)), master: None });
                self.link_message(name, Some(kind::REGISTERED))
            }
            Step::Renamed { from, to } => {
                sys.rename(from, to).unwrap();
                let netdev = self.netdevs.remove(from).expect("renamed netdevice is known");
                self.netdevs.insert(to, netdev);
                self.link_message(to, Some(kind::RENAMED))
            }
            Step::Joined { vf, netvsc } => {
                sys.set_master(vf, Some(netvsc)).unwrap();
                let master = self.netdevs[netvsc].ifindex;
                self.netdevs.get_mut(vf).expect("joined VF is known").master = Some(master);
                self.link_message(vf, Some(kind::MASTER_CHANGED))
            }
            Step::Left { vf } => {
                sys.set_master(vf, None).unwrap();
                self.netdevs.get_mut(vf).expect("VF is known").master = None;
                self.link_message(vf, Some(kind::MASTER_CHANGED))
            }
            // The kernel program hooks no link state change: only netlink tells.
            Step::Flapped { name } => self.link_message(name, None),
            Step::Unregistered { name } => {
                let netdev = self.netdevs.remove(name).expect("unregistered netdevice is known");
                let delivered = self.removal(name, &netdev);
                sys.remove(name).unwrap();
                delivered
            }
            Step::PciRemoved { pci } => {
                sys.remove_function(pci).unwrap();
                self.pci_record(kind::PCI_REMOVED, pci)
            }
        };
        match self.source {
            Source::Poll => vec![SourceEvent::now(NetdevEvent::Resync { reason: "poll interval", lost: true })],
            _ => delivered,
        }
    }

    /// RTM_NEWLINK for netlink (every change is one); for eBPF the kernel record of
    /// `record_kind`, if the kernel program sees the change at all.
    fn link_message(&self, name: &str, record_kind: Option<u32>) -> Vec<SourceEvent> {
        let netdev = &self.netdevs[name];
        match (self.source, record_kind) {
            (Source::Netlink { parents }, _) => netlink(RouteNetlinkMessage::NewLink(self.link(name, netdev, parents))),
            (Source::Ebpf, Some(record_kind)) => record(self.kernel_event(record_kind, name, netdev)),
            (Source::Ebpf, None) | (Source::Poll, _) => Vec::new(),
        }
    }

    fn removal(&self, name: &str, netdev: &Netdev) -> Vec<SourceEvent> {
        match self.source {
            Source::Netlink { parents } => netlink(RouteNetlinkMessage::DelLink(self.link(name, netdev, parents))),
            Source::Ebpf => record(self.kernel_event(kind::UNREGISTERED, name, netdev)),
            Source::Poll => Vec::new(),
        }
    }

    fn pci_record(&self, record_kind: u32, pci: &str) -> Vec<SourceEvent> {
        if self.source != Source::Ebpf {
            return Vec::new();
        }
        let mut event = KernelEvent { kind: record_kind, ..KernelEvent::default() };
        event.pci[..pci.len()].copy_from_slice(pci.as_bytes());
        record(event)
    }

    fn link(&self, name: &str, netdev: &Netdev, parents: bool) -> LinkMessage {
        let mut message = LinkMessage::default();
        message.header.index = netdev.ifindex;
        message.header.link_layer_type = LinkLayerType::Ether;
        message.attributes.push(LinkAttribute::IfName(name.into()));
        message.attributes.push(LinkAttribute::Address(mac_bytes(netdev.mac).to_vec()));
        if let Some(master) = netdev.master {
            message.attributes.push(LinkAttribute::Controller(master));
        }
        if parents {
            let (bus, parent) = match netdev.pci {
                Some((pci, _)) => ("pci".to_owned(), pci.to_owned()),
                None => ("vmbus".to_owned(), "f8615163-0000-1000-2000-000d3af576bd".to_owned()),
            };
            message.attributes.push(LinkAttribute::ParentDevBusName(bus));
            message.attributes.push(LinkAttribute::ParentDevName(parent));
        }
        message
    }

    fn kernel_event(&self, record_kind: u32, name: &str, netdev: &Netdev) -> KernelEvent {
        let mut event = KernelEvent {
            kind: record_kind,
            ifindex: netdev.ifindex,
            dev_type: netvsc_common::ARPHRD_ETHER,
            mac: mac_bytes(netdev.mac),
            parent_bus: bus::VMBUS,
            ..KernelEvent::default()
        };
        event.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some((pci, make)) = netdev.pci {
            let (vendor, device, _) = make.ids();
            event.parent_bus = bus::PCI;
            event.pci[..pci.len()].copy_from_slice(pci.as_bytes());
            (event.pci_vendor, event.pci_device) = (vendor, device);
        }
        event
    }
}

fn mac_bytes(mac: &str) -> [u8; 6] {
    mac.parse::<macaddr::MacAddr6>().expect("a MAC").into_array()
}

/// The message as the kernel sends it, one datagram, read back by the agent's own decoder.
fn netlink(message: RouteNetlinkMessage) -> Vec<SourceEvent> {
    let mut message = NetlinkMessage::new(Default::default(), NetlinkPayload::InnerMessage(message));
    message.finalize();
    let mut datagram = vec![0; message.buffer_len()];
    message.serialize(&mut datagram);
    let seen_at_ns = netvsc_user::clock::monotonic_ns();
    rtnetlink::events(&datagram)
        .map(|(event, parent)| SourceEvent { event, seen_at_ns, kernel: None, parent })
        .collect()
}

/// The record as the ring buffer hands it over, through the eBPF source's own translation.
fn record(event: KernelEvent) -> Vec<SourceEvent> {
    let translated = ebpf::translate(&event).into_iter();
    translated
        .map(|link_event| SourceEvent {
            parent: ebpf::parent(&event),
            event: link_event,
            seen_at_ns: 0,
            kernel: Some(event),
        })
        .collect()
}
