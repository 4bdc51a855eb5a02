//! Least privilege, measured: the agent run by `setpriv` as an unprivileged user (nobody) with
//! only the capabilities docs/deployment.md lists for its source. netlink and poll need none,
//! only the FIFO directory; the eBPF source says which capability it lacks, in one line (that it
//! runs with CAP_BPF and CAP_PERFMON alone is shown in the QEMU guest, whose kernel allows its
//! hooks: `cargo xtask vm test`).

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use netvsc_user::event::SourceName;
use netvsc_user::output::failsafe::reader::read_like_failsafe;
use netvsc_user::source::ebpf;

mod support;
use support::stage::{Stage, StageExt as _, MAC};
use support::{open_fifo, skip_unless_root, JsonProcess, NETVSC_WATCH};

/// nobody:nogroup.
const NOBODY: &str = "65534";

/// `setpriv` arguments: nobody, no supplementary groups, no new privileges, and `caps` (names
/// without CAP_, lower case) as the only capabilities, inheritable and ambient, so that they
/// survive the change of user and the exec.
fn as_nobody_with(caps: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups", "--no-new-privs"].map(str::to_owned).to_vec();
    let listed: Vec<String> = caps.iter().map(|cap| format!("+{cap}")).collect();
    let bounding = if caps.is_empty() { "-all".to_owned() } else { format!("-all,{}", listed.join(",")) };
    args.push(format!("--bounding-set={bounding}"));
    if !caps.is_empty() {
        args.push(format!("--inh-caps=-all,{}", listed.join(",")));
        args.push(format!("--ambient-caps=-all,{}", listed.join(",")));
    }
    args
}

/// The stage's tree readable by nobody, and its FIFO directory nobody's.
fn open_to_nobody(stage: &Stage) -> String {
    std::fs::set_permissions(stage.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let fifo_dir = stage.fifos();
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(fifo_dir.as_str(), Some(nobody), Some(nix::unistd::Gid::from_raw(65534))).unwrap();
    fifo_dir
}

fn agent_command(stage: &Stage, caps: &[&str], agent_args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", stage.netns.name(), "setpriv"]).args(as_nobody_with(caps));
    command.arg(NETVSC_WATCH).args(agent_args).env("RUST_LOG", "warn");
    command
}

/// `Uid:` and `CapEff:` of a running process, from /proc.
fn uid_and_capabilities(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line[name.len()..].split_whitespace().next().unwrap().to_owned()
    };
    (field("Uid:"), field("CapEff:"))
}

#[test]
fn netlink_and_poll_run_as_nobody_without_any_capability() {
    if skip_unless_root("netlink_and_poll_run_as_nobody_without_any_capability") {
        return;
    }
    for source in ["netlink", "poll"] {
        let stage = Stage::new(&format!("priv-{source}")).unwrap();
        stage.netvsc("eth1", 10, MAC).unwrap();
        stage.plug_vf("enP0", 20, MAC, "0002:00:02.0").unwrap();
        let fifo_dir = open_to_nobody(&stage);
        let args = ["watch", "--source", source, "--poll-interval", "50", "--sysfs-root", stage.root()];
        let mut command = agent_command(&stage, &[], &args);
        command.args(["--fifo-dir", &fifo_dir, "--json", "--metrics-listen", "127.0.0.1:0"]);
        let mut agent = JsonProcess::spawn(command);
        let ready = agent.ready();
        assert_eq!(ready.source.as_str(), source, "{ready:?}");
        // `ip netns exec` and setpriv exec in place: the child's pid is the agent's.
        assert_eq!(uid_and_capabilities(agent.child.id()), (NOBODY.to_owned(), "0000000000000000".to_owned()));
        let fifo = open_fifo(format!("{fifo_dir}/eth1.pipe"));
        assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some("0002:00:02.0"), "{source}");
        stage.unplug("enP0").unwrap();
        agent.change("dissociated", |_| true);
        stage.plug_vf("enP1", 21, MAC, "0003:00:02.0").unwrap();
        agent.change("associated", |c| c.vf.as_ref().is_some_and(|vf| vf.pci == "0003:00:02.0"));
        assert_eq!(read_like_failsafe(&fifo).unwrap().as_deref(), Some("0003:00:02.0"), "{source}");
        agent.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(agent.wait().code(), Some(0), "{source}");
    }
}

#[test]
fn ebpf_without_its_capabilities_names_the_missing_one() {
    if !ebpf::has_object() {
        netvsc_testkit::skip(
            "ebpf_without_its_capabilities_names_the_missing_one",
            "this build has no eBPF object (cargo xtask test and cargo xtask build embed it)",
        );
        return;
    }
    if skip_unless_root("ebpf_without_its_capabilities_names_the_missing_one") {
        return;
    }
    let stage = Stage::new("priv-ebpf").unwrap();
    stage.netvsc("eth1", 10, MAC).unwrap();
    let fifo_dir = open_to_nobody(&stage);
    for (caps, missing) in [
        (&[][..], "missing capability CAP_BPF and CAP_PERFMON"),
        (&["bpf"][..], "missing capability CAP_PERFMON"),
        (&["perfmon", "net_admin"][..], "missing capability CAP_BPF"),
    ] {
        let args = ["watch", "--source", "ebpf", "--sysfs-root", stage.root(), "--fifo-dir", &fifo_dir];
        let out = agent_command(&stage, caps, &args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{caps:?}: {stderr}");
        let naming: Vec<&str> = stderr.lines().filter(|l| l.contains("CAP_")).collect();
        assert_eq!(naming.len(), 1, "one line names it: {stderr}");
        assert!(
            naming[0].starts_with("netvsc-watch: eBPF source unavailable: ") && naming[0].contains(missing),
            "{caps:?}: {stderr}"
        );
        assert!(std::fs::read_dir(&fifo_dir).unwrap().next().is_none(), "nothing created: {caps:?}");
    }
    // auto passes eBPF over for that reason and runs on netlink, capability-free.
    let args = ["watch", "--sysfs-root", stage.root(), "--fifo-dir", &fifo_dir, "--json"];
    let mut agent = JsonProcess::spawn(agent_command(&stage, &[], &args));
    let ready = agent.ready();
    assert_eq!(ready.source, SourceName::Netlink, "{ready:?}");
    assert!(ready.passed_over[0].reason.contains("missing capability CAP_BPF and CAP_PERFMON"), "{ready:?}");
    agent.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
}
