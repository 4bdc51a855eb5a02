//! `monitor`: which followed interface each of hv_netvsc's log lines is about. A line names its
//! NetVSC by VMBus id and by its name at the time; the first line that names a followed
//! interface ties its VMBus id to it, so that later lines find it even after a rename the agent
//! has not seen yet (or one the log shows first).

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::decide::pairing::Pairing;
use crate::report::timeline::kernel::{KernelRecorder, Noted};
use crate::source::kmsg::Logged;
use crate::system::kmsg::Moment;

pub(crate) struct KernelLog {
    receiver: mpsc::Receiver<Logged>,
    /// VMBus id → the context its lines are about.
    by_vmbus: HashMap<String, u32>,
    /// Outages in progress, for the metrics and the `kernel_outage` lines (`--measure` keeps
    /// its own, with history).
    recorder: KernelRecorder,
}

impl KernelLog {
    pub fn new(receiver: mpsc::Receiver<Logged>) -> Self {
        Self { receiver, by_vmbus: HashMap::new(), recorder: KernelRecorder::without_history() }
    }

    /// The next moment; `None` once the reader ended; never while `log` is `None`.
    pub async fn next(log: &mut Option<KernelLog>) -> Option<Logged> {
        match log {
            Some(log) => log.receiver.recv().await,
            None => std::future::pending().await,
        }
    }

    /// What `moment`, logged at `at_us` about the interface the agent calls `netvsc`, changed.
    pub fn record(&mut self, at_us: u64, moment: &Moment, netvsc: &str) -> Vec<Noted> {
        self.recorder.moment(at_us, moment, netvsc)
    }

    /// The name, as the agent knows it now, of the followed interface `moment` is about.
    pub fn interface<'p>(&mut self, moment: &Moment, pairing: &'p Pairing) -> Option<&'p str> {
        let Moment::Netvsc { vmbus_id, netvsc, .. } = moment else { return None };
        let contexts = pairing.contexts();
        let tied = self.by_vmbus.get(vmbus_id).and_then(|id| contexts.iter().find(|ctx| ctx.id == *id));
        let ctx = tied.or_else(|| contexts.iter().find(|ctx| ctx.name == *netvsc))?;
        self.by_vmbus.insert(vmbus_id.clone(), ctx.id);
        Some(&ctx.name)
    }
}
