//! The host bench's reference clock: an rtnetlink listener of its own, on a thread of the bench
//! in the stage's network namespace. It receives the same `RTM_NEWLINK` broadcast the agent
//! reacts to and notes when (CLOCK_MONOTONIC, the agent's clock too), so a latency runs from a
//! moment the agent does not report itself.
//!
//! Where the kernel program is at hand, the moment is the kernel's own: the socket filter
//! `rtnl_broadcast_stamp` (netvsc-ebpf/src/bin/broadcast-stamp.rs) on the listener's socket stamps each
//! message while the kernel broadcasts it, before any reader is woken, so no scheduling decides
//! it. Otherwise it is the listener's receive time; the thread then runs at real-time priority,
//! above the writers of the real-time rows, so that where the two compete it runs first and a
//! measured latency errs long.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aya::maps::RingBuf;
use aya::programs::SocketFilter;
use netvsc_common::BroadcastStamp;
use netvsc_user::clock::monotonic_ns;

use super::rtnl;

/// How often the listener thread looks whether it is asked to stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// Message types (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;

/// A link coming (its first `RTM_NEWLINK`) or going, and when: by the kernel's stamp, else the
/// listener's receive.
pub struct Heard {
    ifindex: u32,
    new: bool,
    /// By the reference ([`Listener::reference`]).
    pub at_ns: u64,
    /// The listener's clock right after recv(2) returned the message.
    pub received_ns: u64,
}

/// What a reference time is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `bpf_ktime_get_ns` in the socket filter, as the kernel broadcast the message.
    KernelBroadcast,
    /// The listener's clock right after recv(2) returned the message.
    ListenerReceive,
}

pub struct Listener {
    heard: Receiver<Heard>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    reference: Reference,
}

impl Listener {
    /// Listens in network namespace `netns` (an `ip netns` name) from now on, at SCHED_FIFO
    /// `priority` (above every writer's), with the kernel's stamps when `kernel_object` (the
    /// kernel program's object) is given and loads.
    pub fn start(netns: &str, priority: u8, kernel_object: Option<Vec<u8>>) -> anyhow::Result<Self> {
        let path = format!("/run/netns/{netns}");
        let (heard_tx, heard) = mpsc::channel();
        let (ready_tx, ready) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let socket = enter(&path).and_then(|()| {
                real_time(priority);
                rtnl::subscribe(Some(STOP_CHECK))
            });
            let socket = match socket {
                Ok(socket) => socket,
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return Ok(());
                }
            };
            // Kept for as long as the socket: dropping it detaches the filter.
            let mut stamps = match kernel_object.as_deref().map(|object| BroadcastStamps::attach(object, &socket)) {
                Some(Ok(stamps)) => Some(stamps),
                Some(Err(err)) => {
                    println!("bench: no kernel stamps, the reference is the listener's receive ({err:#})");
                    None
                }
                None => None,
            };
            let reference = if stamps.is_some() { Reference::KernelBroadcast } else { Reference::ListenerReceive };
            let _ = ready_tx.send(Ok(reference));
            let mut live = HashSet::new();
            let mut buf = Vec::with_capacity(64 * 1024);
            while !stopping.load(Ordering::Relaxed) {
                buf.clear();
                match socket.recv(&mut buf, 0) {
                    Ok(_) => {}
                    Err(err)
                        if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) =>
                    {
                        continue
                    }
                    Err(err) => return Err(err).context("reading the reference rtnetlink socket"),
                }
                let received_ns = monotonic_ns();
                if let Some(stamps) = &mut stamps {
                    stamps.collect();
                }
                for message in rtnl::link_messages(&buf) {
                    // A link's first RTM_NEWLINK is its registration; later ones are changes.
                    let news = if message.new { live.insert(message.ifindex) } else { live.remove(&message.ifindex) };
                    let stamped = stamps.as_mut().map(|stamps| stamps.take(message.ifindex, message.new));
                    let at_ns = match stamped {
                        Some(Some(at_ns)) => at_ns,
                        Some(None) => return Err(anyhow::anyhow!("no kernel stamp for link {}", message.ifindex)),
                        None => received_ns,
                    };
                    let heard = Heard { ifindex: message.ifindex, new: message.new, at_ns, received_ns };
                    if news && heard_tx.send(heard).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        let reference = ready.recv().context("the reference listener thread ended")??;
        Ok(Self { heard, stop, thread: Some(thread), reference })
    }

    /// What the times [`Listener::heard`] returns are.
    pub fn reference(&self) -> Reference {
        self.reference
    }

    /// When the registration (`new`) or removal of `ifindex` was broadcast (see
    /// [`Listener::reference`]); what the listener heard of other links before that is passed over.
    pub fn heard(&self, ifindex: u32, new: bool, timeout: Duration) -> anyhow::Result<Heard> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(heard) if heard.ifindex == ifindex && heard.new == new => return Ok(heard),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("the reference listener did not hear link {ifindex} {}", if new { "come" } else { "go" })
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the reference listener thread ended"),
            }
        }
    }
}

/// The kernel's stamps of the broadcasts reaching the listener's socket, by link and direction
/// (a link's first stamp of each: its registration, its removal).
struct BroadcastStamps {
    /// Holds the filter attached.
    _ebpf: aya::Ebpf,
    ring: RingBuf<aya::maps::MapData>,
    first: std::collections::HashMap<(u32, bool), u64>,
}

impl BroadcastStamps {
    fn attach(object: &[u8], socket: &netlink_sys::Socket) -> anyhow::Result<Self> {
        anyhow::ensure!(!object.is_empty(), "the agent was built without its kernel program");
        let mut ebpf = aya::Ebpf::load(object).context("loading the kernel program's object")?;
        let filter: &mut SocketFilter = ebpf
            .program_mut("rtnl_broadcast_stamp")
            .context("no rtnl_broadcast_stamp program in the object")?
            .try_into()?;
        filter.load().context("loading rtnl_broadcast_stamp")?;
        filter.attach(socket).context("attaching rtnl_broadcast_stamp to the listener's socket")?;
        let ring = RingBuf::try_from(ebpf.take_map("BROADCASTS").context("no BROADCASTS map")?)?;
        Ok(Self { _ebpf: ebpf, ring, first: Default::default() })
    }

    /// Takes in the stamps of everything received so far: the filter ran before each message
    /// was queued, so a received message's stamp is there.
    fn collect(&mut self) {
        while let Some(item) = self.ring.next() {
            if item.len() < std::mem::size_of::<BroadcastStamp>() {
                continue;
            }
            // SAFETY: the ring holds BroadcastStamp records (length checked); read unaligned.
            let stamp = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<BroadcastStamp>()) };
            let new = match stamp.message_type {
                RTM_NEWLINK => true,
                RTM_DELLINK => false,
                _ => continue,
            };
            self.first.entry((stamp.ifindex, new)).or_insert(stamp.at_ns);
        }
    }

    /// The stamp of `ifindex`'s first message of its kind since the last; its removal forgets
    /// both kinds, for an ifindex the kernel reuses.
    fn take(&mut self, ifindex: u32, new: bool) -> Option<u64> {
        let at_ns = self.first.get(&(ifindex, new)).copied();
        if !new {
            self.first.remove(&(ifindex, true));
            self.first.remove(&(ifindex, false));
        }
        at_ns
    }
}

/// Moves this thread into the network namespace at `path`.
fn enter(path: &str) -> anyhow::Result<()> {
    let netns = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).with_context(|| format!("entering {path}"))
}

/// Real-time (FIFO) priority for the calling thread; without it the reference is noisier, which
/// is said and not fatal.
fn real_time(priority: u8) {
    if let Err(err) = netvsc_user::agent::realtime::run_at_fifo(priority) {
        println!("bench: the reference listener runs at normal priority ({err:#})");
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Err(err)) => println!("bench: the reference listener failed: {err:#}"),
                Err(_) => println!("bench: the reference listener panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}
