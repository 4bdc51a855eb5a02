use super::*;

/// The examples of docs/json-lines.md: every line of its ```json blocks.
fn documented_lines() -> Vec<&'static str> {
    let doc = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/json-lines.md"));
    let mut lines = Vec::new();
    let mut in_json = false;
    for line in doc.lines() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            text if in_json && !text.is_empty() => lines.push(text),
            _ => {}
        }
    }
    lines
}

/// One number per variant; the match is exhaustive, so a new variant cannot compile until it
/// is counted here (and then the test below asks for its example in the docs).
fn variant(line: &Line) -> usize {
    match line {
        Line::Ready(_) => 0,
        Line::Managed(_) => 1,
        Line::Associated(_) => 2,
        Line::Dissociated(_) => 3,
        Line::Renamed(_) => 4,
        Line::Source(_) => 5,
        Line::Resync { .. } => 6,
        Line::Stats { .. } => 7,
        Line::Failover { .. } => 8,
        Line::Read { .. } => 9,
        Line::Measurement { .. } => 10,
        Line::Interface(_) => 11,
        Line::DpdkAutoProbe { .. } => 12,
        Line::KernelOutage { .. } => 13,
    }
}
const VARIANTS: usize = 14;

#[test]
fn every_documented_example_parses_and_writes_back_unchanged() {
    let mut covered = [false; VARIANTS];
    for text in documented_lines() {
        let line: Line = serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}"));
        covered[variant(&line)] = true;
        assert_eq!(serde_json::from_str::<serde_json::Value>(text).unwrap()["event"], line.event());
        let written: serde_json::Value = serde_json::from_slice(&line.to_json()).unwrap();
        let documented: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(written, documented, "the docs' example and what the agent writes differ");
        assert!(line.to_json().ends_with(b"\n") && !line.to_json()[..line.to_json().len() - 1].contains(&b'\n'));
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|i| !covered[*i]).collect();
    assert!(missing.is_empty(), "variants without an example in docs/json-lines.md: {missing:?}");
}

#[test]
fn the_tag_is_the_event_field_in_snake_case() {
    let line = Line::DpdkAutoProbe {
        dpdk_auto_probe: crate::output::dpdk_probe::AutoProbe::decide(Some("eth1"), None, false, false),
    };
    let value: serde_json::Value = serde_json::from_slice(&line.to_json()).unwrap();
    assert_eq!(value["event"], "dpdk_auto_probe");
    assert_eq!(value["dpdk_auto_probe"]["vdev"], "net_vdev_netvsc0,ignore=1");
    // A line of another writer on the same stream (failsafe-sim) is not a Line.
    assert!(serde_json::from_str::<Line>(r#"{"failsafe":"net_failsafe_vsc0","read":"0002:00:02.0"}"#).is_err());
}

#[test]
fn link_events_become_details_with_their_fields() {
    let mac = macaddr::MacAddr6::new(0, 0x15, 0x5d, 0, 0, 0xab);
    let cases = [
        (
            NetdevEvent::Changed { ifindex: 7, name: Some("enP2s2".into()), mac: Some(mac), master: None },
            Detail::Changed {
                ifindex: 7,
                name: Some("enP2s2".into()),
                mac: Some("00:15:5d:00:00:ab".into()),
                master: None,
            },
        ),
        (
            NetdevEvent::Changed { ifindex: 7, name: None, mac: None, master: None },
            Detail::Changed { ifindex: 7, name: None, mac: None, master: None },
        ),
        (
            NetdevEvent::Changed { ifindex: 7, name: None, mac: None, master: Some(Some(3)) },
            Detail::Changed { ifindex: 7, name: None, mac: None, master: Some(3) },
        ),
        (NetdevEvent::Removed { ifindex: 8 }, Detail::Removed { ifindex: 8 }),
        (NetdevEvent::AddressChanged { ifindex: 9 }, Detail::Address { ifindex: 9 }),
        (
            NetdevEvent::Resync { reason: "overrun", lost: true },
            Detail::Resync { reason: "overrun".into(), lost: true },
        ),
        (
            NetdevEvent::PciDevice { address: "0002:00:02.0".into(), added: false },
            Detail::Pci { pci: "0002:00:02.0".into(), added: false },
        ),
    ];
    for (event, detail) in cases {
        assert_eq!(Detail::from(&event), detail, "{event:?}");
    }
}

#[test]
fn kernel_records_are_decoded_without_padding() {
    let mut event = netvsc_common::KernelEvent {
        timestamp_ns: 42,
        kind: netvsc_common::kind::PCI_REMOVED,
        ifindex: 0,
        netns: 7,
        dev_type: 1,
        parent_bus: netvsc_common::bus::VMBUS,
        _pad: 0,
        name: [0; netvsc_common::NAME_LEN],
        mac: [0, 0x15, 0x5d, 1, 2, 3],
        _pad2: [0; 2],
        pci: [0; netvsc_common::PCI_NAME_LEN],
        pci_vendor: 0,
        pci_device: 0,
        _pad3: [0; 4],
    };
    event.name[..4].copy_from_slice(b"eth1");
    event.pci[..12].copy_from_slice(b"0002:00:02.0");
    let record = KernelRecord::from(&event);
    assert_eq!(record.kind, "pci_removed");
    assert_eq!((record.name.as_str(), record.pci.as_str()), ("eth1", "0002:00:02.0"));
    assert_eq!((record.mac.as_str(), record.parent_bus.as_str()), ("00:15:5d:01:02:03", "vmbus"));
    assert_eq!((record.timestamp_ns, record.netns, record.dev_type), (42, 7, 1));
    assert_eq!(record.pci_id, None, "no ids read");
    (event.pci_vendor, event.pci_device) = (0x8086, 0x10d3);
    assert_eq!(KernelRecord::from(&event).pci_id.as_deref(), Some("8086:10d3"));
}
