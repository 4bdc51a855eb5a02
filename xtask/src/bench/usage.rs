//! CPU time and wakeups of a process, from /proc: what "idle cost" and "churn" are counted in.

use anyhow::Context as _;
use procfs::process::Process;

/// A reading of a process's counters, summed over its threads.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_ms: f64,
    /// Voluntary plus involuntary context switches: each voluntary one is a sleep that ended.
    pub switches: u64,
}

impl Usage {
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let process = Process::new(pid as i32).with_context(|| format!("reading /proc/{pid}"))?;
        let stat = process.stat().with_context(|| format!("reading /proc/{pid}/stat"))?;
        let ticks = procfs::ticks_per_second() as f64;
        let mut switches = 0;
        for task in process.tasks().with_context(|| format!("listing /proc/{pid}/task"))?.flatten() {
            if let Ok(status) = task.status() {
                switches +=
                    status.voluntary_ctxt_switches.unwrap_or(0) + status.nonvoluntary_ctxt_switches.unwrap_or(0);
            }
        }
        Ok(Usage { cpu_ms: (stat.utime + stat.stime) as f64 * 1e3 / ticks, switches })
    }

    /// What happened between `earlier` and this reading.
    pub fn since(self, earlier: Usage) -> Usage {
        Usage { cpu_ms: self.cpu_ms - earlier.cpu_ms, switches: self.switches.saturating_sub(earlier.switches) }
    }
}
