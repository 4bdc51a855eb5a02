//! The moments of captured and hostile log messages.

use super::*;
use crate::system::kmsg::parse_dmesg_line;

const AZURE_DMESG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/azure-dmesg.txt"));

fn s(text: &str) -> String {
    text.to_owned()
}

fn netvsc(vmbus_id: &str, name: &str, event: NetvscEvent) -> Option<Moment> {
    Some(Moment::Netvsc { vmbus_id: s(vmbus_id), netvsc: s(name), event })
}

/// Every captured line of azure-dmesg.txt, with its time and the moment it tells: hv_netvsc's
/// own lines, the VF driver's join and udev's rename; hv_pci's and the bus's lines are none.
#[test]
fn captured_lines_tell_their_moments() {
    use NetvscEvent::*;
    let (mana, cx4, onprem) = (
        ["f8615163-0000-1000-2000-70a8a53148a8", "f8615163-0001-1000-2000-70a8a5314d8b"],
        "000d3af5-76bd-000d-3af5-76bd000d3af5",
        "4179c815-5d8a-4915-976e-9ea2378e382b",
    );
    let joined = |netvsc: &str| {
        Some(Moment::VfJoined { driver: s("mana"), pci: s("7870:00:00.0"), vf: s("eth0"), netvsc: s(netvsc) })
    };
    let expected = vec![
        (3_325_036, netvsc(mana[0], "e2", VfRegistering { vf: s("eth0") })),
        (3_326_212, joined("e2")),
        (3_333_322, netvsc(mana[1], "e3", VfRegistering { vf: s("eth0") })),
        (3_334_362, joined("e3")),
        (23_210_211, netvsc("f8615163-0002-1000-2000-6045bdf3fe82", "eth1", DataPathToVf { vf: s("vf_eth2") })),
        (3_918_902, netvsc(cx4, "eth0", VfSlotAdded { slot: 1 })),
        (6_947_953, None),
        (7_465_085, netvsc(cx4, "eth0", VfRegistering { vf: s("eth1") })),
        (
            7_480_651,
            Some(Moment::VfRenamed {
                driver: s("mlx5_core"),
                pci: s("cf63:00:02.0"),
                from: s("eth1"),
                to: s("enP53091s1np0"),
            }),
        ),
        (8_090_127, netvsc(cx4, "eth0", DataPathToVf { vf: s("enP53091s1np0") })),
        (9_654_979, netvsc(cx4, "eth0", DataPathFromVf { vf: s("enP53091s1np0") })),
        (1_485_730_637, netvsc(onprem, "eth1", DataPathFromVf { vf: s("enP44703s2np0") })),
        (1_485_738_086, netvsc(onprem, "eth1", VfUnregistering { vf: s("enP44703s2np0") })),
        (1_488_218_522, None),
        (1_488_230_235, netvsc(onprem, "eth1", VfSlotRemoved { slot: 2 })),
        (1_488_247_874, None),
    ];
    let parsed: Vec<(u64, Option<Moment>)> = AZURE_DMESG
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (time, message) = parse_dmesg_line(line).unwrap_or_else(|| panic!("{line:?}"));
            (time, Moment::parse(message))
        })
        .collect();
    assert_eq!(parsed, expected);
}

/// hv_netvsc's lines in every form its format strings give; anything else is no moment.
#[test]
fn hostile_messages() {
    use NetvscEvent::*;
    const GUID: &str = "000d3af5-76bd-000d-3af5-76bd000d3af5";
    let eth0 = |event| netvsc(GUID, "eth0", event);
    let line = |text: &str| format!("hv_netvsc {GUID} eth0: {text}");
    let cases: Vec<(String, Option<Moment>)> = vec![
        // The forms of the kernel's format strings.
        (
            line("Data path failed to switch to VF: enP1s1, err: -110"),
            eth0(DataPathSwitchFailed { to_vf: true, vf: s("enP1s1"), err: -110 }),
        ),
        (
            line("Data path failed to switch from VF: a,, err: 5"),
            eth0(DataPathSwitchFailed { to_vf: false, vf: s("a,"), err: 5 }),
        ),
        (line("VF slot 4294967295 removed"), eth0(VfSlotRemoved { slot: u32::MAX })),
        (line("VF slot 0 added"), eth0(VfSlotAdded { slot: 0 })),
        (line("renamed from eth7 (while UP)"), eth0(Renamed { from: s("eth7") })),
        // Names may hold anything but `/`, `:`, NUL and white space, up to 15 bytes.
        (line("VF registering: vf.eth-2_x@+"), eth0(VfRegistering { vf: s("vf.eth-2_x@+") })),
        (line("VF registering: \u{e9}th0"), eth0(VfRegistering { vf: s("\u{e9}th0") })),
        (line("VF registering: fifteen-bytes-1"), eth0(VfRegistering { vf: s("fifteen-bytes-1") })),
        (format!("hv_netvsc {GUID} eth0 (unregistering): VF unregistering: x\n"), eth0(VfUnregistering { vf: s("x") })),
        (format!("hv_netvsc {GUID} eth0: VF unregistering: x \t\n"), eth0(VfUnregistering { vf: s("x") })),
        // Not names the kernel gives, or not the kernel's forms.
        (line("VF registering: sixteen-bytes-12"), None),
        (line("VF registering: "), None),
        (line("VF registering: a b"), None),
        (line("VF registering: a/b"), None),
        (line("VF registering: \u{fffd}"), None),
        (line("VF registering: eth0:1"), None),
        (line("Data path switched to VF:enP1"), None),
        (line("data path switched to VF: enP1"), None),
        (line("Data path switched sideways VF: enP1"), None),
        (line("Data path failed to switch to VF: enP1, err: x"), None),
        (line("Data path failed to switch to VF: enP1, err: --5"), None),
        (line("Data path failed to switch to VF: enP1, err: 99999999999"), None),
        (line("Data path failed to switch to VF: enP1"), None),
        (line("VF slot -1 added"), None),
        (line("VF slot +1 added"), None),
        (line("VF slot 4294967296 added"), None),
        (line("VF slot 1x added"), None),
        (line("VF slot 1 added twice"), None),
        (line("VF slot  1 added"), None),
        (line("Waiting for the VF association from host"), None),
        (line(""), None),
        (format!("hv_netvsc {GUID} (unnamed net_device): VF registering: x"), None),
        (format!("hv_netvsc {GUID} eth0 (Odd): VF registering: x"), None),
        (format!("hv_netvsc {GUID} eth0 (): VF registering: x"), None),
        (format!("hv_netvsc {GUID} eth0 (unregistering) x: VF registering: x"), None),
        (format!("hv_netvsc {GUID}: VF registering: x"), None),
        (s("hv_netvsc 000d3af5-76bd-000d-3af5-76bd000d3af: VF registering: x"), None),
        (s("hv_netvsc 000d3af5_76bd-000d-3af5-76bd000d3af5 eth0: VF registering: x"), None),
        (s("hv_netvsc 000d3af5-76bd-000d-3af5-76bd000d3afg eth0: VF registering: x"), None),
        (s("hv_netvsc: Increased ring_size to 64 (min allowed)"), None),
        (format!(" hv_netvsc {GUID} eth0: VF slot 1 added"), None),
        (s(""), None),
        (s("hv_netvsc"), None),
        // Other drivers, even saying hv_netvsc's words.
        (s("mlx5_core cf63:00:02.0 enP53091s1np0: Data path switched to VF: enP53091s1np0"), None),
        (s("bonding bond0: Data path switched to VF: eth1"), None),
        (format!("hv_netvsc_x {GUID} eth0: VF slot 1 added"), None),
        (format!("mana {GUID} eth0: VF slot 1 added"), None),
        (s("hv_vmbus: registering driver hv_netvsc"), None),
        (s("hv_vmbus f8615163-0000-1000-2000-70a8a53148a8: Data path switched to VF: eth0"), None),
        (s("net eth0: renamed from eth1"), None),
        (s("lan1: renamed from eth1"), None),
        (s("virtio_net virtio0 eth0: renamed from eth1"), None),
        (s("mlx5_core cf63:00:02.0 enP53091s1np0: renamed from eth1:"), None),
        (s("mlx5_core cf63:00:02.0 enP53091s1np0: renamed from"), None),
        (s("mlx5_core cf63:00:02.8 enP53091s1np0: renamed from eth1"), None),
        (s("mlx5_core cf6:00:02.0 enP53091s1np0: renamed from eth1"), None),
        (s("mlx5_core cf63:00:02.0 enP53091s1np0: joined to"), None),
        (s("mlx5_core cf63:00:02.0 enP53091s1np0: link up"), None),
        // VF-side lines of a PCI function with a long domain, renamed while up.
        (
            s("mlx4_core 10000:00:02.0 eth2: renamed from eth1 (while UP)"),
            Some(Moment::VfRenamed { driver: s("mlx4_core"), pci: s("10000:00:02.0"), from: s("eth1"), to: s("eth2") }),
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(Moment::parse(&message), expected, "{message:?}");
    }
}
