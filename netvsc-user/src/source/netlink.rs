//! rtnetlink multicast subscription: link and address events of the agent's network namespace,
//! read straight from the socket so that an overrun can be answered precisely.
//!
//! The kernel reports an overrun (`ENOBUFS`) before the messages still queued on the socket, and
//! those are older than the rescan the overrun triggers: replayed on top of it, a stale removal
//! of a since-reused ifindex would empty a pipe whose VF is present. So on `ENOBUFS` everything
//! queued is discarded first, and the rescan alone stands for it.

use std::collections::VecDeque;
use std::io;

use anyhow::Context as _;
use bytes::BytesMut;
use futures::future::BoxFuture;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_proto::{NetlinkCodec, NetlinkMessageCodec as _};
use netlink_sys::{protocols::NETLINK_ROUTE, AsyncSocket as _, AsyncSocketExt as _, SocketAddr, TokioSocket};

use super::{LinkEvent, Source, SourceEvent};

/// Large enough that a burst of thousands of veth events does not overrun; if it does, the
/// kernel says so and the agent resyncs.
pub const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// rtnetlink multicast groups (linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

pub struct NetlinkSource {
    socket: TokioSocket,
    /// Events of a datagram already read, in order.
    pending: VecDeque<SourceEvent>,
}

impl NetlinkSource {
    /// Link and address events. Subscribed before the agent's start-up scan, so nothing between
    /// the two is missed. Must be called inside a tokio runtime.
    pub fn subscribe() -> anyhow::Result<Self> {
        Self::subscribe_to(&[RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR], RECEIVE_BUFFER_BYTES)
    }

    /// Address events only (the eBPF source sees links itself).
    pub fn subscribe_addresses() -> anyhow::Result<Self> {
        Self::subscribe_to(&[RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR], RECEIVE_BUFFER_BYTES)
    }

    /// Link events with a receive buffer of `bytes` (tests force overruns with a small one).
    pub fn subscribe_links_with_buffer(bytes: usize) -> anyhow::Result<Self> {
        Self::subscribe_to(&[RTNLGRP_LINK], bytes)
    }

    fn subscribe_to(groups: &[u32], receive_buffer: usize) -> anyhow::Result<Self> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
        let raw = socket.socket_mut();
        raw.bind(&SocketAddr::new(0, 0)).context("binding the rtnetlink socket")?;
        for group in groups {
            raw.add_membership(*group).with_context(|| format!("joining rtnetlink group {group}"))?;
        }
        if let Err(err) = raw.set_rx_buf_sz(receive_buffer) {
            tracing::debug!(%err, "could not size the rtnetlink receive buffer");
        }
        Ok(Self { socket, pending: VecDeque::new() })
    }

    /// Throws away every message queued on the socket; returns how many datagrams.
    fn discard_queued(&mut self) -> io::Result<usize> {
        self.pending.clear();
        let mut discarded = 0;
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            match self.socket.socket_ref().recv(&mut buf, libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
                Ok(_) => discarded += 1,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(discarded),
                // A second overrun while draining: still only older messages to discard.
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl Source for NetlinkSource {
    fn name(&self) -> super::SourceName {
        super::SourceName::Netlink
    }

    fn next(&mut self) -> BoxFuture<'_, anyhow::Result<SourceEvent>> {
        Box::pin(async move {
            loop {
                if let Some(event) = self.pending.pop_front() {
                    return Ok(event);
                }
                match self.socket.recv_from_full().await {
                    Ok((datagram, _)) => {
                        let seen = crate::clock::monotonic_ns();
                        self.pending.extend(messages(&datagram).filter_map(translate).map(|event| SourceEvent {
                            event,
                            seen_at_ns: seen,
                            kernel: None,
                        }));
                    }
                    Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => {
                        let discarded = self.discard_queued().context("discarding queued rtnetlink messages")?;
                        tracing::warn!(discarded, "rtnetlink receive buffer overrun; rescanning");
                        return Ok(SourceEvent::now(OVERRUN));
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(err).context("reading the rtnetlink socket"),
                }
            }
        })
    }
}

/// What an overrun turns into.
pub const OVERRUN: LinkEvent = LinkEvent::Resync { reason: "rtnetlink receive buffer overrun", lost: true };

/// The payloads of the netlink messages in one datagram, split as rtnetlink's own connection
/// does it (netlink-proto's codec: a malformed message is skipped, a bad length ends the datagram).
fn messages(datagram: &[u8]) -> impl Iterator<Item = NetlinkPayload<RouteNetlinkMessage>> {
    let mut buffer = BytesMut::from(datagram);
    std::iter::from_fn(move || {
        let message = NetlinkCodec::decode::<RouteNetlinkMessage>(&mut buffer).ok()??;
        Some(message.payload)
    })
}

/// Maps one rtnetlink message to a link event; `None` for messages that change nothing we track.
pub fn translate(payload: NetlinkPayload<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match payload {
        NetlinkPayload::Overrun(_) => Some(OVERRUN),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(msg)) => Some(changed(&msg)),
        // A port leaving a bridge is an AF_BRIDGE DELLINK; the device itself still exists.
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(msg)) => {
            if msg.header.interface_family == AddressFamily::Bridge {
                Some(changed(&msg))
            } else {
                Some(LinkEvent::Removed { ifindex: msg.header.index })
            }
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(msg) | RouteNetlinkMessage::DelAddress(msg)) => {
            Some(LinkEvent::AddressChanged { ifindex: msg.header.index })
        }
        _ => None,
    }
}

fn changed(msg: &LinkMessage) -> LinkEvent {
    let mut name = None;
    let mut mac = None;
    // Every RTM_NEWLINK carries IFLA_MASTER when the link has one: its absence says "none".
    let mut master = None;
    for attribute in &msg.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Into::into),
            LinkAttribute::Controller(index) => master = Some(*index),
            _ => {}
        }
    }
    LinkEvent::Changed { ifindex: msg.header.index, name, mac, master: Some(master) }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::address::AddressMessage;
    use netlink_packet_route::route::RouteMessage;

    use super::*;

    fn link(index: u32, family: AddressFamily, attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.interface_family = family;
        msg.attributes = attributes;
        msg
    }

    fn address(index: u32) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg
    }

    #[test]
    fn every_message_of_a_datagram_is_read() {
        let mut datagram = Vec::new();
        for index in [7, 8] {
            let name = vec![LinkAttribute::IfName(format!("enP{index}"))];
            let mut message = netlink_packet_core::NetlinkMessage::from(RouteNetlinkMessage::NewLink(link(
                index,
                AddressFamily::Unspec,
                name,
            )));
            message.finalize();
            let mut bytes = vec![0; message.buffer_len()];
            message.serialize(&mut bytes);
            datagram.extend(bytes);
        }
        let events: Vec<_> = messages(&datagram).filter_map(translate).collect();
        let names: Vec<_> = events
            .iter()
            .map(|e| match e {
                LinkEvent::Changed { ifindex, name, .. } => (*ifindex, name.clone().unwrap()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, [(7, "enP7".to_owned()), (8, "enP8".to_owned())]);
        assert_eq!(messages(&datagram[..10]).count(), 0, "a truncated datagram yields nothing");
    }

    #[test]
    fn each_message_becomes_the_event_it_stands_for() {
        let mac = [0x00, 0x15, 0x5d, 0x00, 0x00, 0x01];
        let named = vec![LinkAttribute::IfName("enP2s2".into()), LinkAttribute::Address(mac.to_vec())];
        let inner = |m: RouteNetlinkMessage| NetlinkPayload::InnerMessage(m);
        let cases: Vec<(&str, NetlinkPayload<RouteNetlinkMessage>, Option<LinkEvent>)> = vec![
            ("overrun", NetlinkPayload::Overrun(Vec::new()), Some(OVERRUN)),
            (
                "new link with name and MAC",
                inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, named.clone()))),
                Some(LinkEvent::Changed {
                    ifindex: 7,
                    name: Some("enP2s2".into()),
                    mac: Some(mac.into()),
                    master: Some(None),
                }),
            ),
            (
                "new link without attributes",
                inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, Vec::new()))),
                Some(LinkEvent::Changed { ifindex: 7, name: None, mac: None, master: Some(None) }),
            ),
            (
                "a hardware address that is not Ethernet's six bytes",
                inner(RouteNetlinkMessage::NewLink(link(
                    9,
                    AddressFamily::Unspec,
                    vec![LinkAttribute::Address(vec![1; 20])],
                ))),
                Some(LinkEvent::Changed { ifindex: 9, name: None, mac: None, master: Some(None) }),
            ),
            (
                "a link enslaved to ifindex 3 (the kernel's VF association, or a bridge)",
                inner(RouteNetlinkMessage::NewLink(link(7, AddressFamily::Unspec, vec![LinkAttribute::Controller(3)]))),
                Some(LinkEvent::Changed { ifindex: 7, name: None, mac: None, master: Some(Some(3)) }),
            ),
            (
                "link removed",
                inner(RouteNetlinkMessage::DelLink(link(7, AddressFamily::Unspec, named.clone()))),
                Some(LinkEvent::Removed { ifindex: 7 }),
            ),
            (
                "a port leaving a bridge (the device stays)",
                inner(RouteNetlinkMessage::DelLink(link(7, AddressFamily::Bridge, named))),
                Some(LinkEvent::Changed {
                    ifindex: 7,
                    name: Some("enP2s2".into()),
                    mac: Some(mac.into()),
                    master: Some(None),
                }),
            ),
            (
                "address added",
                inner(RouteNetlinkMessage::NewAddress(address(3))),
                Some(LinkEvent::AddressChanged { ifindex: 3 }),
            ),
            (
                "address removed",
                inner(RouteNetlinkMessage::DelAddress(address(3))),
                Some(LinkEvent::AddressChanged { ifindex: 3 }),
            ),
            ("a route", inner(RouteNetlinkMessage::NewRoute(RouteMessage::default())), None),
            ("done", NetlinkPayload::Done(Default::default()), None),
        ];
        for (what, payload, expected) in cases {
            assert_eq!(translate(payload), expected, "{what}");
        }
    }
}
