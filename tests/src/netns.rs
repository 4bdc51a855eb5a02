//! The host's stand-in for a VM: a private network namespace whose veths play NetVSC interfaces
//! and VFs, and the fake sysfs tree that says which is which. One implementation for the
//! integration tests, the demo and the benchmarks.
//!
//! The tree is updated in the order the kernel keeps: before a device is created (the kernel
//! registers sysfs before it announces the device) and after it is deleted (the kernel
//! announces the removal first).

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _};

use crate::FakeSysfs;

/// A network namespace of its own (loopback up), deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// `nvw-<tag>-<pid>-<n>`: unique across the tests of one process and across processes.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!("nvw-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        run("ip", &["netns", "add", &name])?;
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS`; an error carries ip's own message.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// A veth `name` with a fixed ifindex (so a fake sysfs entry can match it) and `mac`; its
    /// peer, `p<ifindex>`, stays in the namespace.
    pub fn add_veth(&self, name: &str, ifindex: u32, mac: &str) -> anyhow::Result<()> {
        let index = ifindex.to_string();
        let peer = format!("p{ifindex}");
        self.ip(&["link", "add", name, "index", &index, "address", mac, "type", "veth", "peer", "name", &peer])
    }

    /// One `ip -batch -` in the namespace: commands run as soon as their line arrives, without
    /// the millisecond of starting `ip` each time (so a timestamp taken before a line is close
    /// to the kernel's work).
    pub fn batch(&self) -> anyhow::Result<Batch> {
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .context("starting ip -batch")?;
        let stdin = child.stdin.take();
        Ok(Batch { child, stdin })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A running `ip -batch -` (see [`Netns::batch`]).
pub struct Batch {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Batch {
    pub fn send(&mut self, line: &str) -> anyhow::Result<()> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().context("ip -batch input closed")?;
        stdin.write_all(format!("{line}\n").as_bytes()).context("writing to ip -batch")?;
        stdin.flush().context("writing to ip -batch")
    }

    /// Waits until every command sent has run.
    pub fn finish(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().context("waiting for ip -batch")?;
        if !status.success() {
            bail!("ip -batch failed ({status})");
        }
        Ok(())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The namespace, the fake sysfs tree (`<dir>/sys`) and a scratch directory; all removed on drop.
pub struct Stage {
    pub netns: Netns,
    pub sys: FakeSysfs,
    pub dir: tempfile::TempDir,
}

impl Stage {
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        Self::in_dir(tag, tempfile::tempdir().context("making the stage's directory")?)
    }

    /// [`Stage::new`] with the tree in memory (/dev/shm, as sysfs itself is): for long runs,
    /// where a disk's file system makes every plug cost milliseconds.
    pub fn in_memory(tag: &str) -> anyhow::Result<Self> {
        Self::in_dir(tag, tempfile::tempdir_in("/dev/shm").context("making the stage's directory in /dev/shm")?)
    }

    fn in_dir(tag: &str, dir: tempfile::TempDir) -> anyhow::Result<Self> {
        let sys = FakeSysfs::create(&dir.path().join("sys")).context("making the fake sysfs tree")?;
        Ok(Self { netns: Netns::new(tag)?, sys, dir })
    }

    /// A NetVSC interface: its sysfs entry, then its veth.
    pub fn netvsc(&self, name: &str, ifindex: u32, mac: &str) -> anyhow::Result<()> {
        self.sys.add_netvsc(name, ifindex, mac).with_context(|| format!("fake sysfs entry of {name}"))?;
        self.netns.add_veth(name, ifindex, mac)
    }

    /// A VF at PCI address `pci`: its sysfs entry, then its veth.
    pub fn plug_vf(&self, name: &str, ifindex: u32, mac: &str, pci: &str) -> anyhow::Result<()> {
        self.sys.add_vf(name, ifindex, mac, pci).with_context(|| format!("fake sysfs entry of {name}"))?;
        self.netns.add_veth(name, ifindex, mac)
    }

    /// The device gone: its veth deleted, then its sysfs entry.
    pub fn unplug(&self, name: &str) -> anyhow::Result<()> {
        self.netns.ip(&["link", "del", name])?;
        self.sys.remove(name).with_context(|| format!("removing the fake sysfs entry of {name}"))
    }

    /// The agent's `--sysfs-root`.
    pub fn sysfs_root(&self) -> &Path {
        self.sys.root()
    }

    /// `<dir>/run`, made if missing: a sidecar's `--fifo-dir`.
    pub fn fifo_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir.path().join("run");
        std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
        Ok(dir)
    }
}

/// Runs `program ARGS`; an error carries the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
