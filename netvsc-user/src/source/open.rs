//! Choosing the event source: `auto` tries eBPF, then rtnetlink, then polling, and keeps why each
//! one it passed over could not be used.

use std::time::Duration;

use tracing::{info, warn};

use super::ebpf::{EbpfOptions, EbpfSource};
use super::netlink::NetlinkSource;
use super::poll::PollSource;
use super::{Source, SourceName};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// eBPF, else netlink, else poll; says why a source was not used
    Auto,
    /// Kernel hooks (fentry/fexit or kprobes) into a ring buffer; fails if unavailable
    Ebpf,
    /// rtnetlink link and address events; re-reads only the interface an event names
    Netlink,
    /// Full rescan every --poll-interval, as the original vdev_netvsc does
    Poll,
}

pub struct Opened {
    pub source: Box<dyn Source>,
    /// (source, reason) for each source `auto` passed over.
    pub passed_over: Vec<(SourceName, String)>,
}

/// Opens the source asked for. Must be called inside a tokio runtime, before the start-up scan.
pub fn open(kind: SourceKind, ebpf: &EbpfOptions, poll_interval: Duration) -> anyhow::Result<Opened> {
    let mut passed_over = Vec::new();
    if matches!(kind, SourceKind::Auto | SourceKind::Ebpf) {
        match EbpfSource::load(ebpf) {
            Ok(source) => return Ok(Opened { source: Box::new(source), passed_over }),
            Err(err) if kind == SourceKind::Ebpf => {
                return Err(anyhow::Error::new(err).context("eBPF source unavailable"))
            }
            Err(err) => {
                warn!(reason = %err, "eBPF source unavailable; trying netlink");
                passed_over.push((SourceName::Ebpf, err.to_string()));
            }
        }
    }
    if matches!(kind, SourceKind::Auto | SourceKind::Netlink) {
        match NetlinkSource::subscribe() {
            Ok(source) => return Ok(Opened { source: Box::new(source), passed_over }),
            Err(err) if kind == SourceKind::Netlink => return Err(err),
            Err(err) => {
                warn!(reason = %format!("{err:#}"), "netlink source unavailable; polling");
                passed_over.push((SourceName::Netlink, format!("{err:#}")));
            }
        }
    }
    info!(interval_ms = poll_interval.as_millis() as u64, "polling");
    Ok(Opened { source: Box::new(PollSource::new(poll_interval)), passed_over })
}
