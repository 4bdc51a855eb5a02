//! Stand-ins for the kernel's answers, controlled by a test while the agent runs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use netvsc_user::addresses::AddressOracle;
use netvsc_user::link_list::LinkList;

/// A set of ifindexes shared with the agent: as an [`AddressOracle`], those that carry IP
/// addresses; as a [`LinkList`], those that exist.
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

impl LinkList for StaticIfindexes {
    fn ifindexes(&self) -> BoxFuture<'_, anyhow::Result<HashSet<u32>>> {
        Box::pin(futures::future::ready(Ok(self.snapshot())))
    }
}
