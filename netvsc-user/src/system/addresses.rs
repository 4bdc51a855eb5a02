//! Whether an interface carries an IPv4/IPv6 address ("routed"), asked of the kernel over
//! rtnetlink by ifindex as the original does. Behind a trait so fake-sysfs tests can say.

use std::collections::HashSet;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;

pub trait AddressOracle: Send + Sync {
    /// The subset of `ifindexes` that carry at least one address. An ifindex the kernel does
    /// not know simply has none.
    fn routed<'a>(&'a self, ifindexes: &'a [u32]) -> BoxFuture<'a, anyhow::Result<HashSet<u32>>>;
}

/// Asks the running kernel (in the agent's network namespace).
pub struct KernelAddresses {
    handle: rtnetlink::Handle,
}

impl KernelAddresses {
    pub fn new(handle: rtnetlink::Handle) -> Self {
        Self { handle }
    }
}

/// One rtnetlink request connection (strict checking, so single-interface dumps are filtered by
/// the kernel) for the address and link queries; must be called inside a tokio runtime.
pub fn rtnetlink_handle() -> anyhow::Result<rtnetlink::Handle> {
    let (connection, handle, _) =
        rtnetlink::new_connection_with_strict_check().context("opening an rtnetlink socket")?;
    tokio::spawn(connection);
    Ok(handle)
}

impl AddressOracle for KernelAddresses {
    fn routed<'a>(&'a self, ifindexes: &'a [u32]) -> BoxFuture<'a, anyhow::Result<HashSet<u32>>> {
        Box::pin(async move {
            let mut routed = HashSet::new();
            if ifindexes.is_empty() {
                return Ok(routed);
            }
            let mut request = self.handle.address().get();
            // With strict checking the kernel filters a single-interface dump itself.
            if let [only] = ifindexes {
                request.message_mut().header.index = *only;
            }
            let mut dump = request.execute();
            while let Some(msg) = dump.try_next().await.context("dumping IP addresses over rtnetlink")? {
                let has_address = msg.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(_)));
                if has_address && ifindexes.contains(&msg.header.index) {
                    routed.insert(msg.header.index);
                }
            }
            Ok(routed)
        })
    }
}
