use std::collections::HashSet;

use super::*;
use crate::decide::selection::{parse_mac, Spec};
use crate::netdev::{NetdevKind, PciFunction};

const MAC_A: &str = "00:15:5d:00:00:0a";
const MAC_B: &str = "00:15:5d:00:00:0b";

fn mac(s: &str) -> MacAddr6 {
    parse_mac(s).unwrap()
}

fn netvsc(ifindex: u32, name: &str, m: &str) -> Netdev {
    Netdev { ifindex, name: name.into(), mac: mac(m), kind: NetdevKind::NetVsc, master: None }
}

/// A VF on a function of its own (a Mellanox VF, say).
fn vf(ifindex: u32, name: &str, m: &str, pci: &str) -> Netdev {
    let function = PciFunction { address: pci.into(), mana: false, netdevs: 1 };
    Netdev { ifindex, name: name.into(), mac: mac(m), kind: NetdevKind::Pci(function), master: None }
}

fn other(ifindex: u32, name: &str, m: &str) -> Netdev {
    Netdev { ifindex, name: name.into(), mac: mac(m), kind: NetdevKind::Other, master: None }
}

/// What pairing makes of a VF link matched by MAC: its line is the bare address.
fn by_mac(ifindex: u32, name: &str, pci: &str) -> Vf {
    Vf { ifindex, name: name.into(), pci: pci.into(), devargs: pci.into(), matched: Match::Mac }
}

fn view(links: Vec<Netdev>, routed: &[u32]) -> SystemView {
    SystemView::from_netdevs(links, routed.iter().copied().collect::<HashSet<_>>())
}

fn auto() -> Selection {
    Selection::default()
}

fn named(names: &[&str], force: bool) -> Selection {
    Selection { specs: names.iter().map(|n| Spec::Name(n.to_string())).collect(), force, ..Default::default() }
}

fn associated(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Associate { netvsc, vf, .. } => Some((netvsc.clone(), vf.pci.clone())),
            _ => None,
        })
        .collect()
}

fn dissociated(actions: &[Action]) -> Vec<(String, Release)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dissociate { netvsc, reason, .. } => Some((netvsc.clone(), *reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn start_pairs_as_the_original_does() {
    struct Case {
        what: &'static str,
        links: Vec<Netdev>,
        routed: Vec<u32>,
        selection: Selection,
        managed: Vec<&'static str>,
        paired: Vec<(&'static str, &'static str)>,
    }
    let cases = vec![
        Case {
            what: "unrouted NetVSC with its VF",
            links: vec![netvsc(3, "eth1", MAC_A), vf(5, "enP1", MAC_A, "0001:00:02.0")],
            routed: vec![],
            selection: auto(),
            managed: vec!["eth1"],
            paired: vec![("eth1", "0001:00:02.0")],
        },
        Case {
            what: "routed NetVSC is the VM's own path and is skipped",
            links: vec![netvsc(2, "eth0", MAC_B), vf(4, "enP0", MAC_B, "0000:00:02.0"), netvsc(3, "eth1", MAC_A)],
            routed: vec![2],
            selection: auto(),
            managed: vec!["eth1"],
            paired: vec![],
        },
        Case {
            what: "named routed NetVSC is managed anyway",
            links: vec![netvsc(2, "eth0", MAC_B), vf(4, "enP0", MAC_B, "0000:00:02.0")],
            routed: vec![2],
            selection: named(&["eth0"], false),
            managed: vec!["eth0"],
            paired: vec![("eth0", "0000:00:02.0")],
        },
        Case {
            what: "VLAN, bond and virtio device sharing the MAC never match",
            links: vec![netvsc(3, "eth1", MAC_A), other(6, "eth1.100", MAC_A), other(7, "bond0", MAC_A)],
            routed: vec![],
            selection: auto(),
            managed: vec!["eth1"],
            paired: vec![],
        },
        Case {
            what: "a VF with another MAC does not match",
            links: vec![netvsc(3, "eth1", MAC_A), vf(5, "enP1", MAC_B, "0001:00:02.0")],
            routed: vec![],
            selection: auto(),
            managed: vec!["eth1"],
            paired: vec![],
        },
        Case {
            what: "two VFs at once: newest ifindex wins",
            links: vec![
                netvsc(3, "eth1", MAC_A),
                vf(9, "new", MAC_A, "0002:00:02.0"),
                vf(5, "old", MAC_A, "0001:00:02.0"),
            ],
            routed: vec![],
            selection: auto(),
            managed: vec!["eth1"],
            paired: vec![("eth1", "0002:00:02.0")],
        },
        Case {
            what: "forced non-NetVSC stand-in pairs with the PCI device sharing its MAC",
            links: vec![other(2, "eth0", MAC_A), vf(3, "eth1", MAC_A, "0000:01:00.0")],
            routed: vec![],
            selection: named(&["eth0"], true),
            managed: vec!["eth0"],
            paired: vec![("eth0", "0000:01:00.0")],
        },
        Case {
            what: "several NetVSC interfaces with their own VFs",
            links: vec![
                netvsc(3, "eth1", MAC_A),
                netvsc(4, "eth2", MAC_B),
                vf(8, "vfb", MAC_B, "0002:00:02.0"),
                vf(7, "vfa", MAC_A, "0001:00:02.0"),
            ],
            routed: vec![],
            selection: auto(),
            managed: vec!["eth1", "eth2"],
            paired: vec![("eth1", "0001:00:02.0"), ("eth2", "0002:00:02.0")],
        },
    ];
    for case in cases {
        let v = view(case.links, &case.routed);
        let (pairing, actions) = Pairing::start(case.selection, &v, false).expect(case.what);
        let managed: Vec<&str> = pairing.contexts().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(managed, case.managed, "{}", case.what);
        let paired: Vec<(String, String)> = case.paired.iter().map(|(n, p)| (n.to_string(), p.to_string())).collect();
        assert_eq!(associated(&actions), paired, "{}", case.what);
    }
}

#[test]
fn selection_errors_name_the_interface() {
    let v = view(vec![netvsc(3, "eth1", MAC_A), other(2, "eth0", MAC_B)], &[]);
    let err = Pairing::start(named(&["eth9"], false), &v, false).unwrap_err();
    assert_eq!(err, UsageError::NotFound("eth9".into()));
    let err = Pairing::start(named(&["eth0"], false), &v, false).unwrap_err();
    assert_eq!(err, UsageError::NotNetvsc("eth0".into()));
    let err = Pairing::start(named(&["eth9"], true), &v, false).unwrap_err();
    assert_eq!(err, UsageError::NotFound("eth9".into()), "force does not invent interfaces");
    let by_mac = Selection { specs: vec![Spec::Mac(mac("00:15:5D:00:00:0A"))], ..Default::default() };
    let (pairing, _) = Pairing::start(by_mac, &v, false).unwrap();
    assert_eq!(pairing.contexts()[0].name, "eth1", "MACs compare case-insensitively");
}

#[test]
fn ambiguity_is_reported_once_per_candidate_set() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), vf(5, "old", MAC_A, "0001:00:02.0")], &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, false).unwrap();
    let touched = v.upsert(vf(9, "new", MAC_A, "0002:00:02.0"));
    let actions = pairing.reconcile(&v, &touched);
    assert_eq!(associated(&actions), vec![("eth1".to_string(), "0002:00:02.0".to_string())]);
    let warned: Vec<_> = actions.iter().filter(|a| matches!(a, Action::Ambiguous { .. })).collect();
    assert_eq!(warned.len(), 1);
    if let Action::Ambiguous { chosen, others, .. } = warned[0] {
        assert_eq!(chosen.name, "new");
        assert_eq!(others.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), vec!["old"]);
    }
    let again = pairing.reconcile(&v, &Touched::All);
    assert!(again.is_empty(), "nothing changed, nothing to do: {again:?}");
    // The new VF leaves: fall back to the old one, which is still there.
    let touched = v.remove(9);
    let actions = pairing.reconcile(&v, &touched);
    assert_eq!(associated(&actions), vec![("eth1".to_string(), "0001:00:02.0".to_string())]);
}

#[test]
fn vf_removal_and_return_at_another_address() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), vf(5, "enP1", MAC_A, "0001:00:02.0")], &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, false).unwrap();
    let touched = v.remove(5);
    let actions = pairing.reconcile(&v, &touched);
    assert_eq!(dissociated(&actions), vec![("eth1".to_string(), Release::VfGone)]);
    let touched = v.upsert(vf(11, "enP2", MAC_A, "0002:00:02.0"));
    let actions = pairing.reconcile(&v, &touched);
    assert_eq!(associated(&actions), vec![("eth1".to_string(), "0002:00:02.0".to_string())]);
    assert_eq!(pairing.contexts()[0].vf.as_ref().unwrap().ifindex, 11);
}

#[test]
fn renames_are_followed_by_ifindex_without_rewriting_the_pipe() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), vf(5, "eth2", MAC_A, "0001:00:02.0")], &[]);
    let (mut pairing, _) = Pairing::start(named(&["eth1"], false), &v, false).unwrap();
    let touched = v.upsert(netvsc(3, "lan1", MAC_A));
    let actions = pairing.reconcile(&v, &touched);
    assert_eq!(actions, vec![Action::Renamed { id: 0, from: "eth1".into(), to: "lan1".into() }]);
    let touched = v.upsert(vf(5, "enP1s2", MAC_A, "0001:00:02.0"));
    let actions = pairing.reconcile(&v, &touched);
    assert!(actions.is_empty(), "a VF rename keeps its address: {actions:?}");
    assert_eq!(pairing.contexts()[0].vf.as_ref().unwrap().name, "enP1s2");
}

#[test]
fn mac_changes_are_re_evaluated() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), vf(5, "enP1", MAC_B, "0001:00:02.0")], &[]);
    let (mut pairing, actions) = Pairing::start(auto(), &v, false).unwrap();
    assert!(associated(&actions).is_empty());
    // The VF takes the NetVSC MAC: it now belongs to eth1.
    let touched = v.upsert(vf(5, "enP1", MAC_A, "0001:00:02.0"));
    assert_eq!(associated(&pairing.reconcile(&v, &touched)).len(), 1);
    // The NetVSC interface changes MAC: the VF no longer matches.
    let touched = v.upsert(netvsc(3, "eth1", MAC_B));
    assert_eq!(dissociated(&pairing.reconcile(&v, &touched)), vec![("eth1".to_string(), Release::VfGone)]);
}

#[test]
fn sidecar_picks_up_netvsc_interfaces_that_appear_later() {
    let mut v = view(vec![], &[]);
    let (mut sidecar, _) = Pairing::start(auto(), &v, true).unwrap();
    let (mut launcher, _) = Pairing::start(auto(), &v, false).unwrap();
    let mut touched = v.upsert(netvsc(3, "eth1", MAC_A));
    touched.merge(v.upsert(vf(5, "enP1", MAC_A, "0001:00:02.0")));
    let actions = sidecar.reconcile(&v, &touched);
    assert_eq!(actions[0], Action::Manage { id: 0, netvsc: "eth1".into(), mac: mac(MAC_A) });
    assert_eq!(associated(&actions), vec![("eth1".to_string(), "0001:00:02.0".to_string())]);
    assert!(launcher.reconcile(&v, &touched).is_empty(), "the launcher's contexts are fixed at start");
}

#[test]
fn auto_selected_interface_that_gains_an_address_is_released() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), vf(5, "enP1", MAC_A, "0001:00:02.0")], &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, true).unwrap();
    let touched = v.set_routed(3, true);
    assert_eq!(dissociated(&pairing.reconcile(&v, &touched)), vec![("eth1".to_string(), Release::Routed)]);
    let touched = v.set_routed(3, false);
    assert_eq!(associated(&pairing.reconcile(&v, &touched)).len(), 1);
}

#[test]
fn netvsc_that_vanishes_and_returns_keeps_its_context() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A)], &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, true).unwrap();
    let touched = v.remove(3);
    let actions = pairing.reconcile(&v, &touched);
    assert_eq!(actions, [Action::Attached { id: 0, netvsc: "eth1".into(), attached: false }]);
    assert!(pairing.reconcile(&v, &Touched::All).is_empty(), "detached once, not again");
    let touched = v.upsert(netvsc(12, "eth7", MAC_A));
    let actions = pairing.reconcile(&v, &touched);
    assert_eq!(
        actions,
        [
            Action::Attached { id: 0, netvsc: "eth7".into(), attached: true },
            Action::Renamed { id: 0, from: "eth1".into(), to: "eth7".into() }
        ]
    );
    assert_eq!(pairing.contexts().len(), 1);
    assert_eq!(pairing.contexts()[0].ifindex, 12);
    // Gone again and back under its old name: no rename to report.
    let touched = v.remove(12);
    pairing.reconcile(&v, &touched);
    let touched = v.upsert(netvsc(13, "eth7", MAC_A));
    assert_eq!(pairing.reconcile(&v, &touched), [Action::Attached { id: 0, netvsc: "eth7".into(), attached: true }]);
}

#[test]
fn a_netvsc_with_the_mac_of_a_present_one_gets_a_context_of_its_own() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A)], &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, true).unwrap();
    let touched = v.upsert(netvsc(9, "eth9", MAC_A));
    assert_eq!(pairing.reconcile(&v, &touched), [Action::Manage { id: 1, netvsc: "eth9".into(), mac: mac(MAC_A) }]);
    assert_eq!(pairing.contexts().iter().map(|c| c.ifindex).collect::<Vec<_>>(), [3, 9]);
    // And one with another MAC never takes over a detached context.
    let touched = v.remove(3);
    pairing.reconcile(&v, &touched);
    let touched = v.upsert(netvsc(10, "eth10", MAC_B));
    assert_eq!(pairing.reconcile(&v, &touched), [Action::Manage { id: 2, netvsc: "eth10".into(), mac: mac(MAC_B) }]);
}

#[test]
fn unrelated_events_touch_no_context() {
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), vf(5, "enP1", MAC_A, "0001:00:02.0")], &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, false).unwrap();
    let touched = v.upsert(other(100, "veth0", "02:00:00:00:00:01"));
    assert!(pairing.reconcile(&v, &touched).is_empty());
}

#[test]
fn a_netvsc_that_returned_unseen_keeps_its_context() {
    // Its removal and return were both lost; the rescan shows the same MAC on a new ifindex.
    let v = view(vec![netvsc(3, "eth1", MAC_A)], &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, true).unwrap();
    let v = view(vec![netvsc(7, "eth1", MAC_A), vf(9, "enP1", MAC_A, "0001:00:02.0")], &[]);
    let actions = pairing.reconcile(&v, &Touched::All);
    let vf_link = by_mac(9, "enP1", "0001:00:02.0");
    assert_eq!(
        actions,
        vec![
            Action::Attached { id: 0, netvsc: "eth1".into(), attached: true },
            Action::Associate { id: 0, netvsc: "eth1".into(), vf: vf_link }
        ]
    );
    assert_eq!(pairing.contexts().len(), 1);
    assert_eq!(pairing.contexts()[0].ifindex, 7);
}

mod association;

#[test]
fn every_action_names_its_context() {
    let vf = by_mac(10, "enP1", "0001:00:02.0");
    let actions = [
        Action::Manage { id: 1, netvsc: "eth1".into(), mac: mac(MAC_A) },
        Action::Associate { id: 2, netvsc: "eth1".into(), vf: vf.clone() },
        Action::Dissociate { id: 3, netvsc: "eth1".into(), vf: vf.clone(), reason: Release::VfGone },
        Action::Renamed { id: 4, from: "eth1".into(), to: "lan1".into() },
        Action::Ambiguous { id: 5, netvsc: "eth1".into(), chosen: vf, others: Vec::new() },
        Action::Attached { id: 6, netvsc: "eth1".into(), attached: true },
    ];
    assert_eq!(actions.iter().map(Action::id).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
}
