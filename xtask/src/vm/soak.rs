//! The guest soak: the agent under `exec` with failsafe-sim reading its pipe every 20 ms, VF A
//! hot-unplugged and plugged back over QMP at random phase, alternately at two PCI addresses.
//! Each plug waits until the reader read the new address (a VF never read fails the soak); a
//! read of an address no VF had at that moment is stale. The agent's holdings are sampled over
//! SIGUSR1 once warm, halfway and at the end.

use std::time::Instant;

use anyhow::Context as _;
use netvsc_user::report::lines::Line;

use super::guest::{boot, cold_start, plug, unplug, Guest, Setup, Side};
use crate::phase::Phase;
use crate::soaked::{Pass, Presence, Progress, Sample, Soaked};

pub(super) fn run(setup: &Setup, source: &str, cycles: u32, seed: u64) -> anyhow::Result<Soaked> {
    let mut guest = boot(setup, source, &[])?;
    cold_start(&mut guest)?;
    let mut phase = Phase::new(seed);
    let mut progress = Progress::new(&format!("guest/{source}"), cycles);
    let mut samples = Vec::new();
    let started = Instant::now();
    for cycle in 0..cycles {
        if cycle == (cycles / 20).max(1) || cycle == cycles / 2 {
            samples.push(sample(&mut guest, cycle)?);
        }
        let (id, port) = guest.vf_a.clone().context("VF A present")?;
        unplug(&mut guest, &id, Side::A).with_context(|| format!("cycle {cycle}: unplugging {id}"))?;
        std::thread::sleep(phase.next_delay());
        plug(&mut guest, Side::A, 3 - port).with_context(|| format!("cycle {cycle}: plugging VF A back"))?;
        std::thread::sleep(phase.next_delay());
        progress.cycle(cycle + 1, started);
    }
    samples.push(sample(&mut guest, cycles)?);
    let (presences, passes) = seen(&guest);
    Ok(Soaked { cycles, elapsed: started.elapsed(), presences, passes, samples })
}

/// The agent's holdings, from its SIGUSR1 statistics line.
fn sample(guest: &mut Guest, cycle: u32) -> anyhow::Result<Sample> {
    guest.vm.discard(|line| matches!(line, Line::Stats { .. }));
    guest.vm.guest_run("kill -USR1 $AGENT")?;
    let held = guest.vm.line("the agent's statistics", |line| match line {
        Line::Stats { held, .. } => Some(*held),
        _ => None,
    })?;
    Ok(Sample { run: 1, label: format!("after {cycle} cycles"), held })
}

/// How long before the agent's `associated` stamp its write may have happened: the guest has
/// no stamp of the plug in its own clock, and a read begun in between is no stale one. An
/// address written earlier than this before its line, its VF not there yet, is stale.
const WRITE_BEFORE_STAMP_NS: u64 = 1_000_000;

/// VF A's stretches in its pipe, from the agent's lines, and failsafe-sim's reads of it (each
/// stamped just before the read).
fn seen(guest: &Guest) -> (Vec<Presence>, Vec<Pass>) {
    let mut presences: Vec<Presence> = Vec::new();
    for line in guest.vm.seen_lines() {
        let (event, change) = (line.event(), line.change());
        let Some(change) = change.filter(|c| c.failsafe == guest.ctx_a) else { continue };
        let Some(vf) = &change.vf else { continue };
        match event {
            "associated" => presences.push(Presence {
                fifo: 0,
                address: vf.pci.clone(),
                may_write_ns: change.at_ns.saturating_sub(WRITE_BEFORE_STAMP_NS),
                written_ns: change.at_ns,
                leaving_ns: None,
                gone_ns: None,
            }),
            "dissociated" => {
                if let Some(last) = presences.last_mut() {
                    last.gone_ns = Some(change.at_ns);
                }
            }
            _ => {}
        }
    }
    let passes = guest
        .vm
        .seen_others()
        .iter()
        .filter(|v| v["failsafe"] == guest.ctx_a.as_str())
        .filter_map(|v| {
            let t_ns = v["t_ns"].as_u64()?;
            Some(Pass { fifo: 0, start_ns: t_ns, end_ns: t_ns, read: v["read"].as_str().map(str::to_owned) })
        })
        .collect();
    (presences, passes)
}
