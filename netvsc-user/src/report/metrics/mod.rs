//! Prometheus/OpenMetrics metrics (`--metrics-listen`), all prefixed `netvsc_watch_`: what a fleet
//! operator alerts on (an interface without its VF, failovers, how long the VF was away, how fast
//! its address reached the pipe per source) and what says the agent itself is healthy (events,
//! resyncs by reason, eBPF ring drops). Recorded after the pipes are written, never before.

mod kernel;
mod observer;
mod server;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

pub(crate) use observer::Observer;
pub use server::{bind, serve};

use crate::decide::pairing::Pairing;
use crate::decide::view::SystemView;
use crate::event::SourceName;
use crate::report::timeline::Failover;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

impl SourceLabel {
    fn of(source: SourceName) -> Self {
        Self { source: source.as_str().to_owned() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    netvsc: String,
    failsafe: String,
}

impl InterfaceLabels {
    fn of(failover: &Failover) -> Self {
        Self { netvsc: failover.netvsc.clone(), failsafe: failover.failsafe.clone() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    netvsc: String,
    failsafe: String,
    /// `vf` (its address in the pipe), `released` (carries the VM's own routes: pipe empty),
    /// `detached` (the NetVSC netdevice is gone, no VF), `no_vf`.
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Microseconds to minutes: 10 µs × 2^k, k < 24 (the last bucket ends at about 84 s).
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(1e-5, 2.0, 24))
}

/// A VF's absence: 10 ms to about 3 hours (migrations take seconds, host servicing minutes).
fn absence() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 21))
}

/// Every metric the agent exports; cheap to clone (the values are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    managed: Gauge,
    state: Family<StateLabels, Gauge>,
    failovers: Family<InterfaceLabels, Counter>,
    absent: Histograms<InterfaceLabels>,
    registered_to_pipe: Histograms<SourceLabel>,
    gone_to_emptied: Histograms<SourceLabel>,
    events: Family<SourceLabel, Counter>,
    relevant: Family<SourceLabel, Counter>,
    resyncs: Family<ReasonLabel, Counter>,
    ring_drops: Counter,
    kernel: kernel::KernelMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("netvsc_watch");
        let managed = Gauge::default();
        registry.register("managed_interfaces", "NetVSC interfaces with a fail-safe pipe", managed.clone());
        let state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "interface_state",
            "1 for each managed interface's pairing state: vf, no_vf, released or detached",
            state.clone(),
        );
        let failovers = Family::<InterfaceLabels, Counter>::default();
        registry.register("failovers", "VF departures: the pipe emptied, traffic back on NetVSC", failovers.clone());
        let absent = Histograms::new_with_constructor(absence as fn() -> Histogram);
        registry.register_with_unit(
            "vf_absent",
            "From a VF netdevice leaving to its successor registering",
            Unit::Seconds,
            absent.clone(),
        );
        let registered_to_pipe = Histograms::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "vf_registered_to_pipe",
            "From the VF netdevice's registration (kernel time with eBPF, else when the source saw it) to its address in the pipe",
            Unit::Seconds,
            registered_to_pipe.clone(),
        );
        let gone_to_emptied = Histograms::new_with_constructor(latency as fn() -> Histogram);
        registry.register_with_unit(
            "vf_gone_to_pipe_emptied",
            "From the VF netdevice's removal to the pipe emptied",
            Unit::Seconds,
            gone_to_emptied.clone(),
        );
        let events = Family::<SourceLabel, Counter>::default();
        registry.register("events", "Events the source delivered", events.clone());
        let relevant = Family::<SourceLabel, Counter>::default();
        registry.register("events_relevant", "Events that changed a pairing", relevant.clone());
        let resyncs = Family::<ReasonLabel, Counter>::default();
        registry.register("resyncs", "Full rescans, by reason", resyncs.clone());
        let ring_drops = Counter::default();
        registry.register("ebpf_ring_drops", "Events the eBPF ring buffer had no room for", ring_drops.clone());
        let kernel = kernel::KernelMetrics::register(&mut registry);
        Self {
            registry: std::sync::Arc::new(registry),
            managed,
            state,
            failovers,
            absent,
            registered_to_pipe,
            gone_to_emptied,
            events,
            relevant,
            resyncs,
            ring_drops,
            kernel,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    /// One event delivered by `source`.
    pub fn event(&self, source: SourceName) {
        self.events.get_or_create(&SourceLabel::of(source)).inc();
    }

    /// One event (or resync) from `source` changed a pairing.
    pub fn relevant(&self, source: SourceName) {
        self.relevant.get_or_create(&SourceLabel::of(source)).inc();
    }

    pub fn resync(&self, reason: &str) {
        self.resyncs.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    /// The eBPF ring buffer dropped `count` more events.
    pub fn ring_drops(&self, count: u64) {
        self.ring_drops.inc_by(count);
    }

    /// What a moment of the kernel's log changed (`monitor`).
    pub fn kernel(&self, noted: &crate::report::timeline::kernel::Noted) {
        self.kernel.noted(noted);
    }

    /// A VF left `failover.netvsc` and its pipe was emptied (timed by `source`'s clock).
    pub fn departed(&self, failover: &Failover, source: SourceName) {
        self.failovers.get_or_create(&InterfaceLabels::of(failover)).inc();
        self.gone_to_emptied.get_or_create(&SourceLabel::of(source)).observe(failover.gone_to_emptied_us() / 1e6);
    }

    /// A VF came back and its address is in the pipe.
    pub fn returned(&self, failover: &Failover, source: SourceName) {
        if let Some(absent) = failover.absent_s() {
            self.absent.get_or_create(&InterfaceLabels::of(failover)).observe(absent);
        }
        if let Some(micros) = failover.event_to_pipe_us() {
            self.registered_to_pipe.get_or_create(&SourceLabel::of(source)).observe(micros / 1e6);
        }
    }

    /// Every managed interface and its state now (renamed or dropped interfaces lose their series).
    pub fn interfaces(&self, pairing: &Pairing, view: &SystemView) {
        let contexts = pairing.contexts();
        self.managed.set(contexts.len() as i64);
        // Cleared and refilled in one synchronous step: the server runs on the same thread, so a
        // scrape never sees the family half-written.
        self.state.clear();
        for ctx in contexts {
            // By what the pipe holds first: a VF's address is served while its NetVSC is away.
            let state = if ctx.is_released(view) {
                "released"
            } else if ctx.vf.is_some() {
                "vf"
            } else if !ctx.attached {
                "detached"
            } else {
                "no_vf"
            };
            let labels = StateLabels {
                netvsc: ctx.name.clone(),
                failsafe: crate::decide::pairing::failsafe_name(ctx.id),
                state: state.to_owned(),
            };
            self.state.get_or_create(&labels).set(1);
        }
    }
}

#[cfg(test)]
mod tests;
