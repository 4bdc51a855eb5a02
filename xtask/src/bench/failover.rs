//! Host failover latency from the kernel's broadcast: the VF stand-in's `RTM_NEWLINK` as the
//! bench's own rtnetlink listener received it (listener.rs) → the address written to the pipe,
//! for the agent in both modes (`exec`: an anonymous pipe; `watch`: the sidecar FIFO and state
//! file) and for the minimal reactor (floor.rs), the floor every row is compared with.
//!
//! The end is the writer's own clock reading right after write(2) returned (the agent's
//! `associated` line carries it as `at_ns`); the start is the listener's, which neither writer
//! controls. Both wake on the same broadcast, so a writer that wakes first and writes quickly
//! can come out below zero: such samples are kept as they are.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::listener::{Listener, Reference};
use crate::figures::{FailoverRow, Latencies};
use crate::phase::Phase;
use crate::stage::{Agent, Stage};

const MAC: &str = "00:15:5d:be:00:01";
const NETVSC_IFINDEX: u32 = 10;
const PCI: &str = "0002:00:02.0";
/// The longest a plug or unplug may take to be noticed.
const WAIT: Duration = Duration::from_secs(10);
/// Each plug follows the previous unplug by a random delay under this: over hundreds of plugs
/// the plug times fall evenly across the agent's 1 s refill period (see phase_spread).
pub const PLUG_SPACING: Duration = Duration::from_millis(100);

/// What writes the address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Writer {
    /// `netvsc-watch exec --source netlink -- failsafe-sim`.
    Exec,
    /// `netvsc-watch watch --source netlink --fifo-dir DIR`.
    Watch,
    /// `xtask minimal-reactor`: listener → pipe write, nothing else.
    Floor,
}

/// The SCHED_FIFO priority of the real-time rows (`--realtime-priority`).
pub const REALTIME_PRIORITY: u8 = 10;

/// What reacts to the plugs: a writer, at the normal scheduling policy or at SCHED_FIFO
/// [`REALTIME_PRIORITY`]. Each row is compared with the floor of the same policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reactor {
    pub writer: Writer,
    pub realtime: bool,
}

impl Reactor {
    pub const ALL: [Reactor; 6] = [
        Reactor { writer: Writer::Exec, realtime: false },
        Reactor { writer: Writer::Watch, realtime: false },
        Reactor { writer: Writer::Floor, realtime: false },
        Reactor { writer: Writer::Exec, realtime: true },
        Reactor { writer: Writer::Watch, realtime: true },
        Reactor { writer: Writer::Floor, realtime: true },
    ];

    pub fn label(self) -> String {
        let writer = match self.writer {
            Writer::Exec => "netvsc-watch exec (netlink)",
            Writer::Watch => "netvsc-watch watch (netlink)",
            Writer::Floor => "minimal reactor (floor)",
        };
        if self.realtime {
            format!("{writer}, SCHED_FIFO {REALTIME_PRIORITY}")
        } else {
            writer.to_owned()
        }
    }

    /// `--realtime-priority N` for the real-time rows, nothing otherwise.
    fn scheduling_args(self) -> Vec<String> {
        match self.realtime {
            true => vec!["--realtime-priority".into(), REALTIME_PRIORITY.to_string()],
            false => Vec::new(),
        }
    }
}

/// The object of the listener's kernel stamps (see listener.rs); `None`, said once, when it
/// cannot be built here.
pub fn kernel_object() -> Option<Vec<u8>> {
    let name = crate::toolchain::BROADCAST_STAMP_OBJECT;
    match crate::toolchain::kernel_object(&crate::workspace::root(), name, &["--lib", "--release"], None) {
        Ok(object) => Some(object),
        Err(err) => {
            println!("bench: no kernel program for the reference's stamps ({err:#})");
            None
        }
    }
}

/// The row of `reactor`: `plugs` plugs, each at a random delay under [`PLUG_SPACING`], timed
/// from the kernel's stamps when `kernel_object` is given (else the listener's receive).
pub fn row(
    bin: &Path,
    reactor: Reactor,
    plugs: u32,
    seed: u64,
    kernel_object: Option<&[u8]>,
) -> anyhow::Result<FailoverRow> {
    let stage = Stage::new("failover")?;
    stage.netvsc("eth1", NETVSC_IFINDEX, MAC)?;
    let mut running = Running::start(&stage, bin, reactor)?;
    // Above the real-time rows' writers, so that it reads its clock first where they compete.
    let listener = Listener::start(stage.netns.name(), REALTIME_PRIORITY + 1, kernel_object.map(<[u8]>::to_vec))?;
    let mut phase = Phase::new(seed);
    let mut batch = stage.netns.batch()?;
    let (mut samples_us, mut from_receive_us, mut own_us, mut plugged_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for plug in 0..plugs {
        std::thread::sleep(phase.next_delay_under(PLUG_SPACING));
        let (name, ifindex) = (format!("vf{plug}"), 100 + plug);
        stage.sys.add_vf(&name, ifindex, MAC, PCI)?;
        batch.send(&format!("link add {name} index {ifindex} address {MAC} type veth peer name q{plug}"))?;
        let (written_ns, own) = running.written(&name, ifindex)?;
        let heard = listener.heard(ifindex, true, WAIT)?;
        samples_us.push((written_ns as f64 - heard.at_ns as f64) / 1e3);
        from_receive_us.push((written_ns as f64 - heard.received_ns as f64) / 1e3);
        own_us.push(own);
        plugged_at.push(heard.at_ns);
        batch.send(&format!("link del {name}"))?;
        stage.sys.remove(&name)?;
        listener.heard(ifindex, false, WAIT)?;
        running.emptied()?;
        if (plug + 1) % 100 == 0 {
            println!("bench[host/{}]: {} of {plugs} plugs", reactor.label(), plug + 1);
        }
    }
    batch.finish()?;
    let latencies = Latencies { source: reactor.label(), samples_us };
    Ok(FailoverRow {
        latencies,
        from_receive_us,
        own_us,
        phase: phase_spread(&plugged_at),
        floor: reactor.writer == Writer::Floor,
        realtime: reactor.realtime,
        kernel_reference: listener.reference() == Reference::KernelBroadcast,
    })
}

enum Running {
    Agent(Agent),
    Floor { child: Child, stdout: std::io::BufReader<std::process::ChildStdout> },
}

impl Running {
    fn start(stage: &Stage, bin: &Path, reactor: Reactor) -> anyhow::Result<Self> {
        let scheduling = reactor.scheduling_args();
        let options: Vec<&str> =
            ["--source", "netlink"].into_iter().chain(scheduling.iter().map(String::as_str)).collect();
        let mut agent = match reactor.writer {
            // failsafe-sim reads every 20 ms, as fail-safe would with a short hotplug_poll.
            Writer::Exec => Agent::start(stage, bin, &options, 20)?,
            Writer::Watch => {
                let fifo_dir = stage.dir.path().join("fifo");
                std::fs::create_dir(&fifo_dir)?;
                Agent::watch(stage, bin, &options, &fifo_dir)?
            }
            Writer::Floor => return Self::floor(stage, &scheduling),
        };
        agent.ready()?;
        Ok(Running::Agent(agent))
    }

    fn floor(stage: &Stage, scheduling: &[String]) -> anyhow::Result<Self> {
        let xtask = std::env::current_exe().context("locating xtask")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", stage.netns.name()])
            .arg(xtask)
            .args(["minimal-reactor", "--mac", MAC, "--ignore-ifindex", &NETVSC_IFINDEX.to_string(), "--line", PCI])
            .args(scheduling)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the minimal reactor")?;
        let mut stdout = std::io::BufReader::new(child.stdout.take().context("minimal reactor stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the minimal reactor did not start: {line:?}");
        }
        Ok(Running::Floor { child, stdout })
    }

    /// When the address for VF `name` (`ifindex`) was written, by the writer's clock, and how
    /// long after the writer received the message (µs).
    fn written(&mut self, name: &str, ifindex: u32) -> anyhow::Result<(u64, f64)> {
        match self {
            Running::Agent(agent) => {
                let change = agent.change("the address in the pipe", "associated", |c| {
                    c.vf.as_ref().is_some_and(|vf| vf.iface == name)
                })?;
                Ok((change.at_ns, change.reaction_us))
            }
            Running::Floor { stdout, .. } => {
                let mut line = String::new();
                stdout.read_line(&mut line)?;
                let fields: Vec<u64> = line.split_whitespace().map_while(|field| field.parse().ok()).collect();
                match fields[..] {
                    [index, received_ns, written_ns] if index == u64::from(ifindex) => {
                        Ok((written_ns, written_ns.saturating_sub(received_ns) as f64 / 1e3))
                    }
                    _ => bail!("the minimal reactor wrote {line:?}, expected a line for ifindex {ifindex}"),
                }
            }
        }
    }

    /// Waits until the unplug emptied the pipe (the floor has nothing to empty).
    fn emptied(&mut self) -> anyhow::Result<()> {
        if let Running::Agent(agent) = self {
            agent.change("the pipe emptied", "dissociated", |_| true)?;
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Running::Floor { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How evenly the plug times fall across a 1 s period (the agent's refill tick): the share of
/// plugs in the fullest and emptiest of ten slices. Even is 10 % each.
pub fn phase_spread(plugged_at_ns: &[u64]) -> (f64, f64) {
    let mut slices = [0u32; 10];
    for at in plugged_at_ns {
        slices[((at % 1_000_000_000) / 100_000_000) as usize] += 1;
    }
    let share = |n: u32| f64::from(n) * 100.0 / plugged_at_ns.len().max(1) as f64;
    (share(*slices.iter().max().unwrap_or(&0)), share(*slices.iter().min().unwrap_or(&0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_spread_finds_crowded_and_empty_slices() {
        let even: Vec<u64> = (0..1000).map(|i| i * 1_000_000 + 7).collect();
        assert_eq!(phase_spread(&even), (10.0, 10.0));
        // Every plug just after a tick of the same period: one slice has them all.
        let locked: Vec<u64> = (0..100).map(|i| i * 1_000_000_000 + 5_000_000).collect();
        assert_eq!(phase_spread(&locked), (100.0, 0.0));
    }
}
