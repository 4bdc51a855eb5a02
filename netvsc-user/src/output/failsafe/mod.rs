//! Outputs towards DPDK fail-safe: one control channel per managed interface, as anonymous
//! pipes handed to a launched application or as FIFO + state file in a sidecar directory.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;

use anyhow::Context as _;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;

pub mod channel;
#[cfg(feature = "test-tools")]
pub mod reader;
pub mod sidecar;

pub(crate) use channel::Channel;
use sidecar::{SidecarDir, SidecarFiles};

use crate::decide::pairing::Action;

/// Where the control channels live.
#[derive(Clone, Debug)]
pub enum OutputMode {
    /// Anonymous pipes whose read ends a launched DPDK application inherits.
    Pipes,
    /// FIFOs and state files in a directory shared with the DPDK container.
    Sidecar { dir: PathBuf, file_mode: u32 },
    /// No outputs (one-shot reports).
    None,
}

struct Output {
    channel: Channel,
    files: Option<SidecarFiles>,
}

pub struct Outputs {
    mode: OutputMode,
    /// The locked sidecar directory (`Sidecar` mode).
    dir: Option<SidecarDir>,
    by_context: BTreeMap<u32, Output>,
}

impl Outputs {
    /// For `Sidecar`, locks the directory and empties what an earlier run left there; a directory
    /// another agent serves, or a lock file that is not ours, is a usage error.
    pub fn new(mode: OutputMode) -> anyhow::Result<Self> {
        let dir = match &mode {
            OutputMode::Sidecar { dir, file_mode } => Some(SidecarDir::open(dir, *file_mode)?),
            _ => None,
        };
        Ok(Self { mode, dir, by_context: BTreeMap::new() })
    }

    /// Carries out one pairing action completely (start-up). Errors name the interface and file.
    pub fn apply(&mut self, action: &Action) -> anyhow::Result<()> {
        self.apply_channel(action)?;
        self.apply_files(action)
    }

    /// The part of `action` fail-safe waits for: the pipe/FIFO line (and, for a new context,
    /// its outputs). On the hot path this runs for every action of an event before anything else.
    pub fn apply_channel(&mut self, action: &Action) -> anyhow::Result<()> {
        match action {
            Action::Manage { id, netvsc, mac } => self.create(*id, netvsc, *mac),
            Action::Associate { id, netvsc, vf } => self.publish(*id, netvsc, Some(&vf.devargs)),
            Action::Dissociate { id, netvsc, .. } => self.publish(*id, netvsc, None),
            Action::Renamed { .. } | Action::Ambiguous { .. } | Action::Attached { .. } => Ok(()),
        }
    }

    /// The rest of `action`: the sidecar state file (a temporary file and a rename, hundreds of
    /// microseconds), after every pipe of the event is written.
    pub fn apply_files(&mut self, action: &Action) -> anyhow::Result<()> {
        let (id, netvsc, address) = match action {
            Action::Associate { id, netvsc, vf } => (*id, netvsc, Some(vf.devargs.as_str())),
            Action::Dissociate { id, netvsc, .. } => (*id, netvsc, None),
            _ => return Ok(()),
        };
        let Some(files) = self.by_context.get(&id).and_then(|output| output.files.as_ref()) else { return Ok(()) };
        files.write_state(address).with_context(|| format!("updating the state file of {netvsc}"))
    }

    /// Restores lines consumed while the VF is still present; returns how many were restored.
    pub fn refill(&mut self) -> usize {
        let mut restored = 0;
        for (id, output) in &mut self.by_context {
            match output.channel.refill() {
                Ok(true) => restored += 1,
                Ok(false) => {}
                Err(err) => tracing::warn!(context = id, %err, "could not restore the address in the pipe"),
            }
        }
        restored
    }

    /// For `Pipes`: the read end a launched application inherits for context `id`; its number
    /// goes into `fd(N)`.
    pub fn child_fd(&self, id: u32) -> Option<RawFd> {
        match self.mode {
            OutputMode::Pipes => self.by_context.get(&id)?.channel.read_end(),
            _ => None,
        }
    }

    pub fn channel(&self, id: u32) -> Option<&Channel> {
        self.by_context.get(&id).map(|o| &o.channel)
    }

    /// Sidecar mode: the FIFO and state file of context `id`.
    pub fn paths(&self, id: u32) -> Option<(&std::path::Path, &std::path::Path)> {
        let files = self.by_context.get(&id)?.files.as_ref()?;
        Some((&files.fifo, &files.state))
    }

    /// At exit: pipes closed; sidecar FIFOs emptied and kept for the next run, state files removed.
    pub fn close(mut self) {
        let files = self.take_files();
        if let Some(dir) = self.dir.take() {
            dir.close(files);
        }
    }

    /// After a failed start-up: also the FIFOs this run made are removed.
    pub fn rollback(mut self) {
        let files = self.take_files();
        if let Some(dir) = self.dir.take() {
            dir.rollback(files);
        }
    }

    fn take_files(&mut self) -> Vec<(SidecarFiles, Channel)> {
        std::mem::take(&mut self.by_context)
            .into_values()
            .filter_map(|output| Some((output.files?, output.channel)))
            .collect()
    }

    fn create(&mut self, id: u32, netvsc: &str, mac: macaddr::MacAddr6) -> anyhow::Result<()> {
        let output = match &self.mode {
            OutputMode::None => return Ok(()),
            OutputMode::Pipes => {
                let (rx, tx) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
                    .with_context(|| format!("creating the control pipe for {netvsc}"))?;
                Output { channel: Channel::new(tx, Some(rx)), files: None }
            }
            OutputMode::Sidecar { .. } => {
                let dir = self.dir.as_mut().expect("sidecar mode has its directory");
                let (files, channel) =
                    dir.claim(id, netvsc, mac).with_context(|| format!("setting up sidecar files for {netvsc}"))?;
                Output { channel, files: Some(files) }
            }
        };
        self.by_context.insert(id, output);
        Ok(())
    }

    fn publish(&mut self, id: u32, netvsc: &str, address: Option<&str>) -> anyhow::Result<()> {
        let Some(output) = self.by_context.get_mut(&id) else { return Ok(()) };
        output.channel.publish(address).with_context(|| format!("writing the control pipe of {netvsc}"))
    }
}
