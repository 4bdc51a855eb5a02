//! Events that cannot change a pipe wait until the source is quiet.
//!
//! A link the agent has never seen, announced with a MAC no managed interface has, cannot be any
//! managed interface's VF: reading it from sysfs (tens of microseconds with cold caches) before
//! the next event would only delay that event, which may be the VF everyone waits for (a veth's
//! peer, for one, registers just before it). Such an event waits here and is handled when no
//! other event is ready. Order is kept where it matters: a newer event about the same link
//! replaces the waiting one (a read always sees the link as it is now), a removal drops it, a
//! full rescan drops them all.

use std::collections::VecDeque;

use macaddr::MacAddr6;

use crate::decide::view::SystemView;
use crate::event::{NetdevEvent, SourceEvent};

#[derive(Debug, Default)]
pub(crate) struct Deferred {
    waiting: VecDeque<SourceEvent>,
}

impl Deferred {
    /// Takes `event` to handle later when it can wait (`true`); otherwise drops what waits for
    /// the same link, since handling `event` supersedes it (`false`: handle `event` now).
    pub(crate) fn offer(&mut self, event: &SourceEvent, view: &SystemView, managed_macs: &[MacAddr6]) -> bool {
        match &event.event {
            NetdevEvent::Changed { ifindex, mac: Some(mac), .. }
                if view.get(*ifindex).is_none() && !managed_macs.contains(mac) =>
            {
                self.forget(*ifindex);
                self.waiting.push_back(event.clone());
                true
            }
            NetdevEvent::Changed { ifindex, .. } | NetdevEvent::Removed { ifindex } => {
                self.forget(*ifindex);
                false
            }
            NetdevEvent::Resync { .. } => {
                self.waiting.clear();
                false
            }
            NetdevEvent::AddressChanged { .. } | NetdevEvent::PciDevice { .. } => false,
        }
    }

    /// The oldest waiting event.
    pub fn pop(&mut self) -> Option<SourceEvent> {
        self.waiting.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    fn forget(&mut self, ifindex: u32) {
        self.waiting
            .retain(|waiting| !matches!(waiting.event, NetdevEvent::Changed { ifindex: i, .. } if i == ifindex));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netdev::{Netdev, NetdevKind};

    const MANAGED: MacAddr6 = MacAddr6::new(0, 0x15, 0x5d, 0, 0, 1);
    const OTHER: MacAddr6 = MacAddr6::new(2, 0, 0, 0, 0, 9);

    fn changed(ifindex: u32, name: &str, mac: Option<MacAddr6>) -> SourceEvent {
        SourceEvent::now(NetdevEvent::Changed { ifindex, name: Some(name.into()), mac, master: Some(None) })
    }

    fn names(deferred: &mut Deferred) -> Vec<String> {
        std::iter::from_fn(|| deferred.pop())
            .map(|e| match e.event {
                NetdevEvent::Changed { name, .. } => name.unwrap(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn view_with(ifindex: u32) -> SystemView {
        let link = Netdev { ifindex, name: "known".into(), mac: OTHER, kind: NetdevKind::Other, master: None };
        SystemView::from_netdevs(vec![link], Default::default())
    }

    #[test]
    fn only_unknown_links_with_an_unmanaged_mac_wait() {
        let mut deferred = Deferred::default();
        let view = view_with(5);
        assert!(deferred.is_empty());
        assert!(deferred.offer(&changed(7, "q0", Some(OTHER)), &view, &[MANAGED]), "a stranger waits");
        assert!(!deferred.is_empty());
        assert!(!deferred.offer(&changed(8, "vf0", Some(MANAGED)), &view, &[MANAGED]), "a managed MAC never waits");
        assert!(!deferred.offer(&changed(9, "x", None), &view, &[MANAGED]), "without a MAC nothing is known");
        assert!(!deferred.offer(&changed(5, "known", Some(OTHER)), &view, &[MANAGED]), "a known link may be a VF");
        let address = SourceEvent::now(NetdevEvent::AddressChanged { ifindex: 7 });
        assert!(!deferred.offer(&address, &view, &[MANAGED]));
        assert_eq!(names(&mut deferred), ["q0"]);
        assert!(deferred.is_empty());
    }

    #[test]
    fn a_newer_event_about_the_same_link_supersedes_the_waiting_one() {
        let view = view_with(5);
        let mut deferred = Deferred::default();
        deferred.offer(&changed(7, "q0", Some(OTHER)), &view, &[MANAGED]);
        deferred.offer(&changed(6, "p0", Some(OTHER)), &view, &[MANAGED]);
        deferred.offer(&changed(7, "q0-renamed", Some(OTHER)), &view, &[MANAGED]);
        assert_eq!(names(&mut deferred), ["p0", "q0-renamed"], "one entry per link, the newest last");

        deferred.offer(&changed(7, "q0", Some(OTHER)), &view, &[MANAGED]);
        assert!(!deferred.offer(&SourceEvent::now(NetdevEvent::Removed { ifindex: 7 }), &view, &[MANAGED]));
        assert!(deferred.is_empty(), "a removal drops what waited for the link");

        deferred.offer(&changed(7, "q0", Some(OTHER)), &view, &[MANAGED]);
        assert!(!deferred.offer(&changed(7, "q0", Some(MANAGED)), &view, &[MANAGED]));
        assert!(deferred.is_empty(), "handled now, with the newest state: nothing left to wait");

        deferred.offer(&changed(7, "q0", Some(OTHER)), &view, &[MANAGED]);
        let resync = SourceEvent::now(NetdevEvent::Resync { reason: "test", lost: false });
        assert!(!deferred.offer(&resync, &view, &[MANAGED]));
        assert!(deferred.is_empty(), "a full rescan reads everything");
    }
}
