//! What the process holds, read when statistics are asked for (SIGUSR1): descriptors and memory
//! from /proc, tasks from the runtime. A reading that fails is 0, said once in the log: the
//! statistics line must not fail for it.

use std::sync::Once;

use procfs::process::Process;
use procfs::ProcResult;
use tracing::warn;

use crate::report::lines::Held;

/// The process's holdings now; `waiting` is the loop's own count of queued work.
pub(crate) fn now(waiting: usize) -> Held {
    let me = read("/proc/self", Process::myself());
    let open_fds = me.as_ref().and_then(|p| read("/proc/self/fd", p.fd_count()));
    let rss_kib = me.as_ref().and_then(|p| read("/proc/self/status", p.status())).and_then(|s| s.vmrss);
    let tasks = tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
    Held {
        open_fds: open_fds.unwrap_or(0) as u64,
        rss_kib: rss_kib.unwrap_or(0),
        tasks: tasks as u64,
        waiting: waiting as u64,
    }
}

fn read<T>(what: &str, value: ProcResult<T>) -> Option<T> {
    static WARNED: Once = Once::new();
    value.inspect_err(|error| WARNED.call_once(|| warn!(%error, "cannot read {what}; statistics say 0"))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_what_this_process_holds() {
        let before = now(3);
        let files: Vec<std::fs::File> = (0..5).map(|_| tempfile::tempfile().unwrap()).collect();
        let task = tokio::spawn(std::future::pending::<()>());
        let after = now(0);
        assert_eq!(before.waiting, 3);
        assert_eq!(after.waiting, 0);
        // Other tests of this binary run on other threads and may open files meanwhile.
        assert!(after.open_fds >= before.open_fds + 5, "{before:?} then {after:?}");
        assert!(after.tasks >= 1 && after.rss_kib > 0, "{after:?}");
        task.abort();
        drop(files);
    }
}
