//! Just enough rtnetlink for the bench's own listener and its minimal reactor: the link
//! messages of one datagram, read with the netlink crates directly and none of the agent's code,
//! so the reference does not share what it measures.

use std::os::fd::AsRawFd as _;
use std::time::Duration;

use anyhow::Context as _;
use netlink_packet_core::{NetlinkBuffer, NlasIterator};
use netlink_packet_route::link::LinkHeader;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// `RTNLGRP_LINK` as a bind-time group mask (linux/rtnetlink.h).
const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
/// `ifinfomsg`'s length: the attributes follow it.
const LINK_HEADER_LEN: usize = 16;
const IFLA_ADDRESS: u16 = 1;
/// An attribute's length and type precede its value.
const NLA_HEADER_LEN: usize = 4;

/// One `RTM_NEWLINK` or `RTM_DELLINK`.
pub struct LinkMessage<'a> {
    pub new: bool,
    pub ifindex: u32,
    attributes: &'a [u8],
}

impl LinkMessage<'_> {
    /// `IFLA_ADDRESS`, the link's hardware address.
    pub fn address(&self) -> Option<&[u8]> {
        let nla = NlasIterator::new(self.attributes).flatten().find(|nla| nla.kind() == IFLA_ADDRESS)?;
        let length = nla.value_length();
        nla.into_inner().get(NLA_HEADER_LEN..NLA_HEADER_LEN + length)
    }
}

/// The link messages of `datagram`, in order; anything else (or malformed) is skipped.
pub fn link_messages(datagram: &[u8]) -> impl Iterator<Item = LinkMessage<'_>> {
    let mut rest = datagram;
    std::iter::from_fn(move || loop {
        let message = NetlinkBuffer::new_checked(rest).ok()?;
        let length = (message.length() as usize).next_multiple_of(4).min(rest.len());
        let (kind, payload) = (message.message_type(), message.payload());
        rest = &rest[length..];
        if kind != RTM_NEWLINK && kind != RTM_DELLINK {
            continue;
        }
        let Ok(header) = LinkHeader::parse(payload) else { continue };
        let attributes = payload.get(LINK_HEADER_LEN..).unwrap_or_default();
        return Some(LinkMessage { new: kind == RTM_NEWLINK, ifindex: header.index, attributes });
    })
}

/// A blocking socket in the caller's network namespace, subscribed to link events; `timeout`
/// bounds each receive so that a reader can notice it is asked to stop.
pub fn subscribe(timeout: Option<Duration>) -> anyhow::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket.bind(&SocketAddr::new(0, RTMGRP_LINK)).context("joining rtnetlink's link group")?;
    socket.set_rx_buf_sz(4 << 20).context("sizing the rtnetlink receive buffer")?;
    if let Some(timeout) = timeout {
        let timeval = nix::sys::time::TimeVal::new(timeout.as_secs() as i64, timeout.subsec_micros() as i64);
        // SAFETY: the socket owns the descriptor and outlives this borrow.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(socket.as_raw_fd()) };
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &timeval)
            .context("setting the rtnetlink receive timeout")?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::NetlinkMessage;
    use netlink_packet_route::link::{LinkAttribute, LinkMessage as Netdev};
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;

    fn datagram(messages: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for inner in messages {
            let mut message = NetlinkMessage::from(inner);
            message.finalize();
            let mut bytes = vec![0; message.buffer_len()];
            message.serialize(&mut bytes);
            out.extend(bytes);
        }
        out
    }

    fn link(index: u32, mac: Option<[u8; 6]>) -> Netdev {
        let mut link = Netdev::default();
        link.header.index = index;
        link.attributes.push(LinkAttribute::IfName(format!("vf{index}")));
        link.attributes.extend(mac.map(|mac| LinkAttribute::Address(mac.to_vec())));
        link
    }

    #[test]
    fn link_messages_are_read_in_order_and_the_rest_skipped() {
        let mac = [0, 0x15, 0x5d, 0, 0, 1];
        let bytes = datagram(vec![
            RouteNetlinkMessage::NewLink(link(7, Some(mac))),
            RouteNetlinkMessage::NewRoute(Default::default()),
            RouteNetlinkMessage::DelLink(link(8, None)),
        ]);
        let read: Vec<(bool, u32, Option<Vec<u8>>)> =
            link_messages(&bytes).map(|m| (m.new, m.ifindex, m.address().map(<[u8]>::to_vec))).collect();
        assert_eq!(read, [(true, 7, Some(mac.to_vec())), (false, 8, None)]);
        assert_eq!(link_messages(&bytes[..8]).count(), 0, "a truncated datagram yields nothing");
    }
}
