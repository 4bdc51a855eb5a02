//! Sidecar files in a shared directory: `<if>.pipe`, a FIFO the DPDK container opens with
//! `exec N<>DIR/<if>.pipe` and passes as `fd(N)`; and `<if>.addr`, the address (or nothing)
//! replaced atomically, for `exec(cat DIR/<if>.addr)`. Symlinks are never followed.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::unistd::mkfifo;

use super::channel::Channel;

/// The FIFO and state file of one managed interface.
#[derive(Debug)]
pub struct SidecarFiles {
    pub fifo: PathBuf,
    pub state: PathBuf,
    mode: u32,
    /// Only what this run created is removed at exit; a FIFO left by an earlier run is reused
    /// (the DPDK side may hold it open) and left in place.
    created_fifo: bool,
}

impl SidecarFiles {
    /// Creates (or reuses) `dir/<iface>.pipe` and writes an empty `dir/<iface>.addr`.
    pub fn create(dir: &Path, iface: &str, mode: u32) -> anyhow::Result<(Self, Channel)> {
        let fifo = dir.join(format!("{iface}.pipe"));
        let state = dir.join(format!("{iface}.addr"));
        refuse_symlink(&state)?;
        let created_fifo = match fs::symlink_metadata(&fifo) {
            Ok(meta) if meta.file_type().is_symlink() => bail!("refusing to follow symlink {}", fifo.display()),
            Ok(meta) if meta.file_type().is_fifo() => false,
            Ok(_) => bail!("{} exists and is not a FIFO", fifo.display()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                mkfifo(&fifo, Mode::from_bits_truncate(mode))
                    .with_context(|| format!("creating FIFO {}", fifo.display()))?;
                true
            }
            Err(err) => return Err(err).with_context(|| format!("inspecting {}", fifo.display())),
        };
        // Read-write so that opening never blocks and the agent can empty it itself.
        let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = open(&fifo, flags, Mode::empty()).with_context(|| format!("opening FIFO {}", fifo.display()))?;
        let stat = fstat(&fd).with_context(|| format!("checking {}", fifo.display()))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO {
            bail!("{} is not a FIFO", fifo.display());
        }
        if created_fifo {
            // mkfifo applies the umask; the mode asked for is the mode meant.
            fchmod(&fd, Mode::from_bits_truncate(mode)).with_context(|| format!("chmod {}", fifo.display()))?;
        }
        let files = Self { fifo, state, mode, created_fifo };
        files.write_state(None)?;
        Ok((files, Channel::new(fd, None)))
    }

    /// Atomically replaces the state file: write a temporary file beside it, then rename.
    pub fn write_state(&self, address: Option<&str>) -> anyhow::Result<()> {
        let dir = self.state.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".netvsc-watch.")
            .tempfile_in(dir)
            .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
        if let Some(address) = address {
            writeln!(tmp, "{address}").with_context(|| format!("writing {}", tmp.path().display()))?;
        }
        tmp.as_file().set_permissions(fs::Permissions::from_mode(self.mode))?;
        // rename(2) replaces a symlink itself, never what it points to.
        tmp.persist(&self.state).with_context(|| format!("replacing {}", self.state.display()))?;
        Ok(())
    }

    /// Removes what this run created.
    pub fn remove(&self) {
        let mut paths = vec![&self.state];
        if self.created_fifo {
            paths.push(&self.fifo);
        }
        for path in paths {
            if let Err(err) = fs::remove_file(path) {
                tracing::warn!(path = %path.display(), %err, "could not remove file at exit");
            }
        }
    }
}

fn refuse_symlink(path: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => bail!("refusing to follow symlink {}", path.display()),
        _ => Ok(()),
    }
}
