//! Cost of a full scan (what the original vdev_netvsc pays every second, and what the agent pays
//! on a resync) against the cost of handling one event, with 10, 100 and 1000 interfaces.
//! The event figures must stay flat as the interface count grows: an event never rescans.
//!
//! `cargo bench -p netvsc-user --bench scan`; throughput is in interfaces (full scan) or events.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use netvsc_testkit::FakeSysfs;
use netvsc_testkit::StaticIfindexes as StaticAddresses;
use netvsc_user::agent::Agent;
use netvsc_user::failsafe::{OutputMode, Outputs};
use netvsc_user::report::Reporter;
use netvsc_user::selection::Selection;
use netvsc_user::source::{LinkEvent, SourceEvent};
use netvsc_user::sysfs::Sysfs;
use netvsc_user::system::SystemReader;
use tokio::runtime::Runtime;

const SIZES: [u32; 3] = [10, 100, 1000];
/// The VF whose removal and return each event benchmark iteration plays.
const VF_IFINDEX: u32 = 2;

/// A tree of `n` interfaces: one NetVSC with its VF, the rest virtual devices (veths, say).
fn tree(n: u32) -> (tempfile::TempDir, FakeSysfs) {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(dir.path()).unwrap();
    sys.add_netvsc("eth1", 1, "00:15:5d:00:00:01").unwrap();
    sys.add_vf("enP1", VF_IFINDEX, "00:15:5d:00:00:01", "0001:00:02.0").unwrap();
    sys.add_unrelated(n - 2, 3).unwrap();
    (dir, sys)
}

fn reader(sys: &FakeSysfs) -> SystemReader {
    SystemReader::new(Sysfs::open(sys.root()).unwrap(), Box::new(StaticAddresses::default()), None)
}

fn full_scan(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("full_scan");
    for n in SIZES {
        let (_dir, sys) = tree(n);
        let mut reader = reader(&sys);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(runtime.block_on(reader.full_scan()).unwrap()))
        });
    }
    group.finish();
}

fn one_event(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("event_remove_or_add_vf");
    for n in SIZES {
        let (_dir, sys) = tree(n);
        let mut agent = runtime
            .block_on(Agent::start(
                reader(&sys),
                Selection::default(),
                false,
                Outputs::new(OutputMode::Pipes).unwrap(),
                Reporter::new(false),
            ))
            .unwrap();
        let removed = SourceEvent::now(LinkEvent::Removed { ifindex: VF_IFINDEX });
        let added = SourceEvent::now(LinkEvent::Changed {
            ifindex: VF_IFINDEX,
            name: Some("enP1".into()),
            mac: None,
            master: None,
        });
        group.throughput(Throughput::Elements(1));
        // Alternates removal (pipe emptied) and return (one sysfs read, pipe written).
        let mut present = true;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let event = if present { &removed } else { &added };
                present = !present;
                let actions = runtime.block_on(agent.handle(event, netvsc_user::source::SourceName::Netlink)).unwrap();
                assert_eq!(actions.len(), 1, "each event flips the association");
                black_box(actions)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, full_scan, one_event);
criterion_main!(benches);
