//! Stand-ins for the kernel's answers, controlled by a test while the agent runs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use netvsc_user::system::addresses::AddressOracle;
use netvsc_user::system::netdev_list::{ListedNetdev, Listing, NetdevList};

/// A set of ifindexes shared with the agent: as an [`AddressOracle`], those that carry IP
/// addresses; as a [`NetdevList`], those that exist.
#[derive(Clone, Default)]
pub struct StaticIfindexes(Arc<Mutex<HashSet<u32>>>);

impl StaticIfindexes {
    pub fn new(ifindexes: impl IntoIterator<Item = u32>) -> Self {
        Self(Arc::new(Mutex::new(ifindexes.into_iter().collect())))
    }

    /// Puts `ifindex` in the set or takes it out.
    pub fn set(&self, ifindex: u32, member: bool) {
        let mut set = self.0.lock().expect("poisoned");
        if member {
            set.insert(ifindex);
        } else {
            set.remove(&ifindex);
        }
    }

    fn snapshot(&self) -> HashSet<u32> {
        self.0.lock().expect("poisoned").clone()
    }
}

impl AddressOracle for StaticIfindexes {
    fn routed<'a>(&'a self, ifindexes: &'a [u32]) -> BoxFuture<'a, anyhow::Result<HashSet<u32>>> {
        let known = self.snapshot();
        let routed = ifindexes.iter().copied().filter(|i| known.contains(i)).collect();
        Box::pin(futures::future::ready(Ok(routed)))
    }
}

impl NetdevList for StaticIfindexes {
    fn links(&self) -> BoxFuture<'_, anyhow::Result<Listing>> {
        Box::pin(futures::future::ready(Ok(Listing::Ifindexes(self.snapshot()))))
    }
}

/// A kernel dump as a test sets it: the Ethernet links with name, MAC and master.
#[derive(Clone, Default)]
pub struct StaticDump(Arc<Mutex<Vec<ListedNetdev>>>);

impl StaticDump {
    pub fn new(links: impl IntoIterator<Item = ListedNetdev>) -> Self {
        Self(Arc::new(Mutex::new(links.into_iter().collect())))
    }

    /// Replaces what the next dump lists.
    pub fn set(&self, links: impl IntoIterator<Item = ListedNetdev>) {
        *self.0.lock().expect("poisoned") = links.into_iter().collect();
    }
}

impl NetdevList for StaticDump {
    fn links(&self) -> BoxFuture<'_, anyhow::Result<Listing>> {
        let ethernet = self.0.lock().expect("poisoned").clone();
        let all = ethernet.iter().map(|link| link.ifindex).collect();
        Box::pin(futures::future::ready(Ok(Listing::Netdevs { ethernet, all })))
    }
}
