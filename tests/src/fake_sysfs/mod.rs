//! Builds fake sysfs trees laid out as a Hyper-V/Azure VM's, for tests, benchmarks and the demo.
//!
//! As the kernel does (layout.rs, from real captures): every device lives under `devices/`, and
//! `class/net/<name>` is a link into it. A NetVSC netdevice sits under its VMBus device
//! (`class_id` {f8615163-...}); a VF's PCI function sits under a VMBus PCI pass-through device
//! (`…/VMBUS:00/<guid>/pci<domain>:00/<domain>:00:02.0/net/<name>`) whose id's second group is the
//! domain; links read as the kernel writes them (`device -> ../../../0002:00:02.0`). A joined VF
//! has `master` and `upper_<netvsc>` links and IFF_SLAVE in `flags`, its NetVSC a `lower_<vf>`
//! link. Virtual devices (VLAN, bond, veth) live under `devices/virtual/net` with no `device`.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use netvsc_user::netdev::NETVSC_CLASS_ID;

mod layout;

use layout::{domain_and_bus, link_text, netvsc_guid, pass_through_guid};
pub use layout::{Generation, Make, PCI_PASS_THROUGH_CLASS_ID};

/// `IFF_UP | IFF_BROADCAST | IFF_MULTICAST`, an interface that is up.
const FLAGS_UP: u32 = 0x1003;
/// `IFF_SLAVE`: set on a VF once hv_netvsc has joined it to its NetVSC interface.
const IFF_SLAVE: u32 = 0x800;

/// A fake `/sys` rooted at a directory the caller owns (often a `tempfile::TempDir`).
#[derive(Clone, Debug)]
pub struct FakeSysfs {
    root: PathBuf,
    generation: Generation,
}

impl FakeSysfs {
    /// Creates the skeleton (`class/net`, the buses, `devices/`) of a Gen2 VM under `root`.
    pub fn create(root: &Path) -> io::Result<Self> {
        Self::create_as(root, Generation::Gen2)
    }

    /// [`FakeSysfs::create`] for a VM of `generation` (VMBus sits elsewhere in `devices/`).
    pub fn create_as(root: &Path, generation: Generation) -> io::Result<Self> {
        for dir in ["class/net", "bus/pci/drivers", "bus/vmbus", "bus/virtio", "devices/virtual/net"] {
            fs::create_dir_all(root.join(dir))?;
        }
        // Canonical, so that the relative link texts are computed between real paths.
        let root = fs::canonicalize(root)?;
        fs::create_dir_all(root.join(generation.vmbus()))?;
        Ok(Self { root, generation })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A NetVSC netdevice on its own VMBus device.
    pub fn add_netvsc(&self, name: &str, ifindex: u32, mac: &str) -> io::Result<()> {
        self.add_netvsc_on(&netvsc_guid(ifindex, mac), name, ifindex, mac)
    }

    /// A NetVSC netdevice on the VMBus device of instance id `vmbus_id` (a captured one, say).
    pub fn add_netvsc_on(&self, vmbus_id: &str, name: &str, ifindex: u32, mac: &str) -> io::Result<()> {
        let device = self.vmbus().join(vmbus_id);
        self.add_device(&device, "vmbus")?;
        fs::write(device.join("class_id"), format!("{NETVSC_CLASS_ID}\n"))?;
        self.add_netdev(name, ifindex, mac, 1, Some(&device))
    }

    /// A VF of a ConnectX-4 Lx (see [`FakeSysfs::add_vf_of`]).
    pub fn add_vf(&self, name: &str, ifindex: u32, mac: &str, pci: &str) -> io::Result<()> {
        self.add_vf_of(Make::ConnectX4, name, ifindex, mac, pci)
    }

    /// A VF: a netdevice of the PCI function `pci` (e.g. `0002:00:02.0`) of make `make`, under
    /// the VMBus pass-through device of its domain. The function is made if it is not there.
    pub fn add_vf_of(&self, make: Make, name: &str, ifindex: u32, mac: &str, pci: &str) -> io::Result<()> {
        let function = self.add_function(make, pci)?;
        self.add_netdev(name, ifindex, mac, 1, Some(&function))
    }

    /// A MANA vPort: a netdevice of the MANA function `pci` (vendor 0x1414, device 0x00ba),
    /// which carries one netdevice per vPort.
    pub fn add_mana_vport(&self, name: &str, ifindex: u32, mac: &str, pci: &str) -> io::Result<()> {
        self.add_vf_of(Make::Mana, name, ifindex, mac, pci)
    }

    /// The directory of PCI function `pci` under `devices/` (there or not).
    pub fn pci_function(&self, pci: &str) -> PathBuf {
        let (domain, bus) = domain_and_bus(pci);
        self.vmbus().join(pass_through_guid(domain)).join(format!("pci{domain}:{bus}")).join(pci)
    }

    /// Removes PCI function `pci` with its netdevices, and its pass-through device once no other
    /// function is left on it, as the host's eject (or `echo 1 > remove`) does.
    pub fn remove_function(&self, pci: &str) -> io::Result<()> {
        let function = self.pci_function(pci);
        for entry in fs::read_dir(function.join("net"))? {
            self.remove(&entry?.file_name().to_string_lossy())?;
        }
        fs::remove_file(self.root.join("bus/pci/devices").join(pci))?;
        fs::remove_dir_all(&function)?;
        let bus = function.parent().unwrap_or(&function);
        if fs::read_dir(bus)?.next().is_none() {
            let pass_through = bus.parent().unwrap_or(bus);
            fs::remove_file(self.root.join("bus/vmbus/devices").join(pass_through.file_name().unwrap_or_default()))?;
            fs::remove_dir_all(pass_through)?;
        }
        Ok(())
    }

    /// Enslaves `name` to `master` (the links and flag hv_netvsc's join makes from a VF to its
    /// NetVSC interface), or frees it with `None`.
    pub fn set_master(&self, name: &str, master: Option<&str>) -> io::Result<()> {
        let dir = self.netdev_dir(name)?;
        if let Some(old) = fs::read_link(dir.join("master")).ok().and_then(|t| t.file_name().map(ToOwned::to_owned)) {
            let old = old.to_string_lossy();
            remove_if_there(&dir.join(format!("upper_{old}")))?;
            remove_if_there(&self.netdev_dir(&old)?.join(format!("lower_{name}")))?;
        }
        remove_if_there(&dir.join("master"))?;
        let flags = flags(&dir)?;
        let Some(master) = master else { return write_flags(&dir, flags & !IFF_SLAVE) };
        let master_dir = self.netdev_dir(master)?;
        for link in [dir.join("master"), dir.join(format!("upper_{master}"))] {
            symlink(link_text(&link, &master_dir), link)?;
        }
        let lower = master_dir.join(format!("lower_{name}"));
        symlink(link_text(&lower, &dir), lower)?;
        write_flags(&dir, flags | IFF_SLAVE)
    }

    /// A netdevice on another bus (virtio-net, say): neither NetVSC nor a VF, though the virtio
    /// device's own parent is a PCI function.
    pub fn add_virtio(&self, name: &str, ifindex: u32, mac: &str) -> io::Result<()> {
        let function = self.root.join(format!("devices/pci0000:00/0000:00:{:02x}.0", ifindex % 32));
        self.add_device(&function, "pci")?;
        let device = function.join(format!("virtio{ifindex}"));
        self.add_device(&device, "virtio")?;
        self.add_netdev(name, ifindex, mac, 1, Some(&device))
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
        symlink("../../../gone", self.netdev(name).join("device"))
    }

    /// Unregisters netdevice `name`: its class link, its directory and its master's `lower_` link.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.set_master(name, None)?;
        let dir = self.netdev_dir(name)?;
        for entry in fs::read_dir(&dir)? {
            if let Some(lower) = entry?.file_name().to_string_lossy().strip_prefix("lower_") {
                self.set_master(lower, None)?;
            }
        }
        fs::remove_file(self.netdev(name))?;
        fs::remove_dir_all(dir)
    }

    /// Renames netdevice `name` as the kernel does: its directory, its class link, and the
    /// adjacency links (`upper_`/`lower_`) that name it.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let dir = self.netdev_dir(from)?;
        let renamed = dir.with_file_name(to);
        fs::rename(&dir, &renamed)?;
        fs::remove_file(self.netdev(from))?;
        symlink(link_text(&self.netdev(to), &renamed), self.netdev(to))?;
        for entry in fs::read_dir(&renamed)? {
            let adjacent = entry?.file_name().to_string_lossy().into_owned();
            let (theirs, other) = match (adjacent.strip_prefix("upper_"), adjacent.strip_prefix("lower_")) {
                (Some(upper), _) => ("lower_", upper.to_owned()),
                (_, Some(lower)) => ("upper_", lower.to_owned()),
                _ => continue,
            };
            let other_dir = self.netdev_dir(&other)?;
            remove_if_there(&other_dir.join(format!("{theirs}{from}")))?;
            let link = other_dir.join(format!("{theirs}{to}"));
            symlink(link_text(&link, &renamed), &link)?;
            if theirs == "upper_" {
                fs::remove_file(other_dir.join("master"))?;
                symlink(link_text(&other_dir.join("master"), &renamed), other_dir.join("master"))?;
            }
        }
        Ok(())
    }

    pub fn set_mac(&self, name: &str, mac: &str) -> io::Result<()> {
        fs::write(self.netdev(name).join("address"), format!("{mac}\n"))
    }

    /// `class/net/<name>`, the link to one netdevice's directory, for tests that read or damage
    /// its entries on purpose.
    pub fn netdev(&self, name: &str) -> PathBuf {
        self.root.join("class/net").join(name)
    }

    /// The netdevice's own directory under `devices/`.
    fn netdev_dir(&self, name: &str) -> io::Result<PathBuf> {
        fs::canonicalize(self.netdev(name))
    }

    fn vmbus(&self) -> PathBuf {
        self.root.join(self.generation.vmbus())
    }

    /// The PCI function `pci` of `make` with no netdevice yet (hv_pci has added it, the driver's
    /// probe has not registered one), its PCI bus and its pass-through device; made if missing.
    pub fn add_function(&self, make: Make, pci: &str) -> io::Result<PathBuf> {
        let function = self.pci_function(pci);
        if function.exists() {
            return Ok(function);
        }
        let pass_through = function.parent().and_then(Path::parent).unwrap_or(&function).to_owned();
        self.add_device(&pass_through, "vmbus")?;
        fs::write(pass_through.join("class_id"), format!("{PCI_PASS_THROUGH_CLASS_ID}\n"))?;
        // The PCI bus (`pci<domain>:<bus>`) is a bridge device of no bus of its own.
        fs::create_dir_all(function.parent().unwrap_or(&function))?;
        self.add_device(&function, "pci")?;
        let (vendor, device, driver) = make.ids();
        fs::write(function.join("vendor"), format!("{vendor:#06x}\n"))?;
        fs::write(function.join("device"), format!("{device:#06x}\n"))?;
        let driver_dir = self.root.join("bus/pci/drivers").join(driver);
        fs::create_dir_all(&driver_dir)?;
        symlink(link_text(&function.join("driver"), &driver_dir), function.join("driver"))?;
        fs::create_dir_all(function.join("net"))?;
        Ok(function)
    }

    /// A device directory on `bus`: its `subsystem` link, and its entry in `bus/<bus>/devices`.
    fn add_device(&self, dir: &Path, bus: &str) -> io::Result<()> {
        fs::create_dir_all(dir)?;
        let bus_dir = self.root.join("bus").join(bus);
        let subsystem = dir.join("subsystem");
        if fs::symlink_metadata(&subsystem).is_err() {
            symlink(link_text(&subsystem, &bus_dir), subsystem)?;
        }
        let listed = bus_dir.join("devices").join(dir.file_name().unwrap_or_default());
        fs::create_dir_all(bus_dir.join("devices"))?;
        if fs::symlink_metadata(&listed).is_err() {
            symlink(link_text(&listed, dir), listed)?;
        }
        Ok(())
    }

    fn add_netdev(&self, name: &str, ifindex: u32, mac: &str, link_type: u32, parent: Option<&Path>) -> io::Result<()> {
        let dir = match parent {
            Some(parent) => parent.join("net").join(name),
            None => self.root.join("devices/virtual/net").join(name),
        };
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("ifindex"), format!("{ifindex}\n"))?;
        fs::write(dir.join("address"), format!("{mac}\n"))?;
        fs::write(dir.join("type"), format!("{link_type}\n"))?;
        write_flags(&dir, FLAGS_UP)?;
        let class = self.root.join("class/net");
        symlink(link_text(&dir.join("subsystem"), &class), dir.join("subsystem"))?;
        if let Some(parent) = parent {
            symlink(link_text(&dir.join("device"), parent), dir.join("device"))?;
        }
        symlink(link_text(&self.netdev(name), &dir), self.netdev(name))
    }
}

fn flags(dir: &Path) -> io::Result<u32> {
    let text = fs::read_to_string(dir.join("flags"))?;
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {err}", dir.display())))
}

fn write_flags(dir: &Path, flags: u32) -> io::Result<()> {
    fs::write(dir.join("flags"), format!("{flags:#x}\n"))
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
