//! The eBPF source on the host kernel. Kernels like this machine's refuse tracing programs
//! (fentry/fexit: EPERM) and have no kprobes, so attachment and events are tested in the VM rig
//! (`cargo xtask vm test`). Here: the embedded object loads with offsets from this kernel's BTF
//! and creates its maps, its kprobe programs pass this kernel's verifier, and source selection
//! says why eBPF was passed over, with the errno the kernel really gave.

use std::process::Command;

use aya::programs::{FExit, KProbe};
use netvsc_testkit::FakeSysfs;
use netvsc_user::event::SourceName;
use netvsc_user::source::ebpf::{self, kprobe_programs, AttachMode, EbpfOptions};

mod support;
use support::{skip_unless_root, JsonProcess, NETVSC_WATCH};

fn skip(test: &str) -> bool {
    if !ebpf::has_object() {
        netvsc_testkit::skip(test, "this build has no eBPF object (cargo xtask test and cargo xtask build embed it)");
        return true;
    }
    skip_unless_root(test)
}

fn options(ring_bytes: u32) -> EbpfOptions {
    EbpfOptions { filter: true, log: false, ring_bytes, attach: AttachMode::Auto }
}

/// What the kernel is told of the licence must be said, not defaulted: aya marks an object
/// without a `license` section as GPL silently. And the bench's socket filter is an object of its
/// own, not part of what the agent embeds.
#[test]
fn the_object_declares_its_licence_and_holds_only_the_agents_programs() {
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
    if !ebpf::has_object() {
        netvsc_testkit::skip(
            "the_object_declares_its_licence_and_holds_only_the_agents_programs",
            "this build has no eBPF object (cargo xtask test and cargo xtask build embed it)",
        );
        return;
    }
    let file = object::File::parse(ebpf::object()).expect("an ELF object");
    let license = file.section_by_name("license").expect("a license section");
    assert_eq!(license.data().unwrap(), b"Dual MIT/GPL\0");
    let symbols: Vec<&str> = file.symbols().filter_map(|symbol| symbol.name().ok()).collect();
    for program in ebpf::program_names() {
        assert!(symbols.contains(&program), "program {program} missing: {symbols:?}");
    }
    for bench_only in ["rtnl_broadcast_stamp", "BROADCASTS"] {
        assert!(!symbols.contains(&bench_only), "{bench_only} is the bench's, not the agent's: {symbols:?}");
    }
}

#[test]
fn object_loads_with_this_kernels_offsets_and_creates_its_maps() {
    if skip("object_loads_with_this_kernels_offsets_and_creates_its_maps") {
        return;
    }
    let ring_bytes = 2 * 4096 * 4;
    let loaded = ebpf::load_object(&options(ring_bytes)).expect("loading the object");
    let config = loaded.kernel.config().expect("offsets from BTF");
    assert!(config.netdev_ifindex > 0 && config.netdev_name > 0 && config.netdev_parent > 0, "{config:?}");
    let maps: Vec<&str> = loaded.ebpf.maps().map(|(name, _)| name).collect();
    for wanted in ["EVENTS", "DROPS", "WATCHED_MACS"] {
        assert!(maps.contains(&wanted), "map {wanted} missing from {maps:?}");
    }
    // The loader attaches programs by name: every name it uses must be a program of the object.
    let programs: Vec<&str> = loaded.ebpf.programs().map(|(name, _)| name).collect();
    for wanted in ebpf::program_names() {
        assert!(programs.contains(&wanted), "program {wanted} missing from {programs:?}");
    }
    let mut ebpf = loaded.ebpf;
    let ring = ebpf.take_map("EVENTS").expect("EVENTS");
    let aya::maps::Map::RingBuf(ring) = ring else { panic!("EVENTS is not a ring buffer") };
    let info = ring.info().expect("the kernel's view of EVENTS");
    assert_eq!(info.max_entries(), ring_bytes, "ring buffer size handed to the kernel");
}

#[test]
fn kprobe_programs_pass_this_kernels_verifier() {
    if skip("kprobe_programs_pass_this_kernels_verifier") {
        return;
    }
    let mut ebpf = ebpf::load_object(&options(4096)).expect("loading the object").ebpf;
    let mut loaded = 0;
    for name in kprobe_programs() {
        let program: &mut KProbe =
            ebpf.program_mut(name).unwrap_or_else(|| panic!("no program {name}")).try_into().expect(name);
        program.load().unwrap_or_else(|err| panic!("{name} rejected: {err:#}"));
        loaded += 1;
    }
    assert!(loaded >= 6, "only {loaded} kprobe programs");
}

/// What this kernel says to an fexit program on `register_netdevice`, found without the agent.
fn kernel_verdict_on_fexit() -> Result<(), String> {
    let mut loaded = ebpf::load_object(&options(4096)).map_err(|err| format!("{err:#}"))?;
    let program: &mut FExit =
        loaded.ebpf.program_mut(netvsc_common::hook::NETDEV_REGISTERED).expect("program").try_into().unwrap();
    program.load("register_netdevice", &loaded.btf).map_err(|err| format!("{err:#}"))
}

#[test]
fn source_selection_says_why_ebpf_was_passed_over() {
    if skip("source_selection_says_why_ebpf_was_passed_over") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth1", 3, "00:15:5d:00:00:01").unwrap();
    let fifo_dir = dir.path().join("run");
    std::fs::create_dir(&fifo_dir).unwrap();
    let (root, fifos) = (sys.root().to_str().unwrap(), fifo_dir.to_str().unwrap());
    let base = ["watch", "--json", "--sysfs-root", root, "--fifo-dir", fifos];

    let mut auto = JsonProcess::agent(None, &base);
    let ready = auto.ready();
    drop(auto);
    match kernel_verdict_on_fexit() {
        Ok(()) => {
            // This kernel allows tracing programs: auto must have taken eBPF.
            assert_eq!(ready.source, SourceName::Ebpf, "{ready:?}");
            assert!(ready.details["hooks"].as_array().is_some_and(|h| !h.is_empty()), "{ready:?}");
        }
        Err(verdict) => {
            assert_eq!(ready.source, SourceName::Netlink, "{ready:?}");
            assert_eq!(ready.passed_over[0].source, SourceName::Ebpf, "{ready:?}");
            let reason = ready.passed_over[0].reason.clone();
            if verdict.contains("Operation not permitted") {
                assert!(reason.contains("EPERM"), "the kernel said EPERM; the reason says: {reason}");
            }
            assert!(reason.contains("netdev_registered"), "the reason names the hook: {reason}");

            // Asked for explicitly, eBPF fails with the same reason.
            let out = Command::new(NETVSC_WATCH).args(base).args(["--source", "ebpf"]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.contains("eBPF source unavailable") && stderr.contains(&reason), "{stderr}");
        }
    }
}
