//! What a soak saw (`cargo xtask soak`, host and guest), and how it is judged: a read of an
//! address while no VF had it is stale; a VF the reader had a chance to read but never did is
//! missed; and whether what the agent holds grew over a run. The judging is pure, so that it
//! is tested itself.

use std::time::{Duration, Instant};

use netvsc_user::report::lines::Held;

/// Everything one soak saw.
pub struct Soaked {
    pub cycles: u32,
    pub elapsed: Duration,
    pub presences: Vec<Presence>,
    pub passes: Vec<Pass>,
    pub samples: Vec<Sample>,
}

/// A line every tenth of the cycles: how far, how fast, how long still.
pub struct Progress {
    label: String,
    cycles: u32,
    next: u32,
}

impl Progress {
    pub fn new(label: &str, cycles: u32) -> Self {
        Self { label: label.to_owned(), cycles, next: cycles.div_ceil(10).max(1) }
    }

    pub fn cycle(&mut self, done: u32, started: Instant) {
        if done < self.next && done < self.cycles {
            return;
        }
        self.next = done + self.cycles.div_ceil(10).max(1);
        let secs = started.elapsed().as_secs_f64();
        let rate = f64::from(done) / secs.max(1e-9);
        let left = f64::from(self.cycles - done) / rate.max(1e-9);
        println!(
            "soak[{}]: {done}/{} cycles, {secs:.0} s, {rate:.0}/s, about {left:.0} s to go",
            self.label, self.cycles
        );
    }
}

/// A stretch in which one FIFO may carry `address`: from the moment anything could write it
/// (the plug began, or the agent started) to the moment it was emptied of it (the agent's
/// `dissociated` line, or its exit after SIGTERM); `None` while it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub fifo: usize,
    pub address: String,
    pub may_write_ns: u64,
    /// The agent's `associated` line: the address is in the FIFO from here on.
    pub written_ns: u64,
    /// When its removal began (the VF's netdevice deleted, the agent signalled): from here on
    /// the agent may empty the FIFO, before it stamps `gone_ns`.
    pub leaving_ns: Option<u64>,
    pub gone_ns: Option<u64>,
}

/// One look of the reader at one FIFO, stamped before and after, and what it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    pub fifo: usize,
    pub start_ns: u64,
    pub end_ns: u64,
    pub read: Option<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub reads: u64,
    /// Addresses the reader had a whole look at the FIFO to read: what "missed" is out of.
    pub chances: u64,
    pub stale: u64,
    pub missed: u64,
    /// The first few of each, said.
    pub examples: Vec<String>,
}

const EXAMPLES: usize = 5;

impl Verdict {
    fn example(&mut self, text: impl FnOnce() -> String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text());
        }
    }
}

/// Judges `passes` (in the order each FIFO was looked at) against `presences` (in the order
/// they began, never overlapping on one FIFO).
pub fn judge(presences: &[Presence], passes: &[Pass]) -> Verdict {
    let mut verdict = Verdict::default();
    let fifos = presences.iter().map(|p| p.fifo).chain(passes.iter().map(|p| p.fifo)).max().map_or(0, |n| n + 1);
    for fifo in 0..fifos {
        let presences: Vec<&Presence> = presences.iter().filter(|p| p.fifo == fifo).collect();
        let passes: Vec<&Pass> = passes.iter().filter(|p| p.fifo == fifo).collect();
        let reads: Vec<&Pass> = passes.iter().copied().filter(|p| p.read.is_some()).collect();
        for read in &reads {
            verdict.reads += 1;
            let address = read.read.as_deref().unwrap_or_default();
            // The stretches begun before the read ended, back to the first one gone before it
            // began (a reader held up inside one look may overlap several).
            let begun = presences.partition_point(|p| p.may_write_ns <= read.end_ns);
            let legit = presences[..begun]
                .iter()
                .rev()
                .take_while(|p| p.gone_ns.is_none_or(|gone| read.start_ns <= gone))
                .any(|p| p.address == address);
            if !legit {
                verdict.stale += 1;
                verdict.example(|| format!("fifo {fifo}: read {address} at {} ns, when no VF had it", read.start_ns));
            }
        }
        for presence in &presences {
            let gone = presence.gone_ns.unwrap_or(u64::MAX);
            // A chance to read: a whole look between the write and the start of the removal.
            let leaving = presence.leaving_ns.or(presence.gone_ns).unwrap_or(u64::MAX);
            let first = passes.partition_point(|p| p.start_ns < presence.written_ns);
            let could_read = passes.get(first).is_some_and(|p| p.end_ns <= leaving);
            let from = reads.partition_point(|r| r.end_ns < presence.may_write_ns);
            let was_read = reads[from..]
                .iter()
                .take_while(|r| r.start_ns <= gone)
                .any(|r| r.read.as_deref() == Some(presence.address.as_str()));
            verdict.chances += u64::from(could_read);
            if could_read && !was_read {
                verdict.missed += 1;
                verdict.example(|| {
                    let (p, w) = (presence, presence.written_ns);
                    format!(
                        "fifo {fifo}: {} written at {w} ns (leaving {:?}, gone {:?}) was never read",
                        p.address, p.leaving_ns, p.gone_ns
                    )
                });
            }
        }
    }
    verdict
}

/// What the agent held at one moment of one of its runs (a restart begins the next run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub run: u32,
    pub label: String,
    pub held: Held,
}

/// Growth within each run: any descriptor, task or waiting item more from its first sample to
/// its last; resident memory up by more than `rss_slack_kib` from its halfway sample to its last
/// (the first half fills what the allocator and the agent's bounded sets keep; a leak goes on).
/// A run with fewer than two samples is a problem too: nothing of it was judged.
pub fn growth(samples: &[Sample], rss_slack_kib: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let runs: std::collections::BTreeSet<u32> = samples.iter().map(|s| s.run).collect();
    for run in runs {
        let of_run: Vec<&Sample> = samples.iter().filter(|s| s.run == run).collect();
        let [first, .., last] = of_run[..] else {
            problems.push(format!("run {run}: one sample only, its growth not judged"));
            continue;
        };
        let halfway = if of_run.len() >= 3 { of_run[of_run.len() / 2] } else { first };
        for (what, from, before, after, slack) in [
            ("open descriptors", first, first.held.open_fds, last.held.open_fds, 0),
            ("tasks", first, first.held.tasks, last.held.tasks, 0),
            ("waiting items", first, first.held.waiting, last.held.waiting, 0),
            ("resident KiB", halfway, halfway.held.rss_kib, last.held.rss_kib, rss_slack_kib),
        ] {
            if after > before + slack {
                problems
                    .push(format!("run {run}: {what} grew from {before} ({}) to {after} ({})", from.label, last.label));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(address: &str, may_write_ns: u64, written_ns: u64, gone_ns: Option<u64>) -> Presence {
        Presence { fifo: 0, address: address.into(), may_write_ns, written_ns, leaving_ns: None, gone_ns }
    }

    fn pass(start_ns: u64, end_ns: u64, read: Option<&str>) -> Pass {
        Pass { fifo: 0, start_ns, end_ns, read: read.map(str::to_owned) }
    }

    const A: &str = "0002:00:02.0";
    const B: &str = "0003:00:02.0";

    #[test]
    fn reads_while_the_vf_is_there_are_neither_stale_nor_missed() {
        let presences = [presence(A, 100, 110, Some(200)), presence(B, 300, 320, None)];
        // A read straddling the write, one ending as the pipe is emptied, one of the next VF.
        let passes = [
            pass(90, 95, None),
            pass(105, 112, Some(A)),
            pass(150, 160, None),
            pass(199, 201, Some(A)),
            pass(250, 260, None),
            pass(330, 331, Some(B)),
        ];
        assert_eq!(judge(&presences, &passes), Verdict { reads: 3, chances: 2, ..Verdict::default() });
    }

    #[test]
    fn a_reader_held_up_inside_one_look_may_read_an_address_several_stretches_back() {
        const C: &str = "0004:00:02.0";
        const D: &str = "0005:00:02.0";
        let presences = [
            presence(A, 100, 110, Some(200)),
            presence(B, 300, 310, Some(400)),
            presence(C, 500, 510, Some(600)),
            presence(D, 700, 710, Some(800)),
        ];
        let held_up = [pass(350, 750, Some(B))];
        assert_eq!(judge(&presences, &held_up).stale, 0);
        let too_late = [pass(450, 750, Some(B))];
        assert_eq!(judge(&presences, &too_late).stale, 1);
    }

    #[test]
    fn a_read_begun_after_the_pipe_was_emptied_is_stale() {
        let presences = [presence(A, 100, 110, Some(200)), presence(A, 300, 320, None)];
        let passes = [pass(120, 121, Some(A)), pass(201, 202, Some(A)), pass(330, 331, Some(A))];
        let verdict = judge(&presences, &passes);
        assert_eq!((verdict.reads, verdict.stale, verdict.missed), (3, 1, 0));
        assert_eq!(verdict.examples, ["fifo 0: read 0002:00:02.0 at 201 ns, when no VF had it"]);
    }

    #[test]
    fn an_address_no_vf_ever_had_is_stale() {
        let verdict = judge(&[presence(A, 100, 110, None)], &[pass(120, 121, Some(B))]);
        assert_eq!((verdict.stale, verdict.missed), (1, 1), "{verdict:?}");
    }

    #[test]
    fn a_vf_the_reader_looked_past_is_missed_and_one_gone_too_soon_is_not() {
        let presences = [presence(A, 100, 110, Some(200)), presence(B, 300, 310, Some(312))];
        let passes = [pass(150, 151, None), pass(311, 313, None)];
        let verdict = judge(&presences, &passes);
        assert_eq!((verdict.stale, verdict.missed), (0, 1));
        assert_eq!(
            verdict.examples,
            ["fifo 0: 0002:00:02.0 written at 110 ns (leaving None, gone Some(200)) was never read"]
        );
    }

    #[test]
    fn a_look_after_the_removal_began_is_no_chance_to_read() {
        // The agent empties the FIFO as the removal arrives and stamps `gone` after.
        let mut leaving = presence(A, 100, 110, Some(200));
        leaving.leaving_ns = Some(150);
        let passes = [pass(160, 161, None)];
        assert_eq!(judge(&[leaving.clone()], &passes).missed, 0);
        leaving.leaving_ns = Some(170);
        assert_eq!(judge(&[leaving], &passes).missed, 1);
    }

    #[test]
    fn fifos_are_judged_apart() {
        let mut other = presence(B, 100, 110, None);
        other.fifo = 1;
        let read_on_1 = Pass { fifo: 1, ..pass(120, 121, Some(B)) };
        let verdict = judge(&[presence(A, 100, 110, None), other], &[pass(120, 121, Some(B)), read_on_1]);
        assert_eq!((verdict.reads, verdict.stale, verdict.missed), (2, 1, 1));
    }

    fn sample(run: u32, label: &str, open_fds: u64, rss_kib: u64, tasks: u64) -> Sample {
        Sample { run, label: label.into(), held: Held { open_fds, rss_kib, tasks, waiting: 0 } }
    }

    #[test]
    fn growth_is_judged_within_a_run() {
        let samples = [
            sample(1, "start", 14, 9000, 3),
            sample(1, "end", 14, 9100, 3),
            // A new run may hold more than the last one ended with.
            sample(2, "start", 16, 12000, 4),
            sample(2, "end", 17, 12000, 5),
            sample(3, "start", 14, 9000, 3),
            sample(3, "end", 14, 9600, 3),
        ];
        assert_eq!(
            growth(&samples, 512),
            [
                "run 2: open descriptors grew from 16 (start) to 17 (end)",
                "run 2: tasks grew from 4 (start) to 5 (end)",
                "run 3: resident KiB grew from 9000 (start) to 9600 (end)",
            ]
        );
    }

    #[test]
    fn memory_is_judged_over_the_second_half_and_a_lone_sample_is_said() {
        let samples = [
            // Filling up in the first half is no leak; growing on in the second is.
            sample(1, "warm", 14, 9000, 3),
            sample(1, "halfway", 14, 9800, 3),
            sample(1, "end", 14, 9900, 3),
            sample(2, "warm", 14, 9000, 3),
            sample(2, "halfway", 14, 9100, 3),
            sample(2, "end", 14, 9700, 3),
            sample(3, "end", 14, 9000, 3),
        ];
        assert_eq!(
            growth(&samples, 512),
            [
                "run 2: resident KiB grew from 9100 (halfway) to 9700 (end)",
                "run 3: one sample only, its growth not judged"
            ]
        );
    }
}
