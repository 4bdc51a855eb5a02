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
use netvsc_common::{mac_key, MacKey};
use tokio::io::unix::AsyncFd;
use tracing::{debug, warn};

use super::netlink::NetlinkSource;
use super::Source;
use crate::event::{NetdevEvent, SourceEvent};

mod attach;
pub(crate) mod kernel_btf;
mod record;

pub(crate) use attach::AttachedHook;
pub use attach::{kprobe_programs, program_names, AttachMode};
pub(crate) use record::record;
pub use record::{parent, translate};

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
}
