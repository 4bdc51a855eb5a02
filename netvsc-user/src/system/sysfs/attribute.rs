//! One sysfs attribute read the way sysfs serves it.

use std::fs::File;
use std::io;
use std::path::Path;

/// Longest attribute read. sysfs attributes are at most a page; anything longer is not one.
const MAX_ATTRIBUTE_BYTES: usize = 4096;

/// Reads one attribute file the way sysfs serves them: a regular file of at most a page. A FIFO,
/// a device node or an endless file in a hostile tree is refused without blocking or growing.
pub(crate) fn read_attribute(path: &Path) -> io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    read_open_attribute(&std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?)
}

/// [`read_attribute`] of a file opened (non-blocking) already.
pub(crate) fn read_open_attribute(mut file: &File) -> io::Result<String> {
    use std::io::Read as _;
    // One read: sysfs hands an attribute over whole, and a regular file reads short only at its
    // end (a second read to see the end would be one more system call on the hot path).
    let mut buf = [0u8; MAX_ATTRIBUTE_BYTES + 1];
    let read = loop {
        match file.read(&mut buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    // A FIFO or a device node reads as nothing, would block, or never ends; only then is the
    // file's type asked, so that an attribute costs no system call beyond open, read and close.
    let odd = match &read {
        Ok(length) => *length == 0 || *length > MAX_ATTRIBUTE_BYTES,
        Err(err) => err.kind() == io::ErrorKind::WouldBlock,
    };
    if odd && !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
    }
    let length = read?;
    if length > MAX_ATTRIBUTE_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("longer than {MAX_ATTRIBUTE_BYTES} bytes")));
    }
    String::from_utf8(buf[..length].to_vec()).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// An attribute is read with open, read and close; the file's type is asked only when the
    /// read looks wrong, and then a FIFO or a device is refused as such, never waited on.
    #[test]
    fn attributes_are_read_whole_and_odd_files_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("ifindex"), "101\n").unwrap();
        assert_eq!(read_attribute(&path("ifindex")).unwrap(), "101\n");
        std::fs::write(path("empty"), "").unwrap();
        assert_eq!(read_attribute(&path("empty")).unwrap(), "", "an empty regular file is just empty");
        std::fs::write(path("long"), "a".repeat(MAX_ATTRIBUTE_BYTES + 1)).unwrap();
        let err = read_attribute(&path("long")).unwrap_err();
        assert!(err.to_string().contains("longer than 4096 bytes"), "{err}");
        std::fs::write(path("page"), "a".repeat(MAX_ATTRIBUTE_BYTES)).unwrap();
        assert_eq!(read_attribute(&path("page")).unwrap().len(), MAX_ATTRIBUTE_BYTES, "a whole page is fine");

        nix::unistd::mkfifo(&path("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // With a writer holding it open, a read of the empty FIFO would block.
        let _writer = std::fs::OpenOptions::new().read(true).write(true).open(path("fifo")).unwrap();
        for odd in [path("fifo"), PathBuf::from("/dev/zero"), PathBuf::from("/dev/null")] {
            let err = read_attribute(&odd).unwrap_err();
            assert_eq!(err.to_string(), "not a regular file", "{}", odd.display());
        }
    }
}
