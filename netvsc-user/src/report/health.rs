//! Telling a service manager how the agent is doing: systemd's notify protocol (`Type=notify`,
//! through the sd-notify crate) and the state `/healthz` answers with. READY goes out with the
//! `ready` line, so a unit ordered `Before=` the DPDK service holds that service back until the
//! FIFOs exist and hold what the start-up scan found; STOPPING when the agent starts to wind down.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tracing::warn;

/// Where the agent is in its life, shared with the metrics server's `/healthz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Scanning, creating the outputs: what consumers need does not exist yet.
    Starting = 0,
    /// The `ready` line went out: outputs exist and events are watched.
    Ready = 1,
    /// Winding down: the pipes are being emptied.
    Stopping = 2,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ready => "ready",
            Phase::Stopping => "stopping",
        }
    }
}

/// The agent's [`Phase`], readable from another task.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<AtomicU8>);

impl Health {
    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Stopping,
        }
    }

    /// Records the phase and tells systemd when it runs the agent as a notify service
    /// (`NOTIFY_SOCKET` set; otherwise only the phase changes). `status` is systemd's one-line
    /// STATUS= text.
    pub fn enter(&self, phase: Phase, status: &str) {
        self.0.store(phase as u8, Ordering::Relaxed);
        let state = match phase {
            Phase::Starting => return,
            Phase::Ready => sd_notify::NotifyState::Ready,
            Phase::Stopping => sd_notify::NotifyState::Stopping,
        };
        // A manager that cannot be told will time the start out and say so; the agent goes on.
        if let Err(err) = sd_notify::notify(&[state, sd_notify::NotifyState::Status(status)]) {
            warn!(error = %err, socket = ?std::env::var_os("NOTIFY_SOCKET"), "could not notify the service manager");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_shared_between_clones() {
        let health = Health::default();
        let seen_by_server = health.clone();
        assert_eq!(seen_by_server.phase(), Phase::Starting);
        health.enter(Phase::Ready, "watching");
        assert_eq!(seen_by_server.phase(), Phase::Ready);
        health.enter(Phase::Stopping, "stopping");
        assert_eq!(seen_by_server.phase(), Phase::Stopping);
        assert_eq!(
            [Phase::Starting, Phase::Ready, Phase::Stopping].map(Phase::as_str),
            ["starting", "ready", "stopping"]
        );
    }
}
