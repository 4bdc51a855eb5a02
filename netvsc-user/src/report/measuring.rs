//! `--measure` inside the agent: feeds the failover [`Recorder`] and notices when the consumer
//! has read a newly written address (its pipe is empty again), polled every millisecond while
//! an address is waiting to be read, and not at all otherwise.

use std::time::Duration;

use tokio::time::{interval, Interval, MissedTickBehavior};

use crate::clock::monotonic_ns;
use crate::decide::pairing::Action;
use crate::event::{SourceEvent, SourceName};
use crate::output::failsafe::Outputs;
use crate::report::lines::Line;
use crate::report::timeline::kernel::KernelRecorder;
use crate::report::timeline::{Recorder, Report};
use crate::system::kmsg::Moment;

/// How often an unread address is checked for having been read: the resolution of `read_ns`.
const READ_CHECK: Duration = Duration::from_millis(1);

pub(crate) struct Measuring {
    recorder: Recorder,
    kernel: KernelRecorder,
    read_check: Interval,
}

impl Measuring {
    /// `source` names the clock of events that carry no kernel time.
    pub fn new(source: SourceName) -> Self {
        let mut read_check = interval(READ_CHECK);
        read_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { recorder: Recorder::new(source), kernel: KernelRecorder::new(), read_check }
    }

    pub(crate) fn source_event(&mut self, event: &SourceEvent) {
        self.recorder.source_event(event);
    }

    /// Records an action done at `done_ns`; the `failover` line when it completed one.
    pub fn action(&mut self, action: &Action, event: &SourceEvent, done_ns: u64) -> Option<Line> {
        let failover = self.recorder.action(action, event, done_ns)?;
        Some(Line::Failover { failover: failover.clone() })
    }

    /// A moment hv_netvsc logged at `at_us` about the interface the agent calls `netvsc`.
    pub(crate) fn kernel_moment(&mut self, at_us: u64, moment: &Moment, netvsc: &str) {
        self.kernel.moment(at_us, moment, netvsc);
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

    pub fn report(&self) -> Report {
        Report { kernel_outages: self.kernel.outages(), ..self.recorder.report() }
    }
}
