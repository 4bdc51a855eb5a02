//! Which NetVSC interfaces to manage: the original's `iface`/`mac`/`force`/`ignore` semantics,
//! from command-line flags or from a verbatim vdev_netvsc devargs string.

use macaddr::MacAddr6;
use tracing::warn;

use crate::decide::view::SystemView;
use crate::netdev::{Netdev, NetdevKind};
use crate::usage::UsageError;

/// One `iface=`/`mac=` item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Name(String),
    Mac(MacAddr6),
}

impl Spec {
    fn matches(&self, link: &Netdev) -> bool {
        match self {
            Spec::Name(name) => link.name == *name,
            Spec::Mac(mac) => link.mac == *mac,
        }
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spec::Name(name) => f.write_str(name),
            Spec::Mac(mac) => f.write_str(&crate::netdev::mac_string(mac)),
        }
    }
}

/// The user's choice of interfaces. Empty `specs`: every NetVSC interface without an IP address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub specs: Vec<Spec>,
    /// Accept a named interface that is not NetVSC as if it were.
    pub force: bool,
    /// Do nothing at all (the original's switch to turn off auto-probing).
    pub ignore: bool,
    /// `monitor`: with no specs, every NetVSC interface, routed or not, and none is released
    /// when it gains an address (nothing is written for it, so the VM's own NIC is no risk).
    pub routed_too: bool,
}

/// An interface chosen for management at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub ifindex: u32,
    /// Picked by the automatic rule (no specs): released again if it gains an IP address.
    pub auto: bool,
}

pub fn parse_mac(value: &str) -> Result<MacAddr6, UsageError> {
    value.parse().map_err(|_| UsageError::BadMac(value.to_owned()))
}

impl Selection {
    /// Parses the original's kvargs string (`iface=eth1,mac=...,force=1,ignore=0`) and adds it to
    /// this selection.
    pub(crate) fn add_devargs(&mut self, devargs: &str) -> Result<(), UsageError> {
        for item in devargs.split(',').filter(|item| !item.is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(UsageError::BadItem { devargs: devargs.to_owned(), item: item.to_owned() });
            };
            let flag = || {
                value.trim().parse::<i64>().map(|n| n != 0).map_err(|_| UsageError::BadInteger {
                    devargs: devargs.to_owned(),
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
            };
            match key {
                "iface" => self.specs.push(Spec::Name(value.to_owned())),
                "mac" => self.specs.push(Spec::Mac(parse_mac(value)?)),
                "force" => self.force |= flag()?,
                "ignore" => self.ignore |= flag()?,
                _ => return Err(UsageError::UnknownKey { devargs: devargs.to_owned(), key: key.to_owned() }),
            }
        }
        Ok(())
    }

    pub(crate) fn is_auto(&self) -> bool {
        self.specs.is_empty()
    }

    /// Whether an interface admitted now is released again when it gains an IP address: only
    /// those the automatic rule picked for a pipe.
    pub(crate) fn releases_routed(&self) -> bool {
        self.is_auto() && !self.routed_too
    }

    /// Interfaces to manage at start-up, in a stable order (specs in the order given, else by
    /// ifindex). Named interfaces must exist and be NetVSC unless `force`.
    pub(crate) fn resolve(&self, view: &SystemView) -> Result<Vec<Admitted>, UsageError> {
        if self.is_auto() {
            return Ok(view
                .links()
                .filter(|link| link.is_netvsc() && (self.routed_too || !view.is_routed(link.ifindex)))
                .map(|link| Admitted { ifindex: link.ifindex, auto: self.releases_routed() })
                .collect());
        }
        let mut admitted: Vec<Admitted> = Vec::new();
        for spec in &self.specs {
            let link = self.resolve_spec(spec, view)?;
            if admitted.iter().any(|a| a.ifindex == link.ifindex) {
                warn!(iface = %link.name, spec = %spec, "interface already selected, skipping duplicate");
                continue;
            }
            if view.is_routed(link.ifindex) && !self.routed_too {
                warn!(iface = %link.name, "managing an interface that has IP addresses: probably the VM's own routed NetVSC");
            }
            admitted.push(Admitted { ifindex: link.ifindex, auto: false });
        }
        Ok(admitted)
    }

    fn resolve_spec<'v>(&self, spec: &Spec, view: &'v SystemView) -> Result<&'v Netdev, UsageError> {
        let mut matching: Vec<&Netdev> = view.links().filter(|link| spec.matches(link)).collect();
        if let Some(netvsc) = matching.iter().find(|link| link.is_netvsc()) {
            return Ok(netvsc);
        }
        if matching.is_empty() {
            return Err(UsageError::NotFound(spec.to_string()));
        }
        if !self.force {
            return Err(UsageError::NotNetvsc(spec.to_string()));
        }
        // Forced: prefer a device that is not itself a VF candidate.
        matching.sort_by_key(|link| (matches!(link.kind, NetdevKind::Pci(_)), link.ifindex));
        warn!(iface = %matching[0].name, "non-NetVSC interface forced to be managed as NetVSC");
        Ok(matching[0])
    }

    /// Whether a NetVSC interface that appears after start-up should be managed (sidecar mode).
    pub(crate) fn admits_later(&self, link: &Netdev, routed: bool) -> bool {
        link.is_netvsc()
            && if self.is_auto() { self.routed_too || !routed } else { self.specs.iter().any(|s| s.matches(link)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::clip;

    fn parsed(devargs: &str) -> Result<Selection, UsageError> {
        let mut selection = Selection::default();
        selection.add_devargs(devargs).map(|()| selection)
    }

    #[test]
    fn devargs_as_the_original_writes_them() {
        let mac = parse_mac("00:15:5d:00:00:01").unwrap();
        let cases: Vec<(&str, Selection)> = vec![
            ("", Selection::default()),
            ("iface=eth1", Selection { specs: vec![Spec::Name("eth1".into())], ..Default::default() }),
            (
                "mac=00:15:5D:00:00:01,force=1",
                Selection { specs: vec![Spec::Mac(mac)], force: true, ..Default::default() },
            ),
            (
                "iface=eth1,iface=eth2,ignore=0",
                Selection { specs: vec![Spec::Name("eth1".into()), Spec::Name("eth2".into())], ..Default::default() },
            ),
            ("ignore=1", Selection { ignore: true, ..Default::default() }),
            ("force=2", Selection { force: true, ..Default::default() }),
        ];
        for (devargs, want) in cases {
            assert_eq!(parsed(devargs).unwrap(), want, "{devargs:?}");
        }
    }

    #[test]
    fn bad_devargs_name_what_is_wrong() {
        let cases = [
            (
                "iface=eth1,speed=10",
                UsageError::UnknownKey { devargs: "iface=eth1,speed=10".into(), key: "speed".into() },
            ),
            (
                "force=yes",
                UsageError::BadInteger { devargs: "force=yes".into(), key: "force".into(), value: "yes".into() },
            ),
            ("iface", UsageError::BadItem { devargs: "iface".into(), item: "iface".into() }),
            ("mac=00:15:5d:00:00", UsageError::BadMac("00:15:5d:00:00".into())),
        ];
        for (devargs, want) in cases {
            assert_eq!(parsed(devargs).unwrap_err(), want, "{devargs:?}");
        }
    }

    #[test]
    fn huge_values_are_named_once_and_clipped() {
        let huge = "a".repeat(120_000);
        let message = parsed(&huge).unwrap_err().to_string();
        assert!(message.len() < 200, "{} bytes: {}", message.len(), &message[..200]);
        assert!(message.contains(&format!("{:?}… (120000 bytes)", "a".repeat(64))), "{message}");
        assert_eq!(clip("eth1"), "\"eth1\"");
    }

    #[test]
    fn macs_parse_in_any_case_and_reject_junk() {
        assert_eq!(parse_mac("00:15:5D:aB:cD:eF").unwrap(), parse_mac("00:15:5d:ab:cd:ef").unwrap());
        for bad in ["", "00:15:5d:ab:cd", "00:15:5d:ab:cd:ef:01", "00:15:5d:ab:cd:gg", "eth1"] {
            assert_eq!(parse_mac(bad).unwrap_err(), UsageError::BadMac(bad.into()), "{bad:?}");
        }
    }

    fn link(ifindex: u32, name: &str, mac: u8, kind: NetdevKind) -> Netdev {
        Netdev { ifindex, name: name.into(), mac: MacAddr6::new(0, 0x15, 0x5d, 0, 0, mac), kind, master: None }
    }

    fn pci(address: &str) -> NetdevKind {
        NetdevKind::Pci(crate::netdev::PciFunction { address: address.into(), mana: false, netdevs: 1 })
    }

    /// eth0 (NetVSC, routed: the VM's own), eth1 and eth2 (NetVSC), enP1 (eth1's VF), veth0.
    fn view() -> SystemView {
        let links = [
            link(2, "eth0", 0, NetdevKind::NetVsc),
            link(3, "eth1", 1, NetdevKind::NetVsc),
            link(4, "eth2", 2, NetdevKind::NetVsc),
            link(10, "enP1", 1, pci("0001:00:02.0")),
            link(20, "veth0", 9, NetdevKind::Other),
        ];
        SystemView::from_netdevs(links, [2].into())
    }

    fn admitted(selection: &Selection) -> Result<Vec<(u32, bool)>, UsageError> {
        Ok(selection.resolve(&view())?.into_iter().map(|a| (a.ifindex, a.auto)).collect())
    }

    #[test]
    fn automatic_selection_takes_every_unrouted_netvsc_in_ifindex_order() {
        assert_eq!(admitted(&Selection::default()).unwrap(), [(3, true), (4, true)]);
    }

    #[test]
    fn monitoring_takes_routed_interfaces_too_and_never_releases_them() {
        let every = Selection { routed_too: true, ..Default::default() };
        assert_eq!(admitted(&every).unwrap(), [(2, false), (3, false), (4, false)]);
        let view = view();
        assert!(every.admits_later(view.get(2).unwrap(), true));
        assert!(!every.admits_later(view.get(20).unwrap(), false), "still NetVSC only");
        let named = Selection { specs: vec![Spec::Name("eth1".into())], routed_too: true, ..Default::default() };
        assert_eq!(admitted(&named).unwrap(), [(3, false)], "named: the original's rules");
    }

    #[test]
    fn named_interfaces_come_in_the_order_given_each_once() {
        let mac = |n| Spec::Mac(MacAddr6::new(0, 0x15, 0x5d, 0, 0, n));
        let named = |specs: Vec<Spec>| Selection { specs, ..Default::default() };
        assert_eq!(
            admitted(&named(vec![Spec::Name("eth2".into()), Spec::Name("eth1".into())])).unwrap(),
            [(4, false), (3, false)]
        );
        // By name and again by MAC (which also matches its VF): the NetVSC interface, once.
        assert_eq!(admitted(&named(vec![Spec::Name("eth1".into()), mac(1)])).unwrap(), [(3, false)]);
        assert_eq!(admitted(&named(vec![Spec::Name("eth0".into())])).unwrap(), [(2, false)], "named, a routed one too");
        assert_eq!(admitted(&named(vec![Spec::Name("eth9".into())])).unwrap_err(), UsageError::NotFound("eth9".into()));
        assert_eq!(
            admitted(&named(vec![Spec::Name("veth0".into())])).unwrap_err(),
            UsageError::NotNetvsc("veth0".into())
        );
        let forced = Selection { specs: vec![Spec::Name("veth0".into())], force: true, ..Default::default() };
        assert_eq!(admitted(&forced).unwrap(), [(20, false)]);
        // Forced by a MAC no NetVSC has, shared by a VF and a plain device: the plain one.
        let view = SystemView::from_netdevs(
            [link(10, "enP1", 7, pci("0001:00:02.0")), link(21, "veth1", 7, NetdevKind::Other)],
            Default::default(),
        );
        let forced = Selection { specs: vec![mac(7)], force: true, ..Default::default() };
        assert_eq!(forced.resolve(&view).unwrap().iter().map(|a| a.ifindex).collect::<Vec<_>>(), [21]);
    }

    #[test]
    fn later_interfaces_are_admitted_by_the_same_rule() {
        let view = view();
        let get = |ifindex| view.get(ifindex).unwrap();
        let auto = Selection::default();
        assert!(auto.admits_later(get(3), false));
        assert!(!auto.admits_later(get(3), true), "automatic: not one with IP addresses");
        assert!(!auto.admits_later(get(20), false), "never a device that is not NetVSC");
        assert!(!auto.admits_later(get(10), false));
        let named = Selection { specs: vec![Spec::Name("eth2".into())], ..Default::default() };
        assert!(named.admits_later(get(4), true), "named: also with IP addresses");
        assert!(!named.admits_later(get(3), false), "named: only what is named");
        let veth = Selection { specs: vec![Spec::Name("veth0".into())], force: true, ..Default::default() };
        assert!(!veth.admits_later(get(20), false), "later admission is for NetVSC interfaces only");
    }
}
