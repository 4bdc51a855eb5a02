//! A private network namespace whose veths play NetVSC interfaces and VFs, with the fake sysfs
//! tree that says which is which: updated before a device is created (the kernel registers sysfs
//! before it announces the device) and after it is deleted (the kernel announces removal first).

use netvsc_testkit::FakeSysfs;
use netvsc_user::report::lines::Ready;

use super::{JsonProcess, Netns};

pub const MAC: &str = "00:15:5d:00:00:01";
pub const MAC2: &str = "00:15:5d:00:00:02";

pub struct Stage {
    pub dir: tempfile::TempDir,
    pub sys: FakeSysfs,
    pub ns: Netns,
}

impl Stage {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
        let ns = Netns::new(tag);
        Self { dir, sys, ns }
    }

    pub fn netvsc(&self, name: &str, ifindex: u32, mac: &str) {
        self.sys.add_netvsc(name, ifindex, mac).unwrap();
        self.ns.add_veth(name, ifindex, mac);
    }

    pub fn plug_vf(&self, name: &str, ifindex: u32, mac: &str, pci: &str) {
        self.sys.add_vf(name, ifindex, mac, pci).unwrap();
        self.ns.add_veth(name, ifindex, mac);
    }

    pub fn unplug(&self, name: &str) {
        self.ns.ip(&["link", "del", name]);
        self.sys.remove(name).unwrap();
    }

    pub fn root(&self) -> &str {
        self.sys.root().to_str().unwrap()
    }

    pub fn fifo_dir(&self) -> String {
        let dir = self.dir.path().join("run");
        std::fs::create_dir_all(&dir).unwrap();
        dir.to_str().unwrap().to_owned()
    }

    /// `watch` with events only: the safety resync is off, so events alone must do the job.
    pub fn watch(&self, extra: &[&str]) -> JsonProcess {
        self.watch_ready(extra).0
    }

    /// [`Stage::watch`], and its `ready` line.
    pub fn watch_ready(&self, extra: &[&str]) -> (JsonProcess, Ready) {
        let fifo_dir = self.fifo_dir();
        let mut args =
            vec!["watch", "--source", "netlink", "--sysfs-root", self.root(), "--fifo-dir", &fifo_dir, "--json"];
        args.extend_from_slice(&["--resync-interval", "0"]);
        args.extend_from_slice(extra);
        let mut agent = JsonProcess::agent(Some(&self.ns.name), &args);
        let ready = agent.ready();
        (agent, ready)
    }
}
