//! Descriptors whose close(2) waits until the pipes are written.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, PoisonError};

/// The most descriptors left open for [`super::Sysfs::close_retired`]: a scan reads hundreds of
/// netdevices, and past this many they are closed as they come.
pub(crate) const RETIRED_MAX: usize = 32;

/// Descriptors whose close(2) waits until the caller has written its pipes: closing is
/// bookkeeping, and with the caches cold while the agent idled each close costs microseconds
/// between the kernel's message and the address reaching fail-safe.
#[derive(Debug)]
pub(crate) struct Retired(Mutex<Vec<OwnedFd>>);

impl Retired {
    pub fn new() -> Self {
        Self(Mutex::new(Vec::with_capacity(RETIRED_MAX)))
    }

    /// Keeps `fd` open until [`Retired::close`]; closes all kept so far first when there are
    /// [`RETIRED_MAX`] of them.
    pub(crate) fn retire(&self, fd: OwnedFd) {
        let mut fds = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if fds.len() >= RETIRED_MAX {
            fds.clear();
        }
        fds.push(fd);
    }

    /// Closes every descriptor kept.
    pub fn close(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    pub fn count(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn descriptors_are_kept_until_closed_and_never_more_than_the_bound() {
        let retired = Retired::new();
        retired.retire(descriptor());
        retired.retire(descriptor());
        assert_eq!(retired.count(), 2);
        retired.close();
        assert_eq!(retired.count(), 0);
        for _ in 0..RETIRED_MAX {
            retired.retire(descriptor());
        }
        assert_eq!(retired.count(), RETIRED_MAX);
        retired.retire(descriptor());
        assert_eq!(retired.count(), 1, "the bound reached: the kept ones closed, the new one kept");
    }
}
