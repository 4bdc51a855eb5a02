//! Which links exist, by the kernel's own list (an rtnetlink `RTM_GETLINK` dump). A full rescan
//! trusts this over sysfs: the kernel announces a removal before it tears down the device's
//! sysfs entries, so a rescan from sysfs alone could bring a removed VF back. Behind a trait so
//! fake-tree tests can say what exists.
//!
//! The kernel's dump also says each link's name, type, MAC and master, in one answer: a rescan
//! that has it asks sysfs only about parent devices, instead of five attributes per link
//! (1000 links: a few milliseconds rather than tens).

use std::collections::HashSet;

use anyhow::{bail, Context as _};
use futures::future::BoxFuture;
use macaddr::MacAddr6;
use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};

use crate::system::rtnetlink::{decode_link, messages, RTM_NEWLINK};

/// One Ethernet link as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedNetdev {
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr6,
    pub master: Option<u32>,
}

/// What a link list answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// The ifindexes of the links that exist (any type); sysfs says the rest.
    Ifindexes(HashSet<u32>),
    /// The Ethernet links with what the kernel says of them, and the ifindexes of all links.
    Netdevs { ethernet: Vec<ListedNetdev>, all: HashSet<u32> },
}

impl Listing {
    pub fn contains(&self, ifindex: u32) -> bool {
        match self {
            Listing::Ifindexes(all) | Listing::Netdevs { all, .. } => all.contains(&ifindex),
        }
    }
}

pub trait NetdevList: Send + Sync {
    /// The links in the agent's network namespace right now.
    fn links(&self) -> BoxFuture<'_, anyhow::Result<Listing>>;
}

/// Asks the running kernel (in the agent's network namespace).
#[derive(Default)]
pub struct KernelNetdevList;

impl NetdevList for KernelNetdevList {
    fn links(&self) -> BoxFuture<'_, anyhow::Result<Listing>> {
        // A dump of a thousand links is answered in a few milliseconds: done in place.
        Box::pin(std::future::ready(dump().context("dumping links over rtnetlink")))
    }
}

/// Sequence number of the dump request (one socket per dump, so any fixed number will do).
const DUMP_SEQUENCE: u32 = 1;
const DUMP_BUFFER_BYTES: usize = 256 * 1024;

fn dump() -> anyhow::Result<Listing> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket.bind_auto().context("binding the rtnetlink socket")?;
    socket.connect(&netlink_sys::SocketAddr::new(0, 0)).context("connecting the rtnetlink socket")?;
    let mut request = LinkMessage::default();
    // Statistics are most of a link's message and the agent reads none of them.
    request.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = DUMP_SEQUENCE;
    let mut message = NetlinkMessage::new(header, RouteNetlinkMessage::GetLink(request).into());
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0).context("sending the dump request")?;

    let mut ethernet = Vec::new();
    let mut all = HashSet::new();
    let mut datagram = Vec::with_capacity(DUMP_BUFFER_BYTES);
    loop {
        datagram.clear();
        let length = socket.recv(&mut datagram, libc::MSG_TRUNC).context("receiving the dump")?;
        if length > datagram.capacity() {
            bail!("a dump datagram of {length} bytes does not fit the {DUMP_BUFFER_BYTES}-byte buffer");
        }
        for (message_type, payload) in messages(&datagram) {
            match message_type {
                NLMSG_DONE => return Ok(Listing::Netdevs { ethernet, all }),
                NLMSG_ERROR => {
                    let code = payload.get(..4).map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code != 0 {
                        bail!("the kernel refused the dump: {}", std::io::Error::from_raw_os_error(-code));
                    }
                }
                RTM_NEWLINK => {
                    let Some(link) = decode_link(payload) else { continue };
                    all.insert(link.ifindex);
                    if let (true, Some(name), Some(mac)) = (link.ethernet, link.name, link.mac) {
                        ethernet.push(ListedNetdev { ifindex: link.ifindex, name, mac, master: link.master });
                    }
                }
                _ => {}
            }
        }
    }
}
