//! Checks only the eBPF source can pass, on real guest kernels: which hooks attached and how, the
//! fields of the kernel's own event records, the in-kernel filter under veth churn, and (in a
//! guest with kprobes, no filter and a one-page ring buffer) lost events turning into a resync.

use anyhow::{ensure, Context as _};
use netvsc_user::event::SourceName;
use netvsc_user::report::lines::{KernelRecord, Line};
use netvsc_user::report::timeline::{Clock, Failover};

use super::guest::{cold_start, migration_cycles, pci_of, plug, unplug, Guest, Side, MAC_A};

/// The first eBPF guest: defaults, plus event traces and failover timelines.
pub const FILTERED_ARGS: &[&str] = &["--trace-events", "--measure", "/tmp/failovers.json"];

/// The second eBPF guest: kprobes only, every Ethernet device passed to userspace, and a ring
/// buffer of one page (room for ~45 events) so that a stopped agent loses some.
pub const UNFILTERED_ARGS: &[&str] =
    &["--trace-events", "--ebpf-attach", "kprobe", "--ebpf-filter", "off", "--ebpf-ring-bytes", "4096"];

/// The third eBPF guest: the agent as nobody with only the capabilities docs/deployment.md lists
/// for the eBPF source. A script in the guest's /bin, because the kernel command line that
/// carries the agent's command turns commas into spaces; `exec` all the way, so `$AGENT` stays
/// the agent's pid. RLIMIT_MEMLOCK raised first, as the unit's `LimitMEMLOCK=infinity` does:
/// kernels before 5.11 (bullseye) charge eBPF maps to it, and nobody may not raise it.
pub const LEAST_PRIVILEGE: &str = "least-privilege";
pub const LEAST_PRIVILEGE_SCRIPT: &str =
    "#!/bin/sh\nulimit -l unlimited\nexec /bin/setpriv --reuid 65534 --regid 65534 --clear-groups --no-new-privs \
     --bounding-set=-all,+bpf,+perfmon --inh-caps=-all,+bpf,+perfmon --ambient-caps=-all,+bpf,+perfmon \"$@\"\n";

/// veth pairs created and deleted while the agent watches with the filter on.
const CHURN_PAIRS: u32 = 100;
/// veth pairs created while the agent is stopped: 2 registrations each, well over one page.
const OVERFLOW_PAIRS: u32 = 60;

type Checks = Vec<(&'static str, Box<dyn Fn(&mut Guest) -> anyhow::Result<()>>)>;

/// Played after the common scenarios in the filtered fentry/fexit guest (no VF plugged by then).
pub fn filtered_guest() -> Checks {
    vec![
        ("eBPF hooks attached by fentry/fexit", Box::new(|g: &mut Guest| hooks_attached(g, &["fentry", "fexit"]))),
        ("kernel event fields of a VF's arrival and departure", Box::new(event_fields)),
        ("failover timelines in kernel time, read by the consumer", Box::new(failover_timelines)),
        ("a VF gaining and losing a master is a kernel event", Box::new(master_changes)),
        ("veth churn does not wake the agent (in-kernel filter)", Box::new(churn_is_filtered)),
    ]
}

pub fn unfiltered_guest() -> Checks {
    vec![
        (
            "eBPF hooks attached by kprobes",
            Box::new(|g: &mut Guest| hooks_attached(g, &["kprobe", "kprobe+kretprobe"])),
        ),
        ("cold start with the VF present", Box::new(cold_start)),
        ("a migration cycle", Box::new(|g: &mut Guest| migration_cycles(g, 1))),
        ("with the filter off, veth churn reaches the agent", Box::new(churn_is_seen)),
        ("ring buffer overflow: full resync, then events again", Box::new(overflow_resyncs)),
    ]
}

pub fn least_privilege_guest() -> Checks {
    vec![
        ("eBPF as nobody with CAP_BPF and CAP_PERFMON only", Box::new(runs_unprivileged)),
        ("cold start with the VF present", Box::new(cold_start)),
        ("a migration cycle", Box::new(|g: &mut Guest| migration_cycles(g, 1))),
        ("without CAP_PERFMON, one line names it", Box::new(names_the_missing_capability)),
        (
            "RLIMIT_MEMLOCK at 64 KiB: named where it limits maps (before 5.11), no matter after",
            Box::new(memlock_limit),
        ),
    ]
}

/// The agent attached its hooks while running as uid 65534 with exactly CAP_BPF (39) and
/// CAP_PERFMON (38) effective.
fn runs_unprivileged(guest: &mut Guest) -> anyhow::Result<()> {
    hooks_attached(guest, &["fentry", "fexit", "kprobe", "kprobe+kretprobe"])?;
    guest.vm.guest_run(
        "grep -Eq '^Uid:[[:space:]]+65534[[:space:]]' /proc/$AGENT/status && grep -Eq '^CapEff:[[:space:]]+000000c000000000$' /proc/$AGENT/status",
    )
}

/// util-linux's setpriv by its path (busybox has an applet of that name without --reuid);
/// on failure what the agent said goes to the console.
fn names_the_missing_capability(guest: &mut Guest) -> anyhow::Result<()> {
    guest.vm.guest_run(
        "mkdir -p /tmp/priv && /bin/setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all,+bpf --ambient-caps=-all,+bpf \
         /bin/netvsc-watch watch --source ebpf --fifo-dir /tmp/priv 2>/tmp/priv.err; status=$?; test $status = 1 \
         && test $(grep -c CAP_ /tmp/priv.err) = 1 && grep -q 'missing capability CAP_PERFMON' /tmp/priv.err \
         || { echo \"exit status $status\"; cat /tmp/priv.err; false; }",
    )
}

/// The agent as nobody with CAP_BPF and CAP_PERFMON but RLIMIT_MEMLOCK left at 64 KiB (no
/// `LimitMEMLOCK=`): kernels before 5.11 charge maps to it, so there one line must name the limit
/// and how to raise it (the bare EPERM reads like a missing capability); later kernels charge
/// the cgroup, and the agent must come up and watch.
fn memlock_limit(guest: &mut Guest) -> anyhow::Result<()> {
    guest.vm.guest_run(
        "mkdir -p /tmp/memlock && chown 65534:65534 /tmp/memlock && (ulimit -l 64 && exec /bin/setpriv --reuid 65534 --regid 65534 --clear-groups \
         --inh-caps=-all,+bpf,+perfmon --ambient-caps=-all,+bpf,+perfmon \
         /bin/netvsc-watch watch --source ebpf --fifo-dir /tmp/memlock 2>/tmp/memlock.err) & pid=$!; i=0; \
         while kill -0 $pid 2>/dev/null && ! grep -q watching /tmp/memlock.err && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
         kill -INT $pid 2>/dev/null; wait $pid; status=$?; \
         case $(uname -r) in 4.*|5.[0-9].*|5.10.*) test $status = 1 && grep -q 'RLIMIT_MEMLOCK is 64 KiB' /tmp/memlock.err \
         && grep -q 'LimitMEMLOCK=infinity' /tmp/memlock.err;; *) grep -q watching /tmp/memlock.err \
         && ! grep -q RLIMIT_MEMLOCK /tmp/memlock.err;; esac || { echo \"exit status $status\"; cat /tmp/memlock.err; false; }",
    )
}

/// Every hook the agent needs attached, each by one of `via`; prints which function each took.
fn hooks_attached(guest: &mut Guest, via: &[&str]) -> anyhow::Result<()> {
    let hooks = guest.ready.details["hooks"].as_array().context("the ready line lists the eBPF hooks")?;
    let mut attached = Vec::new();
    for wanted in netvsc_common::hook::ALL {
        let hook = hooks.iter().find(|h| h["hook"] == wanted).with_context(|| format!("{wanted} not attached"))?;
        let how = hook["via"].as_str().unwrap_or_default();
        ensure!(via.contains(&how), "{wanted} attached by {how}, expected one of {via:?}");
        attached.push(format!("{wanted}={}({how})", hook["function"].as_str().unwrap_or("?")));
    }
    println!("  hooks: {}", attached.join(" "));
    Ok(())
}

/// The kernel record (from `--trace-events`) of kind `kind` among `lines` that satisfies `pred`.
fn kernel_record(lines: &[Line], kind: &str, pred: impl Fn(&KernelRecord) -> bool) -> anyhow::Result<KernelRecord> {
    lines
        .iter()
        .filter_map(|line| match line {
            Line::Source(trace) => trace.kernel.as_ref(),
            _ => None,
        })
        .find(|k| k.kind == kind && pred(k))
        .cloned()
        .with_context(|| format!("no {kind} record from the kernel program"))
}

/// `vendor:device` of QEMU's e1000e (Intel 82574L), as the kernel program reads them.
const E1000E_PCI_ID: &str = "8086:10d3";

fn event_fields(guest: &mut Guest) -> anyhow::Result<()> {
    let port = 2;
    let pci = pci_of(port);
    let from = guest.vm.seen_lines().len();
    let plugged = plug(guest, Side::A, port)?;
    let ctx = guest.ctx_a.clone();
    let lines = guest.vm.seen_lines().split_off(from);
    let associated = lines
        .iter()
        .find_map(|line| match line {
            Line::Associated(change) if change.failsafe == ctx => Some(change),
            _ => None,
        })
        .context("the association line")?;
    let iface = associated.vf.as_ref().context("the VF's name")?.iface.clone();
    let added = kernel_record(&lines, "pci_added", |k| k.pci == pci)?;
    let registered = kernel_record(&lines, "registered", |k| k.name == iface)?;
    ensure!(registered.mac == MAC_A, "registered record has MAC {}, expected {MAC_A}", registered.mac);
    ensure!(registered.parent_bus == "pci", "the VF's parent bus is {}, expected pci", registered.parent_bus);
    ensure!(registered.dev_type == 1, "dev_type {} is not ARPHRD_ETHER", registered.dev_type);
    // Read by the kernel program from `struct pci_dev`: QEMU's e1000e is an Intel 82574L.
    ensure!(
        registered.pci_id.as_deref() == Some(E1000E_PCI_ID),
        "the VF's PCI ids are {:?}, expected {E1000E_PCI_ID}",
        registered.pci_id
    );
    ensure!(registered.ifindex > 0, "no ifindex: {registered:?}");
    ensure!(registered.netns > 0, "no netns inode: {registered:?}");
    ensure!(
        added.timestamp_ns <= registered.timestamp_ns && registered.timestamp_ns <= associated.at_ns,
        "out of order: PCI added {}, registered {}, written {}",
        added.timestamp_ns,
        registered.timestamp_ns,
        associated.at_ns
    );
    let pci_to_netdev_us = (registered.timestamp_ns - added.timestamp_ns) as f64 / 1e3;

    let from = guest.vm.seen_lines().len();
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    unplug(guest, &id, Side::A)?;
    let lines = guest.vm.seen_lines().split_off(from);
    let removed = kernel_record(&lines, "pci_removed", |k| k.pci == pci)?;
    let unregistered = kernel_record(&lines, "unregistered", |k| k.ifindex == registered.ifindex)?;
    ensure!(unregistered.name == iface, "unregistered record names {}", unregistered.name);
    ensure!(unregistered.netns == registered.netns, "netns changed: {unregistered:?}");
    ensure!(removed.timestamp_ns <= unregistered.timestamp_ns, "unregistered before PCI removal");
    println!(
        "  {iface} (ifindex {}, {MAC_A}, pci parent {E1000E_PCI_ID}, netns {}): PCI add to netdevice {pci_to_netdev_us:.0} µs, \
         kernel event to pipe {:.1} µs",
        registered.ifindex, registered.netns, plugged.reaction_us
    );
    Ok(())
}

/// Every failover so far (the migration cycles and the VF's return in `event_fields`) was timed
/// from the kernel's records, in order, through to failsafe-sim reading the address.
fn failover_timelines(guest: &mut Guest) -> anyhow::Result<()> {
    let failovers: Vec<Failover> = guest
        .vm
        .seen_lines()
        .into_iter()
        .filter_map(|line| match line {
            Line::Failover { failover } => Some(failover),
            _ => None,
        })
        .collect();
    ensure!(failovers.len() >= 3, "only {} failovers recorded", failovers.len());
    for f in &failovers {
        ensure!(f.clock == Clock::Kernel, "not in kernel time: {f:?}");
        let order = ["pci_removed", "netdev_gone", "pipe_emptied", "pci_added", "netdev_registered", "written"];
        let times = [
            f.pci_removed_ns,
            Some(f.netdev_gone_ns),
            Some(f.pipe_emptied_ns),
            f.pci_added_ns,
            f.netdev_registered_ns,
            f.written_ns,
        ];
        let times: Vec<u64> =
            times.iter().map(|t| t.context(format!("a moment is missing: {f:?}"))).collect::<Result<_, _>>()?;
        ensure!(times.windows(2).all(|w| w[0] <= w[1]), "out of order ({order:?}): {f:?}");
    }
    guest.vm.guest_run("kill -USR1 $AGENT")?;
    let report = guest.vm.line("the failover report", |line| match line {
        Line::Measurement { report } => Some(report.clone()),
        _ => None,
    })?;
    let summary = &report.summary;
    ensure!(summary.event_to_pipe_us.count == failovers.len() as u64, "summary does not count them all: {summary:?}");
    ensure!(summary.write_to_read_us.count > 0, "no read was seen: {summary:?}");
    println!(
        "  {} failovers: VF absent p50 {:.2} s; registered → pipe p50 {:.1} µs, max {:.1} µs; written → read p50 {:.0} µs",
        failovers.len(),
        summary.absent_s.p50,
        summary.event_to_pipe_us.p50,
        summary.event_to_pipe_us.max,
        summary.write_to_read_us.p50,
    );
    Ok(())
}

/// hv_netvsc associates a VF by making its NetVSC interface the VF's master; a bridge takes the
/// same kernel path (netdev_master_upper_dev_link / netdev_upper_dev_unlink). Both directions
/// must reach the agent as kernel records; a bridge is no NetVSC, so the VF stays associated.
fn master_changes(guest: &mut Guest) -> anyhow::Result<()> {
    plug(guest, Side::A, 2)?;
    let ctx = guest.ctx_a.clone();
    let iface = guest
        .vm
        .seen_lines()
        .iter()
        .rev()
        .find_map(|line| match line {
            Line::Associated(change) if change.failsafe == ctx => change.vf.as_ref().map(|vf| vf.iface.clone()),
            _ => None,
        })
        .context("the VF's name")?;
    let from = guest.vm.seen_lines().len();
    let master_record = |iface: &str| {
        let iface = iface.to_owned();
        move |line: &Line| match line {
            Line::Source(trace) => {
                trace.kernel.as_ref().filter(|k| k.kind == "master_changed" && k.name == iface).map(|k| k.timestamp_ns)
            }
            _ => None,
        }
    };
    guest.vm.guest_run(&format!("ip link add nvwbr0 type bridge && ip link set {iface} master nvwbr0"))?;
    let linked = guest.vm.line(&format!("the kernel's record of {iface} gaining a master"), master_record(&iface))?;
    guest.vm.guest_run(&format!("ip link set {iface} nomaster && ip link del nvwbr0"))?;
    let unlinked = guest.vm.line(&format!("the kernel's record of {iface} losing it"), master_record(&iface))?;
    ensure!(linked < unlinked, "records out of order: linked {linked}, unlinked {unlinked}");
    let lines = guest.vm.seen_lines().split_off(from);
    let dropped = lines.iter().any(|line| matches!(line, Line::Dissociated(change) if change.failsafe == ctx));
    ensure!(!dropped, "a bridge as master must not take the VF from {ctx}");
    println!(
        "  {iface}: master link and unlink seen by the kernel program, {:.0} µs apart",
        (unlinked - linked) as f64 / 1e3
    );
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    unplug(guest, &id, Side::A)?;
    Ok(())
}

/// Source events the agent has handled so far, from its SIGUSR1 statistics line.
fn events_so_far(guest: &mut Guest) -> anyhow::Result<u64> {
    // Let anything in flight be handled first, so it is counted in this line and not the next.
    guest.vm.collect_for(std::time::Duration::from_millis(500));
    // An earlier SIGUSR1's statistics (the failover report's) must not stand for this one's.
    guest.vm.discard(|line| matches!(line, Line::Stats { .. }));
    guest.vm.guest_run("kill -USR1 $AGENT")?;
    guest.vm.line("the agent's statistics", |line| match line {
        Line::Stats { stats, .. } => Some(stats.events),
        _ => None,
    })
}

/// A guest shell loop running `ip link <verb> vc$i ...` for `pairs` veth pairs.
fn veths(verb: &str, pairs: u32) -> String {
    let rest = if verb == "add" { " type veth peer name vd$i" } else { "" };
    format!("i=0; while [ $i -lt {pairs} ]; do ip link {verb} vc$i{rest} || exit 1; i=$((i+1)); done")
}

/// Events the agent received while `pairs` veth pairs were created and deleted.
pub(super) fn churn(guest: &mut Guest, pairs: u32) -> anyhow::Result<u64> {
    let before = events_so_far(guest)?;
    guest.vm.guest_run(&veths("add", pairs))?;
    guest.vm.guest_run(&veths("del", pairs))?;
    Ok(events_so_far(guest)? - before)
}

fn churn_is_filtered(guest: &mut Guest) -> anyhow::Result<()> {
    let from = guest.vm.seen_lines().len();
    let woken = churn(guest, CHURN_PAIRS)?;
    println!("  {CHURN_PAIRS} veth pairs created and deleted: {woken} events reached the agent");
    if woken > 0 {
        // This guest traces events: say which ones got through.
        let traced: Vec<_> = guest
            .vm
            .seen_lines()
            .split_off(from)
            .into_iter()
            .filter_map(|line| match line {
                Line::Source(trace) => Some(format!("{:?} {:?}", trace.detail, trace.kernel.map(|k| (k.kind, k.name)))),
                _ => None,
            })
            .collect();
        anyhow::bail!("{woken} events from unrelated veths reached the agent: {traced:#?}");
    }
    Ok(())
}

fn churn_is_seen(guest: &mut Guest) -> anyhow::Result<()> {
    let pairs = 10;
    let woken = churn(guest, pairs)?;
    println!("  {pairs} veth pairs created and deleted, filter off: {woken} events reached the agent");
    // At least one registration per device; the filtered guest's zero is the filter's doing.
    ensure!(woken >= u64::from(2 * pairs), "only {woken} events for {pairs} veth pairs");
    Ok(())
}

fn overflow_resyncs(guest: &mut Guest) -> anyhow::Result<()> {
    guest.vm.guest_run("kill -STOP $AGENT")?;
    let made = guest.vm.guest_run(&veths("add", OVERFLOW_PAIRS));
    guest.vm.guest_run("kill -CONT $AGENT")?;
    made?;
    let reason = guest.vm.line("a resync after the overflow", |line| match line {
        Line::Resync { source: SourceName::Ebpf, reason } if reason.contains("dropped") => Some(reason.clone()),
        _ => None,
    })?;
    println!("  {OVERFLOW_PAIRS} veth pairs while the agent was stopped: {reason}");
    guest.vm.guest_run(&veths("del", OVERFLOW_PAIRS))?;
    // Events flow again: the VF leaves and comes back at another address.
    let (id, port) = guest.vf_a.clone().context("VF A present")?;
    unplug(guest, &id, Side::A)?;
    plug(guest, Side::A, 3 - port)?;
    Ok(())
}
