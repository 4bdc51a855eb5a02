//! `xtask minimal-reactor`: the floor the agent is compared with. The least any reactor can do:
//! block on an rtnetlink socket, and on a new link with the watched MAC write one fixed line to a
//! pipe; no sysfs, no runtime, no logging. It prints `<ifindex> <received_ns> <written_ns>`
//! (CLOCK_MONOTONIC, taken right after recv(2) and write(2) returned) per reaction, and `ready`
//! once subscribed.

use std::collections::HashSet;
use std::io::Write as _;

use anyhow::Context as _;
use netvsc_user::clock::monotonic_ns;
use nix::fcntl::OFlag;

use super::rtnl;

#[derive(clap::Args)]
pub struct FloorArgs {
    /// The MAC a VF registers with
    #[arg(long)]
    mac: macaddr::MacAddr6,
    /// A link with that MAC never to react to (the NetVSC stand-in)
    #[arg(long)]
    ignore_ifindex: u32,
    /// What is written to the pipe
    #[arg(long, default_value = "0002:00:02.0")]
    line: String,
    /// Run at SCHED_FIFO with this priority, as the agent's `--realtime-priority` does
    #[arg(long, value_name = "1-99", value_parser = clap::value_parser!(u8).range(1..=99))]
    realtime_priority: Option<u8>,
}

pub fn run(args: FloorArgs) -> anyhow::Result<()> {
    if let Some(priority) = args.realtime_priority {
        netvsc_user::agent::realtime::run_at_fifo(priority)?;
    }
    let socket = rtnl::subscribe(None)?;
    let (pipe_rx, pipe_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).context("creating the pipe")?;
    let line = format!("{}\n", args.line);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut present = HashSet::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut drain = [0u8; 64];
    loop {
        buf.clear();
        let received_ns = match socket.recv(&mut buf, 0) {
            Ok(_) => monotonic_ns(),
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err).context("reading rtnetlink"),
        };
        for message in rtnl::link_messages(&buf) {
            if !message.new {
                present.remove(&message.ifindex);
                continue;
            }
            let ours = message.ifindex != args.ignore_ifindex && message.address() == Some(args.mac.as_bytes());
            if ours && present.insert(message.ifindex) {
                nix::unistd::write(&pipe_tx, line.as_bytes()).context("writing the pipe")?;
                let written_ns = monotonic_ns();
                // The reader's part, after the clock is read: keep the pipe from filling up.
                let _ = nix::unistd::read(&pipe_rx, &mut drain);
                writeln!(stdout, "{} {received_ns} {written_ns}", message.ifindex)?;
                stdout.flush()?;
            }
        }
    }
}
