//! The agent's picture of the system: links by ifindex, indexed by MAC so that one event costs
//! the same with 10 or 1000 interfaces, plus which NetVSC interfaces carry IP addresses.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use macaddr::MacAddr6;

use crate::netdev::Netdev;

#[derive(Debug, Default)]
pub struct SystemView {
    links: BTreeMap<u32, Netdev>,
    by_mac: HashMap<MacAddr6, BTreeSet<u32>>,
    routed: HashSet<u32>,
}

/// What a refresh changed, so that pairing re-evaluates only the contexts it concerns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Touched {
    #[default]
    Nothing,
    /// These links were added, removed or changed, and the masters they left or joined; `macs`
    /// holds their old and new MACs.
    Netdevs { ifindexes: BTreeSet<u32>, macs: BTreeSet<MacAddr6> },
    /// Everything may have changed (full scan).
    All,
}

impl Touched {
    pub(crate) fn merge(&mut self, other: Touched) {
        match other {
            Touched::Nothing => {}
            Touched::All => *self = Touched::All,
            Touched::Netdevs { ifindexes: more_ifindexes, macs: more_macs } => match self {
                Touched::All => {}
                Touched::Nothing => *self = Touched::Netdevs { ifindexes: more_ifindexes, macs: more_macs },
                Touched::Netdevs { ifindexes, macs } => {
                    ifindexes.extend(more_ifindexes);
                    macs.extend(more_macs);
                }
            },
        }
    }

    pub fn link(ifindex: u32, macs: impl IntoIterator<Item = MacAddr6>) -> Self {
        Touched::Netdevs { ifindexes: BTreeSet::from([ifindex]), macs: macs.into_iter().collect() }
    }

    /// `link`, plus the masters (old and new) whose association it changes.
    fn link_and_masters(link: &Netdev, old: Option<&Netdev>) -> Self {
        let mut ifindexes = BTreeSet::from([link.ifindex]);
        ifindexes.extend(link.master.iter().chain(old.and_then(|o| o.master.as_ref())));
        let macs = [Some(link.mac), old.map(|o| o.mac)].into_iter().flatten().collect();
        Touched::Netdevs { ifindexes, macs }
    }

    pub(crate) fn is_nothing(&self) -> bool {
        *self == Touched::Nothing
    }

    pub(crate) fn covers_ifindex(&self, ifindex: u32) -> bool {
        match self {
            Touched::Nothing => false,
            Touched::Netdevs { ifindexes, .. } => ifindexes.contains(&ifindex),
            Touched::All => true,
        }
    }

    pub(crate) fn covers_mac(&self, mac: &MacAddr6) -> bool {
        match self {
            Touched::Nothing => false,
            Touched::Netdevs { macs, .. } => macs.contains(mac),
            Touched::All => true,
        }
    }
}

impl SystemView {
    pub fn from_netdevs(links: impl IntoIterator<Item = Netdev>, routed: HashSet<u32>) -> Self {
        let mut view = SystemView { routed, ..Default::default() };
        for link in links {
            view.upsert(link);
        }
        view
    }

    /// Inserts or replaces a link; says what changed (nothing if it was already known as is).
    pub fn upsert(&mut self, link: Netdev) -> Touched {
        let ifindex = link.ifindex;
        let old = self.links.insert(ifindex, link.clone());
        if old.as_ref() == Some(&link) {
            return Touched::Nothing;
        }
        if let Some(old) = &old {
            self.unindex(old);
        }
        self.index(&link);
        Touched::link_and_masters(&link, old.as_ref())
    }

    pub fn remove(&mut self, ifindex: u32) -> Touched {
        self.routed.remove(&ifindex);
        match self.links.remove(&ifindex) {
            Some(old) => {
                self.unindex(&old);
                Touched::link_and_masters(&old, None)
            }
            None => Touched::Nothing,
        }
    }

    /// Records whether `ifindex` carries an IP address; touched only if that changed.
    pub(crate) fn set_routed(&mut self, ifindex: u32, routed: bool) -> Touched {
        let changed = if routed { self.routed.insert(ifindex) } else { self.routed.remove(&ifindex) };
        match (changed, self.links.get(&ifindex)) {
            (true, Some(link)) => Touched::link(ifindex, [link.mac]),
            _ => Touched::Nothing,
        }
    }

    pub fn get(&self, ifindex: u32) -> Option<&Netdev> {
        self.links.get(&ifindex)
    }

    pub(crate) fn is_routed(&self, ifindex: u32) -> bool {
        self.routed.contains(&ifindex)
    }

    /// Netdevices with this MAC, lowest ifindex first.
    pub(crate) fn with_mac<'a>(&'a self, mac: &MacAddr6) -> impl Iterator<Item = &'a Netdev> + 'a {
        self.by_mac.get(mac).into_iter().flatten().filter_map(|ifindex| self.links.get(ifindex))
    }

    pub fn links(&self) -> impl Iterator<Item = &Netdev> {
        self.links.values()
    }

    fn index(&mut self, link: &Netdev) {
        self.by_mac.entry(link.mac).or_default().insert(link.ifindex);
    }

    fn unindex(&mut self, link: &Netdev) {
        if let Some(set) = self.by_mac.get_mut(&link.mac) {
            set.remove(&link.ifindex);
            if set.is_empty() {
                self.by_mac.remove(&link.mac);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netdev::{NetdevKind, PciFunction};

    fn mac(last: u8) -> MacAddr6 {
        MacAddr6::new(0, 0x15, 0x5d, 0, 0, last)
    }

    fn vf(ifindex: u32, last: u8, master: Option<u32>) -> Netdev {
        let function = PciFunction { address: "0001:00:02.0".into(), mana: false, netdevs: 1 };
        Netdev { ifindex, name: format!("enP{ifindex}"), mac: mac(last), kind: NetdevKind::Pci(function), master }
    }

    /// What an event touches decides which contexts pairing re-evaluates: exactly the changed
    /// link, its old and new MAC, and the masters it left or joined; nothing when nothing changed.
    #[test]
    fn a_change_touches_exactly_what_it_changed() {
        let mut view = SystemView::default();
        let added = view.upsert(vf(5, 1, None));
        assert!(added.covers_ifindex(5) && added.covers_mac(&mac(1)));
        assert!(!added.covers_ifindex(6) && !added.covers_mac(&mac(2)) && !added.is_nothing());
        assert!(view.upsert(vf(5, 1, None)).is_nothing(), "the same link again changes nothing");

        let moved = view.upsert(vf(5, 2, Some(3)));
        assert!(moved.covers_mac(&mac(1)) && moved.covers_mac(&mac(2)), "old and new MAC");
        assert!(moved.covers_ifindex(5) && moved.covers_ifindex(3), "the link and its new master");
        assert!(!moved.covers_ifindex(4));
        assert_eq!(view.with_mac(&mac(1)).count(), 0);
        assert_eq!(view.with_mac(&mac(2)).map(|l| l.ifindex).collect::<Vec<_>>(), [5]);

        let left = view.upsert(vf(5, 2, Some(4)));
        assert!(left.covers_ifindex(3) && left.covers_ifindex(4), "the master it left and the one it joined");

        let removed = view.remove(5);
        assert!(removed.covers_ifindex(5) && removed.covers_mac(&mac(2)) && removed.covers_ifindex(4));
        assert!(view.remove(5).is_nothing(), "removing what is gone changes nothing");

        assert!(!Touched::Nothing.covers_ifindex(5) && !Touched::Nothing.covers_mac(&mac(1)));
        assert!(Touched::All.covers_ifindex(5) && Touched::All.covers_mac(&mac(1)) && !Touched::All.is_nothing());
    }
}
