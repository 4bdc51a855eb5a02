//! What the suite needs from the machine beyond cargo, and getting it: Debian packages (QEMU,
//! DPDK, podman, ...) and rustup components. `cargo xtask test` installs what is missing when it
//! can (root with apt-get), so a fresh machine gets the whole proof from the README's command;
//! otherwise it says what will be skipped and the one command that would run it.

use std::process::Command;

use anyhow::{bail, Context as _};

/// One thing the suite uses from the machine.
struct Need {
    /// How to tell it is there.
    probe: Probe,
    /// The Debian packages that bring it.
    packages: &'static [&'static str],
    /// What runs only with it, as the skip report says.
    enables: &'static str,
}

enum Probe {
    /// A program on PATH.
    Command(&'static str),
    /// Every one of `packages` installed, as dpkg says (libraries have no program to look for).
    Packages,
}

/// Debian's DPDK 22.11: the real fail-safe and vdev_netvsc of tests/dpdk*.rs, and what
/// `xtask vm dpdk` copies into the guest (with the e1000 PMD for the VF stand-in).
const DPDK_PACKAGES: &[&str] = &[
    "dpdk-dev",
    "librte-net-failsafe23",
    "librte-net-tap23",
    "librte-net-null23",
    "librte-net-vdev-netvsc23",
    "librte-net-e1000-23",
    "librte-mempool-ring23",
];

const NEEDS: &[Need] = &[
    Need { probe: Probe::Command("ip"), packages: &["iproute2"], enables: "network-namespace tests" },
    Need {
        probe: Probe::Command("qemu-system-x86_64"),
        packages: &["qemu-system-x86"],
        enables: "the QEMU hot-plug scenarios",
    },
    Need { probe: Probe::Packages, packages: DPDK_PACKAGES, enables: "DPDK fail-safe tests (host and guest)" },
    Need {
        probe: Probe::Command("debootstrap"),
        packages: &["debootstrap"],
        enables: "DPDK 24.11 tests (a Debian trixie root)",
    },
    Need { probe: Probe::Command("podman"), packages: &["podman"], enables: "the container image" },
    Need { probe: Probe::Command("setpriv"), packages: &["util-linux"], enables: "least-privilege tests" },
    Need {
        probe: Probe::Command("systemd-analyze"),
        packages: &["systemd"],
        enables: "the systemd unit's verify and security rating",
    },
    Need { probe: Probe::Command("rpm"), packages: &["rpm"], enables: "the RPM's inspection (rpm -qp)" },
    Need { probe: Probe::Command("man"), packages: &["man-db"], enables: "the man pages' rendering (man -l)" },
    Need {
        probe: Probe::Packages,
        packages: &["runc", "catatonit", "busybox-static"],
        enables: "podman kube play of the DaemonSet (runc, the pod's pause image, the consumer's shell)",
    },
];

/// rustup components of the toolchain that builds the agent: the suite's lint and format gates.
const COMPONENTS: &[&str] = &["clippy", "rustfmt"];

/// Installs what the suite needs and is missing, or says why not and what that skips; then one
/// line of the versions the proof runs on.
pub fn prepare(no_install: bool) -> anyhow::Result<()> {
    install_missing(no_install)?;
    println!("xtask test: {}", versions());
    Ok(())
}

fn install_missing(no_install: bool) -> anyhow::Result<()> {
    let refusal = if no_install {
        Some(Refusal::NoInstall)
    } else if !nix::unistd::geteuid().is_root() {
        Some(Refusal::NotRoot)
    } else if which("apt-get").is_none() {
        Some(Refusal::NoApt)
    } else {
        None
    };
    // The guest kernel and other releases' packages are downloaded by name from the lists.
    if refusal.is_none() && lists_are_stale() {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
    }
    let missing: Vec<&Need> = NEEDS.iter().filter(|need| !need.is_present()).collect();
    let packages: Vec<&str> = missing.iter().flat_map(|need| need.packages.iter().copied()).collect();
    match refusal {
        Some(refusal) => refusal.lines(&missing).iter().for_each(|line| println!("xtask test: {line}")),
        None if !packages.is_empty() => {
            let enables: Vec<&str> = missing.iter().map(|need| need.enables).collect();
            println!("xtask test: installing {} (apt-get, for {})", packages.join(" "), enables.join(", "));
            run_quietly(
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", "--no-install-recommends"])
                    .args(&packages)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        }
        None => {}
    }
    // cargo's tools are the user's own too; the fuzz step runs with it (cargo-fuzz).
    let (fuzz, version) = crate::toolchain::CARGO_FUZZ;
    if !no_install && which(fuzz).is_none() {
        crate::toolchain::ensure_cargo_tool(fuzz, version)?;
    }
    // rustup is the user's own: no root needed.
    let components = missing_components();
    if !components.is_empty() {
        if no_install {
            println!("xtask test: --no-install: the lint gates need `rustup component add {}`", components.join(" "));
        } else {
            println!("xtask test: installing rustup components {}", components.join(" "));
            run(Command::new("rustup").args(["component", "add"]).args(&components))?;
        }
    }
    Ok(())
}

/// Why the missing packages are not installed.
#[derive(Clone, Copy)]
enum Refusal {
    NoInstall,
    NotRoot,
    NoApt,
}

impl Refusal {
    /// What will be skipped for lack of `missing`, and the one command that would run it.
    fn lines(self, missing: &[&Need]) -> Vec<String> {
        if missing.is_empty() {
            return Vec::new();
        }
        let packages: Vec<&str> = missing.iter().flat_map(|need| need.packages.iter().copied()).collect();
        let enables: Vec<&str> = missing.iter().map(|need| need.enables).collect();
        let (why, enable) = match self {
            Refusal::NoInstall => ("--no-install", format!("apt-get install {}", packages.join(" "))),
            Refusal::NotRoot => ("not root", "cargo xtask test as root (it installs them)".to_owned()),
            Refusal::NoApt => ("no apt-get", format!("install the equivalents of {}", packages.join(" "))),
        };
        vec![
            format!("{why}: {} will be skipped (missing {})", enables.join(", "), packages.join(" ")),
            format!("to run them: {enable}"),
        ]
    }
}

/// The package lists are older than a day, or absent: a fresh machine's lists may name
/// versions the mirror no longer has.
fn lists_are_stale() -> bool {
    let newest = std::fs::read_dir("/var/lib/apt/lists")
        .ok()
        .and_then(|entries| entries.filter_map(|e| e.ok()?.metadata().ok()?.modified().ok()).max());
    newest.and_then(|t| t.elapsed().ok()).is_none_or(|age| age > std::time::Duration::from_secs(24 * 3600))
}

/// `cargo 1.x, QEMU 7.2, DPDK 22.11, podman 4.3` as far as they are there.
fn versions() -> String {
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8_lossy(&out.stdout).lines().next().map(|line| line.trim().to_owned()))
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    [
        first_line(&cargo, &["--version"]),
        first_line("qemu-system-x86_64", &["--version"]),
        first_line("dpkg-query", &["-W", "-f=DPDK ${Version}", "dpdk-dev"]),
        first_line("podman", &["--version"]),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join("; ")
}

/// Whether `component` of the toolchain running this suite is installed (for the lint gates).
pub fn has_component(component: &str) -> bool {
    !missing_components().contains(&component)
}

impl Need {
    fn is_present(&self) -> bool {
        match self.probe {
            Probe::Command(program) => which(program).is_some(),
            Probe::Packages => self.packages.iter().all(|package| package_installed(package)),
        }
    }
}

fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn missing_components() -> Vec<&'static str> {
    let installed = Command::new("rustup")
        .args(["component", "list", "--installed"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    COMPONENTS
        .iter()
        .copied()
        .filter(|component| !installed.lines().any(|line| line.starts_with(&format!("{component}-"))))
        .collect()
}

pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// Runs `command` with its output kept back, shown only if it fails (apt and dpkg print a
/// screenful per package even with -qq).
fn run_quietly(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output().with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        bail!("{command:?} failed ({})", out.status);
    }
    Ok(())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_what_is_skipped_and_the_command_that_runs_it() {
        let missing: Vec<&Need> = NEEDS.iter().filter(|need| need.packages[0] != "iproute2").take(2).collect();
        assert_eq!(
            Refusal::NoInstall.lines(&missing),
            [
                "--no-install: the QEMU hot-plug scenarios, DPDK fail-safe tests (host and guest) will be skipped \
                 (missing qemu-system-x86 dpdk-dev librte-net-failsafe23 librte-net-tap23 librte-net-null23 \
                 librte-net-vdev-netvsc23 librte-net-e1000-23 librte-mempool-ring23)",
                "to run them: apt-get install qemu-system-x86 dpdk-dev librte-net-failsafe23 librte-net-tap23 \
                 librte-net-null23 librte-net-vdev-netvsc23 librte-net-e1000-23 librte-mempool-ring23",
            ]
        );
        assert_eq!(
            Refusal::NotRoot.lines(&missing[..1])[1],
            "to run them: cargo xtask test as root (it installs them)"
        );
        assert!(Refusal::NoApt.lines(&[]).is_empty(), "nothing missing, nothing to say");
    }
}
