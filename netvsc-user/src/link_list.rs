//! Which links exist, by the kernel's own list (an rtnetlink `RTM_GETLINK` dump). A full rescan
//! trusts this over sysfs: the kernel announces a removal before it tears down the device's
//! sysfs entries, so a rescan from sysfs alone could bring a removed VF back. Behind a trait so
//! fake-tree tests can say what exists.

use std::collections::HashSet;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::TryStreamExt;

pub trait LinkList: Send + Sync {
    /// The ifindexes of every link in the agent's network namespace right now.
    fn ifindexes(&self) -> BoxFuture<'_, anyhow::Result<HashSet<u32>>>;
}

/// Asks the running kernel (in the agent's network namespace).
pub struct KernelLinkList {
    handle: rtnetlink::Handle,
}

impl KernelLinkList {
    /// Dumps over `handle` (see [`crate::addresses::rtnetlink_handle`]).
    pub fn new(handle: rtnetlink::Handle) -> Self {
        Self { handle }
    }
}

impl LinkList for KernelLinkList {
    fn ifindexes(&self) -> BoxFuture<'_, anyhow::Result<HashSet<u32>>> {
        Box::pin(async move {
            let mut dump = self.handle.link().get().execute();
            let mut found = HashSet::new();
            while let Some(msg) = dump.try_next().await.context("dumping links over rtnetlink")? {
                found.insert(msg.header.index);
            }
            Ok(found)
        })
    }
}
