//! The binary as a hostile user (and Kubernetes) treats it: restarts while DPDK keeps its
//! descriptor, a second instance, foreign files, failed start-ups, odd signals and odd trees.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use netvsc_testkit::FakeSysfs;
use netvsc_user::output::failsafe::reader::read_like_failsafe;
use nix::sys::signal::Signal;

mod support;
use netvsc_user::report::lines::InterfaceState;
use netvsc_user::report::lines::Line;
use support::{dir_names as names, open_fifo, JsonProcess, NETVSC_WATCH};

const MAC: &str = "00:15:5d:00:00:01";

struct Stage {
    dir: tempfile::TempDir,
    sys: FakeSysfs,
}

impl Stage {
    /// eth1 with its VF at 0002:00:02.0; the FIFO directory exists.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
        sys.add_netvsc("eth1", 90_001, MAC).unwrap();
        sys.add_vf("enP2p0s2", 90_003, MAC, "0002:00:02.0").unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        Self { dir, sys }
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn args<'a>(&'a self, run_dir: &'a str) -> Vec<&'a str> {
        let root = self.sys.root().to_str().unwrap();
        vec!["watch", "--sysfs-root", root, "--fifo-dir", run_dir, "--source", "poll", "--poll-interval", "20"]
    }

    /// The sidecar, started and ready.
    fn watch(&self) -> JsonProcess {
        let run_dir = self.run_dir();
        let mut args = self.args(run_dir.to_str().unwrap());
        args.push("--json");
        let mut agent = JsonProcess::agent(None, &args);
        agent.ready();
        agent
    }

    /// A start-up that must fail: its output.
    fn watch_output(&self, extra: &[&str]) -> std::process::Output {
        let run_dir = self.run_dir();
        let mut args = self.args(run_dir.to_str().unwrap());
        args.extend_from_slice(extra);
        Command::new(NETVSC_WATCH).args(&args).output().unwrap()
    }

    /// DPDK's side: `exec 9<>DIR/eth1.pipe`, held for its whole life.
    fn open_like_dpdk(&self) -> std::fs::File {
        open_fifo(self.run_dir().join("eth1.pipe"))
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dpdk_keeps_its_descriptor_across_a_clean_restart() {
    let stage = Stage::new();
    let agent = stage.watch();
    let dpdk = stage.open_like_dpdk();
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
    assert_eq!(read_like_failsafe(&dpdk).unwrap(), None, "emptied at exit, not left holding the address");

    stage.sys.remove("enP2p0s2").unwrap();
    let mut agent = stage.watch();
    stage.sys.add_vf("enP3p0s2", 90_005, MAC, "0003:00:02.0").unwrap();
    agent.change("associated", |_| true);
    assert_eq!(read_like_failsafe(&dpdk).unwrap().as_deref(), Some("0003:00:02.0"), "the old descriptor is fed");
}

#[test]
fn a_vf_that_left_while_the_agent_was_killed_is_not_offered() {
    let stage = Stage::new();
    let agent = stage.watch();
    let dpdk = stage.open_like_dpdk();
    // Killed without a chance to clean up, the address still in the FIFO.
    agent.signal(Signal::SIGKILL);
    let _ = agent.wait();
    stage.sys.remove("enP2p0s2").unwrap();

    let agent = stage.watch();
    let Some(Line::Ready(ready)) = agent.seen().last().and_then(|o| o.line()) else { panic!("{:?}", agent.seen()) };
    assert_eq!(ready.interfaces[0].state, InterfaceState::Waiting);
    assert_eq!(read_like_failsafe(&dpdk).unwrap(), None, "the stale address was emptied at start-up");
    assert_eq!(std::fs::read_to_string(stage.run_dir().join("eth1.addr")).unwrap(), "");
}

#[test]
fn a_second_agent_on_the_same_directory_is_refused() {
    let stage = Stage::new();
    let first = stage.watch();
    let out = stage.watch_output(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("another netvsc-watch (pid {})", first.child.id())), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(stage.run_dir().join("eth1.addr")).unwrap(), "0002:00:02.0\n");
}

#[test]
fn foreign_files_stop_the_start_up_and_stay_as_they_were() {
    let stage = Stage::new();
    std::fs::write(stage.run_dir().join("eth1.addr"), "mine\n").unwrap();
    let out = stage.watch_output(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("eth1.addr: exists and was not made by netvsc-watch"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(stage.run_dir().join("eth1.addr")).unwrap(), "mine\n");
    assert_eq!(names(&stage.run_dir()), ["eth1.addr"], "nothing of ours left behind");
}

#[test]
fn a_failed_start_up_leaves_nothing_and_does_not_empty_the_measure_file() {
    let stage = Stage::new();
    stage.sys.add_netvsc("eth2", 90_002, "00:15:5d:00:00:02").unwrap();
    let measure = stage.dir.path().join("failovers.json");
    std::fs::write(&measure, "last run's report").unwrap();
    // eth1's files are made first, then eth2's cannot be.
    std::fs::write(stage.run_dir().join("eth2.pipe"), "").unwrap();
    let out = stage.watch_output(&["--measure", measure.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("eth2.pipe: exists and is not a FIFO"), "{}", stderr(&out));
    assert_eq!(names(&stage.run_dir()), ["eth2.pipe"]);
    assert_eq!(std::fs::read_to_string(&measure).unwrap(), "last run's report");

    std::fs::remove_file(stage.run_dir().join("eth2.pipe")).unwrap();
    std::fs::create_dir(stage.run_dir().join("eth1.addr")).unwrap();
    let out = stage.watch_output(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(names(&stage.run_dir()), ["eth1.addr"]);

    let out = stage.watch_output(&["--measure", "/nonexistent-dir/failovers.json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent-dir/failovers.json"), "{}", stderr(&out));
    assert_eq!(names(&stage.run_dir()), ["eth1.addr"], "--measure is checked before anything is made");
}

#[test]
fn a_symlinked_target_is_bad_input() {
    let stage = Stage::new();
    let precious = stage.dir.path().join("precious");
    std::fs::write(&precious, "keep me").unwrap();
    std::os::unix::fs::symlink(&precious, stage.run_dir().join("eth1.pipe")).unwrap();
    let out = stage.watch_output(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("eth1.pipe: is a symlink"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
}

#[test]
fn every_terminating_signal_leaves_the_directory_in_order() {
    for signal in [Signal::SIGHUP, Signal::SIGUSR2, Signal::SIGALRM, Signal::SIGQUIT] {
        let stage = Stage::new();
        let agent = stage.watch();
        agent.signal(signal);
        assert_eq!(agent.wait().code(), Some(0), "{signal}");
        assert_eq!(names(&stage.run_dir()), [".netvsc-watch.lock", "eth1.pipe"], "{signal}");
    }
}

#[test]
fn scan_stops_quietly_when_its_reader_goes_away() {
    let stage = Stage::new();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let out = Command::new(NETVSC_WATCH)
        .args(["scan", "--sysfs-root", stage.sys.root().to_str().unwrap()])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}

#[test]
fn attribute_files_that_block_or_never_end_are_skipped() {
    let stage = Stage::new();
    stage.sys.add_netvsc("eth2", 90_002, "00:15:5d:00:00:02").unwrap();
    stage.sys.add_netvsc("eth3", 90_006, "00:15:5d:00:00:06").unwrap();
    let fifo_type = stage.sys.netdev("eth2").join("type");
    std::fs::remove_file(&fifo_type).unwrap();
    nix::unistd::mkfifo(&fifo_type, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let endless = stage.sys.netdev("eth3").join("address");
    std::fs::remove_file(&endless).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &endless).unwrap();

    let mut child = Command::new(NETVSC_WATCH)
        .args(["scan", "--json", "--sysfs-root", stage.sys.root().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("scan hung on a FIFO or an endless attribute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(text.contains("\"eth1\"") && !text.contains("\"eth2\"") && !text.contains("\"eth3\""), "{text}");
    assert!(stderr(&out).contains("not a regular file"), "{}", stderr(&out));
}

#[test]
fn exec_of_a_program_that_cannot_run_exits_like_a_shell() {
    let stage = Stage::new();
    let root = stage.sys.root().to_str().unwrap();
    let out =
        Command::new(NETVSC_WATCH).args(["exec", "--sysfs-root", root, "--", "/nonexistent/app"]).output().unwrap();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("/nonexistent/app"), "{}", stderr(&out));

    let not_executable = stage.dir.path().join("app");
    std::fs::write(&not_executable, "just text").unwrap();
    let out = Command::new(NETVSC_WATCH)
        .args(["exec", "--sysfs-root", root, "--", not_executable.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
}

#[test]
fn a_huge_argument_is_named_once_and_clipped() {
    let huge = format!("iface={}", "x".repeat(120_000));
    let out = Command::new(NETVSC_WATCH).args(["scan", "--devargs", &huge.replace('=', "")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stderr.len() < 1_000, "{} bytes of error", out.stderr.len());
    assert!(stderr(&out).contains("(120005 bytes)"), "{}", stderr(&out));
}

#[test]
fn a_damaged_lock_file_is_named_and_the_interface_still_served() {
    let stage = Stage::new();
    let lock = stage.run_dir().join(".netvsc-watch.lock");
    // Bytes that are not UTF-8, a name through a path, a name that is none of ours.
    std::fs::write(&lock, b"# netvsc-watch\npid 1\n\xff\xfe garbage\n../escape.pipe 00:15:5d:00:00:01\nnotes.txt\n")
        .unwrap();
    let outside = stage.dir.path().join("escape.pipe");
    std::fs::write(&outside, "not ours").unwrap();
    let run_dir = stage.run_dir();
    let child = Command::new(NETVSC_WATCH)
        .args(stage.args(run_dir.to_str().unwrap()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = run_dir.join("eth1.addr");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&addr).unwrap_or_default() != "0002:00:02.0\n" {
        assert!(std::time::Instant::now() < deadline, "eth1 was not served");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(read_like_failsafe(stage.open_like_dpdk()).unwrap().as_deref(), Some("0002:00:02.0"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains(lock.to_str().unwrap()) && log.contains("lines=3"), "{log}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "not ours");
    assert_eq!(names(&run_dir), [".netvsc-watch.lock", "eth1.pipe"]);
}
