//! The eBPF event source: the kernel program reports netdevice register/unregister/rename/MAC
//! changes and PCI add/remove into a ring buffer, already filtered; address changes come from
//! rtnetlink. Event times are the kernel's (`bpf_ktime_get_ns`), so reaction times are measured
//! from the kernel event itself.

use std::collections::{BTreeSet, VecDeque};
use std::os::unix::fs::MetadataExt as _;

use anyhow::Context as _;
use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::{Ebpf, EbpfLoader};
use futures::future::BoxFuture;
use macaddr::MacAddr6;
use netvsc_common::{bus, kind, mac_key, KernelEvent, MacKey};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use super::netlink::NetlinkSource;
use super::Source;
use crate::event::{NetdevEvent, Parent, SourceEvent};
use crate::netdev::PciId;

mod attach;
pub(crate) mod kernel_btf;

pub(crate) use attach::AttachedHook;
pub use attach::{kprobe_programs, program_names, AttachMode};

/// The kernel program, built by `cargo xtask build` (empty in builds without it).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netvsc"));

const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

/// How to run the kernel side.
#[derive(Clone, Debug)]
pub struct EbpfOptions {
    /// Only NetVSC, PCI-parented and watched-MAC devices reach userspace.
    pub filter: bool,
    /// Kernel-side diagnostics through aya-log.
    pub log: bool,
    /// Ring buffer size in bytes (a power-of-two multiple of the page size).
    pub ring_bytes: u32,
    pub attach: AttachMode,
}

/// Why the eBPF source cannot run here, in words for the log and the error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unavailable(pub String);

pub(crate) struct EbpfSource {
    /// Owns the programs and links: dropping it detaches everything.
    _ebpf: Ebpf,
    hooks: Vec<AttachedHook>,
    options: EbpfOptions,
    ring: AsyncFd<RingBuf<MapData>>,
    drops: PerCpuArray<MapData, u64>,
    dropped_so_far: u64,
    watched: HashMap<MapData, MacKey, u8>,
    watched_now: BTreeSet<MacKey>,
    addresses: NetlinkSource,
    pending: VecDeque<SourceEvent>,
}

impl EbpfSource {
    /// Loads and attaches the kernel program. Must be called inside a tokio runtime.
    pub fn load(options: &EbpfOptions) -> Result<Self, Unavailable> {
        Self::try_load(options).map_err(|err| Unavailable(format!("{err:#}")))
    }

    fn try_load(options: &EbpfOptions) -> anyhow::Result<Self> {
        let Loaded { mut ebpf, kernel, btf } = load_object(options)?;
        if options.log {
            if let Err(err) = aya_log::EbpfLogger::init(&mut ebpf) {
                warn!(%err, "eBPF logging requested but unavailable");
            }
        }
        let hooks = attach::attach_all(&mut ebpf, &kernel, &btf, options.attach)?;
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS")?)?;
        let drops = PerCpuArray::try_from(ebpf.take_map("DROPS").context("map DROPS")?)?;
        let watched = HashMap::try_from(ebpf.take_map("WATCHED_MACS").context("map WATCHED_MACS")?)?;
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the AsyncFd
        // (which owns the RingBuf) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|err| anyhow::anyhow!("registering the ring buffer with tokio: {err}"))?;
        Ok(Self {
            _ebpf: ebpf,
            hooks,
            options: options.clone(),
            ring,
            drops,
            dropped_so_far: 0,
            watched,
            watched_now: BTreeSet::new(),
            addresses: NetlinkSource::subscribe_addresses()?,
            pending: VecDeque::new(),
        })
    }

    /// Moves everything the ring buffer holds into `pending`; a grown drop counter adds a resync.
    fn drain(&mut self) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            let Some(event) = record(&item) else { continue };
            if let Some(link_event) = translate(&event) {
                debug!(?link_event, "kernel event");
                self.pending.push_back(SourceEvent {
                    parent: parent(&event),
                    event: link_event,
                    seen_at_ns: event.timestamp_ns,
                    kernel: Some(event),
                });
            }
        }
        let dropped = self.drops.get(&0, 0).map(|per_cpu| per_cpu.iter().sum::<u64>()).unwrap_or(0);
        if dropped > self.dropped_so_far {
            warn!(dropped = dropped - self.dropped_so_far, "eBPF ring buffer overflowed; doing a full resync");
            self.dropped_so_far = dropped;
            self.pending.push_back(SourceEvent::now(NetdevEvent::Resync {
                reason: "eBPF ring buffer dropped events",
                lost: true,
            }));
        }
    }
}

impl Source for EbpfSource {
    fn name(&self) -> crate::event::SourceName {
        crate::event::SourceName::Ebpf
    }

    fn next(&mut self) -> BoxFuture<'_, anyhow::Result<SourceEvent>> {
        Box::pin(async move {
            loop {
                if let Some(event) = self.pending.pop_front() {
                    return Ok(event);
                }
                tokio::select! {
                    guard = self.ring.readable_mut() => {
                        let mut guard = guard.context("waiting on the eBPF ring buffer")?;
                        guard.clear_ready();
                        drop(guard);
                        self.drain();
                    }
                    event = self.addresses.next() => return event,
                }
            }
        })
    }

    fn ring_drops(&self) -> u64 {
        self.dropped_so_far
    }

    fn details(&self) -> serde_json::Value {
        serde_json::json!({
            "hooks": self.hooks,
            "filter": self.options.filter,
            "ring_bytes": self.options.ring_bytes,
        })
    }

    fn watch_macs(&mut self, macs: &[MacAddr6]) -> anyhow::Result<()> {
        let wanted: BTreeSet<MacKey> = macs.iter().map(|mac| mac_key(mac.into_array())).collect();
        for gone in self.watched_now.difference(&wanted) {
            self.watched.remove(gone).context("removing a watched MAC")?;
        }
        for new in wanted.difference(&self.watched_now) {
            self.watched.insert(new, 1, 0).context("adding a watched MAC")?;
        }
        self.watched_now = wanted;
        Ok(())
    }
}

/// The kernel program's object as embedded (empty without it), for tests that read it.
pub fn object() -> &'static [u8] {
    OBJECT
}

/// Whether this build embeds the kernel program (`cargo xtask build`, or NETVSC_BUILD_EBPF=1).
pub fn has_object() -> bool {
    !OBJECT.is_empty()
}

/// The kernel program with its settings and offsets in place and its maps created, programs
/// not yet loaded, and the BTF that attaching needs.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub kernel: kernel_btf::KernelBtf,
    pub btf: aya::Btf,
}

/// Resolves the running kernel's offsets from BTF and loads the object with them.
pub fn load_object(options: &EbpfOptions) -> anyhow::Result<Loaded> {
    if !has_object() {
        anyhow::bail!("this build has no eBPF object (build with `cargo xtask build`)");
    }
    let effective = caps::read(None, caps::CapSet::Effective).context("reading this process's capabilities")?;
    let missing = missing_capabilities(&effective);
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "missing capability {}: loading and attaching kernel programs needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)",
            names.join(" and ")
        );
    }
    let kernel = kernel_btf::KernelBtf::load(BTF_PATH)?;
    let mut config = kernel.config().context("resolving kernel struct offsets from BTF")?;
    config.agent_netns = std::fs::metadata("/proc/self/ns/net").context("reading /proc/self/ns/net")?.ino() as u32;
    config.filter = u32::from(options.filter);
    config.log = u32::from(options.log);
    let btf = aya::Btf::from_sys_fs().context("loading kernel BTF for aya")?;
    let memlock_kept = raise_memlock_rlimit().err();
    let ebpf = EbpfLoader::new()
        .btf(Some(&btf))
        .set_global("CONFIG", &config, true)
        .set_max_entries("EVENTS", options.ring_bytes)
        .load(OBJECT)
        .map_err(|error| match memlock_kept {
            Some(bytes) => anyhow::Error::new(error).context(memlock_hint(bytes)),
            None => anyhow::Error::new(error),
        })
        .context("loading the eBPF object")?;
    Ok(Loaded { ebpf, kernel, btf })
}

/// What loading and attaching the kernel program needs that `effective` lacks: CAP_BPF for the
/// bpf() calls, CAP_PERFMON for reading kernel memory and for kprobes (CAP_SYS_ADMIN covers
/// both, and is what kernels before 5.8 ask for).
pub(crate) fn missing_capabilities(effective: &caps::CapsHashSet) -> Vec<caps::Capability> {
    if effective.contains(&caps::Capability::CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [caps::Capability::CAP_BPF, caps::Capability::CAP_PERFMON]
        .into_iter()
        .filter(|cap| !effective.contains(cap))
        .collect()
}

/// The parent device a netdevice record names (the kernel program fills the PCI address of a
/// PCI parent); `None` for PCI records and a PCI parent whose address could not be read.
pub fn parent(event: &KernelEvent) -> Option<Parent> {
    if !matches!(event.kind, kind::REGISTERED | kind::RENAMED | kind::MAC_CHANGED | kind::MASTER_CHANGED) {
        return None;
    }
    match event.parent_bus {
        bus::NONE => Some(Parent::None),
        bus::PCI => {
            let address = std::str::from_utf8(event.pci_bytes()).ok().filter(|a| crate::netdev::is_device_name(a))?;
            // No function has vendor 0 (and 0xffff is "none"): such ids were not read.
            let id = (!matches!(event.pci_vendor, 0 | 0xffff))
                .then_some(PciId { vendor: event.pci_vendor, device: event.pci_device });
            Some(Parent::Pci { address: address.into(), id })
        }
        bus::VMBUS => Some(Parent::Vmbus),
        _ => Some(Parent::Other),
    }
}

/// The record of one ring-buffer item; `None` for an item shorter than a record (the kernel
/// program writes whole records only, so that is not one of its items). Bytes past a record are
/// ignored.
pub(crate) fn record(item: &[u8]) -> Option<KernelEvent> {
    if item.len() < size_of::<KernelEvent>() {
        return None;
    }
    // SAFETY: `item` holds at least a KernelEvent's bytes, and every bit pattern is one (plain
    // integers and byte arrays); read unaligned, as the ring gives no alignment guarantee.
    Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<KernelEvent>()) })
}

/// Maps a kernel event to what the agent re-reads; names that are not UTF-8 or not what the
/// kernel names a netdevice or a device are left to sysfs.
pub fn translate(event: &KernelEvent) -> Option<NetdevEvent> {
    let text =
        |bytes: &[u8], valid: fn(&str) -> bool| std::str::from_utf8(bytes).ok().filter(|s| valid(s)).map(str::to_owned);
    let name = |event: &KernelEvent| text(event.name_bytes(), crate::netdev::is_kernel_name);
    Some(match event.kind {
        kind::REGISTERED | kind::RENAMED | kind::MAC_CHANGED => NetdevEvent::Changed {
            ifindex: event.ifindex,
            name: name(event),
            mac: Some(MacAddr6::from(event.mac)),
            master: None,
        },
        // Who the master is now is for sysfs to say: no name/MAC hint, so it is always re-read.
        kind::MASTER_CHANGED => {
            NetdevEvent::Changed { ifindex: event.ifindex, name: name(event), mac: None, master: None }
        }
        kind::UNREGISTERED => NetdevEvent::Removed { ifindex: event.ifindex },
        kind::PCI_ADDED | kind::PCI_REMOVED => NetdevEvent::PciDevice {
            address: text(event.pci_bytes(), crate::netdev::is_device_name)?,
            added: event.kind == kind::PCI_ADDED,
        },
        _ => return None,
    })
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: raise it to unlimited, or say what
/// it stays at (the agent lacks CAP_SYS_RESOURCE and the limit was not raised for it), so that a
/// map that then cannot be created is explained.
fn raise_memlock_rlimit() -> Result<(), u64> {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return Ok(());
    }
    debug!("could not raise RLIMIT_MEMLOCK; fine on kernels that account BPF memory by cgroup");
    let mut kept = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit into a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut kept) };
    Err(kept.rlim_cur)
}

/// What a load failure means when RLIMIT_MEMLOCK could not be raised: on kernels before 5.11
/// (bullseye's 5.10) a map beyond the limit fails with EPERM, which reads like a capability.
fn memlock_hint(bytes: u64) -> String {
    format!(
        "RLIMIT_MEMLOCK is {} KiB and the agent may not raise it; kernels before 5.11 charge eBPF maps to it: \
         raise it for the agent (systemd: LimitMEMLOCK=infinity, as deploy/systemd/netvsc-watch.service does; \
         a shell: ulimit -l unlimited)",
        bytes / 1024
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u32, ifindex: u32, name: &[u8], pci: &[u8]) -> KernelEvent {
        let mut event = KernelEvent { kind, ifindex, mac: [0, 0x15, 0x5d, 0, 0, 1], ..KernelEvent::default() };
        event.name[..name.len()].copy_from_slice(name);
        event.pci[..pci.len()].copy_from_slice(pci);
        event
    }

    #[test]
    fn a_record_is_read_only_from_an_item_that_holds_a_whole_one() {
        // At offset 1, with bytes to spare: the ring buffer promises no alignment, and what
        // follows a record is not read.
        let mut bytes = [0u8; 1 + size_of::<KernelEvent>() + 3];
        bytes[1 + 8] = kind::UNREGISTERED as u8;
        bytes[1 + 12] = 7;
        assert_eq!(record(&bytes[1..size_of::<KernelEvent>()]), None, "one byte short");
        let whole = record(&bytes[1..]).expect("a whole record");
        assert_eq!((whole.kind, whole.ifindex), (kind::UNREGISTERED, 7));
    }

    #[test]
    fn capabilities_needed_are_bpf_and_perfmon_or_sys_admin() {
        use caps::Capability::{CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN};
        let set = |caps: &[caps::Capability]| caps.iter().copied().collect::<caps::CapsHashSet>();
        assert_eq!(missing_capabilities(&set(&[])), [CAP_BPF, CAP_PERFMON]);
        assert_eq!(missing_capabilities(&set(&[CAP_BPF, CAP_NET_ADMIN])), [CAP_PERFMON]);
        assert_eq!(missing_capabilities(&set(&[CAP_PERFMON])), [CAP_BPF]);
        assert!(missing_capabilities(&set(&[CAP_BPF, CAP_PERFMON])).is_empty());
        assert!(missing_capabilities(&set(&[CAP_SYS_ADMIN])).is_empty());
    }

    #[test]
    fn a_netdevice_record_names_its_parent() {
        let with_bus = |kind: u32, parent_bus: u8, pci: &[u8]| {
            let mut record = event(kind, 7, b"enP2s2", pci);
            record.parent_bus = parent_bus;
            parent(&record)
        };
        let pci = |id| Some(Parent::Pci { address: "0002:00:02.0".into(), id });
        assert_eq!(with_bus(kind::REGISTERED, bus::PCI, b"0002:00:02.0"), pci(None), "ids not read");
        let mut mana = event(kind::REGISTERED, 7, b"enP2s2", b"0002:00:02.0");
        (mana.parent_bus, mana.pci_vendor, mana.pci_device) = (bus::PCI, 0x1414, 0x00ba);
        assert_eq!(parent(&mana), pci(Some(PciId::MANA)));
        mana.pci_vendor = 0xffff;
        assert_eq!(parent(&mana), pci(None), "0xffff: no function answered");
        assert_eq!(with_bus(kind::REGISTERED, bus::PCI, b""), None, "an address that could not be read");
        assert_eq!(with_bus(kind::REGISTERED, bus::PCI, b"../../.."), None, "no path is an address");
        assert_eq!(with_bus(kind::RENAMED, bus::NONE, b""), Some(Parent::None));
        assert_eq!(with_bus(kind::MAC_CHANGED, bus::VMBUS, b""), Some(Parent::Vmbus));
        assert_eq!(with_bus(kind::MASTER_CHANGED, bus::OTHER, b""), Some(Parent::Other));
        assert_eq!(with_bus(kind::UNREGISTERED, bus::PCI, b"0002:00:02.0"), None, "a removal needs no parent");
        assert_eq!(with_bus(kind::PCI_ADDED, bus::NONE, b"0002:00:02.0"), None, "a PCI record is no netdevice");
    }

    #[test]
    fn each_kernel_record_becomes_the_event_it_stands_for() {
        let mac = Some(MacAddr6::new(0, 0x15, 0x5d, 0, 0, 1));
        let changed =
            |name: Option<&str>| NetdevEvent::Changed { ifindex: 7, name: name.map(str::to_owned), mac, master: None };
        let cases = [
            ("registered", event(kind::REGISTERED, 7, b"enP2s2", b""), Some(changed(Some("enP2s2")))),
            ("renamed", event(kind::RENAMED, 7, b"lan1", b""), Some(changed(Some("lan1")))),
            ("MAC changed", event(kind::MAC_CHANGED, 7, b"enP2s2", b""), Some(changed(Some("enP2s2")))),
            // A name that is not UTF-8 is left for sysfs to read.
            ("non-UTF-8 name", event(kind::REGISTERED, 7, &[0xff, 0xfe], b""), Some(changed(None))),
            ("unregistered", event(kind::UNREGISTERED, 7, b"enP2s2", b""), Some(NetdevEvent::Removed { ifindex: 7 })),
            (
                "PCI added",
                event(kind::PCI_ADDED, 0, b"", b"0002:00:02.0"),
                Some(NetdevEvent::PciDevice { address: "0002:00:02.0".into(), added: true }),
            ),
            (
                "PCI removed",
                event(kind::PCI_REMOVED, 0, b"", b"0002:00:02.0"),
                Some(NetdevEvent::PciDevice { address: "0002:00:02.0".into(), added: false }),
            ),
            ("PCI event without a name", event(kind::PCI_ADDED, 0, b"", b""), None),
            (
                "master changed",
                event(kind::MASTER_CHANGED, 7, b"enP2s2", b""),
                Some(NetdevEvent::Changed { ifindex: 7, name: Some("enP2s2".into()), mac: None, master: None }),
            ),
            ("unknown kind", event(99, 7, b"enP2s2", b""), None),
            // Names and addresses the kernel cannot give a device are left to sysfs.
            ("a name with a slash", event(kind::REGISTERED, 7, b"../../etc", b""), Some(changed(None))),
            ("a PCI address with a slash", event(kind::PCI_ADDED, 0, b"", b"../../../etc"), None),
        ];
        for (what, record, expected) in cases {
            assert_eq!(translate(&record), expected, "{what}");
        }
    }
}
