//! `--measure` inside the agent: feeds the failover [`Recorder`] and notices when the consumer
//! has read a newly written address (its pipe is empty again), polled every millisecond while
//! an address is waiting to be read, and not at all otherwise.

use std::time::Duration;

use tokio::time::{interval, Interval, MissedTickBehavior};

use crate::clock::monotonic_ns;
use crate::decide::pairing::{Action, Match, Pairing};
use crate::event::{SourceEvent, SourceName};
use crate::output::failsafe::Outputs;
use crate::report::lines::Line;
use crate::report::timeline::{Recorder, Report};

/// How often an unread address is checked for having been read: the resolution of `read_ns`.
const READ_CHECK: Duration = Duration::from_millis(1);

pub(crate) struct Measuring {
    recorder: Recorder,
    read_check: Interval,
}

impl Measuring {
    /// `source` names the clock of events that carry no kernel time.
    pub fn new(source: SourceName) -> Self {
        let mut read_check = interval(READ_CHECK);
        read_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { recorder: Recorder::new(source), read_check }
    }

    pub(crate) fn source_event(&mut self, event: &SourceEvent) {
        self.recorder.source_event(event);
    }

    /// Records an action done at `done_ns`; the `failover` line when it completed one.
    pub fn action(&mut self, action: &Action, event: &SourceEvent, done_ns: u64) -> Option<Line> {
        let failover = self.recorder.action(action, event, done_ns)?;
        Some(Line::Failover { failover: failover.clone() })
    }

    /// Completes at the next read check while an address waits to be read; never otherwise.
    pub(crate) async fn read_check_due(measuring: &mut Option<Measuring>) {
        match measuring {
            Some(m) if m.recorder.awaiting_read().next().is_some() => {
                m.read_check.tick().await;
            }
            _ => std::future::pending().await,
        }
    }

    /// The `read` lines of the addresses whose pipes are empty now.
    pub(crate) fn check_reads(&mut self, outputs: &Outputs) -> Vec<Line> {
        let now = monotonic_ns();
        // Without a channel (`monitor` writes no pipe) nothing will read it: no longer awaited.
        let (read, unread): (Vec<u32>, Vec<u32>) = self
            .recorder
            .awaiting_read()
            .filter(|id| outputs.channel(*id).is_none_or(|c| c.pending_bytes().is_ok_and(|n| n == 0)))
            .partition(|id| outputs.channel(*id).is_some());
        for id in unread {
            self.recorder.unawait(id);
        }
        let mut lines = Vec::new();
        for id in read {
            if let Some(failover) = self.recorder.read(id, now) {
                let after_write_us = failover.write_to_read_us();
                lines.push(Line::Read { failsafe: failover.failsafe.clone(), at_ns: now, after_write_us });
            }
        }
        lines
    }

    /// Written addresses whose read is still being polled for.
    pub(crate) fn awaiting_reads(&self) -> usize {
        self.recorder.awaiting_read().count()
    }

    /// After an event seen at `at_ns`: the failovers whose VF the kernel has made its NetVSC's
    /// slave by now get their join time.
    pub(crate) fn joined(&mut self, pairing: &Pairing, at_ns: u64) {
        if !self.recorder.awaiting_join() {
            return;
        }
        let kernel_matched = |id: u32| {
            pairing
                .contexts()
                .iter()
                .any(|ctx| ctx.id == id && ctx.vf.as_ref().is_some_and(|vf| vf.matched == Match::Kernel))
        };
        self.recorder.joined(kernel_matched, at_ns);
    }

    pub fn report(&self) -> Report {
        self.recorder.report()
    }
}
