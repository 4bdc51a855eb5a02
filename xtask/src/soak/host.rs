//! The host soak: a sidecar (`watch --fifo-dir`) in the test kit's network namespace with
//! several NetVSC stand-ins. Each servicing event takes the VFs of all of them or of a random
//! few away and brings them back at new PCI domains, at random phase, in Azure's order
//! (netdevice unregistered, then the PCI function removed; function added, then netdevice
//! registered). The VFs of one event leave in one `ip link del group`: the kernel waits out one
//! RCU grace period per deletion (~16 ms here), once for the group. A reader looks at every FIFO
//! as fail-safe does, once per `--read-us`, from a thread of its own. The sidecar is stopped
//! with SIGTERM a third of the way through and killed with SIGKILL at two thirds, the VFs
//! present, and started again on the same directory while the reader keeps its descriptors.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use netvsc_testkit::netns::Batch;
use netvsc_user::clock::monotonic_ns;
use netvsc_user::output::failsafe::reader::read_like_failsafe;
use nix::sys::signal::Signal;

use crate::phase::Phase;
use crate::soaked::{Pass, Presence, Progress, Sample, Soaked};
use crate::stage::{Agent, Stage};

/// NetVSC stand-ins: eth1.., ifindex 10.., MAC 00:15:5d:be:00:01...
const INTERFACES: usize = 8;
/// The link group a servicing event's VFs are moved to, to be deleted together.
const LEAVING: &str = "7";

pub struct HostArgs<'a> {
    pub bin: &'a Path,
    pub source: &'a [&'a str],
    /// VF removals and returns, summed over the interfaces.
    pub cycles: u32,
    pub seed: u64,
    pub read_period: Duration,
    /// The longest the VFs stay present, and absent, around one event (uniform under it).
    pub dwell: Duration,
}

/// One NetVSC stand-in and its VF.
struct Interface {
    name: String,
    mac: String,
    failsafe: String,
    vf: Option<Vf>,
}

#[derive(Clone)]
struct Vf {
    name: String,
    pci: String,
    /// Its stretch in `Soak::presences`.
    presence: usize,
}

/// (Fields drop in order: the agent and the batch before the namespace they run in.)
struct Soak<'a> {
    agent: Option<Agent>,
    batch: Batch,
    args: &'a HostArgs<'a>,
    stage: Stage,
    fifo_dir: std::path::PathBuf,
    interfaces: Vec<Interface>,
    presences: Vec<Presence>,
    samples: Vec<Sample>,
    run: u32,
    phase: Phase,
    rng: fastrand::Rng,
    ifindex: u32,
}

pub fn run(args: &HostArgs<'_>) -> anyhow::Result<Soaked> {
    let stage = Stage::in_memory("soak")?;
    let interfaces: Vec<Interface> = (1..=INTERFACES)
        .map(|n| Interface {
            name: format!("eth{n}"),
            mac: format!("00:15:5d:be:00:{n:02x}"),
            failsafe: String::new(),
            vf: None,
        })
        .collect();
    for (n, interface) in interfaces.iter().enumerate() {
        stage.netvsc(&interface.name, 10 + n as u32, &interface.mac)?;
    }
    let fifo_dir = stage.fifo_dir()?;
    let batch = stage.netns.batch()?;
    let mut soak = Soak {
        agent: None,
        batch,
        args,
        stage,
        fifo_dir,
        interfaces,
        presences: Vec::new(),
        samples: Vec::new(),
        run: 0,
        phase: Phase::new(args.seed),
        rng: fastrand::Rng::with_seed(args.seed ^ 0x5eed),
        ifindex: 100,
    };
    soak.start()?;
    // fail-safe's side: the FIFOs opened once, read-write, kept across the restarts.
    let fifos = soak
        .interfaces
        .iter()
        .map(|i| {
            let path = soak.fifo_dir.join(format!("{}.pipe", i.name));
            File::options().read(true).write(true).open(&path).with_context(|| format!("opening {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<File>>>()?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, period) = (stop.clone(), args.read_period);
        std::thread::spawn(move || read_like_failsafe_every(&fifos, period, &stop))
    };
    let started = Instant::now();
    let driven = soak.drive(started);
    stop.store(true, Ordering::Relaxed);
    let passes = reader.join().map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    driven?;
    Ok(Soaked {
        cycles: args.cycles,
        elapsed: started.elapsed(),
        presences: soak.presences,
        passes,
        samples: soak.samples,
    })
}

/// The reader: every `period`, each FIFO once, as fail-safe's `fd(N)` reads it.
fn read_like_failsafe_every(fifos: &[File], period: Duration, stop: &AtomicBool) -> anyhow::Result<Vec<Pass>> {
    let mut passes = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        for (fifo, file) in fifos.iter().enumerate() {
            let start_ns = monotonic_ns();
            let read = read_like_failsafe(file).with_context(|| format!("reading FIFO {fifo}"))?;
            passes.push(Pass { fifo, start_ns, end_ns: monotonic_ns(), read });
        }
        std::thread::sleep(period);
    }
    Ok(passes)
}

impl Soak<'_> {
    fn agent(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("the agent runs between restarts")
    }

    fn drive(&mut self, started: Instant) -> anyhow::Result<()> {
        let cycles = self.args.cycles;
        let all: Vec<usize> = (0..self.interfaces.len()).collect();
        self.plug(&all).context("the first VFs")?;
        let mut progress = Progress::new("host", cycles);
        // Each run is sampled once warm, halfway and before it ends (a restart begins the next).
        let (term_at, kill_at) = (cycles / 3, 2 * cycles / 3);
        let points = |from: u32, to: u32| [from + ((to - from) / 20).max(1), from + (to - from) / 2, to];
        let mut samples_at: Vec<u32> = [points(0, term_at), points(term_at, kill_at), points(kill_at, cycles)]
            .concat()
            .into_iter()
            .filter(|&at| at < cycles)
            .collect();
        let (mut done, mut events) = (0, 0);
        while done < cycles {
            if samples_at.first().is_some_and(|&at| done >= at) {
                samples_at.remove(0);
                self.sample(done)?;
                if done >= term_at && self.run == 1 {
                    self.restart(Signal::SIGTERM)?;
                } else if done >= kill_at && self.run == 2 {
                    self.restart(Signal::SIGKILL)?;
                }
            }
            // Host servicing takes every VF of the VM away; other events a few.
            let leaving: Vec<usize> = if self.rng.bool() {
                all.clone()
            } else {
                let mut some: Vec<usize> = all.iter().copied().filter(|_| self.rng.u8(..4) == 0).collect();
                if some.is_empty() {
                    some.push(self.rng.usize(..all.len()));
                }
                some
            };
            let leaving = &leaving[..leaving.len().min((cycles - done) as usize)];
            events += 1;
            self.unplug(leaving).with_context(|| format!("event {events}: removing VFs"))?;
            std::thread::sleep(self.phase.next_delay_under(self.args.dwell));
            self.plug(leaving).with_context(|| format!("event {events}: VFs returning"))?;
            std::thread::sleep(self.phase.next_delay_under(self.args.dwell));
            done += leaving.len() as u32;
            progress.cycle(done, started);
            if events % 1000 == 0 {
                self.agent().forget_seen();
            }
        }
        println!("soak[host]: {done} VF cycles in {events} servicing events over {} interfaces", self.interfaces.len());
        self.sample(done)?;
        let batch = std::mem::replace(&mut self.batch, self.stage.netns.batch()?);
        batch.finish()
    }

    fn sample(&mut self, cycle: u32) -> anyhow::Result<()> {
        let (_, held) = self.agent().stats()?;
        self.samples.push(Sample { run: self.run, label: format!("after {cycle} cycles"), held });
        Ok(())
    }

    /// Starts a sidecar run; waits for the VFs present to be written again.
    fn start(&mut self) -> anyhow::Result<()> {
        self.run += 1;
        let may_write_ns = monotonic_ns();
        let mut agent = Agent::watch(&self.stage, self.args.bin, self.args.source, &self.fifo_dir)?;
        let ready = agent.ready().with_context(|| format!("run {}: the sidecar's ready line", self.run))?;
        for interface in &mut self.interfaces {
            let found = ready.interfaces.iter().find(|i| i.netvsc == interface.name);
            interface.failsafe = found
                .and_then(|i| i.failsafe.clone())
                .with_context(|| format!("{} is not managed: {ready:?}", interface.name))?;
        }
        self.agent = Some(agent);
        for i in 0..self.interfaces.len() {
            let Some(vf) = self.interfaces[i].vf.clone() else { continue };
            // The VFs already there are written before `ready`.
            let failsafe = self.interfaces[i].failsafe.clone();
            let agent = self.agent();
            let written = match agent.seen_change("associated", |c| c.failsafe == failsafe) {
                Some(change) => change,
                None => agent
                    .change(&format!("{} in {failsafe}'s FIFO", vf.pci), "associated", |c| c.failsafe == failsafe)?,
            };
            let got = written.vf.map(|vf| vf.pci);
            if got.as_deref() != Some(vf.pci.as_str()) {
                bail!("run {}: {failsafe} got {got:?} instead of {}", self.run, vf.pci);
            }
            // After SIGKILL the stretch goes on (the FIFO kept the address, rightly); after
            // SIGTERM the FIFO was emptied, so the address is written anew.
            if self.presences[vf.presence].gone_ns.is_some() {
                self.presences.push(Presence {
                    fifo: i,
                    address: vf.pci,
                    may_write_ns,
                    written_ns: written.at_ns,
                    leaving_ns: None,
                    gone_ns: None,
                });
                self.interfaces[i].vf.as_mut().expect("present").presence = self.presences.len() - 1;
            }
        }
        Ok(())
    }

    /// Ends the sidecar run with `signal` (SIGTERM empties the FIFOs, SIGKILL leaves them) and
    /// starts the next.
    fn restart(&mut self, signal: Signal) -> anyhow::Result<()> {
        println!("soak[host]: run {} ends with {signal}", self.run);
        let leaving_ns = monotonic_ns();
        let agent = self.agent.take().context("no agent to stop")?;
        agent.end(signal)?;
        if signal != Signal::SIGKILL {
            let gone_ns = monotonic_ns();
            for vf in self.interfaces.iter().filter_map(|i| i.vf.as_ref()) {
                let presence = &mut self.presences[vf.presence];
                (presence.leaving_ns, presence.gone_ns) = (Some(leaving_ns), Some(gone_ns));
            }
        }
        self.start()
    }

    /// Waits for one `event` line of each interface of `which`, in any order; `check` sees
    /// each interface's line.
    fn each_change(
        &mut self,
        which: &[usize],
        event: &str,
        mut check: impl FnMut(&mut Self, usize, netvsc_user::report::lines::Change) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut pending: Vec<(usize, String)> =
            which.iter().map(|&i| (i, self.interfaces[i].failsafe.clone())).collect();
        while !pending.is_empty() {
            let names: Vec<&str> = pending.iter().map(|(_, f)| f.as_str()).collect();
            let what = format!("{event} lines of {}", names.join(", "));
            let change = self.agent().change(&what, event, |c| pending.iter().any(|(_, f)| *f == c.failsafe))?;
            let at = pending.iter().position(|(_, f)| *f == change.failsafe).expect("picked from pending");
            let (i, _) = pending.swap_remove(at);
            check(self, i, change)?;
        }
        Ok(())
    }

    /// For each interface of `which`, a PCI function at a new domain, then its netdevice;
    /// waits for every address written.
    fn plug(&mut self, which: &[usize]) -> anyhow::Result<()> {
        let mut coming = Vec::new();
        for &i in which {
            let pci = self.new_domain();
            let domain = u32::from_str_radix(&pci[..4], 16).expect("four hex digits");
            let (name, mac) = (format!("enP{domain}s1"), self.interfaces[i].mac.clone());
            self.ifindex += 1;
            let ifindex = self.ifindex;
            let may_write_ns = monotonic_ns();
            self.stage.sys.add_vf(&name, ifindex, &mac, &pci).with_context(|| format!("fake sysfs entry of {name}"))?;
            self.batch.send(&format!("link add {name} index {ifindex} address {mac} type veth peer name p{name}"))?;
            self.interfaces[i].vf = Some(Vf { name, pci: pci.clone(), presence: usize::MAX });
            coming.push((i, may_write_ns));
        }
        self.each_change(which, "associated", |soak, i, change| {
            let vf = soak.interfaces[i].vf.clone().expect("plugged");
            let got = change.vf.map(|vf| vf.pci);
            if got.as_deref() != Some(vf.pci.as_str()) {
                bail!("{} got {got:?} instead of {}", change.failsafe, vf.pci);
            }
            let may_write_ns = coming.iter().find(|(c, _)| *c == i).map_or(0, |(_, at)| *at);
            soak.presences.push(Presence {
                fifo: i,
                address: vf.pci,
                may_write_ns,
                written_ns: change.at_ns,
                leaving_ns: None,
                gone_ns: None,
            });
            soak.interfaces[i].vf.as_mut().expect("plugged").presence = soak.presences.len() - 1;
            Ok(())
        })
    }

    /// A PCI address whose domain no VF has now (the domain names the VF's netdevice too).
    fn new_domain(&mut self) -> String {
        loop {
            let pci = format!("{:04x}:00:02.0", self.rng.u16(1..0xffff));
            if !self.interfaces.iter().any(|i| i.vf.as_ref().is_some_and(|vf| vf.pci == pci)) {
                return pci;
            }
        }
    }

    /// The netdevices of `which`'s VFs unregistered together; once every FIFO is emptied,
    /// their PCI functions removed.
    fn unplug(&mut self, which: &[usize]) -> anyhow::Result<()> {
        let leaving_ns = monotonic_ns();
        for &i in which {
            let vf = self.interfaces[i].vf.as_ref().context("a VF to remove")?;
            self.presences[vf.presence].leaving_ns = Some(leaving_ns);
            let line = format!("link set {} group {LEAVING}", vf.name);
            self.batch.send(&line)?;
        }
        self.batch.send(&format!("link del group {LEAVING}"))?;
        self.each_change(which, "dissociated", |soak, i, change| {
            let vf = soak.interfaces[i].vf.take().expect("present");
            let got = change.vf.map(|vf| vf.pci);
            if got.as_deref() != Some(vf.pci.as_str()) {
                bail!("{} dissociated {got:?} instead of {}", change.failsafe, vf.pci);
            }
            soak.presences[vf.presence].gone_ns = Some(change.at_ns);
            soak.stage.sys.remove_function(&vf.pci).with_context(|| format!("removing the fake function {}", vf.pci))
        })
    }
}
