use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
};
use aya_ebpf::macros::{fentry, fexit, kprobe, kretprobe, map};
use aya_ebpf::maps::{HashMap, PerCpuArray, RingBuf};
use aya_ebpf::programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext};
use aya_log_ebpf::debug;
use netvsc_common::{bus, kind, mac_key, Config, KernelEvent, MacKey, ARPHRD_ETHER, NAME_LEN, PCI_NAME_LEN};

/// Filled by the agent before load (`EbpfLoader::set_global`).
#[no_mangle]
static CONFIG: Config = Config {
    netdev_ifindex: 0,
    netdev_name: 0,
    netdev_dev_addr: 0,
    netdev_type: 0,
    netdev_net: 0,
    net_inum: 0,
    netdev_parent: 0,
    device_bus: 0,
    bus_name: 0,
    pci_dev_name: 0,
    device_name: 0,
    pci_dev_vendor: 0,
    pci_dev_device: 0,
    agent_netns: 0,
    filter: 1,
    log: 0,
};

/// The one event stream; its size is set by the agent at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Events that found the ring buffer full; the agent resyncs when this grows.
#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// MACs of the interfaces the agent manages (kept current by the agent).
#[map]
static WATCHED_MACS: HashMap<MacKey, u8> = HashMap::with_max_entries(256, 0);

/// kprobe fallback: the argument seen at entry, by thread and hook, for the return probe.
#[map]
static PENDING: HashMap<u64, u64> = HashMap::with_max_entries(1024, 0);

fn config() -> Config {
    // SAFETY: a read of our own read-only global; volatile so the loader's value is used.
    unsafe { core::ptr::read_volatile(&CONFIG) }
}

/// Reads a `T` at `base + offset` in kernel memory.
fn read<T>(base: *const u8, offset: u32) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, never a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }
}

/// The bus of `dev->dev.parent`, by the bus type's name.
fn parent_bus(cfg: &Config, dev: *const u8) -> u8 {
    let Ok(parent) = read::<*const u8>(dev, cfg.netdev_parent) else { return bus::NONE };
    if parent.is_null() {
        return bus::NONE;
    }
    let Ok(bus_type) = read::<*const u8>(parent, cfg.device_bus) else { return bus::OTHER };
    let Ok(name) = read::<*const u8>(bus_type, cfg.bus_name) else { return bus::OTHER };
    let Ok(head) = read::<[u8; 6]>(name, 0) else { return bus::OTHER };
    match head {
        [b'p', b'c', b'i', 0, ..] => bus::PCI,
        [b'v', b'm', b'b', b'u', b's', 0] => bus::VMBUS,
        _ => bus::OTHER,
    }
}

/// The name of `dev->dev.parent` (for a PCI parent, its address) into `out`.
fn parent_name(cfg: &Config, dev: *const u8, out: &mut [u8; PCI_NAME_LEN]) -> Result<(), i64> {
    let parent = read::<*const u8>(dev, cfg.netdev_parent)?;
    let name = read::<*const u8>(parent, cfg.device_name)?;
    // SAFETY: a kernel string read into a buffer of ours; a bad address is an error, not a fault.
    unsafe { bpf_probe_read_kernel_str_bytes(name, out) }?;
    Ok(())
}

/// The vendor and device ids of the `struct pci_dev` whose `dev` is `dev->dev.parent`.
fn parent_pci_id(cfg: &Config, dev: *const u8) -> Result<(u16, u16), i64> {
    let parent = read::<*const u8>(dev, cfg.netdev_parent)?;
    // The ids come before the embedded device: the offsets are negative, in two's complement.
    let at = |offset: u32| parent.wrapping_offset(offset as i32 as isize);
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, never a fault.
    let read_u16 = |offset: u32| unsafe { bpf_probe_read_kernel(at(offset) as *const u16) };
    Ok((read_u16(cfg.pci_dev_vendor)?, read_u16(cfg.pci_dev_device)?))
}

fn submit(event: &KernelEvent) {
    match EVENTS.reserve::<KernelEvent>(0) {
        Some(mut entry) => {
            entry.write(*event);
            entry.submit(0);
        }
        None => {
            if let Some(count) = DROPS.get_ptr_mut(0) {
                // SAFETY: per-CPU slot, no other writer on this CPU while we run.
                unsafe { *count += 1 };
            }
        }
    }
}

fn blank(event_kind: u32) -> KernelEvent {
    KernelEvent {
        // SAFETY: helper without preconditions.
        timestamp_ns: unsafe { bpf_ktime_get_ns() },
        kind: event_kind,
        ifindex: 0,
        netns: 0,
        dev_type: 0,
        parent_bus: bus::NONE,
        _pad: 0,
        name: [0; NAME_LEN],
        mac: [0; 6],
        _pad2: [0; 2],
        pci: [0; PCI_NAME_LEN],
        pci_vendor: 0,
        pci_device: 0,
        _pad3: [0; 4],
    }
}

/// Reports netdevice `dev` if it passes the filters.
fn netdev_event<C: aya_ebpf::EbpfContext>(ctx: &C, dev: *const u8, event_kind: u32) -> Result<(), i64> {
    let cfg = config();
    let mut event = blank(event_kind);
    event.dev_type = read::<u16>(dev, cfg.netdev_type)?;
    if event.dev_type != ARPHRD_ETHER {
        return Ok(());
    }
    let net = read::<*const u8>(dev, cfg.netdev_net)?;
    event.netns = read::<u32>(net, cfg.net_inum)?;
    if event.netns != cfg.agent_netns {
        return Ok(());
    }
    event.ifindex = read::<u32>(dev, cfg.netdev_ifindex)?;
    event.name = read::<[u8; NAME_LEN]>(dev, cfg.netdev_name)?;
    let dev_addr = read::<*const u8>(dev, cfg.netdev_dev_addr)?;
    if !dev_addr.is_null() {
        event.mac = read::<[u8; 6]>(dev_addr, 0)?;
    }
    event.parent_bus = parent_bus(&cfg, dev);
    if event.parent_bus == bus::PCI {
        // The PCI address and make, so that the agent need not ask sysfs which function this is.
        let _ = parent_name(&cfg, dev, &mut event.pci);
        if let Ok((vendor, device)) = parent_pci_id(&cfg, dev) {
            (event.pci_vendor, event.pci_device) = (vendor, device);
        }
    }
    if cfg.filter != 0 && event.parent_bus != bus::PCI && event.parent_bus != bus::VMBUS {
        // SAFETY: lookup of a plain key; the value is not kept.
        let watched = unsafe { WATCHED_MACS.get(&mac_key(event.mac)) }.is_some();
        if !watched {
            return Ok(());
        }
    }
    if cfg.log != 0 {
        debug!(ctx, "netdev event {} ifindex {}", event_kind, event.ifindex);
    }
    submit(&event);
    Ok(())
}

/// Reports PCI device `pdev` (by name, `0002:00:02.0`).
fn pci_event(pdev: *const u8, event_kind: u32) -> Result<(), i64> {
    let cfg = config();
    let mut event = blank(event_kind);
    let name = read::<*const u8>(pdev, cfg.pci_dev_name)?;
    // SAFETY: the helper bounds the copy by the buffer and checks the address.
    unsafe { bpf_probe_read_kernel_str_bytes(name, &mut event.pci) }?;
    submit(&event);
    Ok(())
}

// --- fentry/fexit: the preferred attachment; the agent picks the function names from BTF. ---

/// At the exit of a function whose first argument is the netdevice and whose int return value
/// follows its `params` arguments: reports the device if the function succeeded. Always
/// inlined, so that `params` is a constant: the verifier refuses variable context offsets.
#[inline(always)]
fn netdev_exit(ctx: &FExitContext, params: usize, event_kind: u32) -> i32 {
    // SAFETY: the callers name functions of that shape; the agent checks the arity in BTF.
    let (dev, ret): (*const u8, i32) = unsafe { (ctx.arg(0), ctx.arg(params)) };
    if ret == 0 {
        let _ = netdev_event(ctx, dev, event_kind);
    }
    0
}

/// register_netdevice(struct net_device *dev) -> int.
#[fexit]
pub fn netdev_registered(ctx: FExitContext) -> i32 {
    netdev_exit(&ctx, 1, kind::REGISTERED)
}

#[fentry]
pub fn netdev_unregistering(ctx: FEntryContext) -> i32 {
    // SAFETY: unregister_netdevice_queue(struct net_device *dev, struct list_head *head).
    let dev: *const u8 = unsafe { ctx.arg(0) };
    let _ = netdev_event(&ctx, dev, kind::UNREGISTERED);
    0
}

/// dev_change_name / netif_change_name(struct net_device *, const char *) -> int.
#[fexit]
pub fn netdev_renamed(ctx: FExitContext) -> i32 {
    netdev_exit(&ctx, 2, kind::RENAMED)
}

/// dev_set_mac_address / netif_set_mac_address(dev, sockaddr, extack) -> int.
#[fexit]
pub fn netdev_mac_changed(ctx: FExitContext) -> i32 {
    netdev_exit(&ctx, 3, kind::MAC_CHANGED)
}

/// netdev_master_upper_dev_link(dev, upper_dev, upper_priv, upper_info, extack) -> int: hv_netvsc
/// taking a VF (`dev`) as its lower device, the kernel's own NetVSC↔VF association.
#[fexit]
pub fn netdev_master_linked(ctx: FExitContext) -> i32 {
    netdev_exit(&ctx, 5, kind::MASTER_CHANGED)
}

/// netdev_upper_dev_unlink(dev, upper_dev), void: reported after the link is gone.
#[fexit]
pub fn netdev_master_unlinked(ctx: FExitContext) -> i32 {
    // SAFETY: the first argument is the lower netdevice.
    let dev: *const u8 = unsafe { ctx.arg(0) };
    let _ = netdev_event(&ctx, dev, kind::MASTER_CHANGED);
    0
}

#[fexit]
pub fn pci_added(ctx: FExitContext) -> i32 {
    // SAFETY: pci_device_add(struct pci_dev *dev, struct pci_bus *bus).
    let pdev: *const u8 = unsafe { ctx.arg(0) };
    let _ = pci_event(pdev, kind::PCI_ADDED);
    0
}

#[fentry]
pub fn pci_removing(ctx: FEntryContext) -> i32 {
    // SAFETY: pci_stop_and_remove_bus_device(struct pci_dev *dev).
    let pdev: *const u8 = unsafe { ctx.arg(0) };
    let _ = pci_event(pdev, kind::PCI_REMOVED);
    0
}

#[fentry]
pub fn pci_removing_locked(ctx: FEntryContext) -> i32 {
    // SAFETY: pci_stop_and_remove_bus_device_locked(struct pci_dev *dev).
    let pdev: *const u8 = unsafe { ctx.arg(0) };
    let _ = pci_event(pdev, kind::PCI_REMOVED);
    0
}

// --- kprobes: the fallback where tracing programs are not available. A return probe cannot see
// the arguments, so the entry probe keeps the first one per thread and hook. ---

const HOOK_REGISTER: u64 = 1;
const HOOK_RENAME: u64 = 2;
const HOOK_MAC: u64 = 3;
const HOOK_PCI_ADD: u64 = 4;
const HOOK_MASTER_LINK: u64 = 5;
const HOOK_MASTER_UNLINK: u64 = 6;

/// pid/tgid use at most 22 bits each, so the top byte is free for the hook.
fn pending_key(hook: u64) -> u64 {
    bpf_get_current_pid_tgid() ^ (hook << 56)
}

fn remember_first_arg(ctx: &ProbeContext, hook: u64) -> u32 {
    if let Some(arg) = ctx.arg::<u64>(0) {
        let _ = PENDING.insert(&pending_key(hook), &arg, 0);
    }
    0
}

fn take_first_arg(hook: u64) -> Option<*const u8> {
    let key = pending_key(hook);
    // SAFETY: the value is copied out before the entry is removed.
    let arg = unsafe { PENDING.get(&key) }.copied();
    let _ = PENDING.remove(&key);
    arg.map(|a| a as *const u8)
}

fn on_return(ctx: &RetProbeContext, hook: u64, event_kind: u32) -> u32 {
    let Some(arg) = take_first_arg(hook) else { return 0 };
    // pci_device_add and netdev_upper_dev_unlink return nothing to check.
    let ok = hook == HOOK_PCI_ADD || hook == HOOK_MASTER_UNLINK || ctx.ret::<i32>() == Some(0);
    if ok {
        let _ = if hook == HOOK_PCI_ADD { pci_event(arg, event_kind) } else { netdev_event(ctx, arg, event_kind) };
    }
    0
}

#[kprobe]
pub fn netdev_registered_entry(ctx: ProbeContext) -> u32 {
    remember_first_arg(&ctx, HOOK_REGISTER)
}

#[kretprobe]
pub fn netdev_registered_return(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, HOOK_REGISTER, kind::REGISTERED)
}

#[kprobe]
pub fn netdev_unregistering_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(dev) = ctx.arg::<*const u8>(0) {
        let _ = netdev_event(&ctx, dev, kind::UNREGISTERED);
    }
    0
}

#[kprobe]
pub fn netdev_renamed_entry(ctx: ProbeContext) -> u32 {
    remember_first_arg(&ctx, HOOK_RENAME)
}

#[kretprobe]
pub fn netdev_renamed_return(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, HOOK_RENAME, kind::RENAMED)
}

#[kprobe]
pub fn netdev_mac_changed_entry(ctx: ProbeContext) -> u32 {
    remember_first_arg(&ctx, HOOK_MAC)
}

#[kretprobe]
pub fn netdev_mac_changed_return(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, HOOK_MAC, kind::MAC_CHANGED)
}

#[kprobe]
pub fn netdev_master_linked_entry(ctx: ProbeContext) -> u32 {
    remember_first_arg(&ctx, HOOK_MASTER_LINK)
}

#[kretprobe]
pub fn netdev_master_linked_return(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, HOOK_MASTER_LINK, kind::MASTER_CHANGED)
}

#[kprobe]
pub fn netdev_master_unlinked_entry(ctx: ProbeContext) -> u32 {
    remember_first_arg(&ctx, HOOK_MASTER_UNLINK)
}

#[kretprobe]
pub fn netdev_master_unlinked_return(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, HOOK_MASTER_UNLINK, kind::MASTER_CHANGED)
}

#[kprobe]
pub fn pci_added_entry(ctx: ProbeContext) -> u32 {
    remember_first_arg(&ctx, HOOK_PCI_ADD)
}

#[kretprobe]
pub fn pci_added_return(ctx: RetProbeContext) -> u32 {
    on_return(&ctx, HOOK_PCI_ADD, kind::PCI_ADDED)
}

#[kprobe]
pub fn pci_removing_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(pdev) = ctx.arg::<*const u8>(0) {
        let _ = pci_event(pdev, kind::PCI_REMOVED);
    }
    0
}

#[kprobe]
pub fn pci_removing_locked_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(pdev) = ctx.arg::<*const u8>(0) {
        let _ = pci_event(pdev, kind::PCI_REMOVED);
    }
    0
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
