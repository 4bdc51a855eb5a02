//! Cost of a full scan (what the original vdev_netvsc pays every second, and what the agent pays
//! on a resync) against the cost of handling one event, with 10, 100 and 1000 interfaces.
//! The event figures must stay flat as the interface count grows: an event never rescans.
//!
//! `cargo bench -p netvsc-user --bench scan`; throughput is in interfaces (full scan) or events.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use netvsc_testkit::FakeSysfs;
use netvsc_testkit::StaticDump;
use netvsc_testkit::StaticIfindexes as StaticAddresses;
use netvsc_user::agent::Agent;
use netvsc_user::decide::selection::Selection;
use netvsc_user::event::{NetdevEvent, SourceEvent};
use netvsc_user::output::failsafe::{OutputMode, Outputs};
use netvsc_user::report::Reporter;
use netvsc_user::system::netdev_list::{KernelNetdevList, ListedNetdev};
use netvsc_user::system::sysfs::Sysfs;
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

/// An event source's safety resync on a real system: the kernel's dump, then sysfs only about
/// parent devices, with the view it replaces. Here the dump is handed over as the kernel would
/// list the tree.
fn resync_from_dump(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let mut group = c.benchmark_group("resync_from_dump");
    for n in SIZES {
        let (_dir, sys) = tree(n);
        let view = runtime.block_on(reader(&sys).full_scan()).unwrap();
        let listed = view.links().map(|l| ListedNetdev {
            ifindex: l.ifindex,
            name: l.name.clone(),
            mac: l.mac,
            master: l.master,
        });
        let dump = StaticDump::new(listed);
        let reader = SystemReader::new(
            Sysfs::open(sys.root()).unwrap(),
            Box::new(StaticAddresses::default()),
            Some(Box::new(dump)),
        );
        bench_resync(&runtime, &mut group, n, reader);
    }
    group.finish();
}

/// The same with the real kernel's dump: in a network namespace of its own holding N veths
/// (N/2 pairs), the kernel lists them and the agent decodes the list. Needs root.
fn resync_kernel_dump(c: &mut Criterion) {
    if !nix::unistd::geteuid().is_root() {
        println!("resync_kernel_dump: skipped, needs root for a network namespace");
        return;
    }
    // This thread (criterion runs every benchmark on it) moves to a namespace of its own.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("resync_kernel_dump");
    let mut pairs = 0;
    for n in SIZES {
        let mut batch = String::new();
        while pairs < n / 2 {
            batch.push_str(&format!("link add k{pairs} type veth peer name l{pairs}\n"));
            pairs += 1;
        }
        let mut ip =
            std::process::Command::new("ip").args(["-batch", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(ip.stdin.as_mut().unwrap(), batch.as_bytes()).unwrap();
        drop(ip.stdin.take());
        assert!(ip.wait().unwrap().success(), "ip -batch failed");
        let (_dir, sys) = tree(2);
        let reader = SystemReader::new(
            Sysfs::open(sys.root()).unwrap(),
            Box::new(StaticAddresses::default()),
            Some(Box::new(KernelNetdevList)),
        );
        bench_resync(&runtime, &mut group, n, reader);
    }
    group.finish();
}

/// Times `NetdevEvent::Resync` (events not lost) applied to the view of a first full scan.
fn bench_resync(runtime: &Runtime, group: &mut BenchmarkGroup<'_, WallTime>, n: u32, mut reader: SystemReader) {
    let mut view = runtime.block_on(reader.full_scan()).unwrap();
    assert!(view.links().count() >= n as usize, "{} links, fewer than {n}", view.links().count());
    let resync = SourceEvent::now(NetdevEvent::Resync { reason: "bench", lost: false });
    group.throughput(Throughput::Elements(n as u64));
    group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
        b.iter(|| black_box(runtime.block_on(reader.apply(&mut view, &resync)).unwrap()))
    });
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
        let removed = SourceEvent::now(NetdevEvent::Removed { ifindex: VF_IFINDEX });
        let added = SourceEvent::now(NetdevEvent::Changed {
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
                let actions = runtime.block_on(agent.handle(event, netvsc_user::event::SourceName::Netlink)).unwrap();
                assert_eq!(actions.len(), 1, "each event flips the association");
                black_box(actions)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, full_scan, resync_from_dump, resync_kernel_dump, one_event);
criterion_main!(benches);
