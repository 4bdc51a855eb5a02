//! Turns an event into a fresh view of what it concerns: one sysfs read for a link event, one
//! address query for an address event, a full scan only for a resync.
//!
//! A full scan can never go backwards: a link exists only if the kernel's own link list has it
//! (sysfs outlives the removal announcement by a moment), and a link whose removal event was
//! seen stays removed until an event shows that ifindex again or events were lost.

pub mod addresses;
pub mod kmsg;
pub mod netdev_list;
pub mod rtnetlink;
pub mod sysfs;

use std::collections::HashSet;

use anyhow::Context as _;
use tracing::{debug, warn};

use crate::decide::view::{SystemView, Touched};
use crate::event::{NetdevEvent, Parent, SourceEvent};
use crate::netdev::{Netdev, NetdevKind};
use crate::system::addresses::AddressOracle;
use crate::system::netdev_list::{ListedNetdev, Listing, NetdevList};
use crate::system::sysfs::{Hints, ReadError, Sysfs};

pub struct SystemReader {
    sysfs: Sysfs,
    /// Whether a parent device named by an event is taken as said: only when `sysfs` is the
    /// running kernel's own (`/sys`), never for a fake tree.
    event_parents: bool,
    addresses: Box<dyn AddressOracle>,
    /// The kernel's list of links; `None` trusts the sysfs tree alone (a fake tree).
    links: Option<Box<dyn NetdevList>>,
    /// Ifindexes whose removal an event announced: a rescan does not bring them back.
    removed: HashSet<u32>,
    /// Odd sysfs entries already warned about, so a resync does not repeat the warning.
    warned: HashSet<String>,
}

impl SystemReader {
    pub fn new(sysfs: Sysfs, addresses: Box<dyn AddressOracle>, links: Option<Box<dyn NetdevList>>) -> Self {
        Self { sysfs, event_parents: false, addresses, links, removed: HashSet::new(), warned: HashSet::new() }
    }

    /// Takes the parent devices events name as said (see [`crate::event::Parent`]): for a
    /// reader of the running kernel's own sysfs.
    pub fn trust_event_parents(mut self, trust: bool) -> Self {
        self.event_parents = trust;
        self
    }

    /// Closes the descriptors the reads left open so far: once the pipes are written (see
    /// [`Sysfs::close_retired`]).
    pub fn close_retired(&self) {
        self.sysfs.close_retired();
    }

    /// The ifindexes of the netdevices on VMBus device `id` (see [`Sysfs::netdevs_of_vmbus`]).
    pub(crate) fn netdevs_of_vmbus(&self, id: &str) -> Option<Vec<u32>> {
        self.sysfs.netdevs_of_vmbus(id)
    }

    /// How many descriptors wait for [`SystemReader::close_retired`].
    pub fn retired(&self) -> usize {
        self.sysfs.retired()
    }

    /// Reads every netdevice that exists and the addresses of the NetVSC ones.
    pub async fn full_scan(&mut self) -> anyhow::Result<SystemView> {
        self.rescan(None).await
    }

    /// [`SystemReader::full_scan`] knowing the view it replaces: a link known as a VF or NetVSC
    /// interface is always read whole.
    async fn rescan(&mut self, previous: Option<&SystemView>) -> anyhow::Result<SystemView> {
        let (mut links, listing) = match &self.links {
            Some(list) => match list.links().await? {
                Listing::Netdevs { ethernet, all } => {
                    (self.read_listed(ethernet, previous), Some(Listing::Ifindexes(all)))
                }
                // Listed after sysfs is read: a link removed in between is then left out, and one
                // added in between announces itself with an event.
                listing @ Listing::Ifindexes(_) => (self.enumerate()?, Some(listing)),
            },
            None => (self.enumerate()?, None),
        };
        // A removal only needs remembering while something could still bring the link back.
        self.removed.retain(|ifindex| {
            links.iter().any(|link| link.ifindex == *ifindex) && listing.as_ref().is_none_or(|l| l.contains(*ifindex))
        });
        links.retain(|link| {
            let exists = listing.as_ref().is_none_or(|l| l.contains(link.ifindex));
            if !exists || self.removed.contains(&link.ifindex) {
                debug!(iface = %link.name, ifindex = link.ifindex, "left out of the rescan: already removed");
                return false;
            }
            true
        });
        let netvsc: Vec<u32> = links.iter().filter(|l| l.is_netvsc()).map(|l| l.ifindex).collect();
        let routed = self.addresses.routed(&netvsc).await?;
        Ok(SystemView::from_netdevs(links, routed))
    }

    /// Every Ethernet netdevice in sysfs.
    fn enumerate(&mut self) -> anyhow::Result<Vec<Netdev>> {
        let mut found = self.sysfs.enumerate().context("listing network interfaces in sysfs")?;
        for problem in std::mem::take(&mut found.skipped) {
            self.warn_once(problem);
        }
        Ok(found.links)
    }

    /// The links of the kernel's dump, completed from sysfs: a link without a parent device (a
    /// veth, a bridge: most of a busy host) is all in the dump, one look at sysfs says so (none
    /// when `previous` knew it as such); one with a parent, or known as a VF or NetVSC interface
    /// before, is read whole, its ifindex checked. One renamed or gone since the dump has its
    /// events still to come. `previous` is only trusted while no events were lost.
    fn read_listed(&mut self, listed: Vec<ListedNetdev>, previous: Option<&SystemView>) -> Vec<Netdev> {
        let mut links = Vec::with_capacity(listed.len());
        for entry in listed {
            let plain = match previous.and_then(|view| view.get(entry.ifindex)) {
                // Known plain under this name while events kept the view current: a registered
                // netdevice does not gain a parent device, and a new one gets a new ifindex.
                Some(known) if known.kind == NetdevKind::Other && known.name == entry.name => true,
                Some(known) if known.kind != NetdevKind::Other => false,
                _ => self.sysfs.has_device(&entry.name).is_ok_and(|has| !has),
            };
            if plain {
                let ListedNetdev { ifindex, name, mac, master } = entry;
                links.push(Netdev { ifindex, name, mac, kind: NetdevKind::Other, master });
                continue;
            }
            let hints = Hints { mac: Some(entry.mac), master: Some(entry.master) };
            match self.sysfs.read_with(&entry.name, Some(entry.ifindex), hints) {
                Ok(Some(link)) if link.ifindex == entry.ifindex => links.push(link),
                Ok(_) | Err(ReadError::Vanished { .. }) => {}
                Err(err) => self.warn_once(err.to_string()),
            }
        }
        links
    }

    /// Applies one event to `view` and says what changed.
    pub async fn apply(&mut self, view: &mut SystemView, event: &SourceEvent) -> anyhow::Result<Touched> {
        match &event.event {
            NetdevEvent::Changed { ifindex, name, mac, master } => {
                self.removed.remove(ifindex);
                let parent = event.parent.as_ref().filter(|_| self.event_parents);
                self.link_changed(view, *ifindex, name.as_deref(), *mac, *master, parent).await
            }
            NetdevEvent::Removed { ifindex } => {
                self.removed.insert(*ifindex);
                Ok(view.remove(*ifindex))
            }
            NetdevEvent::AddressChanged { ifindex } => match view.get(*ifindex) {
                Some(link) if link.is_netvsc() => {
                    let routed = self.addresses.routed(&[*ifindex]).await?.contains(ifindex);
                    Ok(view.set_routed(*ifindex, routed))
                }
                _ => Ok(Touched::Nothing),
            },
            NetdevEvent::PciDevice { .. } => Ok(Touched::Nothing),
            NetdevEvent::Resync { lost, .. } => {
                if *lost {
                    // A removal seen before the loss proves nothing now: the ifindex may be reused,
                    // and no link is known any more for what it was.
                    self.removed.clear();
                    *view = self.rescan(None).await?;
                } else {
                    *view = self.rescan(Some(view)).await?;
                }
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
        parent: Option<&Parent>,
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
        let was_netvsc = known.is_some_and(Netdev::is_netvsc);
        // The event named the parent device: a VF or a plain link is known without asking sysfs
        // by name (a NetVSC interface's class id is still read there).
        if let (Some(mac), Some(parent)) = (mac, parent) {
            let kind = match parent {
                Parent::None | Parent::Other => Some(NetdevKind::Other),
                Parent::Pci { address, id } => match id
                    .map_or_else(|| self.sysfs.pci_function(address), |id| self.sysfs.pci_function_of(address, id))
                {
                    Ok(function) => Some(NetdevKind::Pci(function)),
                    // The function is going away; its netdevice's removal follows.
                    Err(ReadError::Vanished { .. }) => return Ok(Touched::Nothing),
                    Err(err) => {
                        self.warn_once(err.to_string());
                        None
                    }
                },
                Parent::Vmbus => None,
            };
            if let (Some(kind), false) = (kind, was_netvsc) {
                let master = master.unwrap_or_else(|| self.sysfs.master(&name));
                return Ok(view.upsert(Netdev { ifindex, name, mac, kind, master }));
            }
        }
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
