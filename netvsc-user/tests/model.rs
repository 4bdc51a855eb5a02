//! Model-based test of the sidecar: random sequences of VF plug/unplug (with a safety rescan in
//! the removal window), NetVSC renames and removals, VF MAC changes, lost events (an overrun)
//! and agent restarts (clean or killed, with changes while it is down), checked against a small
//! reference model. After every step each FIFO, read through the descriptor DPDK opened once at
//! the start, holds exactly the model's line: the current VF's address or nothing.

use std::fs::File;

use netvsc_testkit::FakeSysfs;
use netvsc_testkit::StaticIfindexes as StaticAddresses;
use netvsc_testkit::StaticIfindexes as StaticNetdevList;
use netvsc_user::agent::Agent;
use netvsc_user::decide::selection::Selection;
use netvsc_user::event::{NetdevEvent, SourceEvent, SourceName};
use netvsc_user::output::failsafe::reader::read_like_failsafe;
use netvsc_user::output::failsafe::{OutputMode, Outputs};
use netvsc_user::report::Reporter;
use netvsc_user::system::sysfs::Sysfs;
use netvsc_user::system::SystemReader;
use proptest::prelude::*;

const NICS: usize = 2;
/// VF ifindexes are taken lowest-free from a small pool, so they are reused.
const VF_POOL: [u32; 3] = [20, 21, 22];

#[derive(Clone, Debug)]
enum Change {
    Plug { nic: usize, slot: u8 },
    Unplug { nic: usize, rescan_in_window: bool },
    RenameNetvsc { nic: usize },
    ToggleVfMac { nic: usize },
    ToggleNetvsc { nic: usize },
}

#[derive(Clone, Debug)]
enum Step {
    /// A change whose event reaches the agent.
    Seen(Change),
    /// Changes whose events are lost, then the source's overrun rescan.
    Overrun(Vec<Change>),
    /// The agent stops (cleanly or killed), the changes happen, a new agent starts.
    Restart { clean: bool, while_down: Vec<Change> },
}

fn change() -> impl Strategy<Value = Change> {
    let nic = 0..NICS;
    prop_oneof![
        3 => (nic.clone(), 1u8..4).prop_map(|(nic, slot)| Change::Plug { nic, slot }),
        3 => (nic.clone(), any::<bool>()).prop_map(|(nic, rescan_in_window)| Change::Unplug { nic, rescan_in_window }),
        1 => nic.clone().prop_map(|nic| Change::RenameNetvsc { nic }),
        1 => nic.clone().prop_map(|nic| Change::ToggleVfMac { nic }),
        1 => nic.prop_map(|nic| Change::ToggleNetvsc { nic }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => change().prop_map(Step::Seen),
        1 => prop::collection::vec(change(), 1..4).prop_map(Step::Overrun),
        1 => (any::<bool>(), prop::collection::vec(change(), 0..3))
            .prop_map(|(clean, while_down)| Step::Restart { clean, while_down }),
    ]
}

struct Vf {
    ifindex: u32,
    name: String,
    pci: String,
    /// Carries its NetVSC's MAC (else a foreign one).
    matching: bool,
}

struct Nic {
    name: String,
    ifindex: Option<u32>,
    vf: Option<Vf>,
    /// Has a context in the running agent (admitted at start or when it appeared).
    managed: bool,
}

struct World {
    _dir: tempfile::TempDir,
    sys: FakeSysfs,
    kernel: StaticNetdevList,
    run_dir: std::path::PathBuf,
    nics: Vec<Nic>,
    next_netvsc_ifindex: u32,
    renames: u32,
    agent: Option<Agent>,
    /// DPDK's descriptors, opened once after the first start.
    dpdk: Vec<File>,
}

fn mac(nic: usize, matching: bool) -> String {
    format!("{}:00:00:00:00:0{nic}", if matching { "00" } else { "02" })
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).unwrap();
        let mut world = Self {
            _dir: dir,
            sys,
            kernel: StaticNetdevList::default(),
            run_dir,
            nics: Vec::new(),
            next_netvsc_ifindex: 100,
            renames: 0,
            agent: None,
            dpdk: Vec::new(),
        };
        for nic in 0..NICS {
            world.nics.push(Nic { name: format!("eth{nic}"), ifindex: None, vf: None, managed: false });
            world.netvsc_appears(nic);
        }
        world
    }

    async fn start(&mut self) {
        let reader = SystemReader::new(
            Sysfs::open(self.sys.root()).unwrap(),
            Box::new(StaticAddresses::default()),
            Some(Box::new(self.kernel.clone())),
        );
        let outputs = Outputs::new(OutputMode::Sidecar { dir: self.run_dir.clone(), file_mode: 0o600 }).unwrap();
        let agent = Agent::start(reader, Selection::default(), true, outputs, Reporter::new(false)).await.unwrap();
        for nic in &mut self.nics {
            nic.managed = nic.ifindex.is_some();
        }
        self.agent = Some(agent);
        if self.dpdk.is_empty() {
            for nic in 0..NICS {
                let path = self.run_dir.join(format!("eth{nic}.pipe"));
                self.dpdk.push(File::options().read(true).write(true).open(path).unwrap());
            }
        }
    }

    /// Delivers `event` to a running agent; `seen` false: the event is lost. A NetVSC the agent
    /// sees (by its event or in a rescan) is managed from then on, until the agent restarts.
    async fn deliver(&mut self, event: NetdevEvent, seen: bool) {
        let (true, Some(agent)) = (seen, self.agent.as_mut()) else { return };
        agent.handle(&SourceEvent::now(event.clone()), SourceName::Netlink).await.unwrap();
        for nic in &mut self.nics {
            let shown = match event {
                NetdevEvent::Resync { .. } => nic.ifindex.is_some(),
                NetdevEvent::Changed { ifindex, .. } => nic.ifindex == Some(ifindex),
                _ => false,
            };
            nic.managed |= shown;
        }
    }

    fn netvsc_appears(&mut self, nic: usize) {
        let ifindex = self.next_netvsc_ifindex;
        self.next_netvsc_ifindex += 1;
        self.sys.add_netvsc(&self.nics[nic].name, ifindex, &mac(nic, true)).unwrap();
        self.kernel.set(ifindex, true);
        self.nics[nic].ifindex = Some(ifindex);
    }

    async fn apply(&mut self, change: &Change, seen: bool) {
        match *change {
            Change::Plug { nic, slot } => {
                if self.nics[nic].vf.is_some() {
                    return;
                }
                let used: Vec<u32> = self.nics.iter().filter_map(|n| n.vf.as_ref().map(|vf| vf.ifindex)).collect();
                let ifindex = *VF_POOL.iter().find(|i| !used.contains(i)).expect("a free VF ifindex");
                let vf = Vf {
                    ifindex,
                    name: format!("enP{nic}s{slot}i{ifindex}"),
                    pci: format!("000{slot}:0{nic}:02.0"),
                    matching: true,
                };
                self.sys.add_vf(&vf.name, ifindex, &mac(nic, true), &vf.pci).unwrap();
                self.kernel.set(ifindex, true);
                let event = NetdevEvent::Changed { ifindex, name: Some(vf.name.clone()), mac: None, master: None };
                self.nics[nic].vf = Some(vf);
                self.deliver(event, seen).await;
            }
            Change::Unplug { nic, rescan_in_window } => {
                let Some(vf) = self.nics[nic].vf.take() else { return };
                // The kernel unlists and announces first; sysfs goes a moment later.
                self.kernel.set(vf.ifindex, false);
                self.deliver(NetdevEvent::Removed { ifindex: vf.ifindex }, seen).await;
                if rescan_in_window {
                    self.deliver(NetdevEvent::Resync { reason: "safety resync", lost: false }, true).await;
                }
                self.sys.remove(&vf.name).unwrap();
            }
            Change::RenameNetvsc { nic } => {
                let Some(ifindex) = self.nics[nic].ifindex else { return };
                self.renames += 1;
                let to = format!("ren{}", self.renames);
                self.sys.rename(&self.nics[nic].name, &to).unwrap();
                self.nics[nic].name = to.clone();
                self.deliver(NetdevEvent::Changed { ifindex, name: Some(to), mac: None, master: None }, seen).await;
            }
            Change::ToggleVfMac { nic } => {
                let Some(vf) = self.nics[nic].vf.as_mut() else { return };
                vf.matching = !vf.matching;
                self.sys.set_mac(&vf.name, &mac(nic, vf.matching)).unwrap();
                let event =
                    NetdevEvent::Changed { ifindex: vf.ifindex, name: Some(vf.name.clone()), mac: None, master: None };
                self.deliver(event, seen).await;
            }
            Change::ToggleNetvsc { nic } => match self.nics[nic].ifindex.take() {
                Some(ifindex) => {
                    self.kernel.set(ifindex, false);
                    self.deliver(NetdevEvent::Removed { ifindex }, seen).await;
                    self.sys.remove(&self.nics[nic].name).unwrap();
                }
                None => {
                    self.netvsc_appears(nic);
                    let ifindex = self.nics[nic].ifindex.unwrap();
                    let name = Some(self.nics[nic].name.clone());
                    self.deliver(NetdevEvent::Changed { ifindex, name, mac: None, master: None }, seen).await;
                }
            },
        }
    }

    async fn step(&mut self, step: &Step) {
        match step {
            Step::Seen(change) => self.apply(change, true).await,
            Step::Overrun(changes) => {
                for change in changes {
                    self.apply(change, false).await;
                }
                self.deliver(NetdevEvent::Resync { reason: "overrun", lost: true }, true).await;
            }
            Step::Restart { clean, while_down } => {
                let agent = self.agent.take().unwrap();
                if *clean {
                    agent.shutdown();
                } else {
                    drop(agent); // kill -9: nothing cleaned up, the lock released by the kernel
                }
                for change in while_down {
                    self.apply(change, false).await;
                }
                self.start().await;
            }
        }
    }

    /// What fail-safe must find in NIC `nic`'s FIFO now.
    fn expected(&self, nic: usize) -> Option<String> {
        let nic = &self.nics[nic];
        nic.vf.as_ref().filter(|vf| nic.managed && vf.matching).map(|vf| vf.pci.clone())
    }

    fn check(&mut self, history: &[Step]) {
        let agent = self.agent.as_mut().unwrap();
        agent.refill();
        for nic in 0..NICS {
            let read = read_like_failsafe(&self.dpdk[nic]).unwrap();
            assert_eq!(read, self.expected(nic), "NIC {nic} after {history:#?}");
        }
        // The agent restores what the reader took, as its refill tick would: the FIFO holds the
        // line again when the next step (a kill, say) happens.
        self.agent.as_mut().unwrap().refill();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_fifo_holds_exactly_the_models_line(steps in prop::collection::vec(step(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut world = World::new();
            world.start().await;
            world.check(&[]);
            for (done, step) in steps.iter().enumerate() {
                world.step(step).await;
                world.check(&steps[..=done]);
            }
        });
    }
}
