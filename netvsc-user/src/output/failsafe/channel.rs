//! One fail-safe control channel: a pipe or FIFO that fail-safe reads with `fd(N)`.
//!
//! fail-safe drains every available line and uses the last, only while its sub-device is absent.
//! So the invariants kept here are: at most one line in the pipe, and it is the current VF's
//! address; emptied as soon as the VF goes; writes never block; a consumed line is restored by
//! [`Channel::refill`] while the VF is still there.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::unistd::{read, write};

nix::ioctl_read_bad!(fionread, libc::FIONREAD, libc::c_int);

/// Longest line a PCI (or other bus) device name gives; pipes write up to PIPE_BUF atomically.
const MAX_LINE: usize = 256;

#[derive(Debug)]
pub struct Channel {
    /// Where lines are written (non-blocking).
    tx: OwnedFd,
    /// Our own read side, used only to empty the pipe; `None` when `tx` reads too (a FIFO
    /// opened read-write).
    rx: Option<OwnedFd>,
    line: Option<String>,
    /// Nothing is in the pipe but what the consumer left of our own lines: drained, and nothing
    /// written since. Only kept for a pipe of our own (`rx`), which no one else can write to; a
    /// FIFO is drained before every write.
    drained: bool,
}

impl Channel {
    /// `tx` must be non-blocking. `rx` reads the same pipe (non-blocking) if `tx` cannot.
    pub fn new(tx: OwnedFd, rx: Option<OwnedFd>) -> Self {
        Self { tx, rx, line: None, drained: false }
    }

    /// Replaces the pipe content with `address` + `\n`, or empties it for `None`.
    pub(crate) fn publish(&mut self, address: Option<&str>) -> io::Result<()> {
        if let Some(address) = address {
            if address.len() + 1 > MAX_LINE || address.contains('\n') {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad device name {address:?}")));
            }
        }
        // A plug that follows an unplug finds the pipe drained already: one system call fewer
        // between the kernel's message and the address in the pipe.
        if !self.drained {
            self.drain()?;
            self.drained = self.rx.is_some();
        }
        self.line = address.map(str::to_owned);
        if self.line.is_some() {
            self.write_line()?;
        }
        Ok(())
    }

    /// Restores the line if the consumer took it while the VF is still there. Returns whether it
    /// wrote. Costs one ioctl when nothing is to be done.
    pub fn refill(&mut self) -> io::Result<bool> {
        if self.line.is_none() || self.pending_bytes()? > 0 {
            return Ok(false);
        }
        self.write_line()?;
        Ok(true)
    }

    /// Bytes waiting in the pipe.
    pub fn pending_bytes(&self) -> io::Result<usize> {
        let mut count: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which outlives the call.
        unsafe { fionread(self.reader().as_raw_fd(), &mut count) }.map_err(io::Error::from)?;
        Ok(count.max(0) as usize)
    }

    /// The separate read end, for handing to a child process.
    pub fn read_end(&self) -> Option<std::os::fd::RawFd> {
        self.rx.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn reader(&self) -> BorrowedFd<'_> {
        self.rx.as_ref().unwrap_or(&self.tx).as_fd()
    }

    fn drain(&self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            match read(self.reader(), &mut buf) {
                Ok(0) | Err(Errno::EAGAIN) => return Ok(()),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(err) => return Err(err.into()),
            }
        }
    }

    fn write_line(&mut self) -> io::Result<()> {
        let line = format!("{}\n", self.line.as_deref().unwrap_or_default());
        self.drained = false;
        loop {
            // Under PIPE_BUF bytes a pipe write is all or nothing, so no partial line can appear.
            return match write(&self.tx, line.as_bytes()) {
                Ok(_) => Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "pipe full: another writer is filling it; line not written",
                )),
                Err(err) => Err(err.into()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use nix::fcntl::OFlag;
    use nix::unistd::pipe2;

    use super::*;

    fn channel() -> Channel {
        let (rx, tx) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        Channel::new(tx, Some(rx))
    }

    /// Everything in the pipe, as the consumer would read it.
    fn contents(channel: &Channel) -> String {
        let mut buf = [0u8; 4096];
        match read(channel.reader(), &mut buf) {
            Ok(length) => String::from_utf8_lossy(&buf[..length]).into_owned(),
            Err(Errno::EAGAIN) => String::new(),
            Err(err) => panic!("{err}"),
        }
    }

    /// Whatever came before, the pipe holds exactly the current line after a publish: the drain
    /// is skipped only when nothing of ours can be left in it.
    #[test]
    fn a_publish_leaves_only_the_current_line() {
        let mut channel = channel();
        channel.publish(Some("0002:00:02.0")).unwrap();
        channel.publish(Some("0003:00:02.0")).unwrap();
        assert_eq!(contents(&channel), "0003:00:02.0\n", "the old line drained");

        channel.publish(None).unwrap();
        channel.publish(None).unwrap();
        channel.publish(Some("0004:00:02.0")).unwrap();
        channel.publish(None).unwrap();
        assert_eq!(contents(&channel), "", "emptied");

        // Consumed, restored by the refill, then replaced: the restored line goes too.
        channel.publish(Some("0005:00:02.0")).unwrap();
        assert_eq!(contents(&channel), "0005:00:02.0\n");
        assert!(channel.refill().unwrap());
        channel.publish(Some("0006:00:02.0")).unwrap();
        assert_eq!(contents(&channel), "0006:00:02.0\n");
    }

    /// A FIFO can be written by others (DPDK opens it read-write): it is drained before every
    /// write, also right after it was emptied.
    #[test]
    fn a_fifo_is_drained_before_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eth1.pipe");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let open = || nix::fcntl::open(&path, OFlag::O_RDWR | OFlag::O_NONBLOCK, nix::sys::stat::Mode::empty());
        let mut channel = Channel::new(open().unwrap(), None);
        let other = open().unwrap();
        channel.publish(None).unwrap();
        write(&other, b"0009:00:02.0\n").unwrap();
        channel.publish(Some("0002:00:02.0")).unwrap();
        assert_eq!(contents(&channel), "0002:00:02.0\n");
    }

    #[test]
    fn a_line_up_to_the_limit_is_published_and_a_bad_one_leaves_the_pipe_as_it_was() {
        let mut channel = channel();
        channel.publish(Some("0002:00:02.0")).unwrap();
        assert_eq!(channel.pending_bytes().unwrap(), "0002:00:02.0\n".len());
        // The longest line that fits, newline included.
        let longest = "a".repeat(MAX_LINE - 1);
        channel.publish(Some(&longest)).unwrap();
        assert_eq!(channel.pending_bytes().unwrap(), MAX_LINE);
        for bad in ["a".repeat(MAX_LINE), "0002:00:02.0\n0003:00:02.0".to_owned()] {
            let err = channel.publish(Some(&bad)).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert_eq!(channel.pending_bytes().unwrap(), MAX_LINE, "refused before touching the pipe: {bad:?}");
        }
        channel.publish(None).unwrap();
        assert_eq!(channel.pending_bytes().unwrap(), 0);
    }
}
