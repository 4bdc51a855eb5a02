//! DPDK's real `dpdk-testpmd` (fail-safe, tap, null and vdev_netvsc), run without hugepages or
//! PCI as a development machine allows, in each release users run: the host's own (Debian
//! bookworm, 22.11) and the current LTS (Debian trixie, 24.11) from a root of trixie's packages
//! that `cargo xtask test` makes, entered through a wrapper that shares nothing with the host
//! but the kernel and the directories a test creates inside the root (like a DPDK container
//! that shares only the FIFO directory with the sidecar).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The host's own testpmd (Debian bookworm's DPDK 22.11).
pub const TESTPMD: &str = "dpdk-testpmd";

/// One DPDK release: where its testpmd is, and the root it runs in (none: the host's).
pub struct Release {
    pub name: &'static str,
    /// The program to run (`dpdk-testpmd`, or the root's wrapper).
    pub testpmd: PathBuf,
    /// The release's own root, whose `/` testpmd sees (None: the host's).
    root: Option<PathBuf>,
}

/// `$NETVSC_DPDK_<release>`: the directory holding `root/` and the wrapper `dpdk-testpmd` that
/// runs the root's testpmd (made by `cargo xtask test`; see xtask/src/dpdk_root.rs).
fn env_var(name: &str) -> String {
    format!("NETVSC_DPDK_{}", name.replace('.', "_"))
}

impl Release {
    /// The release called `name` ("22.11", "24.11") if it can run here; says why `test` skips if
    /// not.
    pub fn available(name: &'static str, test: &str) -> Option<Release> {
        let release = if name == "22.11" {
            let found = std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(TESTPMD).is_file()));
            if !found {
                netvsc_testkit::skip(
                    test,
                    "dpdk-testpmd 22.11 not installed (apt-get install dpdk-dev librte-net-failsafe23 ...)",
                );
                return None;
            }
            Release { name, testpmd: TESTPMD.into(), root: None }
        } else {
            let Some(dir) = std::env::var_os(env_var(name)).map(PathBuf::from) else {
                netvsc_testkit::skip(test, &format!("no DPDK {name} root (cargo xtask test makes one as root)"));
                return None;
            };
            Release { name, testpmd: dir.join(TESTPMD), root: Some(dir.join("root")) }
        };
        if !nix::unistd::geteuid().is_root() {
            netvsc_testkit::skip(test, "dpdk-testpmd needs root here (EAL's runtime directory)");
            return None;
        }
        Some(release)
    }

    /// A fresh directory testpmd and the host both reach: inside the release's root when it has
    /// one. See [`Release::inside`] for the path testpmd sees.
    pub fn shared_dir(&self) -> tempfile::TempDir {
        match &self.root {
            Some(root) => tempfile::Builder::new().prefix("nvw-shared.").tempdir_in(root.join("tmp")).unwrap(),
            None => tempfile::tempdir().unwrap(),
        }
    }

    /// `host_path` (under [`Release::shared_dir`]) as testpmd sees it.
    pub fn inside(&self, host_path: &Path) -> String {
        let seen = match &self.root {
            Some(root) => Path::new("/").join(host_path.strip_prefix(root).expect("a path inside the release's root")),
            None => host_path.to_owned(),
        };
        seen.to_str().unwrap().to_owned()
    }

    /// `netvsc-watch exec --source poll <flags> --sysfs-root <root> -- <testpmd> <EAL arguments>`:
    /// the caller adds more EAL arguments, then `--` and testpmd's own.
    pub fn under_exec(&self, root: &Path, flags: &[&str]) -> Command {
        let mut command = Command::new(super::NETVSC_WATCH);
        command.args(["exec", "--source", "poll"]).args(flags).arg("--sysfs-root").arg(root);
        command.arg("--").arg(&self.testpmd).args(eal_args());
        command
    }
}

/// One test per DPDK release: `dpdk_tests!(name, |release| body)` makes `name::dpdk_22_11` and
/// `name::dpdk_24_11`, each skipped (saying why) where its release cannot run.
#[macro_export]
macro_rules! dpdk_tests {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn dpdk_22_11() {
                let test = concat!(stringify!($name), "::dpdk_22_11");
                if let Some(release) = support::testpmd::Release::available("22.11", test) {
                    let run: fn(&support::testpmd::Release) = $body;
                    run(&release);
                }
            }
            #[test]
            fn dpdk_24_11() {
                let test = concat!(stringify!($name), "::dpdk_24_11");
                if let Some(release) = support::testpmd::Release::available("24.11", test) {
                    let run: fn(&support::testpmd::Release) = $body;
                    run(&release);
                }
            }
        }
    };
}

/// EAL arguments of one run: no hugepages, no PCI, fail-safe's and vdev_netvsc's debug logs, and
/// a file prefix of its own (EAL locks its runtime directory by prefix; tests run in parallel).
pub fn eal_args() -> Vec<String> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let prefix = format!("nvw{}-{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
    ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", &prefix]
        .into_iter()
        .map(str::to_owned)
        .chain(["--log-level=pmd.net.vdev_netvsc:debug".into(), "--log-level=pmd.net.failsafe:debug".into()])
        .collect()
}

/// testpmd's own arguments (after `--`): a mempool small enough for `-m 256`.
pub const APP_ARGS: [&str; 2] = ["--total-num-mbufs", "2048"];

/// stdout and stderr of a finished run, as one text.
pub fn log_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `sh -c SCRIPT`, non-interactive testpmd reading EOF from stdin: runs to its end.
pub fn shell(script: &str) -> Output {
    Command::new("sh").args(["-c", script]).stdin(std::process::Stdio::null()).output().unwrap()
}
