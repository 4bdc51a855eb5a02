//! The JSON lines: the agent's machine interface (`--json`, `scan --json`), documented in
//! docs/json-lines.md. One type, tagged by `event`, that the agent writes and that tests, xtask
//! and users' tools read back, so the writer and every reader agree by construction.

use serde::{Deserialize, Serialize};

use crate::decide::pairing::{Match, Release, Vf};
use crate::event::{NetdevEvent, SourceName};
use crate::netdev::mac_string;
use crate::output::dpdk_probe::AutoProbe;
use crate::report::timeline::{Failover, Report};

/// One line of output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Line {
    /// Start-up is done and events are being watched.
    Ready(Ready),
    /// A NetVSC interface is now served: its pipe (or sidecar FIFO) exists.
    Managed(Change),
    /// A VF's PCI address was written into the interface's pipe.
    Associated(Change),
    /// The pipe was emptied: the VF went, or the interface is the VM's own now.
    Dissociated(Change),
    /// A managed interface was renamed (`renamed_from` has the old name).
    Renamed(Change),
    /// One event as the source delivered it (`--trace-events`).
    Source(SourceTrace),
    /// The source asked for a full rescan (events may have been lost). Not printed for `poll`,
    /// whose every tick is one.
    Resync { source: SourceName, reason: String },
    /// The loop's counters (on SIGUSR1).
    Stats { source: SourceName, stats: Stats, held: Held },
    /// `--measure`: one failover completed (the new address was written).
    Failover { failover: Failover },
    /// `--measure`: the consumer read the address written `after_write_us` earlier.
    Read { failsafe: String, at_ns: u64, after_write_us: Option<f64> },
    /// `--measure`: every failover so far and their spread (on SIGUSR1 and at exit).
    Measurement { report: Report },
    /// `monitor`: a VF outage hv_netvsc logged ended (the data path is on the VF again).
    KernelOutage { outage: crate::report::timeline::kernel::KernelOutage },
    /// `scan`: one NetVSC interface and what would be done with it.
    Interface(InterfaceReport),
    /// `scan`, last line: whether `exec` would switch off DPDK's own vdev_netvsc.
    DpdkAutoProbe { dpdk_auto_probe: AutoProbe },
}

/// The `ready` line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    pub source: SourceName,
    /// What the source runs with (eBPF: the hooks attached, the filter, the ring size); null
    /// for the others.
    pub details: serde_json::Value,
    /// Sources `--source auto` tried first, and why each was not used.
    pub passed_over: Vec<PassedOver>,
    /// The managed interfaces, with their sidecar files.
    pub interfaces: Vec<InterfaceReport>,
    pub dpdk_auto_probe: AutoProbe,
    /// Where `/metrics` and `/healthz` are served (`--metrics-listen`, its port resolved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `monitor`: where the kernel's own moments (hv_netvsc's data-path switches) come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_moments: Option<KernelMoments>,
}

/// `monitor`'s reader of the kernel's own moments: the log read (`from: kmsg`), or none, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelMoments {
    /// `kmsg` (the kernel's log, or the stand-in at `path`), or `none`.
    pub from: String,
    pub path: std::path::PathBuf,
    /// Why the log is not read (`from: none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassedOver {
    pub source: SourceName,
    pub reason: String,
}

/// An association change of one managed interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub netvsc: String,
    pub failsafe: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf: Option<VfReport>,
    /// On `dissociated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Release>,
    /// On `renamed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Sidecar mode, on `managed`: the FIFO and the state file this interface's fail-safe reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// What noticed: an event source, the start-up scan or a safety resync.
    pub source: SourceName,
    /// From the moment the source saw the event to the pipe being written.
    pub reaction_us: f64,
    /// CLOCK_MONOTONIC just after the write, to line up with other processes' timelines.
    pub at_ns: u64,
}

/// How often the loop woke up, and why: what "idle cost" and "churn" are measured in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Events the source delivered.
    pub events: u64,
    /// Of those, events that changed what the agent knows.
    pub relevant: u64,
    pub refill_ticks: u64,
    pub resyncs: u64,
}

/// What the process holds at one moment: over a long run each stays flat unless something
/// leaks (a soak reads them at its start, middle and end).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Open file descriptors.
    pub open_fds: u64,
    /// Resident memory in KiB (VmRSS).
    pub rss_kib: u64,
    /// tokio tasks alive: the loop's helpers, the metrics server and its connections.
    pub tasks: u64,
    /// Work waiting its turn: events deferred until the source is quiet, and written addresses
    /// whose read `--measure` still polls for.
    pub waiting: u64,
}

/// A VF as reported: its netdevice, PCI function, the exact line fail-safe's pipe carries, and
/// how it was matched to its NetVSC interface.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct VfReport {
    pub iface: String,
    pub pci: String,
    /// The pipe line without its newline: `pci`, or `<pci>,mac=<mac>` on a shared function (MANA).
    pub devargs: String,
    /// `kernel` (hv_netvsc made the NetVSC interface its master) or `mac`.
    #[serde(rename = "match")]
    pub matched: Match,
}

impl From<&Vf> for VfReport {
    fn from(vf: &Vf) -> Self {
        Self { iface: vf.name.clone(), pci: vf.pci.clone(), devargs: vf.devargs.clone(), matched: vf.matched }
    }
}

/// What is done with an interface.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceState {
    /// Managed, its VF's address in the pipe.
    Paired,
    /// Managed, no VF yet.
    Waiting,
    /// Not managed, or released (see `reason`).
    Skipped,
}

/// One line of `scan`: a NetVSC interface (or a forced stand-in) and what would be done with it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InterfaceReport {
    pub netvsc: String,
    pub ifindex: u32,
    pub mac: String,
    pub vf: Option<VfReport>,
    pub state: InterfaceState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failsafe: Option<String>,
    /// Sidecar mode: the FIFO and state file this interface's fail-safe reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
}

/// A `source` line: the event and, from the eBPF source, the kernel's own record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceTrace {
    pub source: SourceName,
    pub seen_at_ns: u64,
    pub detail: Detail,
    pub kernel: Option<KernelRecord>,
}

/// A [`NetdevEvent`], tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Detail {
    Changed {
        ifindex: u32,
        name: Option<String>,
        mac: Option<String>,
        /// The master's ifindex, when the source says the link has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        master: Option<u32>,
    },
    Removed {
        ifindex: u32,
    },
    Address {
        ifindex: u32,
    },
    Resync {
        reason: String,
        lost: bool,
    },
    Pci {
        pci: String,
        added: bool,
    },
}

impl From<&NetdevEvent> for Detail {
    fn from(event: &NetdevEvent) -> Self {
        match event {
            NetdevEvent::Changed { ifindex, name, mac, master } => Detail::Changed {
                ifindex: *ifindex,
                name: name.clone(),
                mac: mac.as_ref().map(mac_string),
                master: master.flatten(),
            },
            NetdevEvent::Removed { ifindex } => Detail::Removed { ifindex: *ifindex },
            NetdevEvent::AddressChanged { ifindex } => Detail::Address { ifindex: *ifindex },
            NetdevEvent::Resync { reason, lost } => Detail::Resync { reason: (*reason).to_owned(), lost: *lost },
            NetdevEvent::PciDevice { address, added } => Detail::Pci { pci: address.clone(), added: *added },
        }
    }
}

/// The eBPF program's record as the kernel wrote it, decoded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRecord {
    /// `registered`, `unregistered`, `renamed`, `mac_changed`, `pci_added`, `pci_removed`,
    /// `master_changed`.
    pub kind: String,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    pub ifindex: u32,
    pub name: String,
    pub mac: String,
    pub netns: u32,
    pub dev_type: u16,
    /// `pci`, `vmbus`, `other` or `none`.
    pub parent_bus: String,
    pub pci: String,
    /// The PCI parent's `vendor:device` ids in hex, as `lspci -n` prints them, when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

impl From<&netvsc_common::KernelEvent> for KernelRecord {
    fn from(event: &netvsc_common::KernelEvent) -> Self {
        use netvsc_common::{bus, kind};
        Self {
            kind: kind::name(event.kind).to_owned(),
            timestamp_ns: event.timestamp_ns,
            ifindex: event.ifindex,
            name: String::from_utf8_lossy(event.name_bytes()).into_owned(),
            mac: mac_string(&macaddr::MacAddr6::from(event.mac)),
            netns: event.netns,
            dev_type: event.dev_type,
            parent_bus: bus::name(event.parent_bus).to_owned(),
            pci: String::from_utf8_lossy(event.pci_bytes()).into_owned(),
            pci_id: (event.pci_vendor != 0).then(|| format!("{:04x}:{:04x}", event.pci_vendor, event.pci_device)),
        }
    }
}

impl Line {
    /// The `event` tag of this line.
    pub fn event(&self) -> &'static str {
        match self {
            Line::Ready(_) => "ready",
            Line::Managed(_) => "managed",
            Line::Associated(_) => "associated",
            Line::Dissociated(_) => "dissociated",
            Line::Renamed(_) => "renamed",
            Line::Source(_) => "source",
            Line::Resync { .. } => "resync",
            Line::Stats { .. } => "stats",
            Line::Failover { .. } => "failover",
            Line::Read { .. } => "read",
            Line::Measurement { .. } => "measurement",
            Line::KernelOutage { .. } => "kernel_outage",
            Line::Interface(_) => "interface",
            Line::DpdkAutoProbe { .. } => "dpdk_auto_probe",
        }
    }

    /// The change, for `managed`, `associated`, `dissociated` and `renamed`.
    pub fn change(&self) -> Option<&Change> {
        match self {
            Line::Managed(c) | Line::Associated(c) | Line::Dissociated(c) | Line::Renamed(c) => Some(c),
            _ => None,
        }
    }

    /// The line as one `\n`-terminated JSON text.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a Line always serialises");
        bytes.push(b'\n');
        bytes
    }
}

#[cfg(test)]
mod tests;
