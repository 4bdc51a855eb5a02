//! Event sources: where the agent learns that something changed. Each yields [`SourceEvent`]s
//! through one trait; the agent re-reads only what an event concerns.

use futures::future::BoxFuture;
use macaddr::MacAddr6;

use crate::event::{SourceEvent, SourceName};

pub mod ebpf;
pub mod kmsg;
pub mod netlink;
mod open;
pub mod poll;

pub use open::{open, Opened, SourceKind};

/// A stream of link events. `next` must be cancel-safe: the agent polls it in a `select!`.
pub trait Source: Send {
    /// Name for logs and JSON reports.
    fn name(&self) -> SourceName;

    /// Waits for the next event. An error ends the agent: a silent source would leave pipes stale.
    fn next(&mut self) -> BoxFuture<'_, anyhow::Result<SourceEvent>>;

    /// What the source is running with, for the `ready` line (eBPF: the hooks attached).
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Events lost so far because the kernel-side buffer was full (the eBPF ring); each loss
    /// also comes as a `Resync` event.
    fn ring_drops(&self) -> u64 {
        0
    }

    /// The MACs of the managed interfaces, for sources that filter on them (eBPF does, in the
    /// kernel). Called whenever the set changes.
    fn watch_macs(&mut self, _macs: &[MacAddr6]) -> anyhow::Result<()> {
        Ok(())
    }
}
