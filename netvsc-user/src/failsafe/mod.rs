//! Outputs towards DPDK fail-safe: one control channel per managed interface, as anonymous
//! pipes handed to a launched application or as FIFO + state file in a sidecar directory.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::path::PathBuf;

use anyhow::Context as _;
use nix::fcntl::OFlag;
use nix::unistd::pipe2;

pub mod channel;
pub mod reader;
pub mod sidecar;

pub use channel::Channel;
use sidecar::SidecarFiles;

use crate::pairing::Action;

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
    by_context: BTreeMap<u32, Output>,
}

impl Outputs {
    pub fn new(mode: OutputMode) -> Self {
        Self { mode, by_context: BTreeMap::new() }
    }

    /// Carries out one pairing action. Errors name the interface and file.
    pub fn apply(&mut self, action: &Action) -> anyhow::Result<()> {
        match action {
            Action::Manage { id, netvsc } => self.create(*id, netvsc),
            Action::Associate { id, netvsc, vf } => self.publish(*id, netvsc, Some(&vf.pci)),
            Action::Dissociate { id, netvsc, .. } => self.publish(*id, netvsc, None),
            Action::Renamed { .. } | Action::Ambiguous { .. } | Action::Attached { .. } => Ok(()),
        }
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

    /// Closes every channel and removes the files this run created.
    pub fn close(self) {
        for output in self.by_context.into_values() {
            if let Some(files) = &output.files {
                files.remove();
            }
        }
    }

    fn create(&mut self, id: u32, netvsc: &str) -> anyhow::Result<()> {
        let output = match &self.mode {
            OutputMode::None => return Ok(()),
            OutputMode::Pipes => {
                let (rx, tx) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
                    .with_context(|| format!("creating the control pipe for {netvsc}"))?;
                Output { channel: Channel::new(tx, Some(rx)), files: None }
            }
            OutputMode::Sidecar { dir, file_mode } => {
                let (files, channel) = SidecarFiles::create(dir, netvsc, *file_mode)
                    .with_context(|| format!("setting up sidecar files for {netvsc}"))?;
                Output { channel, files: Some(files) }
            }
        };
        self.by_context.insert(id, output);
        Ok(())
    }

    fn publish(&mut self, id: u32, netvsc: &str, address: Option<&str>) -> anyhow::Result<()> {
        let Some(output) = self.by_context.get_mut(&id) else { return Ok(()) };
        output.channel.publish(address).with_context(|| format!("writing the control pipe of {netvsc}"))?;
        if let Some(files) = &output.files {
            files.write_state(address).with_context(|| format!("updating the state file of {netvsc}"))?;
        }
        Ok(())
    }
}
