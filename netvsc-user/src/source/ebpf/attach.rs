//! Attaching the kernel program's hooks: for each, the function name the running kernel has
//! (from BTF), fentry/fexit first, kprobes where tracing programs are refused. Required hooks
//! must attach; optional ones degrade with a log line.

use anyhow::bail;
use aya::programs::{FEntry, FExit, KProbe};
use aya::{Btf, Ebpf};
use netvsc_common::hook;
use tracing::{info, warn};

use super::kernel_btf::KernelBtf;

/// Which attach types may be used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// fentry/fexit, else kprobes
    #[default]
    Auto,
    /// fentry/fexit only
    Fentry,
    /// kprobes only
    Kprobe,
}

struct Hook {
    /// fentry or fexit program.
    tracing: &'static str,
    is_exit: bool,
    /// kprobe program, and the kretprobe that completes it if the hook needs the return value.
    kprobe: &'static str,
    kretprobe: Option<&'static str>,
    /// Kernel functions, newest name first, and their parameter count.
    functions: &'static [&'static str],
    params: usize,
    required: bool,
}

const HOOKS: &[Hook] = &[
    Hook {
        tracing: hook::NETDEV_REGISTERED,
        is_exit: true,
        kprobe: "netdev_registered_entry",
        kretprobe: Some("netdev_registered_return"),
        functions: &["register_netdevice"],
        params: 1,
        required: true,
    },
    Hook {
        tracing: hook::NETDEV_UNREGISTERING,
        is_exit: false,
        kprobe: "netdev_unregistering_kprobe",
        kretprobe: None,
        functions: &["unregister_netdevice_queue"],
        params: 2,
        required: true,
    },
    Hook {
        tracing: hook::NETDEV_RENAMED,
        is_exit: true,
        kprobe: "netdev_renamed_entry",
        kretprobe: Some("netdev_renamed_return"),
        functions: &["netif_change_name", "dev_change_name"],
        params: 2,
        required: false,
    },
    Hook {
        tracing: hook::NETDEV_MAC_CHANGED,
        is_exit: true,
        kprobe: "netdev_mac_changed_entry",
        kretprobe: Some("netdev_mac_changed_return"),
        functions: &["netif_set_mac_address", "dev_set_mac_address"],
        params: 3,
        required: false,
    },
    Hook {
        tracing: hook::PCI_ADDED,
        is_exit: true,
        kprobe: "pci_added_entry",
        kretprobe: Some("pci_added_return"),
        functions: &["pci_device_add"],
        params: 2,
        required: false,
    },
    Hook {
        tracing: hook::NETDEV_MASTER_LINKED,
        is_exit: true,
        kprobe: "netdev_master_linked_entry",
        kretprobe: Some("netdev_master_linked_return"),
        functions: &["netdev_master_upper_dev_link"],
        params: 5,
        required: false,
    },
    Hook {
        tracing: hook::NETDEV_MASTER_UNLINKED,
        is_exit: true,
        kprobe: "netdev_master_unlinked_entry",
        kretprobe: Some("netdev_master_unlinked_return"),
        functions: &["netdev_upper_dev_unlink"],
        params: 2,
        required: false,
    },
    Hook {
        tracing: hook::PCI_REMOVING,
        is_exit: false,
        kprobe: "pci_removing_kprobe",
        kretprobe: None,
        functions: &["pci_stop_and_remove_bus_device", "pci_remove_bus_device"],
        params: 1,
        required: false,
    },
    // sysfs `remove`: the unlocked call above may be inlined into this one. Where it is not,
    // both record the removal, microseconds apart; the timeline keeps the later.
    Hook {
        tracing: hook::PCI_REMOVING_LOCKED,
        is_exit: false,
        kprobe: "pci_removing_locked_kprobe",
        kretprobe: None,
        functions: &["pci_stop_and_remove_bus_device_locked"],
        params: 1,
        required: false,
    },
];

/// Names of every program in the object that a hook attaches.
pub fn program_names() -> impl Iterator<Item = &'static str> {
    HOOKS.iter().map(|hook| hook.tracing).chain(kprobe_programs())
}

/// Names of the kprobe and kretprobe programs in the object (the fallback attach path).
pub fn kprobe_programs() -> impl Iterator<Item = &'static str> {
    HOOKS.iter().flat_map(|hook| std::iter::once(hook.kprobe).chain(hook.kretprobe))
}

/// One hook that attached: which program, on which kernel function, by which attach type.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct AttachedHook {
    pub hook: &'static str,
    pub function: &'static str,
    pub via: &'static str,
}

/// Attaches every hook the kernel allows; returns those attached (each also logged).
pub(crate) fn attach_all(
    ebpf: &mut Ebpf,
    kernel: &KernelBtf,
    btf: &Btf,
    mode: AttachMode,
) -> anyhow::Result<Vec<AttachedHook>> {
    let mut attached = Vec::new();
    let mut record = |hook: &'static str, function: &'static str, via: &'static str| {
        info!(hook, function, via, "eBPF hook attached");
        attached.push(AttachedHook { hook, function, via });
    };
    for hook in HOOKS {
        let Some(function) = kernel.function(hook.functions, hook.params) else {
            let reason = format!("the kernel has none of {:?} (with {} arguments)", hook.functions, hook.params);
            if hook.required {
                bail!("{}: {reason}", hook.tracing);
            }
            warn!(hook = hook.tracing, %reason, "optional eBPF hook not attached");
            continue;
        };
        let mut reasons = Vec::new();
        if mode != AttachMode::Kprobe {
            match attach_tracing(ebpf, hook, function, btf) {
                Ok(()) => {
                    record(hook.tracing, function, if hook.is_exit { "fexit" } else { "fentry" });
                    continue;
                }
                Err(err) => reasons.push(format!("fentry/fexit: {}", explain(&err))),
            }
        }
        if mode != AttachMode::Fentry {
            match attach_kprobes(ebpf, hook, function) {
                Ok(()) => {
                    record(
                        hook.tracing,
                        function,
                        if hook.kretprobe.is_some() { "kprobe+kretprobe" } else { "kprobe" },
                    );
                    continue;
                }
                Err(err) => reasons.push(format!("kprobe: {}", explain(&err))),
            }
        }
        let reason = reasons.join("; ");
        if hook.required {
            bail!("{} on {function}: {reason}", hook.tracing);
        }
        warn!(hook = hook.tracing, function, %reason, "optional eBPF hook not attached");
    }
    Ok(attached)
}

fn attach_tracing(ebpf: &mut Ebpf, hook: &Hook, function: &str, btf: &Btf) -> anyhow::Result<()> {
    let program = ebpf.program_mut(hook.tracing).ok_or_else(|| anyhow::anyhow!("no program {}", hook.tracing))?;
    if hook.is_exit {
        let program: &mut FExit = program.try_into()?;
        program.load(function, btf)?;
        program.attach()?;
    } else {
        let program: &mut FEntry = program.try_into()?;
        program.load(function, btf)?;
        program.attach()?;
    }
    Ok(())
}

fn attach_kprobes(ebpf: &mut Ebpf, hook: &Hook, function: &str) -> anyhow::Result<()> {
    for name in std::iter::once(hook.kprobe).chain(hook.kretprobe) {
        let program: &mut KProbe =
            ebpf.program_mut(name).ok_or_else(|| anyhow::anyhow!("no program {name}"))?.try_into()?;
        program.load()?;
        program.attach(function, 0)?;
    }
    Ok(())
}

/// The error chain in one line, with the errno spelled out where the kernel gave one.
fn explain(err: &anyhow::Error) -> String {
    let errno =
        err.chain().find_map(|cause| cause.downcast_ref::<std::io::Error>().and_then(std::io::Error::raw_os_error));
    let text = format!("{err:#}");
    match errno {
        Some(libc::EPERM) => format!("not permitted by this kernel (EPERM): {text}"),
        Some(code) => format!("{} ({text})", nix::errno::Errno::from_raw(code)),
        None => text,
    }
}
