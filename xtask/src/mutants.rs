//! `cargo xtask mutants`: mutation testing of the pure core with cargo-mutants (installed on
//! first use): the score, the survivors, and which survivors are accepted and why (the list in
//! docs/mutants.md). Not part of `cargo xtask test`: every mutant is a build and a test run.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// The pure core: decisions, parsers and the pipe protocol, which tests can pin completely.
pub const CORE: [&str; 7] = [
    "netvsc-user/src/decide/pairing/mod.rs",
    "netvsc-user/src/decide/selection.rs",
    "netvsc-user/src/decide/view.rs",
    "netvsc-user/src/output/failsafe/channel.rs",
    "netvsc-user/src/report/timeline/mod.rs",
    "netvsc-user/src/netdev.rs",
    "netvsc-user/src/decide/deferred.rs",
];

/// What each mutant is judged by: the unit tests, the in-process integration tests and the CLI
/// tests (nothing that needs root, a network namespace or QEMU).
const TESTS: [&str; 19] = [
    "--lib",
    "--test",
    "scenarios",
    "--test",
    "mana",
    "--test",
    "model",
    "--test",
    "failsafe_pipe",
    "--test",
    "rescan",
    "--test",
    "parents",
    "--test",
    "sysfs",
    "--test",
    "cli",
    "--test",
    "hostile",
];

/// Where the survivors that are accepted are listed, each with its reason.
const ACCEPTED: &str = "docs/mutants.md";

#[derive(clap::Args)]
pub struct MutantsArgs {
    /// Only these files (paths from the workspace root; default: the pure core)
    #[arg(long = "file")]
    files: Vec<String>,
    /// Mutants built and tested at once (each in its own copy of the tree)
    #[arg(long, default_value_t = 2)]
    jobs: u32,
}

pub fn run(args: MutantsArgs) -> anyhow::Result<()> {
    let root = crate::workspace::root();
    for file in &args.files {
        if !root.join(file).is_file() {
            eprintln!("cargo xtask mutants: --file {file}: no such file in the workspace");
            std::process::exit(2);
        }
    }
    ensure_cargo_mutants()?;
    let files = if args.files.is_empty() { CORE.map(str::to_owned).to_vec() } else { args.files };
    let out = root.join("target/mutants");
    let mut command = Command::new(cargo());
    command.current_dir(&root).args(["mutants", "--package", "netvsc-user", "--no-shuffle", "--jobs"]);
    command.arg(args.jobs.to_string()).arg("--output").arg(&out);
    // A loaded machine must not turn a slow healthy run into a "timeout", which counts as caught.
    command.args(["--minimum-test-timeout", "120"]);
    for file in &files {
        command.args(["--file", file]);
    }
    command.arg("--").args(TESTS);
    println!("mutants: {} over {}", TESTS.join(" "), files.join(", "));
    let status = command.status().context("running cargo mutants")?;
    // 0: every mutant caught; 2: some missed; 3: some timed out. Anything else: no verdict.
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        bail!("cargo mutants gave no verdict ({status})");
    }
    let outcomes = Outcomes::read(&out.join("mutants.out"))?;
    let accepted = accepted(&std::fs::read_to_string(root.join(ACCEPTED)).unwrap_or_default());
    print!("{}", outcomes.report(&accepted));
    Ok(())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn ensure_cargo_mutants() -> anyhow::Result<()> {
    let installed = Command::new(cargo()).args(["mutants", "--version"]).output().is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    println!("mutants: installing cargo-mutants (cargo install --locked cargo-mutants)");
    let status = Command::new(cargo()).args(["install", "--locked", "cargo-mutants"]).status()?;
    anyhow::ensure!(status.success(), "installing cargo-mutants failed ({status})");
    Ok(())
}

/// A mutant as cargo-mutants names it, without its line and column (which move as code does):
/// the file and what was changed (`replace > with >= in Pairing::evaluate`).
type Mutant = (String, String);

/// `path:line:col: description` → the mutant and its location.
fn parse_line(line: &str) -> Option<(Mutant, String)> {
    let (location, description) = line.split_once(": ")?;
    let file = location.split(':').next()?;
    Some(((file.to_owned(), description.trim().to_owned()), location.to_owned()))
}

#[derive(Default)]
struct Outcomes {
    caught: usize,
    timeout: usize,
    unviable: usize,
    missed: Vec<(Mutant, String)>,
}

impl Outcomes {
    fn read(dir: &Path) -> anyhow::Result<Self> {
        let lines = |name: &str| -> anyhow::Result<Vec<String>> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect()),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
            }
        };
        Ok(Self {
            caught: lines("caught.txt")?.len(),
            timeout: lines("timeout.txt")?.len(),
            unviable: lines("unviable.txt")?.len(),
            missed: lines("missed.txt")?.iter().filter_map(|l| parse_line(l)).collect(),
        })
    }

    /// The score (caught and timed-out mutants over all viable ones), the same counting accepted
    /// survivors as equivalent, and every survivor with whether it is accepted.
    fn report(&self, accepted: &BTreeSet<Mutant>) -> String {
        let viable = self.caught + self.timeout + self.missed.len();
        let killed = self.caught + self.timeout;
        let equivalent = self.missed.iter().filter(|(m, _)| accepted.contains(m)).count();
        let percent = |num: usize, den: usize| if den == 0 { 100.0 } else { num as f64 * 100.0 / den as f64 };
        let mut out = format!(
            "mutants: {viable} viable ({} caught, {} timed out, {} missed; {} unviable)\n\
             mutants: score {:.1} % ({killed}/{viable}); {:.1} % without the {equivalent} accepted as equivalent\n",
            self.caught,
            self.timeout,
            self.missed.len(),
            self.unviable,
            percent(killed, viable),
            percent(killed, viable - equivalent),
        );
        for ((file, description), location) in &self.missed {
            let tag = if accepted.contains(&(file.clone(), description.clone())) { "accepted" } else { "SURVIVED" };
            out.push_str(&format!("{tag} {location}: {description}\n"));
        }
        out
    }
}

/// The accepted survivors of docs/mutants.md: lines `` - `FILE`: `DESCRIPTION` — reason ``.
fn accepted(text: &str) -> BTreeSet<Mutant> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("- `")?;
            let (file, rest) = rest.split_once("`: `")?;
            let (description, reason) = rest.split_once('`')?;
            // A survivor is accepted with a reason, never silently.
            (!reason.trim_start_matches([' ', '—', '-']).trim().is_empty())
                .then(|| (file.to_owned(), description.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survivors_are_matched_by_file_and_mutation_not_by_line() {
        let accepted = accepted(
            "# Mutants\n\n- `netvsc-user/src/view.rs`: `replace == with != in SystemView::upsert` — equivalent: x\n\
             - `netvsc-user/src/pairing.rs`: `delete ! in Pairing::admit`\n",
        );
        assert_eq!(accepted.len(), 1, "a line without a reason accepts nothing: {accepted:?}");
        let outcomes = Outcomes {
            caught: 17,
            timeout: 1,
            unviable: 4,
            missed: [
                "netvsc-user/src/view.rs:99:12: replace == with != in SystemView::upsert",
                "netvsc-user/src/pairing.rs:7:1: delete ! in Pairing::admit",
            ]
            .iter()
            .filter_map(|l| parse_line(l))
            .collect(),
        };
        let report = outcomes.report(&accepted);
        assert!(report.contains("20 viable (17 caught, 1 timed out, 2 missed; 4 unviable)"), "{report}");
        assert!(report.contains("score 90.0 % (18/20); 94.7 % without the 1 accepted"), "{report}");
        assert!(
            report.contains("accepted netvsc-user/src/view.rs:99:12: replace == with != in SystemView::upsert"),
            "{report}"
        );
        assert!(report.contains("SURVIVED netvsc-user/src/pairing.rs:7:1: delete ! in Pairing::admit"), "{report}");
    }
}
