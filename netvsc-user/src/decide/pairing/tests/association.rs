//! Pairing with MANA's shared functions and the kernel's own association (hv_netvsc's master
//! link), on top of the MAC rule tested in pairing_tests.rs (whose helpers these use).

use super::*;

/// A vPort of the MANA function `pci`, which carries `vports` netdevices.
fn vport(ifindex: u32, name: &str, m: &str, pci: &str, vports: usize) -> Netdev {
    let function = PciFunction { address: pci.into(), mana: true, netdevs: vports };
    Netdev { ifindex, name: name.into(), mac: mac(m), kind: NetdevKind::Pci(function), master: None }
}

fn enslaved(mut link: Netdev, master: u32) -> Netdev {
    link.master = Some(master);
    link
}

/// (NetVSC, pipe line, how matched) of every association.
fn lines(actions: &[Action]) -> Vec<(String, String, Match)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Associate { netvsc, vf, .. } => Some((netvsc.clone(), vf.devargs.clone(), vf.matched)),
            _ => None,
        })
        .collect()
}

#[test]
fn mana_vports_on_one_function_each_get_a_line_with_their_mac() {
    const PCI: &str = "7870:00:00.0";
    let v = view(
        vec![
            netvsc(3, "eth1", MAC_A),
            netvsc(4, "eth2", MAC_B),
            vport(7, "enP30832s1", MAC_A, PCI, 2),
            vport(8, "enP30832s1d1", MAC_B, PCI, 2),
        ],
        &[],
    );
    let (_, actions) = Pairing::start(auto(), &v, true).unwrap();
    assert_eq!(
        lines(&actions),
        [
            ("eth1".into(), format!("{PCI},mac={MAC_A}"), Match::Mac),
            ("eth2".into(), format!("{PCI},mac={MAC_B}"), Match::Mac),
        ]
    );
    // A MANA function with a single vPort is still bound by MAC; any other VF by bare address.
    let v = view(vec![netvsc(3, "eth1", MAC_A), vport(7, "enP30832s1", MAC_A, PCI, 1)], &[]);
    assert_eq!(lines(&Pairing::start(auto(), &v, true).unwrap().1)[0].1, format!("{PCI},mac={MAC_A}"));
    let v = view(vec![netvsc(3, "eth1", MAC_A), vf(7, "enP1", MAC_A, "0001:00:02.0")], &[]);
    assert_eq!(lines(&Pairing::start(auto(), &v, true).unwrap().1)[0].1, "0001:00:02.0");
}

#[test]
fn one_vport_leaving_empties_only_its_own_pipe() {
    const PCI: &str = "7870:00:00.0";
    let netvscs = [netvsc(3, "eth1", MAC_A), netvsc(4, "eth2", MAC_B)];
    let both = [vport(7, "enP30832s1", MAC_A, PCI, 2), vport(8, "enP30832s1d1", MAC_B, PCI, 2)];
    let v = view(netvscs.iter().chain(&both).cloned().collect(), &[]);
    let (mut pairing, _) = Pairing::start(auto(), &v, true).unwrap();
    // The second vPort goes; the first stays (its function now lists one netdevice).
    let v = view(netvscs.iter().cloned().chain([vport(7, "enP30832s1", MAC_A, PCI, 1)]).collect(), &[]);
    let actions = pairing.reconcile(&v, &Touched::All);
    assert_eq!(dissociated(&actions), [("eth2".to_owned(), Release::VfGone)]);
    assert!(lines(&actions).is_empty(), "eth1's line is unchanged: {actions:?}");
}

#[test]
fn the_kernels_association_wins_over_mac_matching() {
    // Two VFs with eth1's MAC; the kernel enslaved the older one to eth1.
    let newer = vf(9, "enP9", MAC_A, "0009:00:02.0");
    let v = view(vec![netvsc(3, "eth1", MAC_A), enslaved(vf(5, "enP5", MAC_A, "0005:00:02.0"), 3), newer.clone()], &[]);
    let (_, actions) = Pairing::start(auto(), &v, true).unwrap();
    assert_eq!(lines(&actions), [("eth1".into(), "0005:00:02.0".into(), Match::Kernel)]);
    assert!(!actions.iter().any(|a| matches!(a, Action::Ambiguous { .. })), "the kernel decided: {actions:?}");

    // Its MAC was changed: MAC matching would find nothing, the kernel's association stands.
    let v = view(vec![netvsc(3, "eth1", MAC_A), enslaved(vf(5, "enP5", MAC_B, "0005:00:02.0"), 3)], &[]);
    let (_, actions) = Pairing::start(auto(), &v, true).unwrap();
    assert_eq!(lines(&actions), [("eth1".into(), "0005:00:02.0".into(), Match::Kernel)]);
}

#[test]
fn a_vf_the_kernel_gave_to_another_netvsc_is_never_ours() {
    // Both NetVSCs carry MAC A (a MAC matcher cannot tell); the kernel gave the VF to eth2.
    let v = view(
        vec![netvsc(3, "eth1", MAC_A), netvsc(4, "eth2", MAC_A), enslaved(vf(5, "enP5", MAC_A, "0005:00:02.0"), 4)],
        &[],
    );
    let (_, actions) = Pairing::start(named(&["eth1", "eth2"], false), &v, true).unwrap();
    assert_eq!(lines(&actions), [("eth2".into(), "0005:00:02.0".into(), Match::Kernel)]);
}

#[test]
fn a_bridge_or_bond_master_is_no_association() {
    let bridge = other(20, "br0", "02:00:00:00:00:20");
    let v = view(vec![netvsc(3, "eth1", MAC_A), bridge, enslaved(vf(5, "enP5", MAC_A, "0005:00:02.0"), 20)], &[]);
    let (_, actions) = Pairing::start(auto(), &v, true).unwrap();
    assert_eq!(lines(&actions), [("eth1".into(), "0005:00:02.0".into(), Match::Mac)]);
    // A dangling master (not in the view) neither.
    let v = view(vec![netvsc(3, "eth1", MAC_A), enslaved(vf(5, "enP5", MAC_A, "0005:00:02.0"), 99)], &[]);
    assert_eq!(lines(&Pairing::start(auto(), &v, true).unwrap().1)[0].2, Match::Mac);
}

#[test]
fn the_kernel_agreeing_later_rewrites_nothing_and_disagreeing_rewrites_once() {
    let a = vf(5, "enP5", MAC_A, "0005:00:02.0");
    let b = vf(9, "enP9", MAC_A, "0009:00:02.0");
    let v = view(vec![netvsc(3, "eth1", MAC_A), a.clone()], &[]);
    let (mut pairing, actions) = Pairing::start(auto(), &v, true).unwrap();
    assert_eq!(lines(&actions), [("eth1".into(), "0005:00:02.0".into(), Match::Mac)]);
    // ~100 ms later hv_netvsc enslaves the same VF: the pipe already has the right line.
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), a.clone()], &[]);
    let touched = v.upsert(enslaved(a.clone(), 3));
    assert!(touched.covers_ifindex(3), "a master change concerns the master's context");
    assert_eq!(pairing.reconcile(&v, &touched), []);
    assert_eq!(pairing.contexts()[0].vf.as_ref().unwrap().matched, Match::Kernel);
    // A newer VF with the MAC appears, but the kernel keeps the old one: no switch.
    let touched = v.upsert(b.clone());
    assert_eq!(pairing.reconcile(&v, &touched), []);
    // The kernel moves the association to the newer VF: one rewrite.
    let mut touched = v.upsert(a);
    touched.merge(v.upsert(enslaved(b, 3)));
    assert_eq!(lines(&pairing.reconcile(&v, &touched)), [("eth1".into(), "0009:00:02.0".into(), Match::Kernel)]);
}

#[test]
fn the_unlink_just_before_removal_hands_the_vf_to_no_one_else() {
    // The kernel gave enP5 (MAC A) to eth2; hv_netvsc unlinks it just before unregistering it.
    let owned = enslaved(vf(5, "enP5", MAC_A, "0005:00:02.0"), 4);
    let v = view(vec![netvsc(3, "eth1", MAC_A), netvsc(4, "eth2", MAC_B), owned.clone()], &[]);
    let (mut pairing, actions) = Pairing::start(named(&["eth1", "eth2"], false), &v, true).unwrap();
    assert_eq!(lines(&actions), [("eth2".into(), "0005:00:02.0".into(), Match::Kernel)]);
    let mut v = view(vec![netvsc(3, "eth1", MAC_A), netvsc(4, "eth2", MAC_B), owned.clone()], &[]);
    let mut unlinked = owned;
    unlinked.master = None;
    let touched = v.upsert(unlinked);
    assert_eq!(pairing.reconcile(&v, &touched), [], "eth1 must not get eth2's VF by MAC in that moment");
    let touched = v.remove(5);
    assert_eq!(dissociated(&pairing.reconcile(&v, &touched)), [("eth2".to_owned(), Release::VfGone)]);
    // Gone is gone: a new VF with the same ifindex and MAC A is matched by MAC again.
    let touched = v.upsert(vf(5, "enP5", MAC_A, "0006:00:02.0"));
    assert_eq!(lines(&pairing.reconcile(&v, &touched)), [("eth1".into(), "0006:00:02.0".into(), Match::Mac)]);
}
