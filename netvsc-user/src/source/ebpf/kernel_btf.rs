//! What the kernel program needs to know about the running kernel, read from its BTF
//! (`/sys/kernel/btf/vmlinux`): struct member offsets, and which of several function names
//! (they change across versions) the kernel has.

use anyhow::{bail, Context as _};
use btf_rs::{Btf, Type};
use netvsc_common::Config;

pub struct KernelBtf {
    btf: Btf,
}

impl KernelBtf {
    pub fn load(path: &str) -> anyhow::Result<Self> {
        let btf = Btf::from_file(path).with_context(|| format!("no BTF at {path}"))?;
        Ok(Self { btf })
    }

    /// Byte offset of `path` (members, outermost first) inside `struct <name>`, looking through
    /// anonymous struct/union members.
    pub fn offset(&self, name: &str, path: &[&str]) -> anyhow::Result<u32> {
        let mut current = self.named_struct(name)?;
        let mut bits = 0;
        for (i, member_name) in path.iter().enumerate() {
            let (offset, member_type) = self
                .find_member(&current, member_name)?
                .with_context(|| format!("struct {name} has no member {}", path[..=i].join(".")))?;
            bits += offset;
            if i + 1 < path.len() {
                current = self.strip(member_type)?;
            }
        }
        if bits % 8 != 0 {
            bail!("{name}.{} is a bitfield", path.join("."));
        }
        Ok(bits / 8)
    }

    /// The first of `candidates` that the kernel has as a function taking `params` arguments.
    pub fn function<'a>(&self, candidates: &[&'a str], params: usize) -> Option<&'a str> {
        candidates.iter().copied().find(|name| {
            self.btf.resolve_types_by_name(name).ok().into_iter().flatten().any(|ty| match ty {
                Type::Func(func) => matches!(
                    self.btf.resolve_chained_type(&func),
                    Ok(Type::FuncProto(proto)) if proto.parameters.len() == params
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
            ..Config::default()
        })
    }

    fn named_struct(&self, name: &str) -> anyhow::Result<Type> {
        let types = self.btf.resolve_types_by_name(name).with_context(|| format!("struct {name} not in BTF"))?;
        types
            .into_iter()
            .find(|ty| matches!(ty, Type::Struct(s) if !s.members.is_empty()))
            .with_context(|| format!("struct {name} not in BTF"))
    }

    /// (bit offset, type) of member `name` of a struct or union, searching anonymous members.
    fn find_member(&self, ty: &Type, name: &str) -> anyhow::Result<Option<(u32, Type)>> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => return Ok(None),
        };
        for member in members {
            let member_name = self.btf.resolve_name(member).unwrap_or_default();
            let member_type = self.btf.resolve_chained_type(member)?;
            if member_name == name {
                return Ok(Some((member.bit_offset(), member_type)));
            }
            if member_name.is_empty() {
                if let Some((inner, found)) = self.find_member(&self.strip(member_type)?, name)? {
                    return Ok(Some((member.bit_offset() + inner, found)));
                }
            }
        }
        Ok(None)
    }

    /// Looks through typedefs and qualifiers.
    fn strip(&self, mut ty: Type) -> anyhow::Result<Type> {
        loop {
            ty = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t)?,
                Type::Const(t) => self.btf.resolve_chained_type(t)?,
                Type::Volatile(t) => self.btf.resolve_chained_type(t)?,
                Type::TypeTag(t) => self.btf.resolve_chained_type(t)?,
                _ => return Ok(ty),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the running kernel's own BTF; every kernel the agent supports has one.
    #[test]
    fn offsets_and_hook_functions_resolve_on_this_kernel() {
        let Ok(btf) = KernelBtf::load("/sys/kernel/btf/vmlinux") else {
            eprintln!("SKIP: no /sys/kernel/btf/vmlinux on this machine");
            return;
        };
        let config = btf.config().expect("all offsets resolve");
        assert!(config.netdev_name > 0 && config.netdev_ifindex > 0 && config.netdev_dev_addr > 0);
        assert_ne!(config.netdev_name, config.netdev_ifindex);
        assert_eq!(btf.function(&["no_such_function", "register_netdevice"], 1), Some("register_netdevice"));
        assert_eq!(btf.function(&["register_netdevice"], 3), None, "wrong arity is not a match");
        assert!(btf.function(&["unregister_netdevice_queue"], 2).is_some());
        assert!(btf.offset("net_device", &["no_such_member"]).is_err());
    }
}
