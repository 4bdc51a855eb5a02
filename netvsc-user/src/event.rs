//! What happened: the events every source yields and every layer after it reads. A leaf of the
//! agent, so that reading the system, the pure core and the reports share one vocabulary
//! without depending on the sources that produce it.

use macaddr::MacAddr6;

/// What happened, as precisely as the source knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetdevEvent {
    /// A link appeared or changed. `name`/`mac`/`master` are hints: when all three match what
    /// the agent already knows about `ifindex`, sysfs is not read again, and for a new link
    /// sysfs is asked only what they leave open. `mac` is given only for Ethernet links (the
    /// eBPF program reports nothing else; netlink checks the header's type), so it also says
    /// the link is Ethernet. `master`: `None` when the source does not know, `Some(None)` when
    /// the link has no master.
    Changed { ifindex: u32, name: Option<String>, mac: Option<MacAddr6>, master: Option<Option<u32>> },
    /// A link is gone. Authoritative: the kernel announces removal before sysfs is torn down.
    Removed { ifindex: u32 },
    /// An IP address was added to or removed from `ifindex`.
    AddressChanged { ifindex: u32 },
    /// Events may have been lost, or the source only polls: rescan everything. `lost`: events
    /// were lost (or, polling, never seen), so what they taught no longer stands: removals seen
    /// before prove nothing (an ifindex may be reused) and every link is read for what it is.
    Resync { reason: &'static str, lost: bool },
    /// A PCI function appeared or is going away (eBPF source). Pairing waits for its netdevice;
    /// this is for timelines and logs.
    PciDevice { address: String, added: bool },
}

/// Who noticed a change: one of the event sources, or the agent's own scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceName {
    Ebpf,
    Netlink,
    Poll,
    /// The start-up scan.
    Startup,
    /// The periodic safety resync (`--resync-interval`).
    Resync,
}

impl SourceName {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceName::Ebpf => "ebpf",
            SourceName::Netlink => "netlink",
            SourceName::Poll => "poll",
            SourceName::Startup => "startup",
            SourceName::Resync => "resync",
        }
    }

    /// A source whose every event is a full rescan: its resyncs are routine, not news.
    pub(crate) fn always_rescans(self) -> bool {
        self == SourceName::Poll
    }
}

impl std::fmt::Display for SourceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceEvent {
    pub event: NetdevEvent,
    /// When the source saw it (CLOCK_MONOTONIC ns): reaction times are measured from here.
    pub seen_at_ns: u64,
    /// The kernel's own record, when the eBPF source saw it (for traces and timelines).
    pub kernel: Option<netvsc_common::KernelEvent>,
    /// The link's parent device, when the source knows it (a `Changed` link).
    pub parent: Option<Parent>,
}

impl SourceEvent {
    pub fn now(event: NetdevEvent) -> Self {
        Self { event, seen_at_ns: crate::clock::monotonic_ns(), kernel: None, parent: None }
    }
}

/// A link's parent device (`dev->dev.parent`) as the kernel named it in the event: with it, a
/// new link need not be looked up in sysfs by name to learn what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parent {
    /// No parent: a virtual device (veth, bridge, ...).
    None,
    /// A PCI function, by address, and its make when the source read it (the eBPF record does;
    /// netlink does not say).
    Pci { address: String, id: Option<crate::netdev::PciId> },
    /// A VMBus device (NetVSC, or another synthetic device: sysfs tells which).
    Vmbus,
    /// A parent on another bus.
    Other,
}
