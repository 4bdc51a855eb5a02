//! Which links exist, by the kernel's own list (an rtnetlink `RTM_GETLINK` dump). A full rescan
//! trusts this over sysfs: the kernel announces a removal before it tears down the device's
//! sysfs entries, so a rescan from sysfs alone could bring a removed VF back. Behind a trait so
//! fake-tree tests can say what exists.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

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
    /// Opens an rtnetlink connection; must be called inside a tokio runtime.
    pub fn connect() -> anyhow::Result<Self> {
        let (connection, handle, _) = rtnetlink::new_connection().context("opening an rtnetlink socket")?;
        tokio::spawn(connection);
        Ok(Self { handle })
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

/// A list the caller controls (tests): shared so it can change while the agent runs.
#[derive(Clone, Default)]
pub struct StaticLinkList(pub Arc<Mutex<HashSet<u32>>>);

impl StaticLinkList {
    pub fn new(ifindexes: impl IntoIterator<Item = u32>) -> Self {
        Self(Arc::new(Mutex::new(ifindexes.into_iter().collect())))
    }

    pub fn set(&self, ifindex: u32, present: bool) {
        let mut list = self.0.lock().expect("poisoned");
        if present {
            list.insert(ifindex);
        } else {
            list.remove(&ifindex);
        }
    }
}

impl LinkList for StaticLinkList {
    fn ifindexes(&self) -> BoxFuture<'_, anyhow::Result<HashSet<u32>>> {
        let list = self.0.lock().expect("poisoned").clone();
        Box::pin(futures::future::ready(Ok(list)))
    }
}
