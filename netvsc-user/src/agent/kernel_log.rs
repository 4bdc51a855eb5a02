//! `monitor`: which followed interface each of the kernel's log lines is about, and the outages
//! they tell. hv_netvsc names its NetVSC by VMBus id and by its name at the time; the VMBus id
//! is looked up in sysfs (`bus/vmbus/devices/<id>/net/`: the interface on that device, whatever
//! it is called now), and only where sysfs does not have it (a tree without the device) is the
//! logged name taken. Either way the first tie is kept, so later lines find the interface after
//! renames the agent has not seen yet (or that the log shows first). The VF driver's `joined
//! to <netvsc>` line names the NetVSC only by name.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::decide::pairing::{Context, Pairing};
use crate::report::timeline::kernel::{KernelOutage, KernelRecorder, Noted};
use crate::source::kmsg::Logged;
use crate::system::kmsg::Moment;
use crate::system::SystemReader;

pub(crate) struct KernelLog {
    receiver: mpsc::Receiver<Logged>,
    /// VMBus id → the context its lines are about.
    by_vmbus: HashMap<String, u32>,
    /// The outages: for the metrics and the `kernel_outage` lines, and with their history for
    /// `--measure`.
    recorder: KernelRecorder,
}

impl KernelLog {
    /// `history`: keep ended outages for `--measure`'s report.
    pub fn new(receiver: mpsc::Receiver<Logged>, flap_window_us: u64, history: bool) -> Self {
        Self { receiver, by_vmbus: HashMap::new(), recorder: KernelRecorder::new(flap_window_us, history) }
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

    /// Ended outages (with `history`), then those in progress.
    pub fn outages(&self) -> Vec<KernelOutage> {
        self.recorder.outages()
    }

    /// The name, as the agent knows it now, of the followed interface `moment` is about.
    pub fn interface<'p>(&mut self, moment: &Moment, pairing: &'p Pairing, reader: &SystemReader) -> Option<&'p str> {
        let contexts = pairing.contexts();
        let by_name = |name: &str| contexts.iter().find(|ctx| ctx.name == name);
        let (vmbus_id, logged_name) = match moment {
            Moment::Netvsc { vmbus_id, netvsc, .. } => (vmbus_id, netvsc),
            Moment::VfJoined { netvsc, .. } => return by_name(netvsc).map(|ctx| ctx.name.as_str()),
            Moment::VfRenamed { .. } => return None,
        };
        let by_id = |id: u32| contexts.iter().find(|ctx| ctx.id == id);
        let on_device = || -> Option<&Context> {
            let ifindexes = reader.netdevs_of_vmbus(vmbus_id);
            contexts.iter().find(|ctx| ifindexes.contains(&ctx.ifindex))
        };
        let tied = self.by_vmbus.get(vmbus_id).and_then(|id| by_id(*id));
        let ctx = tied.or_else(on_device).or_else(|| by_name(logged_name))?;
        self.by_vmbus.insert(vmbus_id.clone(), ctx.id);
        Some(&ctx.name)
    }
}
