//! netvsc-watch kernel program: on netdevice register/unregister/rename/MAC change and PCI
//! add/remove, write one [`KernelEvent`] to a ring buffer. Offsets into kernel structs come from
//! the agent (resolved from the running kernel's BTF) in the read-only global `CONFIG`; every
//! kernel read goes through `bpf_probe_read_kernel`. Only Ethernet devices of the agent's network
//! namespace pass, and by default only NetVSC, PCI-parented or watched-MAC ones.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program;

/// What the kernel is told of the licence (the object's `license` section). GPL-compatible, as
/// the GPL-only helpers it calls (`bpf_probe_read_kernel`) require; the crate's licence says the
/// same (MIT OR GPL-2.0-only; texts in LICENSE-MIT and LICENSE-GPL-2.0 at the repository's root).
#[cfg(target_arch = "bpf")]
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

/// Built for the host only so that workspace-wide `cargo check`/`test` work; does nothing.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
