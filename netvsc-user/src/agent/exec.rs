//! Launcher mode: run the DPDK application with our fail-safe vdevs and the pipes' read ends.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::ExitStatus;

use anyhow::Context as _;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::agent::signals::Terminations;

/// The application could not be started: exit 127 when it was not found, 126 when it was found
/// but could not be run, as shells do.
#[derive(Debug, thiserror::Error)]
#[error("cannot run {program}: {source}")]
pub struct CannotRun {
    pub program: String,
    pub source: std::io::Error,
}

impl CannotRun {
    fn new(program: &OsString, source: std::io::Error) -> Self {
        Self { program: program.to_string_lossy().into_owned(), source }
    }

    pub fn exit_code(&self) -> u8 {
        if self.source.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        }
    }
}

/// `app --vdev V1 --vdev V2 args...`: the vdevs go right after the program name, where EAL
/// options are read.
pub fn dpdk_argv(command: &[OsString], vdevs: &[String]) -> Vec<OsString> {
    let mut argv = Vec::with_capacity(command.len() + 2 * vdevs.len());
    argv.extend(command.first().cloned());
    for vdev in vdevs {
        argv.push("--vdev".into());
        argv.push(vdev.into());
    }
    argv.extend(command.iter().skip(1).cloned());
    argv
}

/// Starts `argv` with `inherit` left open across exec (everything else of ours is close-on-exec).
pub fn spawn(argv: &[OsString], inherit: Vec<RawFd>) -> anyhow::Result<Child> {
    let program = argv.first().context("no application to run")?;
    let mut command = Command::new(program);
    command.args(&argv[1..]);
    // SAFETY: the closure only calls fcntl(2), which is async-signal-safe, on descriptors that
    // stay open in the parent for the child's whole life.
    unsafe {
        command.pre_exec(move || {
            for fd in &inherit {
                let flags = libc::fcntl(*fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(*fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn().map_err(|err| CannotRun::new(program, err).into())
}

/// Replaces this process with `command` unchanged (`--ignore`: nothing for us to do).
pub fn exec_unchanged(command: &[OsString]) -> anyhow::Error {
    let Some(program) = command.first() else { return anyhow::anyhow!("no application to run") };
    let err = std::process::Command::new(program).args(&command[1..]).exec();
    CannotRun::new(program, err).into()
}

/// Signal handlers that forward every terminating signal to the child; set up before spawning.
pub struct Forwarder {
    signals: Terminations,
}

impl Forwarder {
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self { signals: Terminations::install()? })
    }

    /// Waits for the child, forwarding signals to it meanwhile.
    pub async fn wait(mut self, mut child: Child) -> anyhow::Result<ExitStatus> {
        let pid = child.id().map(|id| Pid::from_raw(id as i32));
        loop {
            let forward: Signal = tokio::select! {
                status = child.wait() => return status.context("waiting for the application"),
                sig = self.signals.recv() => sig,
            };
            if let Some(pid) = pid {
                tracing::info!(signal = %forward, "forwarding signal to the application");
                let _ = kill(pid, forward);
            }
        }
    }
}

/// The shell convention: the child's code, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}
