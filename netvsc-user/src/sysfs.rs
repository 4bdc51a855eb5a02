//! Reads netdevices from sysfs (`<root>/class/net/<name>/...`) under a configurable root, so the
//! whole agent runs against a fake tree in tests.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

use macaddr::MacAddr6;

use crate::link::{Link, LinkKind, PciFunction, MANA_DEVICE, MANA_VENDOR, NETVSC_CLASS_ID};

/// `ARPHRD_ETHER`: the only link type the original driver (and we) consider.
const ARPHRD_ETHER: u32 = 1;

/// Longest attribute read. sysfs attributes are at most a page; anything longer is not one.
const MAX_ATTRIBUTE_BYTES: usize = 4096;

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
    pub links: Vec<Link>,
    pub skipped: Vec<String>,
}

/// A sysfs tree rooted at `root` (normally `/sys`).
#[derive(Clone, Debug)]
pub struct Sysfs {
    net: PathBuf,
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
        Ok(Self { net })
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

    /// Reads one netdevice by name. `Ok(None)`: it exists but is not Ethernet.
    pub fn read(&self, name: &str) -> Result<Option<Link>, ReadError> {
        self.read_with(name, None, Hints::default())
    }

    /// Reads one netdevice by name, taking what `hints` say as said when sysfs shows it under
    /// `ifindex` (the name may have moved to another device since the event). The ifindex is
    /// always read: it is what ties the name to the event's device.
    pub fn read_with(&self, name: &str, ifindex: Option<u32>, hints: Hints) -> Result<Option<Link>, ReadError> {
        let dir = self.net.join(name);
        let found: u32 = parse_file(&dir.join("ifindex"), name)?;
        let hints = if Some(found) == ifindex { hints } else { Hints::default() };
        let mac = match hints.mac {
            Some(mac) => mac,
            None => {
                let link_type: u32 = parse_file(&dir.join("type"), name)?;
                if link_type != ARPHRD_ETHER {
                    return Ok(None);
                }
                parse_file(&dir.join("address"), name)?
            }
        };
        let kind = read_kind(&dir, name)?;
        let master = hints.master.unwrap_or_else(|| read_master(&dir));
        Ok(Some(Link { ifindex: found, name: name.to_owned(), mac, kind, master }))
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

/// Classifies the parent device, as the original does: VF candidate by the basename of
/// `device/subsystem` being `pci`, NetVSC by class id (a vmbus attribute no PCI device has, so
/// it is not looked for on one).
fn read_kind(dir: &Path, name: &str) -> Result<LinkKind, ReadError> {
    let device = dir.join("device");
    let target = match std::fs::read_link(&device) {
        Ok(target) => target,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(LinkKind::Other),
        Err(source) => return Err(io_error(device, source, name)),
    };
    let subsystem_path = device.join("subsystem");
    let subsystem = match std::fs::read_link(&subsystem_path) {
        Ok(subsystem) => subsystem,
        Err(_) if !device.exists() => return Err(ReadError::DanglingDevice { path: device }),
        // A parent without a bus (rare) is not a VF; it may still carry a class id.
        Err(_) => PathBuf::new(),
    };
    if subsystem.file_name().is_some_and(|bus| bus == "pci") {
        let address = basename(&target)
            .ok_or_else(|| ReadError::Malformed { path: device.clone(), content: target.display().to_string() })?;
        return Ok(LinkKind::Pci(read_pci_function(&device, address)));
    }
    let class_id_path = device.join("class_id");
    match read_attribute(&class_id_path) {
        Ok(class_id) if class_id.trim_end() == NETVSC_CLASS_ID => Ok(LinkKind::NetVsc),
        Ok(_) => Ok(LinkKind::Other),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(LinkKind::Other),
        Err(source) => Err(io_error(class_id_path, source, name)),
    }
}

/// The function's identity and how many netdevices it carries (`device/net/*`: one per vPort on
/// MANA). Missing attributes read as "not MANA" and "one netdevice": the bare-address line.
fn read_pci_function(device: &Path, address: String) -> PciFunction {
    let attribute = |name: &str| read_attribute(&device.join(name)).map(|v| v.trim_end().to_owned()).ok();
    // The device id is only asked of Microsoft's functions.
    let mana =
        attribute("vendor").as_deref() == Some(MANA_VENDOR) && attribute("device").as_deref() == Some(MANA_DEVICE);
    let netdevs = std::fs::read_dir(device.join("net")).map(|entries| entries.count()).unwrap_or(1).max(1);
    PciFunction { address, mana, netdevs }
}

/// The ifindex of the device `master` points to; none when there is no master or the link
/// dangles (the master is being torn down).
fn read_master(dir: &Path) -> Option<u32> {
    let ifindex = read_attribute(&dir.join("master/ifindex")).ok()?;
    ifindex.trim_end().parse().ok()
}

fn basename(path: &Path) -> Option<String> {
    path.file_name().and_then(|n| n.to_str()).filter(|n| !n.is_empty()).map(str::to_owned)
}

fn parse_file<T: std::str::FromStr>(path: &Path, name: &str) -> Result<T, ReadError> {
    let content = read_attribute(path).map_err(|source| io_error(path.to_owned(), source, name))?;
    content.trim_end().parse().map_err(|_| ReadError::Malformed { path: path.to_owned(), content })
}

/// A missing file under a directory that just vanished is the device going away, not an odd entry.
fn io_error(path: PathBuf, source: io::Error, name: &str) -> ReadError {
    if source.kind() == io::ErrorKind::NotFound && path.ancestors().nth(1).is_some_and(|d| !d.exists()) {
        return ReadError::Vanished { name: name.to_owned() };
    }
    ReadError::Io { path, source }
}

/// Reads one attribute file the way sysfs serves them: a regular file of at most a page. A FIFO,
/// a device node or an endless file in a hostile tree is refused without blocking or growing.
pub fn read_attribute(path: &Path) -> io::Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
    }
    // One read: sysfs hands an attribute over whole, and a regular file reads short only at its
    // end (a second read to see the end would be one more system call on the hot path).
    let mut buf = [0u8; MAX_ATTRIBUTE_BYTES + 1];
    let length = loop {
        match (&file).read(&mut buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    if length > MAX_ATTRIBUTE_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("longer than {MAX_ATTRIBUTE_BYTES} bytes")));
    }
    let content = String::from_utf8(buf[..length].to_vec())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
    Ok(content)
}
