use std::collections::HashSet;

use macaddr::MacAddr6;
use netvsc_testkit::openmetrics::sample;

use super::*;
use crate::decide::pairing::Action;
use crate::decide::selection::Selection;
use crate::event::{NetdevEvent, SourceEvent};
use crate::netdev::{Netdev, NetdevKind, PciFunction};
use crate::report::timeline::Failover;

const MS: u64 = 1_000_000;

fn failover() -> Failover {
    Failover {
        netvsc: "eth1".into(),
        failsafe: "net_failsafe_vsc0".into(),
        netdev_gone_ns: 10 * MS,
        pipe_emptied_ns: 10 * MS + 30_000,
        netdev_registered_ns: Some(2_010 * MS),
        written_ns: Some(2_010 * MS + 50_000),
        ..Failover::default()
    }
}

const IFACE: &str = r#"{netvsc="eth1",failsafe="net_failsafe_vsc0"}"#;

#[test]
fn a_departure_counts_a_failover_and_times_the_emptying_per_source() {
    let metrics = Metrics::new();
    metrics.departed(&failover(), SourceName::Netlink);
    let text = metrics.encode();
    assert_eq!(sample(&text, &format!("netvsc_watch_failovers_total{IFACE}")), Some(1.0), "{text}");
    let emptied = "netvsc_watch_vf_gone_to_pipe_emptied_seconds";
    assert_eq!(sample(&text, &format!(r#"{emptied}_count{{source="netlink"}}"#)), Some(1.0), "{text}");
    let sum = sample(&text, &format!(r#"{emptied}_sum{{source="netlink"}}"#)).unwrap();
    assert!((sum - 30e-6).abs() < 1e-9, "{sum}");
    // 30 µs lies in the bucket ending at 40 µs, not in the one ending at 20 µs.
    assert_eq!(sample(&text, &format!(r#"{emptied}_bucket{{le="0.00002",source="netlink"}}"#)), Some(0.0), "{text}");
    assert_eq!(sample(&text, &format!(r#"{emptied}_bucket{{le="0.00004",source="netlink"}}"#)), Some(1.0), "{text}");
    assert!(!text.contains("vf_absent_seconds_count"), "no return yet: {text}");
}

#[test]
fn a_return_times_the_absence_and_the_write() {
    let metrics = Metrics::new();
    metrics.returned(&failover(), SourceName::Ebpf);
    let text = metrics.encode();
    assert_eq!(sample(&text, &format!("netvsc_watch_vf_absent_seconds_count{IFACE}")), Some(1.0), "{text}");
    let absent = sample(&text, &format!("netvsc_watch_vf_absent_seconds_sum{IFACE}")).unwrap();
    assert!((absent - 2.0).abs() < 1e-9, "{absent}");
    let pipe = sample(&text, r#"netvsc_watch_vf_registered_to_pipe_seconds_sum{source="ebpf"}"#).unwrap();
    assert!((pipe - 50e-6).abs() < 1e-9, "{pipe}");
    // A return is not a failover of its own: the departure counted it.
    assert_eq!(sample(&text, &format!("netvsc_watch_failovers_total{IFACE}")), None, "{text}");
    let unregistered = Failover { netdev_registered_ns: None, ..failover() };
    let metrics = Metrics::new();
    metrics.returned(&unregistered, SourceName::Ebpf);
    assert!(!metrics.encode().contains("_count"), "nothing to time without the registration");
}

#[test]
fn events_relevant_events_resyncs_and_drops_are_counted_apart() {
    let metrics = Metrics::new();
    for _ in 0..3 {
        metrics.event(SourceName::Ebpf);
    }
    metrics.relevant(SourceName::Ebpf);
    metrics.resync("safety resync");
    metrics.resync("safety resync");
    metrics.ring_drops(7);
    let text = metrics.encode();
    assert_eq!(sample(&text, r#"netvsc_watch_events_total{source="ebpf"}"#), Some(3.0), "{text}");
    assert_eq!(sample(&text, r#"netvsc_watch_events_relevant_total{source="ebpf"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"netvsc_watch_resyncs_total{reason="safety resync"}"#), Some(2.0), "{text}");
    assert_eq!(sample(&text, "netvsc_watch_ebpf_ring_drops_total"), Some(7.0), "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF: {text}");
}

fn link(ifindex: u32, name: &str, kind: NetdevKind) -> Netdev {
    Netdev { ifindex, name: name.into(), mac: MacAddr6::new(0, 0x15, 0x5d, 0, 0, 1), kind, master: None }
}

fn vf_function() -> NetdevKind {
    NetdevKind::Pci(PciFunction { address: "0002:00:02.0".into(), mana: false, netdevs: 1 })
}

fn state_of(text: &str, netvsc: &str, state: &str) -> Option<f64> {
    sample(
        text,
        &format!(r#"netvsc_watch_interface_state{{netvsc="{netvsc}",failsafe="net_failsafe_vsc0",state="{state}"}}"#),
    )
}

#[test]
fn interface_state_follows_the_pipe_and_renames_drop_old_series() {
    let metrics = Metrics::new();
    let with_vf = SystemView::from_netdevs(
        vec![link(10, "eth1", NetdevKind::NetVsc), link(20, "enP1", vf_function())],
        HashSet::new(),
    );
    let (mut pairing, _) = Pairing::start(Selection::default(), &with_vf, true).unwrap();
    metrics.interfaces(&pairing, &with_vf);
    let text = metrics.encode();
    assert_eq!(sample(&text, "netvsc_watch_managed_interfaces"), Some(1.0), "{text}");
    assert_eq!(state_of(&text, "eth1", "vf"), Some(1.0), "{text}");

    // Renamed, and its VF gone: one series, under the new name, in the new state.
    let renamed = SystemView::from_netdevs(vec![link(10, "eth9", NetdevKind::NetVsc)], HashSet::new());
    pairing.reconcile(&renamed, &crate::decide::view::Touched::All);
    metrics.interfaces(&pairing, &renamed);
    let text = metrics.encode();
    assert_eq!(state_of(&text, "eth9", "no_vf"), Some(1.0), "{text}");
    assert_eq!(text.matches("netvsc_watch_interface_state{").count(), 1, "{text}");

    // Carrying the VM's routes: released.
    let routed = SystemView::from_netdevs(vec![link(10, "eth9", NetdevKind::NetVsc)], HashSet::from([10]));
    pairing.reconcile(&routed, &crate::decide::view::Touched::All);
    metrics.interfaces(&pairing, &routed);
    assert_eq!(state_of(&metrics.encode(), "eth9", "released"), Some(1.0));

    // The NetVSC netdevice itself gone: detached.
    let gone = SystemView::from_netdevs(Vec::new(), HashSet::new());
    pairing.reconcile(&gone, &crate::decide::view::Touched::All);
    metrics.interfaces(&pairing, &gone);
    assert_eq!(state_of(&metrics.encode(), "eth9", "detached"), Some(1.0));
}

#[test]
fn the_observer_times_a_vf_cycle_from_the_events() {
    let metrics = Metrics::new();
    let mut observer = Observer::new(metrics.clone(), SourceName::Netlink);
    let vf = crate::decide::pairing::Vf {
        ifindex: 20,
        name: "enP1".into(),
        pci: "0002:00:02.0".into(),
        devargs: "0002:00:02.0".into(),
        matched: crate::decide::pairing::Match::Mac,
    };
    let at = |event: NetdevEvent, ns: u64| SourceEvent { seen_at_ns: ns, ..SourceEvent::now(event) };
    let gone = at(NetdevEvent::Removed { ifindex: 20 }, 100 * MS);
    observer.source_event(&gone);
    let dissociate = Action::Dissociate {
        id: 0,
        netvsc: "eth1".into(),
        vf: vf.clone(),
        reason: crate::decide::pairing::Release::VfGone,
    };
    observer.action(&dissociate, &gone, 100 * MS + 20_000, SourceName::Netlink);
    let back = at(NetdevEvent::Changed { ifindex: 21, name: None, mac: None, master: None }, 600 * MS);
    observer.source_event(&back);
    let new_vf = crate::decide::pairing::Vf { ifindex: 21, ..vf };
    observer.action(
        &Action::Associate { id: 0, netvsc: "eth1".into(), vf: new_vf },
        &back,
        600 * MS + 40_000,
        SourceName::Netlink,
    );
    observer.delivered(SourceName::Netlink, 0);
    observer.delivered(SourceName::Netlink, 3);
    observer.delivered(SourceName::Netlink, 3);
    let text = metrics.encode();
    assert_eq!(sample(&text, &format!("netvsc_watch_failovers_total{IFACE}")), Some(1.0), "{text}");
    let absent = sample(&text, &format!("netvsc_watch_vf_absent_seconds_sum{IFACE}")).unwrap();
    assert!((absent - 0.5).abs() < 1e-9, "{absent}");
    let emptied = sample(&text, r#"netvsc_watch_vf_gone_to_pipe_emptied_seconds_sum{source="netlink"}"#).unwrap();
    assert!((emptied - 20e-6).abs() < 1e-9, "{emptied}");
    let written = sample(&text, r#"netvsc_watch_vf_registered_to_pipe_seconds_sum{source="netlink"}"#).unwrap();
    assert!((written - 40e-6).abs() < 1e-9, "{written}");
    assert_eq!(sample(&text, r#"netvsc_watch_events_total{source="netlink"}"#), Some(3.0), "{text}");
    assert_eq!(sample(&text, "netvsc_watch_ebpf_ring_drops_total"), Some(3.0), "drops counted once: {text}");
}
