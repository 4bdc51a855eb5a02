//! The kernel's own account of each VF outage (`monitor`), from hv_netvsc's log lines: the data
//! path switched from the VF, the VF unregistering, its slot removed; back: the slot added, the
//! VF registering, the VF joined to its NetVSC, the data path switched to it. Pure: fed [`Moment`]s with their kmsg times
//! (the kernel's `local_clock()`, within a few milliseconds of CLOCK_MONOTONIC: comparable with
//! each other, not with the agent's own times).
//!
//! Outages are kept per NetVSC by its VMBus id, which the kernel logs on every line and which a
//! rename does not change; the name shown is the agent's for the interface.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::system::kmsg::{Moment, NetvscEvent};

/// One VF outage as hv_netvsc logged it; times are kmsg microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelOutage {
    pub netvsc: String,
    pub vmbus_id: String,
    /// The VF that left, as the kernel named it.
    pub vf: Option<String>,
    pub data_path_from_vf_us: Option<u64>,
    pub vf_unregistering_us: Option<u64>,
    pub slot_removed_us: Option<u64>,
    pub slot_added_us: Option<u64>,
    pub vf_registering_us: Option<u64>,
    /// hv_netvsc made the returning VF a slave of its NetVSC (the VF driver's `joined to` line).
    #[serde(default)]
    pub vf_joined_us: Option<u64>,
    /// The kernel's first failed attempt to switch the data path to the returning VF.
    #[serde(default)]
    pub switch_to_vf_failed_us: Option<u64>,
    pub data_path_to_vf_us: Option<u64>,
    /// The VF that came back.
    pub new_vf: Option<String>,
    /// The data path left the VF within the flap window (`--flap-window`) of switching to it.
    #[serde(default)]
    pub flap: bool,
}

/// A switch away from the VF this soon after the switch to it is a flap unless `--flap-window`
/// says otherwise: the VF came back and failed again (the boot capture's flap took 1.6 s).
pub const FLAP_WINDOW_US: u64 = 10_000_000;

impl KernelOutage {
    /// The first moment of the outage: traffic or the VF left.
    pub fn start_us(&self) -> u64 {
        [self.data_path_from_vf_us, self.vf_unregistering_us, self.slot_removed_us]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_default()
    }

    /// From the outage's start to the VF registering again.
    pub fn absent_s(&self) -> Option<f64> {
        Some(self.vf_registering_us?.saturating_sub(self.start_us()) as f64 / 1e6)
    }

    /// From the VF registering again to the kernel switching the data path to it.
    pub fn back_to_data_path_s(&self) -> Option<f64> {
        Some(self.data_path_to_vf_us?.saturating_sub(self.vf_registering_us?) as f64 / 1e6)
    }

    fn returning(&self) -> bool {
        self.slot_added_us.is_some() || self.vf_registering_us.is_some()
    }
}

/// What one moment changed, for the metrics (public for the check that every metric is documented).
#[derive(Clone, Debug, PartialEq)]
pub enum Noted {
    /// The kernel switched `netvsc`'s data path to (`to_vf`) or from its VF.
    Switched { netvsc: String, to_vf: bool },
    /// The kernel failed to switch `netvsc`'s data path to (`to_vf`) or from its VF.
    SwitchFailed { netvsc: String, to_vf: bool },
    /// An outage of `netvsc` began.
    Began { netvsc: String },
    /// The data path left `netvsc`'s VF within the flap window of switching to it.
    Flapped { netvsc: String },
    /// The VF registered again: the outage's absence is known.
    Returned(KernelOutage),
    /// An outage ended: the data path is on the VF again, or the VF left again first (then
    /// without `data_path_to_vf_us`).
    Ended(KernelOutage),
}

#[derive(Debug)]
pub(crate) struct KernelRecorder {
    /// Outages in progress, by VMBus id.
    open: BTreeMap<String, KernelOutage>,
    done: Vec<KernelOutage>,
    /// When each NetVSC's data path last switched to its VF, by VMBus id.
    last_to_vf: BTreeMap<String, u64>,
    flap_window_us: u64,
    /// Whether ended outages are kept (`--measure`) or dropped (metrics: bounded memory).
    history: bool,
}

impl KernelRecorder {
    /// `history`: keep the ended outages for the report.
    pub fn new(flap_window_us: u64, history: bool) -> Self {
        Self { open: BTreeMap::new(), done: Vec::new(), last_to_vf: BTreeMap::new(), flap_window_us, history }
    }

    /// Records the `moment` logged at `at_us` about the NetVSC the agent calls `netvsc`. Other drivers' moments change nothing, but for
    /// the VF's driver saying it joined `netvsc`.
    pub fn moment(&mut self, at_us: u64, moment: &Moment, netvsc: &str) -> Vec<Noted> {
        let (vmbus_id, event) = match moment {
            Moment::Netvsc { vmbus_id, event, .. } => (vmbus_id, event),
            Moment::VfJoined { .. } => {
                let open = self.open.values_mut().find(|o| o.netvsc == netvsc && o.returning());
                if let Some(outage) = open {
                    outage.vf_joined_us.get_or_insert(at_us);
                }
                return Vec::new();
            }
            Moment::VfRenamed { .. } => return Vec::new(),
        };
        let mut noted = Vec::new();
        if let Some(outage) = self.open.get_mut(vmbus_id) {
            outage.netvsc = netvsc.to_owned();
        }
        if let Some(vf) = event.vf_leaving() {
            // A VF leaving again before the data path came back: the unfinished outage is done.
            if self.open.get(vmbus_id).is_some_and(KernelOutage::returning) {
                let unfinished = self.open.remove(vmbus_id).expect("checked");
                noted.push(Noted::Ended(unfinished.clone()));
                self.finish(unfinished);
            }
            let outage = self.open.entry(vmbus_id.clone()).or_insert_with(|| {
                noted.push(Noted::Began { netvsc: netvsc.to_owned() });
                KernelOutage { netvsc: netvsc.to_owned(), vmbus_id: vmbus_id.clone(), ..KernelOutage::default() }
            });
            if outage.vf.is_none() {
                outage.vf = vf.cloned();
            }
        }
        match event {
            NetvscEvent::DataPathFromVf { .. } => {
                noted.push(Noted::Switched { netvsc: netvsc.to_owned(), to_vf: false });
                self.set(vmbus_id, |o| &mut o.data_path_from_vf_us, at_us);
                let since = self.last_to_vf.remove(vmbus_id).map(|to_vf| at_us.saturating_sub(to_vf));
                if since.is_some_and(|us| us < self.flap_window_us) {
                    noted.push(Noted::Flapped { netvsc: netvsc.to_owned() });
                    if let Some(outage) = self.open.get_mut(vmbus_id) {
                        outage.flap = true;
                    }
                }
            }
            NetvscEvent::VfUnregistering { .. } => self.set(vmbus_id, |o| &mut o.vf_unregistering_us, at_us),
            NetvscEvent::VfSlotRemoved { .. } => self.set(vmbus_id, |o| &mut o.slot_removed_us, at_us),
            NetvscEvent::VfSlotAdded { .. } => self.set(vmbus_id, |o| &mut o.slot_added_us, at_us),
            NetvscEvent::VfRegistering { vf } => {
                if let Some(outage) = self.open.get_mut(vmbus_id).filter(|o| o.vf_registering_us.is_none()) {
                    outage.vf_registering_us = Some(at_us);
                    outage.new_vf = Some(vf.clone());
                    noted.push(Noted::Returned(outage.clone()));
                }
            }
            NetvscEvent::DataPathSwitchFailed { to_vf, .. } => {
                noted.push(Noted::SwitchFailed { netvsc: netvsc.to_owned(), to_vf: *to_vf });
                if *to_vf {
                    self.set(vmbus_id, |o| &mut o.switch_to_vf_failed_us, at_us);
                }
            }
            NetvscEvent::DataPathToVf { vf } => {
                noted.push(Noted::Switched { netvsc: netvsc.to_owned(), to_vf: true });
                self.last_to_vf.insert(vmbus_id.clone(), at_us);
                if let Some(mut outage) = self.open.remove(vmbus_id) {
                    outage.data_path_to_vf_us = Some(at_us);
                    outage.new_vf = Some(vf.clone());
                    noted.push(Noted::Ended(outage.clone()));
                    self.finish(outage);
                }
            }
            NetvscEvent::Renamed { .. } => {}
        }
        noted
    }

    /// Sets one time of the open outage of `vmbus_id` (a moment outside an outage, such as the
    /// VF's first arrival at boot, is no outage's).
    fn set(&mut self, vmbus_id: &str, field: impl FnOnce(&mut KernelOutage) -> &mut Option<u64>, at_us: u64) {
        if let Some(outage) = self.open.get_mut(vmbus_id) {
            field(outage).get_or_insert(at_us);
        }
    }

    fn finish(&mut self, outage: KernelOutage) {
        if self.history {
            self.done.push(outage);
        }
    }

    /// Ended outages, then those in progress.
    pub fn outages(&self) -> Vec<KernelOutage> {
        self.done.iter().chain(self.open.values()).cloned().collect()
    }
}

impl NetvscEvent {
    /// `Some(the VF named, if any)` when this says the VF or its data path is leaving.
    fn vf_leaving(&self) -> Option<Option<&String>> {
        match self {
            NetvscEvent::DataPathFromVf { vf } | NetvscEvent::VfUnregistering { vf } => Some(Some(vf)),
            NetvscEvent::VfSlotRemoved { .. } => Some(None),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
