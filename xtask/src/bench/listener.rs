//! The host bench's reference clock: an rtnetlink listener of its own, on a thread of the bench
//! in the stage's network namespace. It receives the same `RTM_NEWLINK` broadcast the agent
//! reacts to and notes when (CLOCK_MONOTONIC, the agent's clock too), so a latency runs from a
//! moment the agent does not report itself. The thread runs at real-time priority, above the
//! writers of the real-time rows: woken by the same broadcast as a writer, it runs first where the
//! two compete, so its stamp stays close to the broadcast and a measured latency errs long, never
//! short.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use netvsc_user::clock::monotonic_ns;

use super::rtnl;

/// How often the listener thread looks whether it is asked to stop.
const STOP_CHECK: Duration = Duration::from_millis(100);

/// A link coming (its first `RTM_NEWLINK`) or going, and when the listener received it.
struct Heard {
    ifindex: u32,
    new: bool,
    at_ns: u64,
}

pub struct Listener {
    heard: Receiver<Heard>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Listener {
    /// Listens in network namespace `netns` (an `ip netns` name) from now on, at SCHED_FIFO
    /// `priority` (above every writer's).
    pub fn start(netns: &str, priority: u8) -> anyhow::Result<Self> {
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
                Ok(socket) => {
                    let _ = ready_tx.send(Ok(()));
                    socket
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return Ok(());
                }
            };
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
                let at_ns = monotonic_ns();
                for message in rtnl::link_messages(&buf) {
                    // A link's first RTM_NEWLINK is its registration; later ones are changes.
                    let news = if message.new { live.insert(message.ifindex) } else { live.remove(&message.ifindex) };
                    if news && heard_tx.send(Heard { ifindex: message.ifindex, new: message.new, at_ns }).is_err() {
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        ready.recv().context("the reference listener thread ended")??;
        Ok(Self { heard, stop, thread: Some(thread) })
    }

    /// When the listener received the registration (`new`) or removal of `ifindex`; what it
    /// heard of other links before that is passed over.
    pub fn heard(&self, ifindex: u32, new: bool, timeout: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.heard.recv_timeout(left) {
                Ok(heard) if heard.ifindex == ifindex && heard.new == new => return Ok(heard.at_ns),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    bail!("the reference listener did not hear link {ifindex} {}", if new { "come" } else { "go" })
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the reference listener thread ended"),
            }
        }
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
    if let Err(err) = netvsc_user::realtime::run_at_fifo(priority) {
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
