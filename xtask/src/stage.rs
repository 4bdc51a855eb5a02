//! The agent running in the test kit's [`Stage`] (a private network namespace with a fake sysfs
//! tree beside it): the stand-in for a VM that `cargo xtask demo` and `cargo xtask bench` play
//! VF hot-plug on.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use netvsc_testkit::follow::Order;
pub use netvsc_testkit::netns::Stage;
use netvsc_testkit::{JsonLines, Output};
use netvsc_user::report::lines::{Change, Held, Line, Ready, Stats};
use serde_json::Value;

/// How long a wait for one line lasts.
const WAIT: Duration = Duration::from_secs(10);

/// The agent in launcher mode (failsafe-sim as the DPDK application) or sidecar mode; the JSON
/// lines of both.
pub struct Agent {
    child: Child,
    lines: JsonLines,
}

impl Agent {
    /// `netvsc-watch exec --json OPTIONS` in the stage's namespace and sysfs tree, with
    /// failsafe-sim reading every `hotplug_poll` ms as the application.
    pub fn start(stage: &Stage, bin: &std::path::Path, options: &[&str], hotplug_poll: u64) -> anyhow::Result<Self> {
        let mut command = Self::command(stage, bin, "exec", options);
        command.arg("--").arg(bin.join("failsafe-sim")).args(["--poll-ms", &hotplug_poll.to_string()]);
        Self::spawn(command)
    }

    /// `netvsc-watch watch --json --fifo-dir DIR OPTIONS`: the sidecar mode.
    pub fn watch(
        stage: &Stage,
        bin: &std::path::Path,
        options: &[&str],
        fifo_dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let mut command = Self::command(stage, bin, "watch", options);
        command.arg("--fifo-dir").arg(fifo_dir);
        Self::spawn(command)
    }

    fn command(stage: &Stage, bin: &std::path::Path, mode: &str, options: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", stage.netns.name()])
            .arg(bin.join("netvsc-watch"))
            .args([mode, "--json"])
            .args(options)
            .arg("--sysfs-root")
            .arg(stage.sysfs_root())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped());
        command
    }

    fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command.spawn().context("starting netvsc-watch")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        Ok(Self { child, lines: JsonLines::follow(stdout, Order::Strict) })
    }

    /// The agent's process (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Events the agent's source has delivered so far (its SIGUSR1 statistics).
    pub fn events(&mut self) -> anyhow::Result<u64> {
        Ok(self.stats()?.0.events)
    }

    /// The agent's loop counters and holdings (its SIGUSR1 statistics line).
    pub fn stats(&mut self) -> anyhow::Result<(Stats, Held)> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1).context("signalling the agent")?;
        // After heavy churn the agent may still be working through the events it was sent.
        Ok(self.lines.wait_for("the agent's statistics", Duration::from_secs(60), |o| match o.line()? {
            Line::Stats { stats, held, .. } => Some((*stats, *held)),
            _ => None,
        })?)
    }

    /// Ends the agent with `signal` and waits for it to exit.
    pub fn end(mut self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).with_context(|| format!("sending {signal} to the agent"))?;
        self.child.wait().context("waiting for the agent to exit")?;
        Ok(())
    }

    /// Forgets the lines kept so far (a long run would keep every one).
    pub fn forget_seen(&mut self) {
        self.lines.seen.clear();
    }

    /// The agent's `ready` line.
    pub fn ready(&mut self) -> anyhow::Result<Ready> {
        Ok(self.lines.wait_ready(WAIT)?)
    }

    /// The agent's next `event` change line that `pred` accepts.
    pub fn change(&mut self, what: &str, event: &str, pred: impl Fn(&Change) -> bool) -> anyhow::Result<Change> {
        self.lines.wait_change(event, WAIT, pred).with_context(|| format!("waiting for {what}"))
    }

    /// The last `event` change line already received that `pred` accepts (one printed before
    /// `ready`, say: the VFs present at start-up are written first).
    pub fn seen_change(&self, event: &str, pred: impl Fn(&Change) -> bool) -> Option<Change> {
        self.lines
            .seen_lines()
            .filter(|l| l.event() == event)
            .filter_map(Line::change)
            .filter(|c| pred(c))
            .last()
            .cloned()
    }

    /// failsafe-sim's next line that `pred` accepts.
    pub fn app_line(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        Ok(self.lines.wait_other(what, WAIT, pred)?)
    }

    /// failsafe-sim's lines arriving within `period`.
    pub fn collect_for(&mut self, period: Duration) -> Vec<Value> {
        self.lines.collect_for(period).iter().filter_map(Output::other).cloned().collect()
    }
}

impl Drop for Agent {
    /// SIGTERM, which the agent forwards to the reader, so neither is left behind.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
