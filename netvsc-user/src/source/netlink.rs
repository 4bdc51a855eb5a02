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
use futures::future::BoxFuture;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tokio::io::unix::AsyncFd;

use super::Source;
use crate::event::{NetdevEvent, SourceEvent};
use crate::system::rtnetlink::events;
pub(crate) use crate::system::rtnetlink::OVERRUN;

/// Large enough that a burst of thousands of veth events does not overrun; if it does, the
/// kernel says so and the agent resyncs.
pub(crate) const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// rtnetlink multicast groups (linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;

/// The first size of the datagram buffer; a larger datagram grows it (after a rescan, since the
/// one that did not fit was cut).
const DATAGRAM_BYTES: usize = 64 * 1024;

pub struct NetlinkSource {
    socket: AsyncFd<Socket>,
    /// Where datagrams are received: one allocation for the life of the source.
    datagram: Vec<u8>,
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
    pub(crate) fn subscribe_addresses() -> anyhow::Result<Self> {
        Self::subscribe_to(&[RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR], RECEIVE_BUFFER_BYTES)
    }

    /// Link events with a receive buffer of `bytes` (tests force overruns with a small one).
    pub fn subscribe_links_with_buffer(bytes: usize) -> anyhow::Result<Self> {
        Self::subscribe_to(&[RTNLGRP_LINK], bytes)
    }

    fn subscribe_to(groups: &[u32], receive_buffer: usize) -> anyhow::Result<Self> {
        let mut raw = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
        raw.bind(&SocketAddr::new(0, 0)).context("binding the rtnetlink socket")?;
        for group in groups {
            raw.add_membership(*group).with_context(|| format!("joining rtnetlink group {group}"))?;
        }
        if let Err(err) = raw.set_rx_buf_sz(receive_buffer) {
            tracing::debug!(%err, "could not size the rtnetlink receive buffer");
        }
        raw.set_non_blocking(true).context("making the rtnetlink socket non-blocking")?;
        // SAFETY: the Socket owns its descriptor, which stays open and unchanged until the AsyncFd
        // (which owns the Socket) is dropped.
        let socket = unsafe { AsyncFd::register_with_interest(raw, tokio::io::Interest::READABLE) }
            .map_err(|err| err.into_parts().1)
            .context("registering the rtnetlink socket with the runtime")?;
        Ok(Self { socket, datagram: Vec::with_capacity(DATAGRAM_BYTES), pending: VecDeque::new() })
    }

    /// Throws away every message queued on the socket; returns how many datagrams.
    fn discard_queued(&mut self) -> io::Result<usize> {
        self.pending.clear();
        let mut discarded = 0;
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            match self.socket.get_ref().recv(&mut buf, libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
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

impl NetlinkSource {
    /// Receives one datagram into `self.datagram` with one system call when it is ready; returns
    /// its full length (`MSG_TRUNC`), larger than the buffer when it was cut short.
    async fn receive(&mut self) -> io::Result<usize> {
        loop {
            let mut ready = self.socket.readable().await?;
            self.datagram.clear();
            match ready.try_io(|socket| socket.get_ref().recv(&mut self.datagram, libc::MSG_TRUNC)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
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
                match self.receive().await {
                    Ok(length) if length > self.datagram.capacity() => {
                        // Cut short: the messages past the buffer are lost.
                        let discarded = self.discard_queued().context("discarding queued rtnetlink messages")?;
                        tracing::warn!(length, discarded, "an rtnetlink datagram larger than the buffer; rescanning");
                        self.datagram = Vec::with_capacity(length.next_power_of_two());
                        return Ok(SourceEvent::now(TRUNCATED));
                    }
                    Ok(_) => {
                        let seen = crate::clock::monotonic_ns();
                        self.pending.extend(events(&self.datagram).map(|(event, parent)| SourceEvent {
                            event,
                            seen_at_ns: seen,
                            kernel: None,
                            parent,
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

/// What a datagram cut short by the buffer turns into.
const TRUNCATED: NetdevEvent = NetdevEvent::Resync { reason: "rtnetlink datagram larger than the buffer", lost: true };
