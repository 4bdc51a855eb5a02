//! Sidecar files in a shared directory: `<if>.pipe`, a FIFO the DPDK container opens once with
//! `exec N<>DIR/<if>.pipe` and passes as `fd(N)`; and `<if>.addr`, the address (or nothing)
//! replaced atomically, for `exec(cat DIR/<if>.addr)`.
//!
//! The FIFO outlives the agent: DPDK holds it open across agent restarts, so it is emptied at
//! exit and kept, and the next run reuses it after emptying it first. One agent owns a directory
//! at a time (`.netvsc-watch.lock`, which also lists the files netvsc-watch made there, so a
//! restarted agent knows a stale `.addr` from a stranger's file). Symlinks are never followed and
//! nothing netvsc-watch did not make is overwritten or deleted.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use macaddr::MacAddr6;
use nix::fcntl::{open, Flock, FlockArg, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::unistd::{mkfifo, Uid};
use tracing::{info, warn};

use super::channel::Channel;
use crate::usage::UsageError;

/// The lock and the list of files netvsc-watch made in the directory.
pub(crate) const LOCK_FILE: &str = ".netvsc-watch.lock";
const TEMP_PREFIX: &str = ".netvsc-watch-tmp.";

/// The FIFO and state file of one managed interface.
#[derive(Debug)]
pub(crate) struct SidecarFiles {
    pub fifo: PathBuf,
    pub state: PathBuf,
    mode: u32,
    /// Made by this run: removed again if start-up fails.
    created_fifo: bool,
}

impl SidecarFiles {
    /// Atomically replaces the state file: write a temporary file beside it, then rename.
    pub(crate) fn write_state(&self, address: Option<&str>) -> anyhow::Result<()> {
        let dir = self.state.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
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
}

/// The directory, locked for this agent.
pub(crate) struct SidecarDir {
    dir: PathBuf,
    mode: u32,
    lock: Flock<File>,
    /// Whether this run made the lock file (removed again if start-up fails).
    created_lock: bool,
    /// Names of the files netvsc-watch made here (this run or an earlier one) that still exist,
    /// with the MAC of the interface a FIFO serves, so a restart finds the same FIFO again.
    ours: BTreeMap<String, Option<MacAddr6>>,
    /// File stems bound to a context for the life of this run.
    bound: BTreeMap<String, u32>,
}

impl SidecarDir {
    /// Locks `dir` and puts what an earlier run left in a safe state: stale state files removed,
    /// kept FIFOs emptied. A second agent on the same directory is a usage error.
    pub fn open(dir: &Path, mode: u32) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let created_lock = !path.exists();
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|err| bad_path(&path, err))?;
        let meta = file.metadata().map_err(|err| bad_path(&path, err))?;
        if !meta.is_file() || meta.uid() != Uid::effective().as_raw() {
            return Err(bad(&path, "is not a regular file of this user"));
        }
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder.lines().find_map(|l| l.strip_prefix("pid ")).unwrap_or("?").to_owned();
                let why = format!("another netvsc-watch (pid {pid}) serves this directory");
                return Err(UsageError::FifoDir { path: dir.to_owned(), why }.into());
            }
        };
        // A damaged list is no reason to leave DPDK unserved: what it cannot say is ignored,
        // and files it does not list are never touched.
        let mut listed = Vec::new();
        lock.read_to_end(&mut listed).map_err(|err| bad_path(&path, err))?;
        let listed = String::from_utf8_lossy(&listed);
        let ours = listed_files(&listed);
        let odd = listed.lines().filter(|line| !is_header(line) && listed_file(line).is_none()).count();
        if odd > 0 {
            warn!(path = %path.display(), lines = odd, "ignoring lines of the lock file that name no file of ours");
        }
        let mut this = Self { dir: dir.to_owned(), mode, lock, created_lock, ours, bound: BTreeMap::new() };
        this.sanitize();
        this.save_list().map_err(|err| bad_path(&path, err))?;
        Ok(this)
    }

    /// Binds files to context `id` (interface `iface` with `mac`): those an earlier run kept for
    /// this MAC (the interface may have been renamed since), else `<iface>.pipe`/`.addr`, else,
    /// when another interface holds those, `<iface>-vsc<id>.*`. The FIFO comes back empty.
    pub(crate) fn claim(&mut self, id: u32, iface: &str, mac: MacAddr6) -> anyhow::Result<(SidecarFiles, Channel)> {
        let kept_for_mac: Vec<&str> = self
            .ours
            .iter()
            .filter(|(_, owner)| **owner == Some(mac))
            .filter_map(|(name, _)| name.strip_suffix(".pipe"))
            .filter(|stem| !self.bound.contains_key(*stem))
            .collect();
        let kept = kept_for_mac.iter().find(|stem| **stem == iface).or(kept_for_mac.first()).map(|s| s.to_string());
        let taken = |stem: &str| {
            self.bound.contains_key(stem)
                || self.ours.get(&format!("{stem}.pipe")).is_some_and(|owner| owner.is_some_and(|o| o != mac))
        };
        let stem = match kept {
            Some(stem) => stem,
            None if !taken(iface) => iface.to_owned(),
            None => {
                let stem = format!("{iface}-vsc{id}");
                warn!(netvsc = iface, files = %self.dir.join(&stem).display(), "another interface has files under this name: using distinct ones");
                stem
            }
        };
        let fifo_name = format!("{stem}.pipe");
        let state_name = format!("{stem}.addr");
        let fifo = self.dir.join(&fifo_name);
        let state = self.dir.join(&state_name);
        // Listed before they are made: a crash in between leaves nothing unaccounted for.
        let new_fifo = self.inspect_fifo(&fifo)?;
        if fs::symlink_metadata(&state).is_ok() {
            return Err(bad(&state, "exists and was not made by netvsc-watch; remove it or choose another --fifo-dir"));
        }
        self.ours.insert(fifo_name, Some(mac));
        self.ours.insert(state_name, None);
        self.save_list().map_err(|err| bad_path(&self.dir.join(LOCK_FILE), err))?;
        if new_fifo {
            mkfifo(&fifo, Mode::from_bits_truncate(self.mode)).map_err(|err| bad_path(&fifo, err.into()))?;
        }
        let channel = self.open_fifo(&fifo)?;
        let files = SidecarFiles { fifo, state, mode: self.mode, created_fifo: new_fifo };
        files.write_state(None).map_err(|err| bad(&files.state, &format!("{err:#}")))?;
        self.bound.insert(stem, id);
        Ok((files, channel))
    }

    /// At exit: FIFOs emptied and kept (DPDK may hold them), state files removed.
    pub fn close(mut self, files: Vec<(SidecarFiles, Channel)>) {
        for (files, mut channel) in files {
            if let Err(err) = channel.publish(None) {
                warn!(path = %files.fifo.display(), %err, "could not empty the FIFO at exit");
            }
            self.remove(&files.state);
        }
        let _ = self.save_list();
    }

    /// After a failed start-up: everything this run made is removed again.
    pub fn rollback(mut self, files: Vec<(SidecarFiles, Channel)>) {
        for (files, mut channel) in files {
            let _ = channel.publish(None);
            self.remove(&files.state);
            if files.created_fifo {
                self.remove(&files.fifo);
            }
        }
        if self.created_lock && self.ours.is_empty() {
            let _ = fs::remove_file(self.dir.join(LOCK_FILE));
        } else {
            let _ = self.save_list();
        }
    }

    /// Whether `fifo` must be made (`true`) or is an existing FIFO of this user to reuse.
    fn inspect_fifo(&self, fifo: &Path) -> anyhow::Result<bool> {
        match fs::symlink_metadata(fifo) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(err) => Err(bad_path(fifo, err)),
            Ok(meta) if meta.file_type().is_symlink() => Err(bad(fifo, "is a symlink; refusing to follow it")),
            Ok(meta) if !meta.file_type().is_fifo() => Err(bad(fifo, "exists and is not a FIFO")),
            Ok(meta) if meta.uid() != Uid::effective().as_raw() => {
                Err(bad(fifo, &format!("is owned by uid {}, not by this agent's uid {}", meta.uid(), Uid::effective())))
            }
            Ok(_) => Ok(false),
        }
    }

    /// Opens the FIFO read-write (never blocks; the agent can empty it itself), checks that it is
    /// still what was inspected, applies the mode and empties it.
    fn open_fifo(&self, fifo: &Path) -> anyhow::Result<Channel> {
        let flags = OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd: OwnedFd = open(fifo, flags, Mode::empty()).map_err(|err| bad_path(fifo, err.into()))?;
        let stat = fstat(&fd).map_err(|err| bad_path(fifo, err.into()))?;
        if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFIFO
            || stat.st_uid != Uid::effective().as_raw()
        {
            return Err(bad(fifo, "changed while it was being opened"));
        }
        if stat.st_mode & 0o7777 != self.mode {
            // mkfifo applies the umask, and an earlier run may have had another --file-mode.
            fchmod(&fd, Mode::from_bits_truncate(self.mode)).map_err(|err| bad_path(fifo, err.into()))?;
        }
        let mut channel = Channel::new(fd, None);
        channel.publish(None).map_err(|err| bad_path(fifo, err))?;
        Ok(channel)
    }

    /// Makes what an earlier run left safe: its state files go, its FIFOs are emptied.
    fn sanitize(&mut self) {
        let uid = Uid::effective().as_raw();
        for (name, owner) in std::mem::take(&mut self.ours) {
            let path = self.dir.join(&name);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.uid() == uid && meta.file_type().is_fifo() => {
                    match self.open_fifo(&path) {
                        Ok(_) => info!(path = %path.display(), "emptied the FIFO an earlier run left"),
                        Err(err) => {
                            warn!(path = %path.display(), error = %format!("{err:#}"), "could not empty a FIFO an earlier run left")
                        }
                    }
                    self.ours.insert(name, owner);
                }
                Ok(meta) if meta.uid() == uid && meta.is_file() && name.ends_with(".addr") => {
                    info!(path = %path.display(), "removing the state file an earlier run left");
                    self.remove(&path);
                }
                Ok(_) => warn!(path = %path.display(), "listed as netvsc-watch's but changed since; leaving it alone"),
                Err(_) => {}
            }
        }
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.starts_with(TEMP_PREFIX)) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn remove(&mut self, path: &Path) {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => warn!(path = %path.display(), %err, "could not remove file"),
        }
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            self.ours.remove(name);
        }
    }

    /// Rewrites the lock file: who holds it, and the files netvsc-watch made here.
    fn save_list(&mut self) -> io::Result<()> {
        let mut text = format!(
            "# netvsc-watch: lock of this directory and the files it made here; do not edit\npid {}\n",
            std::process::id()
        );
        for (name, owner) in &self.ours {
            match owner {
                Some(mac) => text.push_str(&format!("{name} {}\n", crate::netdev::mac_string(mac))),
                None => text.push_str(&format!("{name}\n")),
            }
        }
        self.lock.set_len(0)?;
        self.lock.rewind()?;
        self.lock.write_all(text.as_bytes())
    }
}

/// The files the lock file lists (what [`SidecarDir::save_list`] wrote, or anything a hostile
/// or damaged file holds: what is not a plain listed name is ignored).
pub(crate) fn listed_files(text: &str) -> BTreeMap<String, Option<MacAddr6>> {
    text.lines().filter_map(listed_file).collect()
}

/// A line [`SidecarDir::save_list`] writes before the names: the comment, the holder's pid,
/// and blank lines.
fn is_header(line: &str) -> bool {
    line.trim().is_empty() || line.starts_with('#') || line.starts_with("pid ")
}

/// One line of the list: a plain file name in the directory (no path, no comment), and for a
/// FIFO the MAC it serves.
fn listed_file(line: &str) -> Option<(String, Option<MacAddr6>)> {
    let mut words = line.split_whitespace();
    let name = words.next()?;
    // A byte that was not UTF-8 (read lossily) names no file netvsc-watch made.
    let plain = (name.ends_with(".pipe") || name.ends_with(".addr"))
        && !name.contains('/')
        && !name.starts_with('.')
        && !name.contains(char::REPLACEMENT_CHARACTER);
    plain.then(|| (name.to_owned(), words.next().and_then(|mac| mac.parse().ok())))
}

fn bad(path: &Path, why: &str) -> anyhow::Error {
    UsageError::FifoDir { path: path.to_owned(), why: why.to_owned() }.into()
}

fn bad_path(path: &Path, err: io::Error) -> anyhow::Error {
    bad(path, &err.to_string())
}
