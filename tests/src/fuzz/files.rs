//! The targets whose input is a file's content: a sysfs attribute, alone and inside a fake sysfs
//! tree the agent reads, and the sidecar directory's lock file.

use std::fs;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use netvsc_user::fuzz;
use netvsc_user::system::sysfs::{ReadError, Sysfs};

use crate::FakeSysfs;

/// A sysfs attribute's content: as a PCI id (`0x15b3\n`), accepted only in the kernel's own
/// form; and read back from a file by the agent's attribute reader, whole or refused.
pub fn sysfs_attribute(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(id) = fuzz::parse_pci_id(&text) {
        let digits = text.trim_end().strip_prefix("0x").expect("a PCI id starts with 0x");
        assert!(digits.bytes().all(|b| b.is_ascii_hexdigit()), "{text:?} read as {id:#06x}");
    }
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    fs::write(file.path(), data).expect("writing the attribute");
    match fuzz::read_attribute(file.path()) {
        Ok(content) => assert_eq!(content.as_bytes(), data),
        Err(err) => assert!(data.len() > 4096 || std::str::from_utf8(data).is_err(), "{err} for {data:?}"),
    }
}

/// The attributes [`SysfsTree::run`] writes the input into (chosen by its first byte), by the
/// path the agent reads them at (through the `device` link), relative to the tree's root, with
/// the content the kernel gives them; the rest of the input is the content.
const ATTRIBUTES: &[(&str, &str)] = &[
    ("class/net/eth1/address", "00:15:5d:00:00:01\n"),
    ("class/net/eth1/ifindex", "2\n"),
    ("class/net/eth1/type", "1\n"),
    ("class/net/eth1/device/class_id", "{f8615163-df3e-46c5-913f-f2d2f965ed0e}\n"),
    ("class/net/enP1s1/address", "00:15:5d:00:00:01\n"),
    ("class/net/enP1s1/ifindex", "3\n"),
    ("class/net/enP1s1/device/vendor", "0x15b3\n"),
    ("class/net/enP1s1/device/device", "0x1016\n"),
];

/// [`SysfsTree::run`] on one tree per process (a fuzzing run's: built at the first input).
pub fn sysfs_tree(data: &[u8]) {
    static TREE: std::sync::OnceLock<SysfsTree> = std::sync::OnceLock::new();
    TREE.get_or_init(|| SysfsTree::new().expect("building the fake sysfs tree")).run(data);
}

/// A fake sysfs tree with a NetVSC interface (`eth1`) and its VF (`enP1s1`, a ConnectX-4 Lx at
/// `0001:00:02.0`), into which each input is written as one attribute's content before the
/// agent reads the tree: it must never panic, and bad content is an error naming the file.
pub struct SysfsTree {
    /// Removed with the tree.
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl SysfsTree {
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_owned();
        let fake = FakeSysfs::create(&root)?;
        fake.add_netvsc("eth1", 2, "00:15:5d:00:00:01")?;
        fake.add_vf("enP1s1", 3, "00:15:5d:00:00:01", "0001:00:02.0")?;
        let tree = Self { _dir: dir, root };
        tree.reset(None)?;
        Ok(tree)
    }

    /// Every attribute back to the kernel's content but `except`.
    fn reset(&self, except: Option<usize>) -> std::io::Result<()> {
        for (i, (path, content)) in ATTRIBUTES.iter().enumerate() {
            if Some(i) != except {
                fs::write(self.root.join(path), content)?;
            }
        }
        Ok(())
    }

    pub fn run(&self, data: &[u8]) {
        let Some((&choice, content)) = data.split_first() else { return };
        let chosen = usize::from(choice) % ATTRIBUTES.len();
        let path = self.root.join(ATTRIBUTES[chosen].0);
        self.reset(Some(chosen)).expect("resetting the tree");
        fs::write(&path, content).expect("writing the attribute");
        let sysfs = Sysfs::open(&self.root).expect("the tree is a sysfs root");
        let mut errors = Vec::new();
        for name in ["eth1", "enP1s1"] {
            match sysfs.read(name) {
                Ok(_) => {}
                Err(err @ ReadError::Vanished { .. }) => panic!("{name} vanished: {err}"),
                Err(err) => errors.push(err.to_string()),
            }
        }
        for error in &errors {
            assert!(error.starts_with(&path.display().to_string()), "{error:?} does not name {}", path.display());
        }
        let listed = sysfs.enumerate().expect("enumerating the tree");
        assert_eq!(listed.skipped, errors, "enumerate skips what read refuses");
        sysfs.close_retired();
    }
}

/// The sidecar directory's lock file, which lists what an earlier run made there: the listed
/// names are plain file names in the directory (read lossily, as the agent does), and opening the directory on it either fails
/// naming the lock file or removes only listed state files, never a FIFO or an unlisted file.
pub fn sidecar_lock(data: &[u8]) {
    for name in fuzz::lock_file_list(&String::from_utf8_lossy(data)).keys() {
        let plain = !name.contains('/') && !name.starts_with('.') && !name.contains(char::REPLACEMENT_CHARACTER);
        assert!(plain && (name.ends_with(".pipe") || name.ends_with(".addr")), "{name:?} listed");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let lock = dir.path().join(".netvsc-watch.lock");
    fs::write(&lock, data).expect("writing the lock file");
    // What an earlier run may have left (eth1's), and a file no run made.
    nix::unistd::mkfifo(&dir.path().join("eth1.pipe"), nix::sys::stat::Mode::from_bits_truncate(0o600))
        .expect("a FIFO");
    for name in ["eth1.addr", "stranger.addr"] {
        fs::write(dir.path().join(name), "0001:00:02.0\n").expect("a state file");
    }
    // The agent reads a damaged list lossily: what it can still say counts.
    let listed = fuzz::lock_file_list(&String::from_utf8_lossy(data));
    match fuzz::open_sidecar_dir(dir.path(), 0o600) {
        Ok(()) => {
            assert!(is_fifo(&dir.path().join("eth1.pipe")), "the FIFO is kept");
            for name in ["eth1.addr", "stranger.addr"] {
                let there = dir.path().join(name).exists();
                assert_eq!(there, !listed.contains_key(name), "{name}: removed only when listed");
            }
        }
        Err(err) => {
            let message = format!("{err:#}");
            assert!(message.contains(&lock.display().to_string()), "{message:?} does not name the lock file");
        }
    }
}

fn is_fifo(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_fifo())
}
