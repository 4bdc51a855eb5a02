//! The hot-plug scenarios, played from the host over QMP and judged on the JSON lines the agent
//! (launcher mode) and failsafe-sim (reading its pipes as fail-safe does) print in the guest.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use netvsc_testkit::Output;
use netvsc_user::report::lines::{Change, Line};

use super::guest::{boot_as, cold_start, migration_cycles, pci_of, plug, unplug, Guest, Mode, Setup, Side};
use super::{ebpf_checks, monitor, sequences};

#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: u32,
    pub failed: u32,
}

impl Outcome {
    pub fn add(&mut self, other: Outcome) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

pub(super) type Check = Box<dyn Fn(&mut Guest) -> anyhow::Result<()>>;

/// One guest boot: extra agent arguments and the checks played on it, in order.
struct Run {
    label: String,
    /// What starts the agent (`None`: init itself, as root).
    wrapper: Option<&'static str>,
    mode: Mode,
    agent_args: &'static [&'static str],
    checks: Vec<(&'static str, Check)>,
}

fn plan(source: &str, cycles: u32) -> Vec<Run> {
    let mut checks: Vec<(&'static str, Check)> = vec![
        ("cold start with the VF present", Box::new(cold_start)),
        ("migration cycles", Box::new(move |g: &mut Guest| migration_cycles(g, cycles))),
        ("two NetVSC, interleaved VFs", Box::new(interleaved)),
        ("the VF never returns", Box::new(never_returns)),
    ];
    checks.extend(sequences::checks());
    if source == "netlink" {
        // monitor needs no capability with netlink: the source it is meant to run with.
        return vec![
            Run { label: source.to_owned(), wrapper: None, mode: Mode::Exec, agent_args: &[], checks },
            Run {
                label: "netlink/monitor".into(),
                wrapper: None,
                mode: Mode::Monitor,
                agent_args: &[],
                checks: monitor::checks(),
            },
        ];
    }
    if source != "ebpf" {
        return vec![Run { label: source.to_owned(), wrapper: None, mode: Mode::Exec, agent_args: &[], checks }];
    }
    checks.extend(ebpf_checks::filtered_guest());
    vec![
        Run { label: "ebpf".into(), wrapper: None, mode: Mode::Exec, agent_args: ebpf_checks::FILTERED_ARGS, checks },
        Run {
            label: "ebpf/kprobe".into(),
            wrapper: None,
            mode: Mode::Exec,
            agent_args: ebpf_checks::UNFILTERED_ARGS,
            checks: ebpf_checks::unfiltered_guest(),
        },
        Run {
            label: "ebpf/least privilege".into(),
            wrapper: Some(ebpf_checks::LEAST_PRIVILEGE),
            mode: Mode::Exec,
            agent_args: &[],
            checks: ebpf_checks::least_privilege_guest(),
        },
    ]
}

/// How many checks `run` plays for `source` (what is skipped when the VM cannot run).
pub fn count(source: &str) -> u32 {
    plan(source, 1).iter().map(|run| run.checks.len() as u32).sum()
}

/// Prints the checks of every boot of `source`, in the order they play.
pub fn list(source: &str) {
    for run in plan(source, 1) {
        for (name, _) in &run.checks {
            println!("vm[{}]: {name}", run.label);
        }
    }
}

/// The names in `names` that no check of any of `sources` contains.
pub fn unknown_names<'a>(sources: &[String], names: &'a [String]) -> Vec<&'a str> {
    let plans: Vec<Run> = sources.iter().flat_map(|source| plan(source, 1)).collect();
    names
        .iter()
        .filter(|name| {
            plans.iter().all(|run| chosen_prefix_cut(&run.checks, std::slice::from_ref(name)) == run.checks.len())
        })
        .map(String::as_str)
        .collect()
}

/// Boots a guest per run of `source` and plays its checks; prints a line per check and cycle.
/// With `names`, only the runs holding a check whose name contains one of them boot, and they
/// play up to the last such check.
pub fn run(setup: &Setup, source: &str, cycles: u32, names: &[String]) -> Outcome {
    let mut outcome = Outcome::default();
    for mut run in plan(source, cycles) {
        let chosen = run.checks.len() - chosen_prefix_cut(&run.checks, names);
        if chosen == 0 {
            continue;
        }
        run.checks.truncate(chosen);
        outcome.add(play(setup, source, run));
    }
    outcome
}

/// How many checks at the end of `checks` come after the last one `names` chose (all of them
/// when none is chosen; none when `names` is empty, which chooses everything).
fn chosen_prefix_cut<T>(checks: &[(&str, T)], names: &[String]) -> usize {
    if names.is_empty() {
        return 0;
    }
    let wanted = |check: &str| names.iter().any(|name| check.to_lowercase().contains(&name.to_lowercase()));
    match checks.iter().rposition(|(check, _)| wanted(check)) {
        Some(last) => checks.len() - 1 - last,
        None => checks.len(),
    }
}

fn play(setup: &Setup, source: &str, run: Run) -> Outcome {
    let label = &run.label;
    let mut outcome = Outcome::default();
    let mut guest = match boot_as(setup, run.wrapper, run.mode, source, run.agent_args) {
        Ok(guest) => guest,
        Err(err) => {
            println!("vm[{label}]: FAIL boot: {err:#}");
            outcome.failed = run.checks.len() as u32;
            return outcome;
        }
    };
    println!(
        "vm[{label}]: accelerator {}, boot {:.1} s (QEMU start to the guest's first line)",
        guest.vm.accel.name(),
        guest.vm.boot_time.as_secs_f64()
    );
    // Checks build on each other's state: after one fails, the rest count as failed unplayed.
    let mut broken = false;
    for (name, check) in &run.checks {
        if broken {
            outcome.failed += 1;
            continue;
        }
        match check(&mut guest) {
            Ok(()) => {
                outcome.passed += 1;
                println!("vm[{label}]: PASS {name}");
            }
            Err(err) => {
                broken = true;
                outcome.failed += 1;
                println!("vm[{label}]: FAIL {name}: {err:#}");
                println!("--- guest console (tail) ---\n{}\n---", guest.vm.console_tail(30));
            }
        }
    }
    outcome
}

fn interleaved(guest: &mut Guest) -> anyhow::Result<()> {
    plug(guest, Side::B, 3)?;
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    unplug(guest, &id, Side::A)?;
    plug(guest, Side::A, 4)?;
    let (id, _) = guest.vf_b.clone().context("VF B present")?;
    unplug(guest, &id, Side::B)?;
    plug(guest, Side::B, 3)?;
    // No context was ever given the other one's VF.
    let crossed: Vec<Change> = guest
        .vm
        .seen_lines()
        .into_iter()
        .filter_map(|line| match line {
            Line::Associated(change) => Some(change),
            _ => None,
        })
        .filter(|c| (c.failsafe == guest.ctx_a) == c.vf.as_ref().is_some_and(|vf| vf.pci == pci_of(3)))
        .collect();
    ensure!(crossed.is_empty(), "VFs given to the wrong NetVSC: {crossed:?}");
    Ok(())
}

fn never_returns(guest: &mut Guest) -> anyhow::Result<()> {
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    let (_, _) = unplug(guest, &id, Side::A)?;
    let quiet = guest.vm.collect_for(Duration::from_secs(3));
    let ctx = guest.ctx_a.clone();
    let wrong: Vec<&Output> = quiet
        .iter()
        .filter(|output| match output {
            Output::Agent(line) => matches!(&**line, Line::Associated(change) if change.failsafe == ctx),
            // The guest's own lines and failsafe-sim's reads.
            Output::Other(v) => v["guest"] == "exited" || (v["failsafe"] == ctx.as_str() && v.get("read").is_some()),
            _ => false,
        })
        .collect();
    ensure!(wrong.is_empty(), "with no VF, nothing may be written, read, or exit: {wrong:?}");
    // Still alive and serving the other interface.
    let (id, _) = guest.vf_b.clone().context("VF B present")?;
    unplug(guest, &id, Side::B)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::chosen_prefix_cut;

    #[test]
    fn a_chosen_check_plays_with_the_checks_before_it() {
        let checks = [("cold start", ()), ("migration cycles", ()), ("two NetVSC", ()), ("never returns", ())];
        let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(chosen_prefix_cut(&checks, &[]), 0);
        assert_eq!(chosen_prefix_cut(&checks, &names(&["Migration"])), 2);
        assert_eq!(chosen_prefix_cut(&checks, &names(&["cold", "never"])), 0);
        assert_eq!(chosen_prefix_cut(&checks, &names(&["nothing such"])), 4);
    }
}
