//! What the kernel program needs to know about the running kernel, read from its BTF
//! (`/sys/kernel/btf/vmlinux`) with `btfparse` (Apache-2.0): struct member offsets, and which of
//! several function names (they change across versions) the kernel has.

use std::collections::HashMap;

use anyhow::{bail, Context as _};
use btfparse::{Offset, Readable, TypeInformation, TypeVariant};
use netvsc_common::Config;

pub struct KernelBtf {
    types: TypeInformation,
    /// Every type id of each name: a name may belong to a struct, a forward declaration and a
    /// function at once, and btfparse's own lookup keeps only one of them.
    by_name: HashMap<String, Vec<u32>>,
}

/// The BTF file's bytes, read once (sysfs serves it in pages; btfparse reads in small pieces).
struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let piece = start.checked_add(buffer.len()).and_then(|end| self.0.get(start..end));
        let piece = piece.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buffer.copy_from_slice(piece);
        Ok(())
    }
}

impl KernelBtf {
    pub fn load(path: &str) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("no BTF at {path}"))?;
        let types = TypeInformation::new(&Bytes(bytes))
            .map_err(|err| anyhow::anyhow!("{err:?}"))
            .with_context(|| format!("parsing the BTF at {path}"))?;
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for tid in types.get().keys() {
            if let Some(name) = types.name_of(*tid) {
                by_name.entry(name).or_default().push(*tid);
            }
        }
        Ok(Self { types, by_name })
    }

    fn named(&self, name: &str) -> impl Iterator<Item = (u32, TypeVariant)> + '_ {
        let ids = self.by_name.get(name).map(Vec::as_slice).unwrap_or_default();
        ids.iter().filter_map(|tid| Some((*tid, self.types.from_id(*tid)?)))
    }

    /// Byte offset of `path` (members, outermost first) inside `struct <name>`, looking through
    /// anonymous struct/union members.
    pub(crate) fn offset(&self, name: &str, path: &[&str]) -> anyhow::Result<u32> {
        let tid = self
            .named(name)
            .find_map(|(tid, ty)| match ty {
                TypeVariant::Struct(s) if !s.member_list().is_empty() => Some(tid),
                _ => None,
            })
            .with_context(|| format!("struct {name} not in BTF"))?;
        let dotted = path.join(".");
        match self.types.offset_of(tid, &dotted) {
            Ok((_, Offset::ByteOffset(bytes))) => Ok(bytes),
            Ok((_, Offset::BitOffsetAndSize(..))) => bail!("{name}.{dotted} is a bitfield"),
            Err(err) => bail!("struct {name} has no member {dotted} ({err:?})"),
        }
    }

    /// The first of `candidates` that the kernel has as a function taking `params` arguments.
    pub fn function<'a>(&self, candidates: &[&'a str], params: usize) -> Option<&'a str> {
        candidates.iter().copied().find(|name| {
            self.named(name).any(|(_, ty)| match ty {
                TypeVariant::Func(func) => matches!(
                    self.types.from_id(*func.prototype_tid()),
                    Some(TypeVariant::FuncProto(proto)) if proto.parameter_list().len() == params
                ),
                _ => false,
            })
        })
    }

    /// Every offset the kernel program uses.
    pub fn config(&self) -> anyhow::Result<Config> {
        Ok(Config {
            netdev_ifindex: self.offset("net_device", &["ifindex"])?,
            netdev_name: self.offset("net_device", &["name"])?,
            netdev_dev_addr: self.offset("net_device", &["dev_addr"])?,
            netdev_type: self.offset("net_device", &["type"])?,
            netdev_net: self.offset("net_device", &["nd_net", "net"])?,
            net_inum: self.offset("net", &["ns", "inum"])?,
            netdev_parent: self.offset("net_device", &["dev", "parent"])?,
            device_bus: self.offset("device", &["bus"])?,
            bus_name: self.offset("bus_type", &["name"])?,
            pci_dev_name: self.offset("pci_dev", &["dev", "kobj", "name"])?,
            device_name: self.offset("device", &["kobj", "name"])?,
            pci_dev_vendor: self.pci_dev_member_from_its_device("vendor")?,
            pci_dev_device: self.pci_dev_member_from_its_device("device")?,
            ..Config::default()
        })
    }

    /// Where `pci_dev.<member>` is relative to `pci_dev.dev`, as two's complement (the kernel
    /// program reaches the PCI function from its embedded `struct device`).
    fn pci_dev_member_from_its_device(&self, member: &str) -> anyhow::Result<u32> {
        let (at, dev) = (self.offset("pci_dev", &[member])?, self.offset("pci_dev", &["dev"])?);
        Ok(at.wrapping_sub(dev))
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Against the running kernel's own BTF; every kernel the agent supports has one.
    #[test]
    fn offsets_and_hook_functions_resolve_on_this_kernel() {
        let Ok(btf) = KernelBtf::load("/sys/kernel/btf/vmlinux") else {
            // Straight to the handle: libtest captures eprintln! of a passing test.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "SKIP offsets_and_hook_functions_resolve_on_this_kernel: no /sys/kernel/btf/vmlinux"
            );
            return;
        };
        let config = btf.config().expect("all offsets resolve");
        assert!(config.netdev_name > 0 && config.netdev_ifindex > 0 && config.netdev_dev_addr > 0);
        assert_ne!(config.netdev_name, config.netdev_ifindex);
        assert_eq!(btf.function(&["no_such_function", "register_netdevice"], 1), Some("register_netdevice"));
        assert_eq!(btf.function(&["register_netdevice"], 3), None, "wrong arity is not a match");
        assert!(btf.function(&["unregister_netdevice_queue"], 2).is_some());
        // The kernel's VF association (hv_netvsc, bridges and bonds link the same way).
        assert!(btf.function(&["netdev_master_upper_dev_link"], 5).is_some());
        assert!(btf.function(&["netdev_upper_dev_unlink"], 2).is_some());
        assert!(btf.offset("net_device", &["no_such_member"]).is_err());
        // vendor and device are adjacent u16s ahead of the embedded device.
        let vendor = config.pci_dev_vendor as i32;
        assert!(vendor < 0, "pci_dev.vendor comes before pci_dev.dev: {vendor}");
        assert_eq!(config.pci_dev_device as i32, vendor + 2);
    }
}
