//! Reads a control pipe exactly as DPDK fail-safe's `fd(N)` does: dup the descriptor, make it
//! non-blocking, read every available line, keep the last. Used by tests and the demo.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::{dup, read};

/// The last complete line available without blocking (without `\n`), or `None` ("not yet").
pub fn read_like_failsafe(fd: impl AsFd) -> io::Result<Option<String>> {
    let own: OwnedFd = dup(fd.as_fd())?;
    let flags = OFlag::from_bits_truncate(fcntl(&own, FcntlArg::F_GETFL)?);
    fcntl(&own, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match read(&own, &mut buf) {
            Ok(0) | Err(Errno::EAGAIN) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    let text = String::from_utf8_lossy(&data);
    Ok(text.lines().rfind(|line| !line.is_empty()).map(str::to_owned))
}
