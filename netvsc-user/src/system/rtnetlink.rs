//! The agent's one rtnetlink stack: `netlink-sys` sockets, `netlink-packet-route` to build
//! requests and to parse headers and attributes, and here the one decoder of what the kernel
//! sends, used by the event source (source/netlink.rs), the link dump (netdev_list.rs) and the
//! address dump (addresses.rs). A datagram is split by the messages' lengths and of a message
//! only the header and the attributes the agent uses are parsed, with the crate's own parsers: the
//! crate's full decode of a link message builds every statistic and per-family setting first.
//! Measured on the kernel's own message for a NIC (1496 bytes, warm caches; `cargo bench -p
//! netvsc-user --bench decode`, docs/benchmarks.md): 0.21 µs this way, 2.8 µs the full decode,
//! on a path whose own share is about 60 µs from receive to write.

use anyhow::{bail, Context as _};
use macaddr::MacAddr6;
use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NlasIterator, ParseableParametrized as _, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::AddressHeader;
use netlink_packet_route::link::{LinkAttribute, LinkHeader, LinkLayerType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use super::{NetdevEvent, Parent};

/// What an overrun turns into.
pub(crate) const OVERRUN: NetdevEvent = NetdevEvent::Resync { reason: "rtnetlink receive buffer overrun", lost: true };

/// Message types (linux/netlink.h, linux/rtnetlink.h).
const NLMSG_OVERRUN: u16 = 4;
pub const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
/// Link attributes the agent reads (linux/if_link.h).
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_PARENT_DEV_NAME: u16 = 56;
const IFLA_PARENT_DEV_BUS_NAME: u16 = 57;
/// Address attributes the agent reads (linux/if_addr.h).
const IFA_ADDRESS: u16 = 1;
/// `ifinfomsg`'s length: a link message's attributes follow it.
const LINK_HEADER_LEN: usize = 16;
/// `ifaddrmsg`'s length: an address message's attributes follow it.
const ADDRESS_HEADER_LEN: usize = 8;

/// The events of one datagram, in order. Each message is split off by its length (a bad length
/// ends the datagram), and of a link message only the header and the three attributes the agent
/// uses are decoded: a full decode builds every statistic and per-family setting of the link,
/// tens of microseconds spent before the pipe is written. A malformed message is skipped.
pub fn events(datagram: &[u8]) -> impl Iterator<Item = (NetdevEvent, Option<Parent>)> + '_ {
    messages(datagram).filter_map(|(message_type, payload)| translate(message_type, payload))
}

/// Maps one rtnetlink message to a link event (and the link's parent, when the kernel named it);
/// `None` for messages that change nothing we track.
fn translate(message_type: u16, payload: &[u8]) -> Option<(NetdevEvent, Option<Parent>)> {
    match message_type {
        NLMSG_OVERRUN => Some((OVERRUN, None)),
        RTM_NEWLINK => changed(payload),
        // A port leaving a bridge is an AF_BRIDGE DELLINK; the device itself still exists.
        RTM_DELLINK => {
            let header = LinkHeader::parse(payload).ok()?;
            if header.interface_family == AddressFamily::Bridge {
                changed(payload)
            } else {
                Some((NetdevEvent::Removed { ifindex: header.index }, None))
            }
        }
        RTM_NEWADDR | RTM_DELADDR => {
            Some((NetdevEvent::AddressChanged { ifindex: AddressHeader::parse(payload).ok()?.index }, None))
        }
        _ => None,
    }
}

fn changed(payload: &[u8]) -> Option<(NetdevEvent, Option<Parent>)> {
    let link = decode_link(payload)?;
    // Every RTM_NEWLINK carries IFLA_MASTER when the link has one: its absence says "none".
    let event =
        NetdevEvent::Changed { ifindex: link.ifindex, name: link.name, mac: link.mac, master: Some(link.master) };
    Some((event, link.parent))
}

/// What the agent reads of a link message (an event, or one link of a dump).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedLink {
    pub ifindex: u32,
    pub family: AddressFamily,
    /// `ARPHRD_ETHER`, by the header.
    pub ethernet: bool,
    pub name: Option<String>,
    /// Given for Ethernet links only.
    pub mac: Option<MacAddr6>,
    pub master: Option<u32>,
    /// The parent device, when the kernel names it (`IFLA_PARENT_DEV_*`, Linux 5.15 and later);
    /// `None` says nothing (an older kernel, or no parent).
    pub parent: Option<Parent>,
}

/// Decodes the header and the three attributes the agent uses of an `RTM_NEWLINK`/`RTM_DELLINK`
/// payload, leaving the rest (statistics, per-family settings) undecoded.
pub fn decode_link(payload: &[u8]) -> Option<DecodedLink> {
    let header = LinkHeader::parse(payload).ok()?;
    let ethernet = header.link_layer_type == LinkLayerType::Ether;
    let mut link = DecodedLink {
        ifindex: header.index,
        family: header.interface_family,
        ethernet,
        name: None,
        mac: None,
        master: None,
        parent: None,
    };
    let (mut parent_name, mut parent_bus) = (None, None);
    let attributes = payload.get(LINK_HEADER_LEN..).unwrap_or_default();
    for nla in NlasIterator::new(attributes).flatten() {
        if !matches!(
            nla.kind(),
            IFLA_ADDRESS | IFLA_IFNAME | IFLA_MASTER | IFLA_PARENT_DEV_NAME | IFLA_PARENT_DEV_BUS_NAME
        ) {
            continue;
        }
        match LinkAttribute::parse_with_param(&nla, header.interface_family) {
            Ok(LinkAttribute::IfName(name)) if crate::netdev::is_kernel_name(&name) => link.name = Some(name),
            Ok(LinkAttribute::Address(bytes)) if ethernet => {
                link.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Into::into)
            }
            Ok(LinkAttribute::Controller(index)) => link.master = Some(index),
            Ok(LinkAttribute::ParentDevName(name)) => parent_name = Some(name),
            Ok(LinkAttribute::ParentDevBusName(bus)) => parent_bus = Some(bus),
            _ => {}
        }
    }
    link.parent = match (parent_bus.as_deref(), parent_name) {
        (Some("pci"), Some(address)) if crate::netdev::is_device_name(&address) => {
            Some(Parent::Pci { address, id: None })
        }
        // An address sysfs cannot have says nothing about the parent.
        (Some("pci"), Some(_)) => None,
        (Some("vmbus"), _) => Some(Parent::Vmbus),
        (Some(_), _) => Some(Parent::Other),
        (None, _) => None,
    };
    Some(link)
}

/// The interface of an `RTM_NEWADDR` payload, when the message carries an address
/// (`IFA_ADDRESS`).
pub(crate) fn decode_address(payload: &[u8]) -> Option<u32> {
    let header = AddressHeader::parse(payload).ok()?;
    let attributes = payload.get(ADDRESS_HEADER_LEN..).unwrap_or_default();
    NlasIterator::new(attributes).flatten().any(|nla| nla.kind() == IFA_ADDRESS).then_some(header.index)
}

/// Sequence number of a dump request (one socket per dump, so any fixed number will do).
const DUMP_SEQUENCE: u32 = 1;
/// A dump datagram is at most a page or two; this leaves room for any the kernel sends.
const DUMP_BUFFER_BYTES: usize = 256 * 1024;

/// Sends `request` as a dump on a socket of its own and hands each message of the answer, type
/// and payload, to `each` until the kernel says it is done. Strict checking is asked for, so that
/// the kernel filters by what the request's header names (Linux 4.20 and later; before, the
/// whole table comes back and the caller's own filter is what counts). A dump of a thousand links
/// is answered in a few milliseconds: done in place, not on a task.
pub fn dump(request: RouteNetlinkMessage, mut each: impl FnMut(u16, &[u8])) -> anyhow::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    let _ = socket.set_netlink_get_strict_chk(true);
    socket.bind_auto().context("binding the rtnetlink socket")?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0)).context("connecting the rtnetlink socket")?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = DUMP_SEQUENCE;
    let mut message = NetlinkMessage::new(header, request.into());
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0).context("sending the dump request")?;

    let mut datagram = Vec::with_capacity(DUMP_BUFFER_BYTES);
    loop {
        datagram.clear();
        let length = socket.recv(&mut datagram, libc::MSG_TRUNC).context("receiving the dump")?;
        if length > datagram.capacity() {
            bail!("a dump datagram of {length} bytes does not fit the {DUMP_BUFFER_BYTES}-byte buffer");
        }
        for (message_type, payload) in messages(&datagram) {
            match message_type {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code != 0 {
                        bail!("the kernel refused the dump: {}", std::io::Error::from_raw_os_error(-code));
                    }
                }
                _ => each(message_type, payload),
            }
        }
    }
}

/// The messages of one datagram with their types, split off by their lengths (a bad length ends
/// the datagram).
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let message = NetlinkBuffer::new_checked(rest).ok()?;
        let length = (message.length() as usize).next_multiple_of(4).min(rest.len());
        let (message_type, payload) = (message.message_type(), message.payload());
        rest = &rest[length..];
        Some((message_type, payload))
    })
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::link::LinkMessage;
    use netlink_packet_route::route::RouteMessage;
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;

    fn link(index: u32, family: AddressFamily, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.interface_family = family;
        msg.header.link_layer_type = LinkLayerType::Ether;
        msg.attributes = attributes;
        msg
    }

    fn address(index: u32) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg
    }

    /// The messages as the kernel sends them: serialized back to back in one datagram.
    fn datagram(payloads: impl IntoIterator<Item = NetlinkPayload<RouteNetlinkMessage>>) -> Vec<u8> {
        let mut datagram = Vec::new();
        for payload in payloads {
            let mut message = NetlinkMessage::new(Default::default(), payload);
            message.finalize();
            let mut bytes = vec![0; message.buffer_len()];
            message.serialize(&mut bytes);
            datagram.extend(bytes);
        }
        datagram
    }

    fn inner(message: RouteNetlinkMessage) -> NetlinkPayload<RouteNetlinkMessage> {
        NetlinkPayload::InnerMessage(message)
    }

    #[test]
    fn every_message_of_a_datagram_is_read() {
        let named = |index: u32| vec![LinkAttribute::IfName(format!("enP{index}"))];
        let bytes = datagram([
            inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, named(7)))),
            inner(RouteNetlinkMessage::NewRoute(RouteMessage::default())),
            inner(RouteNetlinkMessage::NewLink(link(8, AddressFamily::Unspec, named(8)))),
        ]);
        let names: Vec<_> = events(&bytes)
            .map(|(e, _)| match e {
                NetdevEvent::Changed { ifindex, name, .. } => (ifindex, name.unwrap()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, [(7, "enP7".to_owned()), (8, "enP8".to_owned())]);
        assert_eq!(events(&bytes[..10]).count(), 0, "a truncated datagram yields nothing");
        let mut bad_length = bytes.clone();
        bad_length[0] = 0xff;
        assert_eq!(events(&bad_length).count(), 0, "a length beyond the datagram ends it");
    }

    #[test]
    fn the_parent_device_is_read_when_the_kernel_names_it() {
        let parent = |attributes: Vec<LinkAttribute>| {
            let bytes = datagram([inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, attributes)))]);
            let parent = events(&bytes).next().expect("an event").1;
            parent
        };
        let named = |bus: &str, name: &str| {
            vec![LinkAttribute::ParentDevBusName(bus.into()), LinkAttribute::ParentDevName(name.into())]
        };
        let pci = Parent::Pci { address: "0002:00:02.0".into(), id: None };
        assert_eq!(parent(named("pci", "0002:00:02.0")), Some(pci));
        assert_eq!(parent(named("vmbus", "f8615163-0000-1000-8001-000d3a000001")), Some(Parent::Vmbus));
        assert_eq!(parent(named("usb", "1-1:1.0")), Some(Parent::Other));
        assert_eq!(parent(Vec::new()), None, "no parent named: an older kernel, or a virtual link");
        let bytes = datagram([inner(RouteNetlinkMessage::DelLink(link(7, AddressFamily::Unspec, named("pci", "x"))))]);
        assert_eq!(events(&bytes).next().expect("an event").1, None, "a removal needs no parent");
    }

    #[test]
    fn each_message_becomes_the_event_it_stands_for() {
        let mac = [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01];
        let named = vec![LinkAttribute::IfName("enP2s2".into()), LinkAttribute::Address(mac.to_vec())];
        let mut infiniband = link(9, AddressFamily::Unspec, named.clone());
        infiniband.header.link_layer_type = LinkLayerType::Infiniband;
        let cases: Vec<(&str, NetlinkPayload<RouteNetlinkMessage>, Option<NetdevEvent>)> = vec![
            ("overrun", NetlinkPayload::Overrun(Vec::new()), Some(OVERRUN)),
            (
                "new link with name and MAC",
                inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, named.clone()))),
                Some(NetdevEvent::Changed {
                    ifindex: 7,
                    name: Some("enP2s2".into()),
                    mac: Some(mac.into()),
                    master: Some(None),
                }),
            ),
            (
                "new link without attributes",
                inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, Vec::new()))),
                Some(NetdevEvent::Changed { ifindex: 7, name: None, mac: None, master: Some(None) }),
            ),
            (
                "a hardware address that is not Ethernet's six bytes",
                inner(RouteNetlinkMessage::NewLink(link(
                    9,
                    AddressFamily::Unspec,
                    vec![LinkAttribute::Address(vec![1; 20])],
                ))),
                Some(NetdevEvent::Changed { ifindex: 9, name: None, mac: None, master: Some(None) }),
            ),
            (
                "a link that is not Ethernet: its address is no MAC hint (sysfs says what it is)",
                inner(RouteNetlinkMessage::NewLink(infiniband)),
                Some(NetdevEvent::Changed { ifindex: 9, name: Some("enP2s2".into()), mac: None, master: Some(None) }),
            ),
            (
                "a link enslaved to ifindex 3 (the kernel's VF association, or a bridge)",
                inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, vec![LinkAttribute::Controller(3)]))),
                Some(NetdevEvent::Changed { ifindex: 7, name: None, mac: None, master: Some(Some(3)) }),
            ),
            (
                "link removed",
                inner(RouteNetlinkMessage::DelLink(link(7, AddressFamily::Unspec, named.clone()))),
                Some(NetdevEvent::Removed { ifindex: 7 }),
            ),
            (
                "a port leaving a bridge (the device stays)",
                inner(RouteNetlinkMessage::DelLink(link(7, AddressFamily::Bridge, named))),
                Some(NetdevEvent::Changed {
                    ifindex: 7,
                    name: Some("enP2s2".into()),
                    mac: Some(mac.into()),
                    master: Some(None),
                }),
            ),
            (
                "address added",
                inner(RouteNetlinkMessage::NewAddress(address(3))),
                Some(NetdevEvent::AddressChanged { ifindex: 3 }),
            ),
            (
                "address removed",
                inner(RouteNetlinkMessage::DelAddress(address(3))),
                Some(NetdevEvent::AddressChanged { ifindex: 3 }),
            ),
            ("a route", inner(RouteNetlinkMessage::NewRoute(RouteMessage::default())), None),
            ("done", NetlinkPayload::Done(Default::default()), None),
        ];
        for (what, payload, expected) in cases {
            let bytes = datagram([payload]);
            assert_eq!(events(&bytes).next().map(|(event, _)| event), expected, "{what}");
        }
    }

    /// Found by fuzzing (fuzz/regressions/rtnetlink/): an IFLA_IFNAME holding NULs was taken as
    /// the link's name, and a name or parent address is joined to sysfs paths. What the kernel
    /// cannot name a device is no name: sysfs is asked by what the agent knows instead.
    #[test]
    fn names_and_parent_addresses_the_kernel_cannot_give_are_dropped() {
        let decoded = |attributes: Vec<LinkAttribute>| {
            let bytes = datagram([inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, attributes)))]);
            let (_, payload) = messages(&bytes).next().expect("one message");
            let link = decode_link(payload).expect("a link");
            (link.name, link.parent)
        };
        for bad in ["\0=\0\0", "../../../etc", "eth 1", "", "a-name-of-16-byt"] {
            assert_eq!(decoded(vec![LinkAttribute::IfName(bad.into())]), (None, None), "{bad:?}");
        }
        let pci = |address: &str| {
            vec![LinkAttribute::ParentDevBusName("pci".into()), LinkAttribute::ParentDevName(address.into())]
        };
        assert_eq!(decoded(pci("../../../etc")), (None, None));
        assert_eq!(decoded(pci("0002:00:\0")), (None, None));
        let crash = include_bytes!("../../../fuzz/regressions/rtnetlink/nul-in-ifname");
        for (event, _) in events(crash) {
            if let NetdevEvent::Changed { name: Some(name), .. } = event {
                assert!(crate::netdev::is_kernel_name(&name), "{name:?}");
            }
        }
    }

    #[test]
    fn an_address_message_names_its_interface_only_when_it_carries_an_address() {
        use netlink_packet_route::address::AddressAttribute;
        let payload = |msg: AddressMessage| {
            let bytes = datagram([inner(RouteNetlinkMessage::NewAddress(msg))]);
            let (message_type, payload) = messages(&bytes).next().expect("one message");
            assert_eq!(message_type, RTM_NEWADDR);
            decode_address(payload)
        };
        let mut with_address = address(3);
        with_address.header.family = AddressFamily::Inet;
        with_address.header.prefix_len = 24;
        with_address.attributes = vec![
            AddressAttribute::Label("eth0".into()),
            AddressAttribute::Address(std::net::Ipv4Addr::new(10, 0, 0, 4).into()),
        ];
        assert_eq!(payload(with_address), Some(3));
        let mut label_only = address(3);
        label_only.attributes = vec![AddressAttribute::Label("eth0".into())];
        assert_eq!(payload(label_only), None, "no IFA_ADDRESS: no address");
        assert_eq!(decode_address(&[0; 4]), None, "shorter than ifaddrmsg");
    }
}
