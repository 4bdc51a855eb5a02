//! Every signal whose default action would end the process, caught so that the agent always
//! leaves its files and pipes in order (and, as a launcher, passes the signal on).
//! SIGUSR1 is the statistics request; SIGKILL cannot be caught (a restart cleans up after it).

use anyhow::Context as _;
use futures::future::{select_all, FutureExt as _};
use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

/// Signals that terminate a process by default and can be caught.
pub(crate) const TERMINATING: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGIO,
    Signal::SIGPWR,
    Signal::SIGSTKFLT,
];

/// Handlers for [`TERMINATING`], installed before anything is created.
pub struct Terminations {
    handlers: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Terminations {
    /// Must be called inside a tokio runtime.
    pub fn install() -> anyhow::Result<Self> {
        let handlers = TERMINATING
            .iter()
            .map(|&sig| {
                let handler = signal(SignalKind::from_raw(sig as i32))
                    .with_context(|| format!("installing the {} handler", sig.as_str()))?;
                Ok((sig, handler))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { handlers })
    }

    /// The next terminating signal received. Cancel-safe.
    pub async fn recv(&mut self) -> Signal {
        let waits = self.handlers.iter_mut().map(|(sig, handler)| {
            let sig = *sig;
            async move {
                handler.recv().await;
                sig
            }
            .boxed()
        });
        select_all(waits).await.0
    }

    /// [`Terminations::recv`] owning the handlers, for a task of its own.
    pub async fn into_recv(mut self) -> Signal {
        self.recv().await
    }
}
