//! Bad input from the user: what the CLI answers with exit code 2. A leaf module, so that the
//! selection rules, the pairing and the output writers can all say "this is the user's mistake"
//! without depending on the CLI.

use std::path::PathBuf;

/// Bad input from the user. Every variant names the offending value (clipped, so a huge
/// argument is not echoed back whole); the CLI exits with 2.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("invalid MAC address {} (expected six hex bytes such as 00:15:5d:01:02:03)", clip(.0))]
    BadMac(String),
    #[error("devargs: unknown key {} (expected iface, mac, force or ignore)", clip(.key))]
    UnknownKey { devargs: String, key: String },
    #[error("devargs: {}={} is not an integer", clip(.key), clip(.value))]
    BadInteger { devargs: String, key: String, value: String },
    #[error("devargs: {} is not key=value", clip(.item))]
    BadItem { devargs: String, item: String },
    #[error("interface {} not found", clip(.0))]
    NotFound(String),
    #[error("interface {} is not a NetVSC interface (add --force to manage it anyway)", clip(.0))]
    NotNetvsc(String),
    /// `--sysfs-root` is not a sysfs tree.
    #[error("--sysfs-root {}: {why}", .path.display())]
    SysfsRoot { path: PathBuf, why: String },
    /// `--fifo-dir`, or a file in it, cannot be used (not a directory, another agent's, a
    /// file that is not ours).
    #[error("--fifo-dir {}: {why}", .path.display())]
    FifoDir { path: PathBuf, why: String },
    /// `--metrics-listen` cannot be bound (in use, not an address of this host).
    #[error("--metrics-listen {}: {why}", clip(.addr))]
    MetricsListen { addr: String, why: String },
    /// `--measure` cannot be written.
    #[error("--measure {}: {why}", .path.display())]
    Measure { path: PathBuf, why: String },
}

/// A user's value for an error message: quoted, and cut after 64 characters.
pub(crate) fn clip(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}
