//! rtnetlink multicast subscription: link and address events of the agent's network namespace.

use anyhow::Context as _;
use futures::channel::mpsc::UnboundedReceiver;
use futures::future::BoxFuture;
use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{AsyncSocket as _, SocketAddr};
use rtnetlink::MulticastGroup;

use super::{LinkEvent, Source, SourceEvent};

/// Large enough that a burst of thousands of veth events does not overrun; if it does, the
/// kernel says so and the agent resyncs.
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

type Messages = UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

pub struct NetlinkSource {
    messages: Messages,
}

impl NetlinkSource {
    /// Link and address events. Subscribed before the agent's start-up scan, so nothing between
    /// the two is missed. Must be called inside a tokio runtime.
    pub fn subscribe() -> anyhow::Result<Self> {
        Self::subscribe_to(&[MulticastGroup::Link, MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv6Ifaddr])
    }

    /// Address events only (the eBPF source sees links itself).
    pub fn subscribe_addresses() -> anyhow::Result<Self> {
        Self::subscribe_to(&[MulticastGroup::Ipv4Ifaddr, MulticastGroup::Ipv6Ifaddr])
    }

    fn subscribe_to(groups: &[MulticastGroup]) -> anyhow::Result<Self> {
        let (mut connection, _handle, messages) =
            rtnetlink::new_multicast_connection(groups).context("subscribing to rtnetlink link events")?;
        if let Err(err) = connection.socket_mut().socket_mut().set_rx_buf_sz(RECEIVE_BUFFER_BYTES) {
            tracing::debug!(%err, "could not enlarge the rtnetlink receive buffer");
        }
        tokio::spawn(connection);
        Ok(Self { messages })
    }
}

impl Source for NetlinkSource {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn next(&mut self) -> BoxFuture<'_, anyhow::Result<SourceEvent>> {
        Box::pin(async move {
            loop {
                let (message, _) = self.messages.next().await.context("rtnetlink connection closed")?;
                if let Some(event) = translate(message.payload) {
                    return Ok(SourceEvent::now(event));
                }
            }
        })
    }
}

/// Maps one rtnetlink message to a link event; `None` for messages that change nothing we track.
pub fn translate(payload: NetlinkPayload<RouteNetlinkMessage>) -> Option<LinkEvent> {
    match payload {
        NetlinkPayload::Overrun(_) => Some(LinkEvent::Resync { reason: "rtnetlink receive buffer overrun" }),
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
    for attribute in &msg.attributes {
        match attribute {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Address(bytes) => mac = <[u8; 6]>::try_from(bytes.as_slice()).ok().map(Into::into),
            _ => {}
        }
    }
    LinkEvent::Changed { ifindex: msg.header.index, name, mac }
}
