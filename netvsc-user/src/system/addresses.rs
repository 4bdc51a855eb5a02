//! Whether an interface carries an IPv4/IPv6 address ("routed"), asked of the kernel over
//! rtnetlink by ifindex as the original does. Behind a trait so fake-sysfs tests can say.

use std::collections::HashSet;

use anyhow::Context as _;
use futures::future::BoxFuture;
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::RouteNetlinkMessage;

use crate::system::rtnetlink::{self, decode_address, RTM_NEWADDR};

pub trait AddressOracle: Send + Sync {
    /// The subset of `ifindexes` that carry at least one address. An ifindex the kernel does
    /// not know simply has none.
    fn routed<'a>(&'a self, ifindexes: &'a [u32]) -> BoxFuture<'a, anyhow::Result<HashSet<u32>>>;
}

/// Asks the running kernel (in the agent's network namespace).
#[derive(Default)]
pub struct KernelAddresses;

impl AddressOracle for KernelAddresses {
    fn routed<'a>(&'a self, ifindexes: &'a [u32]) -> BoxFuture<'a, anyhow::Result<HashSet<u32>>> {
        Box::pin(std::future::ready(routed(ifindexes).context("dumping IP addresses over rtnetlink")))
    }
}

fn routed(ifindexes: &[u32]) -> anyhow::Result<HashSet<u32>> {
    let mut routed = HashSet::new();
    if ifindexes.is_empty() {
        return Ok(routed);
    }
    let mut request = AddressMessage::default();
    // With strict checking the kernel filters a single-interface dump itself.
    if let [only] = ifindexes {
        request.header.index = *only;
    }
    rtnetlink::dump(RouteNetlinkMessage::GetAddress(request), |message_type, payload| {
        if let Some(index) = (message_type == RTM_NEWADDR).then(|| decode_address(payload)).flatten() {
            if ifindexes.contains(&index) {
                routed.insert(index);
            }
        }
    })?;
    Ok(routed)
}
