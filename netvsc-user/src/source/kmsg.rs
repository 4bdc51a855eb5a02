//! `monitor`'s reader of the kernel's log: hv_netvsc's moments from `/dev/kmsg` (or a stand-in
//! in its format, `--kmsg PATH`), read with blocking reads on a thread of their own and handed
//! to the agent's loop with their kmsg times. Reading needs root or CAP_SYSLOG; where it is
//! refused the agent says so once and goes on without these moments.

use std::fs::File;
use std::io::{Seek as _, SeekFrom};
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::system::kmsg::{Entry, Moment, Records};

/// A moment of the kernel's log and its kmsg time (`local_clock()`, µs: see `system::kmsg`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub at_us: u64,
    pub moment: Moment,
}

/// Moments queued for the loop before reading waits; the log is read again once they are taken.
const QUEUE: usize = 256;

/// Opens `path` and starts reading it; when it cannot be opened, warns once naming the path and
/// why, and returns the why. The real log is read from its end: records from before the start
/// were someone else's to see. A FIFO stand-in is opened read-write, so that its writers may
/// come and go; a regular file is read to its end.
pub fn start(path: &Path) -> Result<mpsc::Receiver<Logged>, String> {
    let file = open(path).map_err(|err| {
        let why =
            if err.kind() == std::io::ErrorKind::PermissionDenied { " (needs root or CAP_SYSLOG)" } else { "" };
        warn!(path = %path.display(), error = %err, "cannot read the kernel's log{why}: going on without hv_netvsc's data-path moments");
        format!("{err}{why}")
    })?;
    info!(path = %path.display(), "reading the kernel's log for hv_netvsc's moments");
    let (sender, receiver) = mpsc::channel(QUEUE);
    let path = path.to_owned();
    std::thread::Builder::new().name("kmsg".into()).spawn(move || read(file, &path, &sender)).map_err(|err| {
        warn!(error = %err, "cannot start the kernel log's reader");
        format!("cannot start the reader: {err}")
    })?;
    Ok(receiver)
}

fn open(path: &Path) -> std::io::Result<File> {
    let kind = std::fs::metadata(path)?.file_type();
    let mut file =
        std::fs::OpenOptions::new().read(true).write(kind.is_fifo()).custom_flags(libc::O_CLOEXEC).open(path)?;
    if kind.is_char_device() {
        file.seek(SeekFrom::End(0))?;
    }
    Ok(file)
}

/// Reads until the input ends, a read fails or the agent is gone.
fn read(file: File, path: &Path, sender: &mpsc::Sender<Logged>) {
    for entry in Records::new(file) {
        let record = match entry {
            Ok(Entry::Record(record)) => record,
            Ok(Entry::Malformed(err)) => {
                debug!(path = %path.display(), error = %err, "not a kmsg record");
                continue;
            }
            Ok(Entry::Overwritten) => {
                warn!(path = %path.display(), "kernel log records were overwritten before they were read");
                continue;
            }
            Err(err) => {
                warn!(path = %path.display(), error = %err, "reading the kernel's log failed: going on without it");
                return;
            }
        };
        let Some(moment) = Moment::parse(&record.message) else { continue };
        if sender.blocking_send(Logged { at_us: record.timestamp_us, moment }).is_err() {
            return;
        }
    }
    debug!(path = %path.display(), "the kernel log's stand-in ended");
}
