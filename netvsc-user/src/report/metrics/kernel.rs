//! `monitor`'s metrics from the kernel's own log (hv_netvsc's lines in /dev/kmsg), per NetVSC
//! interface: how often its VF went, how long it stayed away, how soon the kernel switched the
//! data path back to it, every data-path switch by direction, and flaps.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{absence, latency, Histograms};
use crate::report::timeline::kernel::Noted;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetvscLabel {
    netvsc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwitchLabels {
    netvsc: String,
    /// `to_vf` or `from_vf`.
    direction: String,
}

#[derive(Clone)]
pub(super) struct KernelMetrics {
    outages: Family<NetvscLabel, Counter>,
    absent: Histograms<NetvscLabel>,
    back_to_data_path: Histograms<NetvscLabel>,
    switches: Family<SwitchLabels, Counter>,
    switch_failures: Family<SwitchLabels, Counter>,
    flaps: Family<NetvscLabel, Counter>,
}

impl KernelMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let outages = Family::<NetvscLabel, Counter>::default();
        registry.register(
            "kernel_outages",
            "VF outages hv_netvsc logged: the data path switched from the VF, the VF unregistering or its slot removed",
            outages.clone(),
        );
        let absent = Histograms::new_with_constructor(absence as fn() -> Histogram);
        registry.register_with_unit(
            "kernel_vf_absent",
            "From an outage's first kernel moment to the VF registering again (kmsg times)",
            Unit::Seconds,
            absent.clone(),
        );
        let back_to_data_path = Histograms::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "vf_back_to_data_path",
            "From the VF registering again to the kernel switching the data path to it (kmsg times)",
            Unit::Seconds,
            back_to_data_path.clone(),
        );
        let switches = Family::<SwitchLabels, Counter>::default();
        registry.register(
            "data_path_switches",
            "Data-path switches hv_netvsc logged, by direction (to_vf, from_vf)",
            switches.clone(),
        );
        let switch_failures = Family::<SwitchLabels, Counter>::default();
        registry.register(
            "data_path_switch_failures",
            "Data-path switches hv_netvsc logged as failed, by direction (to_vf, from_vf)",
            switch_failures.clone(),
        );
        let flaps = Family::<NetvscLabel, Counter>::default();
        registry.register(
            "data_path_flaps",
            "Data-path switches from the VF within --flap-window (10 s unless set) of the switch to it (the VF came back and failed again)",
            flaps.clone(),
        );
        Self { outages, absent, back_to_data_path, switches, switch_failures, flaps }
    }

    /// What one kernel moment changed.
    pub fn noted(&self, noted: &Noted) {
        let per_direction = |family: &Family<SwitchLabels, Counter>, netvsc: &str, to_vf: bool| {
            let direction = if to_vf { "to_vf" } else { "from_vf" };
            family.get_or_create(&SwitchLabels { netvsc: netvsc.to_owned(), direction: direction.into() }).inc();
        };
        match noted {
            Noted::Switched { netvsc, to_vf } => per_direction(&self.switches, netvsc, *to_vf),
            Noted::SwitchFailed { netvsc, to_vf } => per_direction(&self.switch_failures, netvsc, *to_vf),
            Noted::Flapped { netvsc } => {
                self.flaps.get_or_create(&NetvscLabel { netvsc: netvsc.clone() }).inc();
            }
            Noted::Began { netvsc } => {
                self.outages.get_or_create(&NetvscLabel { netvsc: netvsc.clone() }).inc();
            }
            Noted::Returned(outage) => {
                if let Some(absent) = outage.absent_s() {
                    self.absent.get_or_create(&NetvscLabel { netvsc: outage.netvsc.clone() }).observe(absent);
                }
            }
            Noted::Ended(outage) => {
                if let Some(back) = outage.back_to_data_path_s() {
                    self.back_to_data_path.get_or_create(&NetvscLabel { netvsc: outage.netvsc.clone() }).observe(back);
                }
            }
        }
    }
}
