//! Shared by the integration tests: run the agent binary and follow its JSON lines (with the
//! test kit's follower), make throw-away network namespaces, skip (loudly) what needs root.
#![allow(dead_code)]

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod replay;
pub mod rig;
pub mod sequence;
pub mod stage;
pub mod testpmd;

use netvsc_testkit::follow::Order;
use netvsc_testkit::{JsonLines, Output, WaitError};
use netvsc_user::report::lines::{Change, Line, Ready};
use serde_json::Value;

pub const NETVSC_WATCH: &str = env!("CARGO_BIN_EXE_netvsc-watch");
pub const FAILSAFE_SIM: &str = env!("CARGO_BIN_EXE_failsafe-sim");
pub const WAIT: Duration = Duration::from_secs(10);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when the test must skip; says why (the test kit's `skip`) so a skip is never silent.
pub fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    netvsc_testkit::skip(test, "needs root (network namespaces and veth devices)");
    true
}

/// A running process whose stdout carries JSON lines (the agent, or failsafe-sim under it),
/// followed in order with the test kit's typed follower. Every wait panics with what was seen.
pub struct JsonProcess {
    pub child: Child,
    lines: JsonLines,
}

impl JsonProcess {
    pub fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = command.spawn().expect("spawning process");
        let stdout = child.stdout.take().expect("stdout piped");
        Self { child, lines: JsonLines::follow(stdout, Order::Strict) }
    }

    /// `netvsc-watch ARGS`, optionally inside network namespace `netns`.
    pub fn agent(netns: Option<&str>, args: &[&str]) -> Self {
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, NETVSC_WATCH]);
                c
            }
            None => Command::new(NETVSC_WATCH),
        };
        // The agent's own log goes straight to the test's stderr; NETVSC_TEST_LOG=debug for more.
        let level = std::env::var("NETVSC_TEST_LOG").unwrap_or_else(|_| "warn".into());
        command.args(args).env("RUST_LOG", level);
        Self::spawn(command)
    }

    fn or_panic<T>(&self, result: Result<T, WaitError>) -> T {
        result.unwrap_or_else(|err| panic!("{err}; saw {:#?}", self.lines.seen))
    }

    /// The `ready` line.
    pub fn ready(&mut self) -> Ready {
        let result = self.lines.wait_ready(WAIT);
        self.or_panic(result)
    }

    /// The next `event` change line (`managed`, `associated`, `dissociated`, `renamed`) that
    /// `pred` accepts.
    pub fn change(&mut self, event: &str, pred: impl Fn(&Change) -> bool) -> Change {
        let result = self.lines.wait_change(event, WAIT, pred);
        self.or_panic(result)
    }

    /// The next agent line `pred` accepts.
    pub fn line(&mut self, what: &str, pred: impl Fn(&Line) -> bool) -> Line {
        let result = self.lines.wait_line(what, WAIT, pred);
        self.or_panic(result)
    }

    /// The next line of the application (failsafe-sim) that `pred` accepts.
    pub fn app_line(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let result = self.lines.wait_other(what, WAIT, pred);
        self.or_panic(result)
    }

    /// Collects whatever arrives within `period`.
    pub fn drain_for(&mut self, period: Duration) -> Vec<Output> {
        self.lines.collect_for(period)
    }

    /// Every line received so far, in order.
    pub fn seen(&self) -> &[Output] {
        &self.lines.seen
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling process");
    }

    /// SIGTERM, a clean exit (status 0), and what the process wrote to its stderr, which must
    /// have been piped.
    pub fn terminate_for_log(mut self) -> String {
        let mut stderr = self.child.stderr.take().expect("stderr piped");
        self.signal(nix::sys::signal::Signal::SIGTERM);
        assert_eq!(self.wait().code(), Some(0));
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log).expect("reading stderr");
        log
    }

    pub fn wait(mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                // Let the reader thread hand over the last lines.
                self.lines.collect_for(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("process did not exit; saw {:#?}", self.lines.seen);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for JsonProcess {
    /// SIGTERM first, so an agent in launcher mode takes its application down with it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `scan --json` output into its lines.
pub fn scan_lines(stdout: &[u8]) -> Vec<Line> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|text| serde_json::from_str::<Line>(text).unwrap_or_else(|err| panic!("{err}: {text}")))
        .collect()
}

/// A FIFO opened as DPDK's container opens it (`exec N<>FIFO`): read-write, so it never blocks.
pub fn open_fifo(path: impl AsRef<std::path::Path>) -> std::fs::File {
    let path = path.as_ref();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|err| panic!("opening {}: {err}", path.display()))
}

/// The names in `dir`, sorted.
pub fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}
