//! Reads netdevices from sysfs (`<root>/class/net/<name>/...`) under a configurable root, so the
//! whole agent runs against a fake tree in tests.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use macaddr::MacAddr6;
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{open, openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};

use crate::netdev::{Netdev, NetdevKind, PciFunction, PciId, NETVSC_CLASS_ID};

mod attribute;
mod retired;

pub(crate) use attribute::read_attribute;
use attribute::read_open_attribute;
use retired::Retired;

/// `ARPHRD_ETHER`: the only link type the original driver (and we) consider.
const ARPHRD_ETHER: u32 = 1;

/// Why one netdevice could not be read. `Vanished` is the normal race with a device going away;
/// the others mean an odd entry that is skipped with a warning.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{name}: gone while reading")]
    Vanished { name: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: unexpected content {content:?}")]
    Malformed { path: PathBuf, content: String },
    #[error("{path}: device link dangles")]
    DanglingDevice { path: PathBuf },
}

/// A directory entry under `class/net` whose name is not UTF-8; skipped with a warning.
#[derive(Debug)]
pub struct BadName(pub OsString);

/// Result of enumerating `class/net`: the readable Ethernet links, and what was skipped and why.
#[derive(Debug, Default)]
pub struct Enumeration {
    pub links: Vec<Netdev>,
    pub skipped: Vec<String>,
}

/// A sysfs tree rooted at `root` (normally `/sys`).
#[derive(Debug)]
pub struct Sysfs {
    net: PathBuf,
    /// `<root>/bus/pci/devices`, where a PCI function is found by its address.
    pci_devices: PathBuf,
    /// `<root>/bus/vmbus/devices`, where a VMBus device is found by its instance id.
    vmbus_devices: PathBuf,
    /// Descriptors of successful reads, closed by [`Sysfs::close_retired`].
    retired: Retired,
}

impl Sysfs {
    /// Checks that `root/class/net` exists: a wrong `--sysfs-root` is bad input, not an empty system.
    pub fn open(root: &Path) -> Result<Self, io::Error> {
        let net = root.join("class/net");
        if !net.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a sysfs root: {} is not a directory", root.display(), net.display()),
            ));
        }
        let (pci_devices, vmbus_devices) = (root.join("bus/pci/devices"), root.join("bus/vmbus/devices"));
        Ok(Self { net, pci_devices, vmbus_devices, retired: Retired::new() })
    }

    /// The ifindexes of the netdevices on VMBus device `id` (its instance GUID, as the kernel
    /// logs it): a NetVSC's, whatever it is called now. `None` when the device is not there (or
    /// `id` is no single path component).
    pub fn netdevs_of_vmbus(&self, id: &str) -> Option<Vec<u32>> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return None;
        }
        let device = self.vmbus_devices.join(id);
        if !device.exists() {
            return None;
        }
        let ifindex = |dir: PathBuf| read_attribute(&dir.join("ifindex")).ok()?.trim_end().parse().ok();
        let entries = std::fs::read_dir(device.join("net")).into_iter().flatten();
        Some(entries.filter_map(|entry| ifindex(entry.ok()?.path())).collect())
    }

    /// Closes the descriptors the reads so far left open, for the caller to call once its pipes
    /// are written: closing is bookkeeping, and with the caches cold while the agent idled each
    /// close costs microseconds between the kernel's message and the address in the pipe. A few
    /// dozen at most are left open (a scan closes them as it goes).
    pub fn close_retired(&self) {
        self.retired.close();
    }

    /// How many descriptors wait for [`Sysfs::close_retired`].
    pub fn retired(&self) -> usize {
        self.retired.count()
    }

    /// Names under `class/net`, in directory order. Non-UTF-8 names come back separately.
    pub fn names(&self) -> io::Result<(Vec<String>, Vec<BadName>)> {
        let mut names = Vec::new();
        let mut bad = Vec::new();
        for entry in std::fs::read_dir(&self.net)? {
            let name = entry?.file_name();
            match name.into_string() {
                Ok(name) => names.push(name),
                Err(raw) => bad.push(BadName(raw)),
            }
        }
        Ok((names, bad))
    }

    /// Reads every netdevice; odd entries are listed in `skipped`, never fatal.
    pub fn enumerate(&self) -> io::Result<Enumeration> {
        let (names, bad) = self.names()?;
        let mut out = Enumeration::default();
        for BadName(raw) in bad {
            out.skipped.push(format!("{}: interface name is not UTF-8", raw.to_string_lossy()));
        }
        for name in names {
            match self.read(&name) {
                Ok(Some(link)) => out.links.push(link),
                Ok(None) | Err(ReadError::Vanished { .. }) => {}
                Err(err) => out.skipped.push(err.to_string()),
            }
        }
        Ok(out)
    }

    /// The PCI function at `address`, found by its address (not through a netdevice's name,
    /// which may have moved to another device since an event named both).
    pub(crate) fn pci_function(&self, address: &str) -> Result<PciFunction, ReadError> {
        let dir = SysDir::open(&self.pci_devices, address, &self.retired)?;
        let function = dir.pci_function("", address.to_owned());
        dir.retire();
        Ok(function)
    }

    /// [`Sysfs::pci_function`] when its make is known already (the eBPF record carries it): only
    /// how many netdevices it carries is asked, one `stat` of its `net` directory.
    pub(crate) fn pci_function_of(&self, address: &str, id: PciId) -> Result<PciFunction, ReadError> {
        let counted = nix::sys::stat::stat(&self.pci_devices.join(address).join("net")).ok().and_then(subdirectories);
        let netdevs = match counted {
            Some(netdevs) => netdevs,
            // Gone, or a filesystem that does not count subdirectories: the whole read says which.
            None => {
                return self.pci_function(address).map(|function| PciFunction { mana: id == PciId::MANA, ..function })
            }
        };
        Ok(PciFunction { address: address.to_owned(), mana: id == PciId::MANA, netdevs: netdevs.max(1) })
    }

    /// The ifindex of netdevice `name`'s master, if it has one.
    pub fn master(&self, name: &str) -> Option<u32> {
        read_attribute(&self.net.join(name).join("master/ifindex")).ok()?.trim_end().parse().ok()
    }

    /// Whether netdevice `name` has a parent device (`device`): a virtual one has none.
    pub(crate) fn has_device(&self, name: &str) -> io::Result<bool> {
        match std::fs::symlink_metadata(self.net.join(name).join("device")) {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Reads one netdevice by name. `Ok(None)`: it exists but is not Ethernet.
    pub fn read(&self, name: &str) -> Result<Option<Netdev>, ReadError> {
        self.read_with(name, None, Hints::default())
    }

    /// Reads one netdevice by name, taking what `hints` say as said when sysfs shows it under
    /// `ifindex` (the name may have moved to another device since the event). The ifindex is
    /// always read: it is what ties the name to the event's device.
    pub fn read_with(&self, name: &str, ifindex: Option<u32>, hints: Hints) -> Result<Option<Netdev>, ReadError> {
        let dir = SysDir::open(&self.net, name, &self.retired)?;
        let found: u32 = dir.parse("ifindex")?;
        let hints = if Some(found) == ifindex { hints } else { Hints::default() };
        let mac = match hints.mac {
            Some(mac) => mac,
            None => {
                let link_type: u32 = dir.parse("type")?;
                if link_type != ARPHRD_ETHER {
                    return Ok(None);
                }
                dir.parse("address")?
            }
        };
        let kind = dir.kind()?;
        let master = hints.master.unwrap_or_else(|| dir.master());
        dir.retire();
        Ok(Some(Netdev { ifindex: found, name: name.to_owned(), mac, kind, master }))
    }
}

/// What an event already said about a link, so that sysfs is not asked again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    /// The link's MAC. Sources give one only for Ethernet links, so it also answers `type`.
    pub mac: Option<MacAddr6>,
    /// The link's master (`Some(None)`: none).
    pub master: Option<Option<u32>>,
}

/// A device's directory (a netdevice's, a PCI function's), opened once (`O_PATH`): attributes are
/// read relative to it, so the kernel walks `class/net/<name>` and its symlink once per device
/// rather than once per attribute. With caches gone cold while the agent idled, every path walk
/// costs microseconds. The directory and the attributes read are closed later (see [`Sysfs::close_retired`]).
struct SysDir<'a> {
    fd: OwnedFd,
    name: String,
    path: PathBuf,
    retired: &'a Retired,
}

impl<'a> SysDir<'a> {
    fn open(net: &Path, name: &str, retired: &'a Retired) -> Result<Self, ReadError> {
        let path = net.join(name);
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        match open(&path, flags, Mode::empty()) {
            Ok(fd) => Ok(Self { fd, name: name.to_owned(), path, retired }),
            Err(Errno::ENOENT) => Err(ReadError::Vanished { name: name.to_owned() }),
            Err(errno) => Err(ReadError::Io { path, source: errno.into() }),
        }
    }

    /// Done reading: the directory is closed with the attributes, later.
    fn retire(self) {
        self.retired.retire(self.fd);
    }

    fn attribute(&self, relative: &str) -> io::Result<String> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let file = File::from(openat(&self.fd, relative, flags, Mode::empty())?);
        let content = read_open_attribute(&file);
        self.retired.retire(file.into());
        content
    }

    fn parse<T: std::str::FromStr>(&self, relative: &str) -> Result<T, ReadError> {
        let content = self.attribute(relative).map_err(|source| self.error(relative, source))?;
        content.trim_end().parse().map_err(|_| ReadError::Malformed { path: self.path.join(relative), content })
    }

    fn link(&self, relative: &str) -> io::Result<PathBuf> {
        Ok(PathBuf::from(readlinkat(&self.fd, relative)?))
    }

    /// Classifies the parent device, as the original does: VF candidate by the basename of
    /// `device/subsystem` being `pci`, NetVSC by class id (a vmbus attribute no PCI device has,
    /// so it is not looked for on one).
    fn kind(&self) -> Result<NetdevKind, ReadError> {
        let target = match self.link("device") {
            Ok(target) => target,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(NetdevKind::Other),
            Err(source) => return Err(self.error("device", source)),
        };
        let subsystem = match self.link("device/subsystem") {
            Ok(subsystem) => subsystem,
            Err(_) if self.attribute_exists("device") == Some(false) => {
                return Err(ReadError::DanglingDevice { path: self.path.join("device") })
            }
            // A parent without a bus (rare) is not a VF; it may still carry a class id.
            Err(_) => PathBuf::new(),
        };
        if subsystem.file_name().is_some_and(|bus| bus == "pci") {
            let address = basename(&target).ok_or_else(|| ReadError::Malformed {
                path: self.path.join("device"),
                content: target.display().to_string(),
            })?;
            return Ok(NetdevKind::Pci(self.pci_function("device/", address)));
        }
        match self.attribute("device/class_id") {
            Ok(class_id) if class_id.trim_end() == NETVSC_CLASS_ID => Ok(NetdevKind::NetVsc),
            Ok(_) => Ok(NetdevKind::Other),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(NetdevKind::Other),
            Err(source) => Err(self.error("device/class_id", source)),
        }
    }

    /// The identity of the function at `function` (a path relative to this directory, ending in
    /// `/`, or empty) and how many netdevices it carries (`net/*`: one per vPort on MANA).
    /// Missing attributes read as "not MANA" and "one netdevice": the bare-address line.
    fn pci_function(&self, function: &str, address: String) -> PciFunction {
        let id =
            |name: &str| self.attribute(&format!("{function}{name}")).ok().as_deref().and_then(PciId::parse_attribute);
        // The device id is only asked of Microsoft's functions.
        let mana = id("vendor") == Some(PciId::MANA.vendor) && id("device") == Some(PciId::MANA.device);
        PciFunction { address, mana, netdevs: self.netdevs(function) }
    }

    /// How many netdevices the function at `function` (as for [`SysDir::pci_function`]) carries;
    /// one when that cannot be told.
    fn netdevs(&self, function: &str) -> usize {
        self.entries(&format!("{function}net")).unwrap_or(1).max(1)
    }

    /// How many subdirectories directory `relative` has (a function's `net/` holds one per
    /// netdevice). sysfs, like most filesystems, counts them in the directory's link count (two
    /// plus one per subdirectory): one `stat` instead of reading the directory. A filesystem that
    /// does not (a link count below two) is read.
    fn entries(&self, relative: &str) -> io::Result<usize> {
        if let Some(count) = subdirectories(fstatat(&self.fd, relative, AtFlags::empty())?) {
            return Ok(count);
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = Dir::from_fd(openat(&self.fd, relative, flags, Mode::empty())?)?;
        let names = dir.iter().filter_map(Result::ok);
        Ok(names.filter(|entry| ![&b"."[..], b".."].contains(&entry.file_name().to_bytes())).count())
    }

    /// The ifindex of the device `master` points to; none when there is no master or the link
    /// dangles (the master is being torn down).
    fn master(&self) -> Option<u32> {
        self.attribute("master/ifindex").ok()?.trim_end().parse().ok()
    }

    /// `Some(false)` when `relative` is not there (a dangling symlink counts as not there).
    fn attribute_exists(&self, relative: &str) -> Option<bool> {
        match fstatat(&self.fd, relative, AtFlags::empty()) {
            Ok(_) => Some(true),
            Err(Errno::ENOENT) => Some(false),
            Err(_) => None,
        }
    }

    /// A missing file of a netdevice whose directory just vanished is the device going away,
    /// not an odd entry.
    fn error(&self, relative: &str, source: io::Error) -> ReadError {
        if source.kind() == io::ErrorKind::NotFound && !self.path.exists() {
            return ReadError::Vanished { name: self.name.clone() };
        }
        ReadError::Io { path: self.path.join(relative), source }
    }
}

/// How many subdirectories a directory has, by its link count (two plus one per subdirectory, on
/// sysfs as on most filesystems); `None` where the filesystem does not count them so.
fn subdirectories(stat: nix::sys::stat::FileStat) -> Option<usize> {
    (stat.st_nlink as usize).checked_sub(2)
}

fn basename(path: &Path) -> Option<String> {
    path.file_name().and_then(|n| n.to_str()).filter(|n| !n.is_empty()).map(str::to_owned)
}
