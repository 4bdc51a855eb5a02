//! `--realtime-priority`: the agent's thread at SCHED_FIFO, so that other work on its CPU (a
//! housekeeping core shared with the DPDK application's control threads, say) cannot delay its
//! wake-up when a VF comes or goes. The agent's loop runs for tens of microseconds per event and
//! never spins, so it cannot starve the CPU.

/// The thread could not be made real-time: usually a missing privilege.
#[derive(Debug, thiserror::Error)]
#[error("--realtime-priority {priority}: cannot run at SCHED_FIFO{hint}")]
pub struct RealtimeError {
    priority: u8,
    source: std::io::Error,
    hint: &'static str,
}

/// Puts the calling thread (the agent's event loop: the runtime is single-threaded) at
/// SCHED_FIFO with `priority` (1–99). Threads and processes it starts afterwards, the
/// application `exec` runs among them, start with the normal policy (`SCHED_RESET_ON_FORK`).
pub fn run_at_fifo(priority: u8) -> Result<(), RealtimeError> {
    let param = sched_param(i32::from(priority));
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling thread.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param) };
    if result == 0 {
        return Ok(());
    }
    let source = std::io::Error::last_os_error();
    let hint = match source.raw_os_error() {
        Some(libc::EPERM) => " (needs CAP_SYS_NICE, or an RLIMIT_RTPRIO of at least this priority)",
        _ => "",
    };
    Err(RealtimeError { priority, source, hint })
}

/// A `sched_param` with `priority`, the other fields (musl has some for SCHED_SPORADIC) zero.
fn sched_param(priority: i32) -> libc::sched_param {
    // SAFETY: sched_param is plain integers (and timespecs of integers): all-zero is valid.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = priority;
    param
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's scheduling policy and priority, as `sched_getscheduler` and
    /// `sched_getparam` give them (`SCHED_RESET_ON_FORK` included in the policy when set).
    fn current() -> std::io::Result<(i32, i32)> {
        // SAFETY: pid 0 is the calling thread; `param` is written by the kernel before being read.
        unsafe {
            let policy = libc::sched_getscheduler(0);
            let mut param = sched_param(0);
            if policy < 0 || libc::sched_getparam(0, &mut param) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok((policy, param.sched_priority))
        }
    }

    /// In a thread of its own, so that no other test runs at SCHED_FIFO; as root the thread is
    /// real-time afterwards, and a thread it starts is not. Without the privilege the error says
    /// what is missing.
    #[test]
    fn the_thread_runs_at_fifo_and_what_it_starts_does_not() {
        std::thread::spawn(|| match run_at_fifo(7) {
            Ok(()) => {
                assert_eq!(current().unwrap(), (libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, 7));
                let child = std::thread::spawn(|| current().unwrap()).join().unwrap();
                assert_eq!(child, (libc::SCHED_OTHER, 0), "a thread started afterwards has the normal policy");
            }
            Err(err) => {
                eprintln!("skipping the real-time half: {err}");
                assert!(err.to_string().contains("--realtime-priority 7"), "{err}");
                assert!(err.to_string().contains("CAP_SYS_NICE"), "{err}");
            }
        })
        .join()
        .unwrap();
    }

    /// Capabilities are per thread: one that gives up CAP_SYS_NICE (with no RLIMIT_RTPRIO, the
    /// default) is refused, and the error names what is missing.
    #[test]
    fn a_refusal_names_the_missing_capability() {
        std::thread::spawn(|| {
            caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_NICE).unwrap();
            let err = run_at_fifo(7).expect_err("no CAP_SYS_NICE in this thread");
            let text = format!("{:#}", anyhow::Error::from(err));
            assert!(text.starts_with("--realtime-priority 7: cannot run at SCHED_FIFO (needs CAP_SYS_NICE"), "{text}");
            assert!(text.ends_with("Operation not permitted (os error 1)"), "{text}");
            assert_eq!(current().unwrap(), (libc::SCHED_OTHER, 0), "the thread's policy is unchanged");
        })
        .join()
        .unwrap();
    }
}
