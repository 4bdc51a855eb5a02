use std::collections::BTreeSet;

use super::*;
use crate::decide::pairing::{Match, Release, Vf};

const MS: u64 = 1_000_000;

fn vf(ifindex: u32, pci: &str) -> Vf {
    Vf { ifindex, name: format!("eth{ifindex}"), pci: pci.into(), devargs: pci.into(), matched: Match::Mac }
}

fn event(event: NetdevEvent, at: u64, kernel: bool) -> SourceEvent {
    let kernel = kernel.then_some(netvsc_common::KernelEvent {
        timestamp_ns: at,
        dev_type: 1,
        ..netvsc_common::KernelEvent::default()
    });
    SourceEvent { event, seen_at_ns: at, kernel, parent: None }
}

fn dissociate(id: u32, vf: Vf) -> Action {
    Action::Dissociate { id, netvsc: "eth1".into(), vf, reason: Release::VfGone }
}

fn associate(id: u32, vf: Vf) -> Action {
    Action::Associate { id, netvsc: "eth1".into(), vf }
}

/// One outage as the eBPF source reports it: PCI removal, netdevice removal, return elsewhere.
fn outage(rec: &mut Recorder, start: u64, kernel: bool) {
    let pci = |added| NetdevEvent::PciDevice { address: "0002:00:02.0".into(), added };
    let back = NetdevEvent::PciDevice { address: "0003:00:02.0".into(), added: true };
    rec.source_event(&event(pci(false), start, kernel));
    let gone = event(NetdevEvent::Removed { ifindex: 5 }, start + MS, kernel);
    rec.source_event(&gone);
    rec.action(&dissociate(0, vf(5, "0002:00:02.0")), &gone, start + MS + 20_000);
    rec.source_event(&event(back, start + 2_000 * MS, kernel));
    let registered = event(
        NetdevEvent::Changed { ifindex: 9, name: Some("eth9".into()), mac: None, master: None },
        start + 2_100 * MS,
        kernel,
    );
    rec.source_event(&registered);
    let done = rec.action(&associate(0, vf(9, "0003:00:02.0")), &registered, start + 2_100 * MS + 40_000).cloned();
    assert_eq!(done.map(|f| f.new_pci), Some(Some("0003:00:02.0".to_owned())));
}

#[test]
fn a_failover_is_timed_from_the_kernel_events() {
    let mut rec = Recorder::new(SourceName::Ebpf);
    outage(&mut rec, 10 * MS, true);
    assert_eq!(rec.awaiting_read().collect::<Vec<_>>(), vec![0]);
    rec.read(0, 10 * MS + 2_100 * MS + 60_000);
    let report = rec.report();
    let [f] = report.failovers.as_slice() else { panic!("{report:?}") };
    assert_eq!(f.clock, Clock::Kernel);
    assert_eq!(f.pci_removed_ns, Some(10 * MS));
    assert_eq!(f.netdev_gone_ns, 11 * MS);
    assert_eq!(f.pci_added_ns, Some(2_010 * MS));
    assert_eq!(f.gone_to_emptied_us(), 20.0);
    assert_eq!(f.event_to_pipe_us(), Some(40.0));
    assert_eq!(f.write_to_read_us(), Some(20.0));
    assert!((f.absent_s().unwrap() - 2.099).abs() < 1e-9, "{:?}", f.absent_s());
    assert_eq!(rec.awaiting_read().count(), 0);
}

#[test]
fn without_kernel_times_the_clock_is_the_sources() {
    let mut rec = Recorder::new(SourceName::Netlink);
    outage(&mut rec, 0, false);
    assert_eq!(rec.report().failovers[0].clock, Clock::Netlink);
}

#[test]
fn an_outage_in_progress_is_reported_without_a_return() {
    let mut rec = Recorder::new(SourceName::Netlink);
    let gone = event(NetdevEvent::Removed { ifindex: 5 }, MS, false);
    rec.source_event(&gone);
    rec.action(&dissociate(0, vf(5, "0002:00:02.0")), &gone, 2 * MS);
    let report = rec.report();
    assert_eq!(report.failovers.len(), 1);
    assert_eq!(report.failovers[0].new_pci, None);
    assert_eq!(report.summary.absent_s.count, 0);
    assert_eq!(report.summary.gone_to_emptied_us.count, 1);
    assert!(report.table().contains("(not back)"), "{}", report.table());
    // No new VF yet: nothing to put in the event→pipe row but dashes.
    let row = report.table().lines().find(|l| l.starts_with("VF registered")).unwrap().to_owned();
    assert!(row.contains("n=0") && row.contains("p50 -, p99 -, max -"), "{row}");
}

#[test]
fn a_start_up_association_is_not_a_failover() {
    let mut rec = Recorder::new(SourceName::Netlink);
    let resync = event(NetdevEvent::Resync { reason: "start", lost: false }, MS, false);
    assert!(rec.action(&associate(0, vf(5, "0002:00:02.0")), &resync, 2 * MS).is_none());
    assert!(rec.report().failovers.is_empty());
}

#[test]
fn flag_changes_do_not_move_the_registration_time() {
    let mut rec = Recorder::new(SourceName::Netlink);
    let gone = event(NetdevEvent::Removed { ifindex: 5 }, MS, false);
    rec.source_event(&gone);
    rec.action(&dissociate(0, vf(5, "p")), &gone, MS);
    let changed = |at| event(NetdevEvent::Changed { ifindex: 9, name: None, mac: None, master: None }, at, false);
    rec.source_event(&changed(5 * MS));
    rec.source_event(&changed(7 * MS));
    rec.action(&associate(0, vf(9, "q")), &changed(7 * MS), 8 * MS);
    assert_eq!(rec.report().failovers[0].netdev_registered_ns, Some(5 * MS));
}

#[test]
fn spreads_are_quantiles_of_the_values() {
    // Three significant digits.
    let close = |got: f64, want: f64| assert!((got - want).abs() <= want * 1e-3, "{got} is not {want}");
    let spread = Spread::of((1..=100).map(f64::from));
    assert_eq!(spread.count, 100);
    close(spread.p50, 50.0);
    close(spread.p99, 99.0);
    close(spread.max, 100.0);
    close(Spread::of([0.25, 0.5]).max, 0.5);
    assert_eq!(Spread::of([]), Spread::default());
}

#[test]
fn clocks_are_named_as_serialized_and_taken_from_the_source() {
    for clock in [Clock::Kernel, Clock::Ebpf, Clock::Netlink, Clock::Poll] {
        assert_eq!(serde_json::to_string(&clock).unwrap(), format!("\"{}\"", clock.as_str()));
    }
    let of = [
        (SourceName::Ebpf, Clock::Ebpf),
        (SourceName::Netlink, Clock::Netlink),
        (SourceName::Poll, Clock::Poll),
        (SourceName::Startup, Clock::Poll),
        (SourceName::Resync, Clock::Poll),
    ];
    for (source, clock) in of {
        assert_eq!(Clock::of(source), clock, "{source:?}");
    }
}

#[test]
fn a_kernel_timestamp_on_either_end_makes_the_failover_kernel_timed() {
    let gone = |kernel| event(NetdevEvent::Removed { ifindex: 5 }, MS, kernel);
    let back = |kernel| event(NetdevEvent::Changed { ifindex: 9, name: None, mac: None, master: None }, 3 * MS, kernel);
    for (gone_kernel, back_kernel, want) in
        [(false, true, Clock::Kernel), (true, false, Clock::Kernel), (false, false, Clock::Netlink)]
    {
        let mut rec = Recorder::new(SourceName::Netlink);
        rec.source_event(&gone(gone_kernel));
        rec.action(&dissociate(0, vf(5, "p")), &gone(gone_kernel), 2 * MS);
        rec.source_event(&back(back_kernel));
        let done = rec.action(&associate(0, vf(9, "q")), &back(back_kernel), 4 * MS).cloned().unwrap();
        assert_eq!(done.clock, want, "gone by kernel {gone_kernel}, back by kernel {back_kernel}");
    }
}

#[test]
fn a_new_outage_forgets_an_address_never_read() {
    let mut rec = Recorder::new(SourceName::Ebpf);
    outage(&mut rec, 0, true);
    assert_eq!(rec.awaiting_read().collect::<Vec<_>>(), vec![0]);
    let gone = event(NetdevEvent::Removed { ifindex: 9 }, 3_000 * MS, true);
    rec.source_event(&gone);
    rec.action(&dissociate(0, vf(9, "0003:00:02.0")), &gone, 3_000 * MS + 10_000);
    assert_eq!(rec.awaiting_read().count(), 0);
    assert!(rec.read(0, 3_001 * MS).is_none(), "a read now belongs to no completed failover");
    let report = rec.report();
    assert_eq!(report.failovers.len(), 2);
    assert_eq!(report.failovers[0].read_ns, None);
    // The second outage started from the kernel's removal time of the returned VF.
    assert_eq!(report.failovers[1].netdev_gone_ns, 3_000 * MS);
}

#[test]
fn the_table_names_the_clock_and_leaves_unknowns_as_dashes() {
    let mut rec = Recorder::new(SourceName::Ebpf);
    outage(&mut rec, 0, true);
    let table = rec.report().table();
    let row = table.lines().nth(1).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    // interface, VF, clock, absent s, gone→empty µs, event→pipe µs, write→read µs, new VF
    assert_eq!(cells, ["eth1", "0002:00:02.0", "kernel", "2.099", "20.0", "40.0", "-", "0003:00:02.0"], "{table}");
    let summary = table.lines().find(|l| l.starts_with("VF absent")).unwrap();
    assert!(summary.contains("n=1") && summary.contains("p50 2.099 s"), "{summary}");
    let unread = table.lines().find(|l| l.starts_with("address written → read")).unwrap();
    assert!(unread.contains("n=0") && unread.contains("max -"), "{unread}");
}

#[test]
fn negative_spans_count_as_zero() {
    let spread = Spread::of([-5.0, 2.0]);
    assert_eq!((spread.count, spread.p50), (2, 0.0));
    assert!((spread.max - 2.0).abs() < 1e-3, "{spread:?}");
}

#[test]
fn the_outage_starts_when_the_netdevice_went_not_when_the_agent_noticed() {
    // The removal is seen at 1 ms; the dissociation happens while handling a later event (a
    // rescan at 5 ms): the outage still starts at 1 ms, and names the interface and its port.
    let mut rec = Recorder::new(SourceName::Netlink);
    rec.source_event(&event(NetdevEvent::Removed { ifindex: 5 }, MS, false));
    let rescan = event(NetdevEvent::Resync { reason: "interval", lost: false }, 5 * MS, false);
    rec.action(
        &Action::Dissociate { id: 3, netvsc: "eth4".into(), vf: vf(5, "p"), reason: Release::VfGone },
        &rescan,
        6 * MS,
    );
    let report = rec.report();
    let f = &report.failovers[0];
    assert_eq!((f.netdev_gone_ns, f.pipe_emptied_ns), (MS, 6 * MS));
    assert_eq!((f.netvsc.as_str(), f.failsafe.as_str(), f.old_pci.as_str()), ("eth4", "net_failsafe_vsc3", "p"));
    // Without a recorded removal, the handled event's time stands in.
    let mut rec = Recorder::new(SourceName::Netlink);
    rec.action(&dissociate(0, vf(7, "p")), &rescan, 6 * MS);
    assert_eq!(rec.report().failovers[0].netdev_gone_ns, 5 * MS);
}

#[test]
fn without_history_only_the_latest_failover_is_kept_and_its_outage_is_visible() {
    let mut rec = Recorder::without_history(SourceName::Ebpf);
    outage(&mut rec, 10 * MS, true);
    outage(&mut rec, 5_000 * MS, true);
    let report = rec.report();
    assert_eq!(report.failovers.len(), 1, "{report:?}");
    assert_eq!(report.failovers[0].netdev_gone_ns, 5_001 * MS, "the latest one");
    assert_eq!(rec.awaiting_read().count(), 1, "its read is still awaited");
    // While a VF is away its outage can be looked at (metrics time the emptying from it).
    assert!(rec.outage(0).is_none());
    let gone = event(NetdevEvent::Removed { ifindex: 9 }, 9_000 * MS, true);
    rec.source_event(&gone);
    rec.action(&dissociate(0, vf(9, "0003:00:02.0")), &gone, 9_000 * MS + 30_000);
    let open = rec.outage(0).expect("an outage in progress");
    assert_eq!((open.netdev_gone_ns, open.pipe_emptied_ns), (9_000 * MS, 9_000 * MS + 30_000));
    assert!(rec.outage(1).is_none());
    // With history (--measure), both are kept.
    let mut kept = Recorder::new(SourceName::Ebpf);
    outage(&mut kept, 10 * MS, true);
    outage(&mut kept, 5_000 * MS, true);
    assert_eq!(kept.report().failovers.len(), 2);
}

#[test]
fn old_sightings_are_forgotten_once_many_links_were_seen() {
    let mut rec = Recorder::new(SourceName::Netlink);
    let seen = |ifindex: u32, at: u64| event(NetdevEvent::Removed { ifindex }, at, false);
    // As many sightings as remembered, all but the last an hour old: all kept while there are
    // no more.
    for ifindex in 0..REMEMBERED as u32 - 1 {
        rec.source_event(&seen(ifindex, 0));
    }
    rec.source_event(&seen(99_999, 3_600_000 * MS));
    assert_eq!(rec.netdev.len(), REMEMBERED);
    // One more: the old ones go, the recent ones stay.
    rec.source_event(&seen(100_000, 3_600_000 * MS));
    assert_eq!(rec.netdev.keys().copied().collect::<BTreeSet<_>>(), BTreeSet::from([99_999, 100_000]));
    // Recent sightings are never forgotten, however many.
    for ifindex in 0..=REMEMBERED as u32 {
        rec.source_event(&seen(ifindex, 3_600_000 * MS + FORGET_AFTER_NS - 1));
    }
    assert_eq!(rec.netdev.len(), REMEMBERED + 3);
    let pci = |n: u32, at: u64| {
        event(NetdevEvent::PciDevice { address: format!("0000:00:{n:04}.0"), added: true }, at, false)
    };
    for n in 0..=REMEMBERED as u32 {
        rec.source_event(&pci(n, 0));
    }
    rec.source_event(&pci(9_999, FORGET_AFTER_NS));
    assert_eq!(rec.pci.len(), 1, "PCI sightings are bounded too");
}

#[test]
fn the_kernels_join_is_timed_when_first_seen_and_only_for_the_latest_failover() {
    let mut rec = Recorder::new(SourceName::Netlink);
    outage(&mut rec, 0, false);
    assert!(rec.awaiting_join(), "associated by MAC: the join is still to come");
    rec.joined(|_| false, 2_200 * MS);
    assert!(rec.awaiting_join(), "not joined yet");
    rec.joined(|id| id == 0, 2_300 * MS);
    rec.joined(|id| id == 0, 2_400 * MS);
    assert_eq!(rec.report().failovers[0].vf_joined_ns, Some(2_300 * MS), "the first sighting");
    assert!(!rec.awaiting_join());

    // A VF the kernel had joined already when its address was written: joined at that event.
    let gone = event(NetdevEvent::Removed { ifindex: 9 }, 3_000 * MS, false);
    rec.action(&dissociate(0, vf(9, "0003:00:02.0")), &gone, 3_000 * MS);
    let back = event(NetdevEvent::Changed { ifindex: 11, name: None, mac: None, master: None }, 4_000 * MS, false);
    let joined = Vf { matched: Match::Kernel, ..vf(11, "0003:00:02.0") };
    rec.action(&associate(0, joined), &back, 4_000 * MS + 30_000);
    assert!(!rec.awaiting_join());
    let joins: Vec<Option<u64>> = rec.report().failovers.iter().map(|f| f.vf_joined_ns).collect();
    assert_eq!(joins, [Some(2_300 * MS), Some(4_000 * MS)]);
}
