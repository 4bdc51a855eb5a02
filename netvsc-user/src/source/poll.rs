//! The original's behaviour: rescan everything every interval. Kept as a fallback and as the
//! baseline the event sources are measured against.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::Source;
use crate::event::{NetdevEvent, SourceEvent};

pub(crate) struct PollSource {
    ticks: Interval,
}

impl PollSource {
    /// First tick one `period` from now: the agent has just done its start-up scan.
    pub fn new(period: Duration) -> Self {
        let mut ticks = interval_at(Instant::now() + period, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { ticks }
    }
}

impl Source for PollSource {
    fn name(&self) -> super::SourceName {
        super::SourceName::Poll
    }

    fn next(&mut self) -> BoxFuture<'_, anyhow::Result<SourceEvent>> {
        Box::pin(async move {
            self.ticks.tick().await;
            // A poller sees no events: nothing learned between two scans can be trusted.
            Ok(SourceEvent::now(NetdevEvent::Resync { reason: "poll interval", lost: true }))
        })
    }
}
