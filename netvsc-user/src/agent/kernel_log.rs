//! `monitor`: which followed interface each of the kernel's log lines is about, and the outages
//! they tell. hv_netvsc names its NetVSC by VMBus id and by its name at the time. Where sysfs
//! has that VMBus device (`bus/vmbus/devices/<id>/net/`), it alone says which interface the line
//! is about, whatever it is called now (none followed: the line is passed over). Where it does
//! not (the device is gone, a tree without it), the interface first tied to the id is kept, so
//! later lines find it after renames the agent has not seen yet, and the first tie is made by
//! the logged name, among the attached interfaces. The VF driver's `joined to <netvsc>` line
//! names the NetVSC only by name.

use std::collections::HashMap;

use tokio::sync::mpsc;

use crate::decide::pairing::Pairing;
use crate::report::timeline::kernel::{KernelOutage, KernelRecorder, Noted};
use crate::source::kmsg::Logged;
use crate::system::kmsg::Moment;
use crate::system::SystemReader;

pub(crate) struct KernelLog {
    /// `None` once the reader ended (a stand-in file read, a failed read): the outages stay.
    receiver: Option<mpsc::Receiver<Logged>>,
    /// VMBus id → the context its lines are about.
    by_vmbus: HashMap<String, u32>,
    /// The outages: for the metrics and the `kernel_outage` lines, and with their history for
    /// `--measure`.
    recorder: KernelRecorder,
}

impl KernelLog {
    /// `history`: keep ended outages for `--measure`'s report.
    pub fn new(receiver: mpsc::Receiver<Logged>, flap_window_us: u64, history: bool) -> Self {
        Self {
            receiver: Some(receiver),
            by_vmbus: HashMap::new(),
            recorder: KernelRecorder::new(flap_window_us, history),
        }
    }

    /// The next moment; never while `log` is `None` or once its reader ended.
    pub async fn next(log: &mut Option<KernelLog>) -> Logged {
        if let Some(receiver) = log.as_mut().and_then(|log| log.receiver.as_mut()) {
            if let Some(logged) = receiver.recv().await {
                return logged;
            }
        }
        if let Some(log) = log {
            log.receiver = None;
        }
        std::future::pending().await
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
        let ctx = match reader.netdevs_of_vmbus(vmbus_id) {
            Some(ifindexes) => contexts.iter().find(|ctx| ifindexes.contains(&ctx.ifindex))?,
            None => {
                let tied = self.by_vmbus.get(vmbus_id).and_then(|id| contexts.iter().find(|ctx| ctx.id == *id));
                tied.or_else(|| by_name(logged_name).filter(|ctx| ctx.attached))?
            }
        };
        self.by_vmbus.insert(vmbus_id.clone(), ctx.id);
        Some(&ctx.name)
    }
}
