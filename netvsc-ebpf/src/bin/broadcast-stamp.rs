//! The host bench's reference clock: a socket filter on the bench's own rtnetlink listener.
//! The kernel runs a socket's filter while it broadcasts (`do_one_broadcast`), before it queues
//! the message or wakes anyone, and the listener's socket is the first the broadcast reaches (the
//! newest member of the group), so this stamp precedes every writer's receive of the same
//! message and does not depend on how soon any process is scheduled. An object of its own, next
//! to the agent's in the build's OUT_DIR and never embedded in the agent: only the bench loads it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod filter {
    use aya_ebpf::helpers::bpf_ktime_get_ns;
    use aya_ebpf::macros::{map, socket_filter};
    use aya_ebpf::maps::RingBuf;
    use aya_ebpf::programs::SkBuffContext;
    use netvsc_common::BroadcastStamp;

    /// `nlmsghdr.nlmsg_type` and, after the 16-byte header, `ifinfomsg.ifi_index`.
    const MESSAGE_TYPE_OFFSET: usize = 4;
    const IFINDEX_OFFSET: usize = 16 + 4;

    #[map]
    static BROADCASTS: RingBuf = RingBuf::with_byte_size(64 * 1024, 0);

    /// Stamps every message and keeps it whole (a socket filter returns how many bytes to keep).
    #[socket_filter]
    pub fn rtnl_broadcast_stamp(ctx: SkBuffContext) -> i64 {
        // SAFETY: a helper without arguments.
        let at_ns = unsafe { bpf_ktime_get_ns() };
        if let (Ok(message_type), Ok(ifindex)) = (ctx.load::<u16>(MESSAGE_TYPE_OFFSET), ctx.load::<u32>(IFINDEX_OFFSET))
        {
            let _ = BROADCASTS.output(&BroadcastStamp { at_ns, ifindex, message_type, _pad: 0 }, 0);
        }
        i64::from(ctx.len())
    }

    /// Socket filters need no GPL-only helper; the licence is the crate's all the same.
    #[link_section = "license"]
    #[no_mangle]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        loop {}
    }
}

/// Built for the host only so that workspace-wide `cargo check`/`test` work; does nothing.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
