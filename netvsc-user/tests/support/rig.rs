//! The agent in-process on a fake sysfs tree, with pipes read as fail-safe reads them.

use std::os::fd::BorrowedFd;

use netvsc_testkit::FakeSysfs;
use netvsc_testkit::StaticIfindexes as StaticAddresses;
use netvsc_user::agent::Agent;
use netvsc_user::decide::selection::Selection;
use netvsc_user::event::{NetdevEvent, SourceEvent, SourceName};
use netvsc_user::output::failsafe::reader::read_like_failsafe;
use netvsc_user::output::failsafe::{OutputMode, Outputs};
use netvsc_user::report::Reporter;
use netvsc_user::system::sysfs::Sysfs;
use netvsc_user::system::SystemReader;

pub struct Rig {
    _dir: tempfile::TempDir,
    pub sys: FakeSysfs,
    pub addresses: StaticAddresses,
}

impl Rig {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSysfs::create(dir.path()).unwrap();
        Self { _dir: dir, sys, addresses: StaticAddresses::default() }
    }

    pub async fn agent(&self, selection: Selection, sidecar: bool) -> anyhow::Result<Agent> {
        let reader = SystemReader::new(Sysfs::open(self.sys.root()).unwrap(), Box::new(self.addresses.clone()), None);
        Agent::start(reader, selection, sidecar, Outputs::new(OutputMode::Pipes).unwrap(), Reporter::new(false)).await
    }

    pub fn route(&self, ifindex: u32, routed: bool) {
        self.addresses.set(ifindex, routed);
    }
}

/// The agent in launcher mode (anonymous pipes) over `reader`, every NetVSC interface selected.
pub async fn launcher(reader: SystemReader) -> Agent {
    let outputs = Outputs::new(OutputMode::Pipes).unwrap();
    Agent::start(reader, Selection::default(), false, outputs, Reporter::new(false)).await.unwrap()
}

/// What fail-safe would read from context `id`'s pipe right now.
pub fn pipe(agent: &Agent, id: u32) -> Option<String> {
    let fd = agent.outputs().child_fd(id).expect("context has a pipe");
    // SAFETY: the agent owns the fd and outlives this call.
    read_like_failsafe(unsafe { BorrowedFd::borrow_raw(fd) }).unwrap()
}

pub fn pending(agent: &Agent) -> usize {
    agent.outputs().channel(0).unwrap().pending_bytes().unwrap()
}

pub async fn changed(agent: &mut Agent, ifindex: u32, name: &str) -> usize {
    let event = SourceEvent::now(NetdevEvent::Changed { ifindex, name: Some(name.into()), mac: None, master: None });
    agent.handle(&event, SourceName::Netlink).await.unwrap().len()
}

pub async fn removed(agent: &mut Agent, ifindex: u32) {
    agent.handle(&SourceEvent::now(NetdevEvent::Removed { ifindex }), SourceName::Netlink).await.unwrap();
}

pub fn names(agent: &Agent) -> Vec<String> {
    agent.pairing().contexts().iter().map(|c| c.name.clone()).collect()
}
