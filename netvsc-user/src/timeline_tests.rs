use super::*;
use crate::pairing::{Match, Release, Vf};

const MS: u64 = 1_000_000;

fn vf(ifindex: u32, pci: &str) -> Vf {
    Vf { ifindex, name: format!("eth{ifindex}"), pci: pci.into(), devargs: pci.into(), matched: Match::Mac }
}

fn event(event: LinkEvent, at: u64, kernel: bool) -> SourceEvent {
    let kernel = kernel.then_some(netvsc_common::KernelEvent {
        timestamp_ns: at,
        kind: 0,
        ifindex: 0,
        netns: 0,
        dev_type: 1,
        parent_bus: 0,
        _pad: 0,
        name: [0; 16],
        mac: [0; 6],
        _pad2: [0; 2],
        pci: [0; 32],
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
    let pci = |added| LinkEvent::PciDevice { address: "0002:00:02.0".into(), added };
    let back = LinkEvent::PciDevice { address: "0003:00:02.0".into(), added: true };
    rec.source_event(&event(pci(false), start, kernel));
    let gone = event(LinkEvent::Removed { ifindex: 5 }, start + MS, kernel);
    rec.source_event(&gone);
    rec.action(&dissociate(0, vf(5, "0002:00:02.0")), &gone, start + MS + 20_000);
    rec.source_event(&event(back, start + 2_000 * MS, kernel));
    let registered = event(
        LinkEvent::Changed { ifindex: 9, name: Some("eth9".into()), mac: None, master: None },
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
    let gone = event(LinkEvent::Removed { ifindex: 5 }, MS, false);
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
    let resync = event(LinkEvent::Resync { reason: "start", lost: false }, MS, false);
    assert!(rec.action(&associate(0, vf(5, "0002:00:02.0")), &resync, 2 * MS).is_none());
    assert!(rec.report().failovers.is_empty());
}

#[test]
fn flag_changes_do_not_move_the_registration_time() {
    let mut rec = Recorder::new(SourceName::Netlink);
    let gone = event(LinkEvent::Removed { ifindex: 5 }, MS, false);
    rec.source_event(&gone);
    rec.action(&dissociate(0, vf(5, "p")), &gone, MS);
    let changed = |at| event(LinkEvent::Changed { ifindex: 9, name: None, mac: None, master: None }, at, false);
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
