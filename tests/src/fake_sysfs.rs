//! Builds fake sysfs trees shaped like the real one, for tests, benchmarks and the demo.
//!
//! Layout: `class/net/<name>/{ifindex,address,type}` plus a `device` link to
//! `devices/{vmbus,pci}/<id>`, whose `subsystem` links to `bus/<bus>`; NetVSC parents carry
//! `class_id`. Virtual devices (VLAN, bond, veth) have no `device` link, as in the kernel.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use netvsc_user::netdev::NETVSC_CLASS_ID;

/// A fake `/sys` rooted at a directory the caller owns (often a `tempfile::TempDir`).
#[derive(Clone, Debug)]
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    /// Creates the skeleton (`class/net`, `bus/pci`, `bus/vmbus`) under `root`.
    pub fn create(root: &Path) -> io::Result<Self> {
        for dir in ["class/net", "bus/pci", "bus/vmbus", "bus/virtio", "devices"] {
            fs::create_dir_all(root.join(dir))?;
        }
        Ok(Self { root: root.to_owned() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A NetVSC netdevice on its own VMBus device.
    pub fn add_netvsc(&self, name: &str, ifindex: u32, mac: &str) -> io::Result<()> {
        let parent = format!("vmbus/netvsc-{ifindex}");
        self.add_device(&parent, "vmbus", Some(NETVSC_CLASS_ID))?;
        self.add_netdev(name, ifindex, mac, 1, Some(&parent))
    }

    /// A VF: a netdevice whose parent is the PCI function `pci` (e.g. `0002:00:02.0`). The
    /// function lists its netdevices under `net/`, as the kernel's does.
    pub fn add_vf(&self, name: &str, ifindex: u32, mac: &str, pci: &str) -> io::Result<()> {
        let parent = format!("pci/{pci}");
        self.add_device(&parent, "pci", None)?;
        fs::create_dir_all(self.root.join("devices").join(&parent).join("net").join(name))?;
        self.add_netdev(name, ifindex, mac, 1, Some(&parent))
    }

    /// A MANA vPort: a netdevice of the MANA function `pci` (vendor 0x1414, device 0x00ba),
    /// which carries one netdevice per vPort.
    pub fn add_mana_vport(&self, name: &str, ifindex: u32, mac: &str, pci: &str) -> io::Result<()> {
        self.add_vf(name, ifindex, mac, pci)?;
        let function = self.root.join("devices/pci").join(pci);
        fs::write(function.join("vendor"), "0x1414\n")?;
        fs::write(function.join("device"), "0x00ba\n")
    }

    /// Enslaves `name` to `master` (the kernel's `master` link, as hv_netvsc makes it from a VF
    /// to its NetVSC interface), or frees it with `None`.
    pub fn set_master(&self, name: &str, master: Option<&str>) -> io::Result<()> {
        let link = self.netdev(name).join("master");
        match fs::remove_file(&link) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        match master {
            Some(master) => symlink(format!("../{master}"), link),
            None => Ok(()),
        }
    }

    /// A netdevice on another bus (virtio-net, say): neither NetVSC nor a VF.
    pub fn add_virtio(&self, name: &str, ifindex: u32, mac: &str) -> io::Result<()> {
        let parent = format!("virtio/virtio{ifindex}");
        self.add_device(&parent, "virtio", None)?;
        self.add_netdev(name, ifindex, mac, 1, Some(&parent))
    }

    /// A virtual netdevice (VLAN, bond, bridge, veth): no parent device at all.
    pub fn add_virtual(&self, name: &str, ifindex: u32, mac: &str) -> io::Result<()> {
        self.add_netdev(name, ifindex, mac, 1, None)
    }

    /// `count` unrelated virtual devices (`veth<ifindex>`, ifindexes from `first_ifindex`, each
    /// its own MAC): the interfaces a busy host carries and pairing must pass over.
    pub fn add_unrelated(&self, count: u32, first_ifindex: u32) -> io::Result<()> {
        for ifindex in first_ifindex..first_ifindex + count {
            let [_, a, b, c] = ifindex.to_be_bytes();
            self.add_virtual(&format!("veth{ifindex}"), ifindex, &format!("02:00:00:{a:02x}:{b:02x}:{c:02x}"))?;
        }
        Ok(())
    }

    /// A netdevice of another link type (`type` is an ARPHRD value, e.g. 772 for loopback).
    pub fn add_non_ethernet(&self, name: &str, ifindex: u32, link_type: u32) -> io::Result<()> {
        self.add_netdev(name, ifindex, "00:00:00:00:00:00", link_type, None)
    }

    /// A netdevice whose `device` link points nowhere (its parent is being torn down).
    pub fn add_dangling(&self, name: &str, ifindex: u32, mac: &str) -> io::Result<()> {
        self.add_netdev(name, ifindex, mac, 1, None)?;
        symlink("../../../devices/pci/gone", self.netdev(name).join("device"))
    }

    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.unlist(name)?;
        fs::remove_dir_all(self.netdev(name))
    }

    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let listed = self.netdev(from).join("device/net");
        if listed.join(from).exists() {
            fs::rename(listed.join(from), listed.join(to))?;
        }
        fs::rename(self.netdev(from), self.netdev(to))
    }

    /// Takes `name` off its parent function's `net/` list.
    fn unlist(&self, name: &str) -> io::Result<()> {
        match fs::remove_dir(self.netdev(name).join("device/net").join(name)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    pub fn set_mac(&self, name: &str, mac: &str) -> io::Result<()> {
        fs::write(self.netdev(name).join("address"), format!("{mac}\n"))
    }

    /// Directory of one netdevice, for tests that damage entries on purpose.
    pub fn netdev(&self, name: &str) -> PathBuf {
        self.root.join("class/net").join(name)
    }

    fn add_device(&self, parent: &str, bus: &str, class_id: Option<&str>) -> io::Result<()> {
        let dir = self.root.join("devices").join(parent);
        fs::create_dir_all(&dir)?;
        let subsystem = dir.join("subsystem");
        if fs::symlink_metadata(&subsystem).is_err() {
            symlink(format!("../../../bus/{bus}"), subsystem)?;
        }
        if let Some(class_id) = class_id {
            fs::write(dir.join("class_id"), format!("{class_id}\n"))?;
        }
        // As sysfs lists a bus's devices: bus/<bus>/devices/<name>, a link to the device.
        let devices = self.root.join("bus").join(bus).join("devices");
        fs::create_dir_all(&devices)?;
        let name = parent.rsplit('/').next().unwrap_or(parent);
        if fs::symlink_metadata(devices.join(name)).is_err() {
            symlink(format!("../../../devices/{parent}"), devices.join(name))?;
        }
        Ok(())
    }

    fn add_netdev(&self, name: &str, ifindex: u32, mac: &str, link_type: u32, parent: Option<&str>) -> io::Result<()> {
        let dir = self.netdev(name);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("ifindex"), format!("{ifindex}\n"))?;
        fs::write(dir.join("address"), format!("{mac}\n"))?;
        fs::write(dir.join("type"), format!("{link_type}\n"))?;
        if let Some(parent) = parent {
            symlink(format!("../../../devices/{parent}"), dir.join("device"))?;
        }
        Ok(())
    }
}
