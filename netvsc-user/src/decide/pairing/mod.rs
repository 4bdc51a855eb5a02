//! Pairing: which VF belongs to which managed NetVSC interface. Pure: a view and what changed
//! go in, actions come out; no I/O, so every rule is unit-tested.

use std::collections::BTreeMap;

use macaddr::MacAddr6;

use crate::decide::selection::{Admitted, Selection};
use crate::decide::view::{SystemView, Touched};
use crate::netdev::Netdev;
use crate::usage::UsageError;

/// fail-safe instance name of context `id`, as the original names it.
pub(crate) fn failsafe_name(id: u32) -> String {
    format!("net_failsafe_vsc{id}")
}

/// How a VF was found to belong to a NetVSC interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Match {
    /// The kernel made the NetVSC interface the VF's master (hv_netvsc matched them, by serial
    /// number or MAC). The authority, once it exists.
    Kernel,
    /// Same MAC, as the original matches: at registration, before the kernel has decided.
    Mac,
}

impl Match {
    pub fn as_str(self) -> &'static str {
        match self {
            Match::Kernel => "kernel",
            Match::Mac => "mac",
        }
    }
}

/// The VF currently fed to a context's fail-safe instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vf {
    pub ifindex: u32,
    pub name: String,
    pub pci: String,
    /// The line fail-safe gets: the bare address, or `<pci>,mac=<mac>` on a shared function.
    pub devargs: String,
    pub matched: Match,
}

impl Vf {
    fn of(link: &Netdev, matched: Match) -> Option<Vf> {
        let pci = link.pci_address()?.to_owned();
        let devargs = link.devargs()?;
        Some(Vf { ifindex: link.ifindex, name: link.name.clone(), pci, devargs, matched })
    }
}

/// One managed NetVSC interface and the fail-safe instance it feeds (`net_failsafe_vsc<id>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub id: u32,
    pub ifindex: u32,
    pub name: String,
    pub mac: MacAddr6,
    /// Chosen by the automatic rule: released (pipe emptied) while it carries an IP address.
    pub auto: bool,
    /// The NetVSC netdevice currently exists (pairing goes on by MAC while it does not).
    pub attached: bool,
    pub vf: Option<Vf>,
    /// Candidates seen at the last evaluation, so an ambiguity is reported once, not per event.
    candidates: Vec<u32>,
}

impl Context {
    /// An automatically chosen interface that carries IP addresses is the VM's own path: its
    /// pipe stays empty while it does (the original's rule). One rule for pairing and reports.
    pub(crate) fn is_released(&self, view: &SystemView) -> bool {
        self.auto && self.attached && view.is_routed(self.ifindex)
    }
}

/// What the outputs and the log must do after an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new context: create its pipe/FIFO (sidecar files are found again by `mac` after a
    /// restart).
    Manage {
        id: u32,
        netvsc: String,
        mac: MacAddr6,
    },
    /// Write this VF's PCI address into the context's pipe (replacing any previous one).
    Associate {
        id: u32,
        netvsc: String,
        vf: Vf,
    },
    /// Empty the pipe: the VF went away (or the interface must no longer be fed).
    Dissociate {
        id: u32,
        netvsc: String,
        vf: Vf,
        reason: Release,
    },
    Renamed {
        id: u32,
        from: String,
        to: String,
    },
    /// Several VFs carry the MAC at once (old and new during a migration); `chosen` has the
    /// newest ifindex.
    Ambiguous {
        id: u32,
        netvsc: String,
        chosen: Vf,
        others: Vec<Vf>,
    },
    /// The NetVSC netdevice itself disappeared or came back.
    Attached {
        id: u32,
        netvsc: String,
        attached: bool,
    },
}

impl Action {
    /// The context the action concerns.
    pub fn id(&self) -> u32 {
        match self {
            Action::Manage { id, .. }
            | Action::Associate { id, .. }
            | Action::Dissociate { id, .. }
            | Action::Renamed { id, .. }
            | Action::Ambiguous { id, .. }
            | Action::Attached { id, .. } => *id,
        }
    }
}

/// Why a pipe is emptied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Release {
    VfGone,
    /// An automatically chosen interface gained an IP address: it is the VM's own path now.
    Routed,
}

impl Release {
    /// Why, for people (`scan`, logs).
    pub(crate) fn explanation(self) -> &'static str {
        match self {
            Release::VfGone => "the VF went away",
            Release::Routed => "routed: has IP addresses (the VM's own interface)",
        }
    }
}

#[derive(Debug)]
pub struct Pairing {
    selection: Selection,
    contexts: Vec<Context>,
    /// Sidecar mode picks up NetVSC interfaces that appear later; the launcher cannot.
    admit_later: bool,
    next_id: u32,
    /// VF ifindex → the NetVSC ifindex the kernel last made its master, kept while the VF
    /// exists. hv_netvsc unlinks a VF just before unregistering it: in that moment the master
    /// link is gone but the VF is not, and MAC matching must not hand it to another interface.
    kernel_owner: BTreeMap<u32, u32>,
}

impl Pairing {
    /// Admits the selected interfaces and pairs them. Errors name a bad `--iface`/`--mac`.
    pub fn start(
        selection: Selection,
        view: &SystemView,
        admit_later: bool,
    ) -> Result<(Self, Vec<Action>), UsageError> {
        let admitted = selection.resolve(view)?;
        let mut pairing =
            Pairing { selection, contexts: Vec::new(), admit_later, next_id: 0, kernel_owner: BTreeMap::new() };
        let mut actions = Vec::new();
        for Admitted { ifindex, auto } in admitted {
            let link = view.get(ifindex).expect("resolve returns links of the view");
            pairing.add_context(link, auto, &mut actions);
        }
        pairing.note_kernel_owners(view, &Touched::All);
        pairing.evaluate(view, &Touched::All, &mut actions);
        Ok((pairing, actions))
    }

    pub fn contexts(&self) -> &[Context] {
        &self.contexts
    }

    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// Re-evaluates what `touched` concerns. Cost depends on the contexts and the links sharing
    /// their MACs, never on the total number of links (except for `Touched::All`).
    pub(crate) fn reconcile(&mut self, view: &SystemView, touched: &Touched) -> Vec<Action> {
        let mut actions = Vec::new();
        self.note_kernel_owners(view, touched);
        self.admit(view, touched, &mut actions);
        self.evaluate(view, touched, &mut actions);
        actions
    }

    /// Records which NetVSC the kernel made each touched VF's master; forgets VFs that are gone.
    fn note_kernel_owners(&mut self, view: &SystemView, touched: &Touched) {
        let ifindexes: Vec<u32> = match touched {
            Touched::Nothing => return,
            Touched::Netdevs { ifindexes, .. } => ifindexes.iter().copied().collect(),
            Touched::All => {
                self.kernel_owner.retain(|vf, _| view.get(*vf).is_some());
                view.links().map(|link| link.ifindex).collect()
            }
        };
        for ifindex in ifindexes {
            match view.get(ifindex) {
                None => {
                    self.kernel_owner.remove(&ifindex);
                }
                // Any link enslaved to a NetVSC interface is noted; only VFs are ever looked up.
                Some(link) => {
                    if let Some(master) = link.master.filter(|m| view.get(*m).is_some_and(Netdev::is_netvsc)) {
                        self.kernel_owner.insert(ifindex, master);
                    }
                }
            }
        }
    }

    fn admit(&mut self, view: &SystemView, touched: &Touched, actions: &mut Vec<Action>) {
        let fresh: Vec<&Netdev> = match touched {
            Touched::Nothing => return,
            Touched::Netdevs { ifindexes, .. } => ifindexes.iter().filter_map(|i| view.get(*i)).collect(),
            Touched::All => view.links().collect(),
        };
        for link in fresh.into_iter().filter(|link| link.is_netvsc()) {
            if self.contexts.iter().any(|ctx| ctx.ifindex == link.ifindex) {
                continue;
            }
            // A NetVSC interface that came back (new ifindex, same MAC) keeps its context and pipe,
            // also when its removal was never seen as such (events lost before a rescan).
            let gone = |ctx: &Context| !ctx.attached || view.get(ctx.ifindex).is_none();
            if let Some(ctx) = self.contexts.iter_mut().find(|ctx| gone(ctx) && ctx.mac == link.mac) {
                // Detached at its old ifindex, found at the new one: reported as back (and renamed).
                ctx.ifindex = link.ifindex;
                ctx.attached = false;
                refresh_identity(ctx, view, actions);
                continue;
            }
            if self.admit_later && self.selection.admits_later(link, view.is_routed(link.ifindex)) {
                self.add_context(link, self.selection.releases_routed(), actions);
            }
        }
    }

    fn add_context(&mut self, link: &Netdev, auto: bool, actions: &mut Vec<Action>) {
        let id = self.next_id;
        self.next_id += 1;
        self.contexts.push(Context {
            id,
            ifindex: link.ifindex,
            name: link.name.clone(),
            mac: link.mac,
            auto,
            attached: true,
            vf: None,
            candidates: Vec::new(),
        });
        actions.push(Action::Manage { id, netvsc: link.name.clone(), mac: link.mac });
    }

    fn evaluate(&mut self, view: &SystemView, touched: &Touched, actions: &mut Vec<Action>) {
        let managed: Vec<u32> = self.contexts.iter().map(|ctx| ctx.ifindex).collect();
        for ctx in &mut self.contexts {
            // Its own link, its MAC, or its VF (which, matched by the kernel, may carry another
            // MAC: its removal must still reach this context).
            let own_vf = ctx.vf.as_ref().is_some_and(|vf| touched.covers_ifindex(vf.ifindex));
            if !(touched.covers_ifindex(ctx.ifindex) || touched.covers_mac(&ctx.mac) || own_vf) {
                continue;
            }
            refresh_identity(ctx, view, actions);
            let released = ctx.is_released(view);
            let is_vf = |link: &&Netdev| link.pci().is_some() && !managed.contains(&link.ifindex);
            // The kernel's association, once hv_netvsc has made it (newest if, transiently, two);
            // it stands until the VF is gone, also through the unlink just before removal.
            let by_kernel = ctx
                .attached
                .then(|| {
                    let owned = self.kernel_owner.iter().filter(|(_, netvsc)| **netvsc == ctx.ifindex);
                    owned.filter_map(|(vf, _)| view.get(*vf)).filter(is_vf).max_by_key(|link| link.ifindex)
                })
                .flatten();
            // A VF the kernel gave to another NetVSC interface is not ours, whatever its MAC.
            let elsewhere =
                |link: &&Netdev| self.kernel_owner.get(&link.ifindex).is_some_and(|netvsc| *netvsc != ctx.ifindex);
            let candidates: Vec<&Netdev> = view.with_mac(&ctx.mac).filter(is_vf).filter(|l| !elsewhere(l)).collect();
            // Newest ifindex wins: during a migration the VF registered last is the live one.
            let chosen = match by_kernel {
                Some(link) => Vf::of(link, Match::Kernel),
                None => candidates.last().and_then(|link| Vf::of(link, Match::Mac)),
            };
            let ids: Vec<u32> = candidates.iter().map(|link| link.ifindex).collect();
            if by_kernel.is_none() && candidates.len() > 1 && ids != ctx.candidates {
                let others = candidates[..candidates.len() - 1].iter().filter_map(|l| Vf::of(l, Match::Mac)).collect();
                let chosen = chosen.clone().expect("more than one candidate");
                actions.push(Action::Ambiguous { id: ctx.id, netvsc: ctx.name.clone(), chosen, others });
            }
            ctx.candidates = ids;
            let wanted = if released { None } else { chosen };
            match (ctx.vf.take(), wanted) {
                // The same line: nothing to write, also when the kernel's association now
                // confirms what MAC matching chose.
                (Some(old), Some(new)) if old.devargs == new.devargs => ctx.vf = Some(new),
                (_, Some(new)) => {
                    actions.push(Action::Associate { id: ctx.id, netvsc: ctx.name.clone(), vf: new.clone() });
                    ctx.vf = Some(new);
                }
                (Some(old), None) => {
                    let reason = if released { Release::Routed } else { Release::VfGone };
                    actions.push(Action::Dissociate { id: ctx.id, netvsc: ctx.name.clone(), vf: old, reason });
                }
                (None, None) => {}
            }
        }
    }
}

/// Follows renames and MAC changes of the NetVSC interface itself, by ifindex.
fn refresh_identity(ctx: &mut Context, view: &SystemView, actions: &mut Vec<Action>) {
    match view.get(ctx.ifindex) {
        Some(link) => {
            if !ctx.attached {
                ctx.attached = true;
                actions.push(Action::Attached { id: ctx.id, netvsc: link.name.clone(), attached: true });
            }
            if link.name != ctx.name {
                actions.push(Action::Renamed { id: ctx.id, from: ctx.name.clone(), to: link.name.clone() });
                ctx.name = link.name.clone();
            }
            ctx.mac = link.mac;
        }
        None if ctx.attached => {
            ctx.attached = false;
            actions.push(Action::Attached { id: ctx.id, netvsc: ctx.name.clone(), attached: false });
        }
        None => {}
    }
}

#[cfg(test)]
mod tests;
