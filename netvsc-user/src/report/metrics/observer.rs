//! What the agent's loop tells the metrics: the events, the actions with their times (a
//! history-less failover [`Recorder`] supplies the timings) and the pairing state after them.

use super::Metrics;
use crate::decide::pairing::{Action, Pairing};
use crate::decide::view::SystemView;
use crate::event::{NetdevEvent, SourceEvent, SourceName};
use crate::report::timeline::kernel::Noted;
use crate::report::timeline::Recorder;

pub(crate) struct Observer {
    metrics: Metrics,
    recorder: Recorder,
    /// The eBPF ring's drop count already counted.
    drops_seen: u64,
}

impl Observer {
    /// `source` names the clock of events without a kernel time.
    pub fn new(metrics: Metrics, source: SourceName) -> Self {
        Self { metrics, recorder: Recorder::without_history(source), drops_seen: 0 }
    }

    /// When things appeared and went (told after the event's pipes are written, before its
    /// actions); rescans by reason.
    pub(crate) fn source_event(&mut self, event: &SourceEvent) {
        self.recorder.source_event(event);
        if let NetdevEvent::Resync { reason, .. } = event.event {
            self.metrics.resync(reason);
        }
    }

    /// An action carried out at `done_ns` for `event`, which `source` delivered.
    pub fn action(&mut self, action: &Action, event: &SourceEvent, done_ns: u64, source: SourceName) {
        // The recorder completes a failover only on the association that ends an outage.
        if let Some(returned) = self.recorder.action(action, event, done_ns) {
            self.metrics.returned(returned, source);
        }
        if let Action::Dissociate { id, .. } = action {
            if let Some(outage) = self.recorder.outage(*id) {
                self.metrics.departed(outage, source);
            }
        }
    }

    /// What a moment of the kernel's log changed (`monitor`).
    pub(crate) fn kernel(&self, noted: &Noted) {
        self.metrics.kernel(noted);
    }

    /// The source delivered an event; `ring_drops`: the eBPF ring's drop count so far.
    pub fn delivered(&mut self, source: SourceName, ring_drops: u64) {
        self.metrics.event(source);
        if ring_drops > self.drops_seen {
            self.metrics.ring_drops(ring_drops - self.drops_seen);
            self.drops_seen = ring_drops;
        }
    }

    /// An event from `source` changed pairings: the interfaces' state now.
    pub fn changed(&self, source: SourceName, pairing: &Pairing, view: &SystemView) {
        self.metrics.relevant(source);
        self.metrics.interfaces(pairing, view);
    }

    pub fn interfaces(&self, pairing: &Pairing, view: &SystemView) {
        self.metrics.interfaces(pairing, view);
    }
}
