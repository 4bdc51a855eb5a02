//! Azure's real event sequences (shared/reference/azure-captures.md), replayed in-process on an
//! Azure-shaped fake tree for every source, each judged on exactly what a fail-safe reader of
//! every pipe reads after each moment.
//!
//! Each sequence is played three ways: the agent keeping up (events handled right after their
//! moment), lagging one moment behind (sysfs is already a step ahead when it reads, as when the
//! rename lands 15 ms after a registration the agent has not handled yet), and all at once at the
//! end (the agent saw nothing until the dust settled: a VF plugged and unplugged during its probe
//! must never be offered).

use netvsc_testkit::fake_sysfs::Make;
use netvsc_testkit::{FakeSysfs, StaticIfindexes as StaticAddresses};
use netvsc_user::agent::Agent;
use netvsc_user::system::sysfs::Sysfs;
use netvsc_user::system::SystemReader;

mod support;
use support::rig::{launcher, pipe};
use support::sequence::{Player, Source, Step};

const MAC: &str = "00:15:5d:00:00:01";
const MAC_B: &str = "00:15:5d:00:00:02";
const CX4: Make = Make::ConnectX4;
/// The NetVSC interface every sequence but MANA's has.
const ETH1: (&str, u32, &str) = ("eth1", 3, MAC);

/// A moment and what fail-safe reads from each pipe (context order) once it is handled.
type Moment = (Step, &'static [Option<&'static str>]);

const BOOT_VF: &str = "cf63:00:02.0";

/// Microsoft's boot capture: `VF slot 1 added`, `VF registering: eth1`, `renamed from eth1`
/// 15 ms later, the join 100 ms after registration, then the data path flaps.
const BOOT: &[Moment] = &[
    (Step::PciAdded { pci: BOOT_VF, make: CX4 }, &[None]),
    (Step::Registered { name: "eth2", ifindex: 10, mac: MAC, pci: BOOT_VF, make: CX4 }, &[Some(BOOT_VF)]),
    (Step::Renamed { from: "eth2", to: "enP53091s1np0" }, &[Some(BOOT_VF)]),
    (Step::Joined { vf: "enP53091s1np0", netvsc: "eth1" }, &[Some(BOOT_VF)]),
    (Step::Flapped { name: "enP53091s1np0" }, &[Some(BOOT_VF)]),
    (Step::Flapped { name: "enP53091s1np0" }, &[Some(BOOT_VF)]),
];

/// The removal tail of the on-prem capture: switched from VF, unregistering, the PCI remove.
const REMOVAL: &[Moment] = &[
    (Step::Left { vf: "enP53091s1np0" }, &[Some(BOOT_VF)]),
    (Step::Unregistered { name: "enP53091s1np0" }, &[None]),
    (Step::PciRemoved { pci: BOOT_VF }, &[None]),
];

/// The VF back a minute later at the same domain, under a new ifindex.
const RETURN_SAME: &[Moment] = &[
    (Step::PciAdded { pci: BOOT_VF, make: CX4 }, &[None]),
    (Step::Registered { name: "eth2", ifindex: 11, mac: MAC, pci: BOOT_VF, make: CX4 }, &[Some(BOOT_VF)]),
    (Step::Renamed { from: "eth2", to: "enP53091s1np0" }, &[Some(BOOT_VF)]),
    (Step::Joined { vf: "enP53091s1np0", netvsc: "eth1" }, &[Some(BOOT_VF)]),
];

const NEW_VF: &str = "89a5:00:02.0";

/// After a redeploy: another domain (and so another name), same NetVSC interface.
const RETURN_NEW_DOMAIN: &[Moment] = &[
    (Step::PciAdded { pci: NEW_VF, make: Make::ConnectX5 }, &[None]),
    (Step::Registered { name: "eth2", ifindex: 12, mac: MAC, pci: NEW_VF, make: Make::ConnectX5 }, &[Some(NEW_VF)]),
    (Step::Renamed { from: "eth2", to: "enP35237s1" }, &[Some(NEW_VF)]),
    (Step::Joined { vf: "enP35237s1", netvsc: "eth1" }, &[Some(NEW_VF)]),
];

/// An eject that arrives while the VF is still being probed.
const UNPLUG_DURING_PROBE: &[Moment] = &[
    (Step::PciAdded { pci: BOOT_VF, make: CX4 }, &[None]),
    (Step::Registered { name: "eth2", ifindex: 10, mac: MAC, pci: BOOT_VF, make: CX4 }, &[Some(BOOT_VF)]),
    (Step::Unregistered { name: "eth2" }, &[None]),
    (Step::PciRemoved { pci: BOOT_VF }, &[None]),
];

/// Two VFs with one MAC: the newest serves, the older takes over when it goes.
const TWO_VFS_ONE_MAC: &[Moment] = &[
    (
        Step::Registered { name: "enP1s1", ifindex: 10, mac: MAC, pci: "0001:00:02.0", make: CX4 },
        &[Some("0001:00:02.0")],
    ),
    (
        Step::Registered { name: "enP2s2", ifindex: 11, mac: MAC, pci: "0002:00:02.0", make: CX4 },
        &[Some("0002:00:02.0")],
    ),
    (Step::Unregistered { name: "enP2s2" }, &[Some("0001:00:02.0")]),
    (Step::Unregistered { name: "enP1s1" }, &[None]),
];

/// The NetVSC interface is renamed while its VF is away; the VF finds it under the new name.
const NETVSC_RENAMED_WHILE_AWAY: &[Moment] = &[
    (Step::Renamed { from: "eth1", to: "eth9" }, &[None]),
    (Step::PciAdded { pci: BOOT_VF, make: CX4 }, &[None]),
    (Step::Registered { name: "eth2", ifindex: 11, mac: MAC, pci: BOOT_VF, make: CX4 }, &[Some(BOOT_VF)]),
    (Step::Joined { vf: "eth2", netvsc: "eth9" }, &[Some(BOOT_VF)]),
];

/// Microsoft's test harness: `echo 1 > .../remove` (unregistering unlinks the master itself),
/// then `echo 1 > /sys/bus/pci/rescan`, which probes the function again.
const SYSFS_REMOVE_AND_RESCAN: &[Moment] = &[
    (Step::Unregistered { name: "enP53091s1np0" }, &[None]),
    (Step::PciRemoved { pci: BOOT_VF }, &[None]),
    (Step::PciAdded { pci: BOOT_VF, make: CX4 }, &[None]),
    (Step::Registered { name: "eth2", ifindex: 11, mac: MAC, pci: BOOT_VF, make: CX4 }, &[Some(BOOT_VF)]),
    (Step::Renamed { from: "eth2", to: "enP53091s1np0" }, &[Some(BOOT_VF)]),
];

const MANA: &str = "7870:00:00.0";
const VPORT_A: &str = "7870:00:00.0,mac=00:15:5d:00:00:01";
const VPORT_B: &str = "7870:00:00.0,mac=00:15:5d:00:00:02";

/// The VyOS MANA capture: one function, a vPort for each of two NetVSC interfaces, each
/// registered before hv_netvsc joins it; then the function goes with both.
const MANA_VPORTS: &[Moment] = &[
    (Step::PciAdded { pci: MANA, make: Make::Mana }, &[None, None]),
    (Step::Registered { name: "eth3", ifindex: 10, mac: MAC, pci: MANA, make: Make::Mana }, &[Some(VPORT_A), None]),
    (Step::Joined { vf: "eth3", netvsc: "eth1" }, &[Some(VPORT_A), None]),
    (
        Step::Registered { name: "eth4", ifindex: 11, mac: MAC_B, pci: MANA, make: Make::Mana },
        &[Some(VPORT_A), Some(VPORT_B)],
    ),
    (Step::Joined { vf: "eth4", netvsc: "eth2" }, &[Some(VPORT_A), Some(VPORT_B)]),
    (Step::Unregistered { name: "eth3" }, &[None, Some(VPORT_B)]),
    (Step::Unregistered { name: "eth4" }, &[None, None]),
    (Step::PciRemoved { pci: MANA }, &[None, None]),
];

#[derive(Clone, Copy, Debug)]
enum Delivery {
    KeepingUp,
    Lagging,
    AtOnce,
}

/// Plays `moments` on a tree holding `netvscs`, for every source and delivery.
async fn replay(netvscs: &[(&'static str, u32, &'static str)], moments: &[Moment]) {
    for source in Source::ALL {
        for delivery in [Delivery::KeepingUp, Delivery::Lagging, Delivery::AtOnce] {
            play(netvscs, moments, source, delivery).await;
        }
    }
}

async fn play(netvscs: &[(&'static str, u32, &'static str)], moments: &[Moment], source: Source, delivery: Delivery) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    for &(name, ifindex, mac) in netvscs {
        sys.add_netvsc(name, ifindex, mac).unwrap();
    }
    let reader = SystemReader::new(Sysfs::open(sys.root()).unwrap(), Box::new(StaticAddresses::default()), None)
        .trust_event_parents(true);
    let mut agent = launcher(reader).await;
    let mut player = Player::new(&sys, source, netvscs);
    let mut waiting = Vec::new();
    for (i, (step, expected)) in moments.iter().enumerate() {
        let at = format!("{source:?}, {delivery:?}, after moment {i} ({step:?})");
        let events = player.play(*step);
        match delivery {
            Delivery::KeepingUp => {
                deliver(&mut agent, source, &events).await;
                let read = read_all(&mut agent, netvscs.len());
                assert!(same(&read, expected), "{at}: read {read:?}, expected {expected:?}");
            }
            Delivery::Lagging => {
                // What the previous moment sent is handled now, with sysfs a moment ahead: a pipe
                // may already show this moment, or still the one before, or nothing yet (the
                // event named a netdevice by a name sysfs no longer has: the next event tells),
                // never an address neither moment shows.
                deliver(&mut agent, source, &std::mem::replace(&mut waiting, events)).await;
                let read = read_all(&mut agent, netvscs.len());
                let none = vec![None; netvscs.len()];
                let before = i.checked_sub(1).map_or(&none[..], |b| moments[b].1);
                let allowed = |(c, read): (usize, &Option<String>)| {
                    read.is_none() || [expected[c], before[c]].contains(&read.as_deref())
                };
                assert!(read.iter().enumerate().all(allowed), "{at}: read {read:?}");
            }
            Delivery::AtOnce => waiting.extend(events),
        }
    }
    deliver(&mut agent, source, &waiting).await;
    let last = moments.last().unwrap().1;
    let read = read_all(&mut agent, netvscs.len());
    assert!(same(&read, last), "{source:?}, {delivery:?}, at the end: read {read:?}, expected {last:?}");
}

fn same(read: &[Option<String>], expected: &[Option<&str>]) -> bool {
    read.iter().map(Option::as_deref).eq(expected.iter().copied())
}

async fn deliver(agent: &mut Agent, source: Source, events: &[netvsc_user::event::SourceEvent]) {
    for event in events {
        agent.handle(event, source.name()).await.unwrap();
    }
}

/// What fail-safe reads from every pipe now; then the agent's 1 s check refills what was read.
fn read_all(agent: &mut Agent, contexts: usize) -> Vec<Option<String>> {
    let read = (0..contexts as u32).map(|id| pipe(agent, id)).collect();
    agent.refill();
    read
}

/// One test per sequence: its name, the NetVSC interfaces on the tree, and its moments (the
/// concatenation of the parts given).
macro_rules! replayed {
    ($($name:ident: $netvscs:expr => [$($part:expr),+];)+) => {$(
        #[tokio::test]
        async fn $name() {
            replay($netvscs, &[$($part),+].concat()).await;
        }
    )+};
}

replayed! {
    boot_registration_rename_join_and_a_data_path_flap: &[ETH1] => [BOOT];
    servicing_removes_the_vf_and_it_returns_at_the_same_domain: &[ETH1] => [BOOT, REMOVAL, RETURN_SAME];
    after_a_redeploy_the_vf_returns_at_another_domain: &[ETH1] => [BOOT, REMOVAL, RETURN_NEW_DOMAIN];
    an_unplug_during_the_probe_is_never_offered_late: &[ETH1] => [UNPLUG_DURING_PROBE];
    two_vfs_with_one_mac: &[ETH1] => [TWO_VFS_ONE_MAC];
    a_netvsc_renamed_while_its_vf_is_away: &[ETH1] => [BOOT, REMOVAL, NETVSC_RENAMED_WHILE_AWAY];
    removal_through_sysfs_remove_and_return_through_rescan: &[ETH1] => [BOOT, SYSFS_REMOVE_AND_RESCAN];
    mana_vports_of_one_function_serve_two_netvsc_interfaces: &[ETH1, ("eth2", 4, MAC_B)] => [MANA_VPORTS];
}
