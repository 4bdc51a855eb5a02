//! Turns an event into a fresh view of what it concerns: one sysfs read for a link event, one
//! address query for an address event, a full scan only for a resync.
//!
//! A full scan can never go backwards: a link exists only if the kernel's own link list has it
//! (sysfs outlives the removal announcement by a moment), and a link whose removal event was
//! seen stays removed until an event shows that ifindex again or events were lost.

use std::collections::HashSet;

use anyhow::Context as _;
use tracing::{debug, warn};

use crate::addresses::AddressOracle;
use crate::link::Link;
use crate::link_list::LinkList;
use crate::source::LinkEvent;
use crate::sysfs::{Hints, ReadError, Sysfs};
use crate::view::{SystemView, Touched};

pub struct SystemReader {
    sysfs: Sysfs,
    addresses: Box<dyn AddressOracle>,
    /// The kernel's list of links; `None` trusts the sysfs tree alone (a fake tree).
    links: Option<Box<dyn LinkList>>,
    /// Ifindexes whose removal an event announced: a rescan does not bring them back.
    removed: HashSet<u32>,
    /// Odd sysfs entries already warned about, so a resync does not repeat the warning.
    warned: HashSet<String>,
}

impl SystemReader {
    pub fn new(sysfs: Sysfs, addresses: Box<dyn AddressOracle>, links: Option<Box<dyn LinkList>>) -> Self {
        Self { sysfs, addresses, links, removed: HashSet::new(), warned: HashSet::new() }
    }

    /// Reads every netdevice that exists and the addresses of the NetVSC ones.
    pub async fn full_scan(&mut self) -> anyhow::Result<SystemView> {
        let mut found = self.sysfs.enumerate().context("listing network interfaces in sysfs")?;
        for problem in std::mem::take(&mut found.skipped) {
            self.warn_once(problem);
        }
        // Listed after sysfs is read: a link removed in between is then left out, and one added
        // in between announces itself with an event.
        let listed = match &self.links {
            Some(list) => Some(list.ifindexes().await?),
            None => None,
        };
        // A removal only needs remembering while something could still bring the link back.
        self.removed.retain(|ifindex| {
            found.links.iter().any(|link| link.ifindex == *ifindex)
                && listed.as_ref().is_none_or(|listed| listed.contains(ifindex))
        });
        found.links.retain(|link| {
            let exists = listed.as_ref().is_none_or(|listed| listed.contains(&link.ifindex));
            if !exists || self.removed.contains(&link.ifindex) {
                debug!(iface = %link.name, ifindex = link.ifindex, "left out of the rescan: already removed");
                return false;
            }
            true
        });
        let netvsc: Vec<u32> = found.links.iter().filter(|l| l.is_netvsc()).map(|l| l.ifindex).collect();
        let routed = self.addresses.routed(&netvsc).await?;
        Ok(SystemView::from_links(found.links, routed))
    }

    /// Applies one event to `view` and says what changed.
    pub async fn apply(&mut self, view: &mut SystemView, event: &LinkEvent) -> anyhow::Result<Touched> {
        match event {
            LinkEvent::Changed { ifindex, name, mac, master } => {
                self.removed.remove(ifindex);
                self.link_changed(view, *ifindex, name.as_deref(), *mac, *master).await
            }
            LinkEvent::Removed { ifindex } => {
                self.removed.insert(*ifindex);
                Ok(view.remove(*ifindex))
            }
            LinkEvent::AddressChanged { ifindex } => match view.get(*ifindex) {
                Some(link) if link.is_netvsc() => {
                    let routed = self.addresses.routed(&[*ifindex]).await?.contains(ifindex);
                    Ok(view.set_routed(*ifindex, routed))
                }
                _ => Ok(Touched::Nothing),
            },
            LinkEvent::PciDevice { .. } => Ok(Touched::Nothing),
            LinkEvent::Resync { lost, .. } => {
                if *lost {
                    // A removal seen before the loss proves nothing now: the ifindex may be reused.
                    self.removed.clear();
                }
                *view = self.full_scan().await?;
                Ok(Touched::All)
            }
        }
    }

    async fn link_changed(
        &mut self,
        view: &mut SystemView,
        ifindex: u32,
        name: Option<&str>,
        mac: Option<macaddr::MacAddr6>,
        master: Option<Option<u32>>,
    ) -> anyhow::Result<Touched> {
        let known = view.get(ifindex);
        // Carrier flaps and flag changes repeat what we know: no need to touch sysfs. A master
        // change (the kernel associating a VF) is news, so the master must match too.
        if let (Some(known), Some(name), Some(mac), Some(master)) = (known, name, mac, master) {
            if known.name == name && known.mac == mac && known.master == master {
                return Ok(Touched::Nothing);
            }
        }
        let Some(name) = name.map(str::to_owned).or_else(|| known.map(|l| l.name.clone())) else {
            return Ok(Touched::Nothing);
        };
        let was_netvsc = known.is_some_and(Link::is_netvsc);
        match self.sysfs.read_with(&name, Some(ifindex), Hints { mac, master }) {
            Ok(Some(link)) => {
                let mut touched = Touched::Nothing;
                if link.ifindex != ifindex {
                    // The name moved to another device before we read it; that device's own
                    // event follows, and this ifindex is re-read under its new name then.
                    debug!(iface = %name, event_ifindex = ifindex, sysfs_ifindex = link.ifindex, "name reused");
                }
                if link.is_netvsc() && !was_netvsc {
                    let routed = self.addresses.routed(&[link.ifindex]).await?.contains(&link.ifindex);
                    touched.merge(view.set_routed(link.ifindex, routed));
                }
                touched.merge(view.upsert(link));
                Ok(touched)
            }
            Ok(None) => Ok(view.remove(ifindex)),
            Err(ReadError::Vanished { .. }) => Ok(Touched::Nothing),
            Err(err) => {
                self.warn_once(err.to_string());
                Ok(view.remove(ifindex))
            }
        }
    }

    fn warn_once(&mut self, problem: String) {
        if self.warned.insert(problem.clone()) {
            warn!(problem = %problem, "skipping odd sysfs entry");
        }
    }
}
