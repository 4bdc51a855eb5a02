//! DPDK releases other than the host's, each in a root of its own distribution's packages (no
//! change to the host's): Debian trixie's 24.11, the current LTS, made with debootstrap and
//! trixie's apt inside it, cached outside the tree. A wrapper beside the root runs its testpmd
//! in a mount namespace of its own (`/proc`, `/sys`, `/dev` bound in) and chroot, so testpmd
//! shares nothing with the host but the kernel and what a test puts inside the root: the
//! realistic sidecar case of DPDK in another distribution's container, sharing only the FIFO
//! directory. The tests find it through `NETVSC_DPDK_<release>` (netvsc-user/tests/support/testpmd.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// One release: its name, the Debian suite that carries it, and the packages testpmd needs there.
pub struct Release {
    pub name: &'static str,
    suite: &'static str,
    packages: &'static [&'static str],
}

/// The releases tested besides the host's own 22.11.
pub const RELEASES: &[Release] = &[Release {
    name: "24.11",
    suite: "trixie",
    // dpdk-dev brings dpdk-testpmd (the `dpdk` package alone has none); the PMDs are plugins.
    packages: &[
        "dpdk-dev",
        "librte-net-failsafe25",
        "librte-net-tap25",
        "librte-net-null25",
        "librte-net-vdev-netvsc25",
        "librte-mempool-ring25",
    ],
}];

const MIRROR: &str = "http://deb.debian.org/debian";

const WRAPPER: &str = r#"#!/bin/sh
# DPDK's testpmd from the packages in ROOT (beside this script), sharing only the kernel, and
# what the caller put inside ROOT, with the host: a mount namespace of its own with /proc, /sys
# and /dev bound in, then chroot. Descriptors pass through (fail-safe's fd(N)). Made by xtask.
ROOT="$(dirname "$0")/root"
exec unshare --mount --propagation private sh -c '
  root=$1; shift
  mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" && mount --rbind /dev "$root/dev" || exit 125
  exec chroot "$root" dpdk-testpmd "$@"' sh "$ROOT" "$@"
"#;

impl Release {
    /// `<cache>/dpdk-<name>`: `root/` and the wrapper `dpdk-testpmd`.
    pub fn dir(&self) -> PathBuf {
        crate::workspace::cache_root().join(format!("dpdk-{}", self.name))
    }

    /// The environment variable the tests read: `NETVSC_DPDK_24_11`.
    pub fn env_var(&self) -> String {
        format!("NETVSC_DPDK_{}", self.name.replace('.', "_"))
    }

    /// Makes the root once (debootstrap, then the packages with the root's own apt); cheap when
    /// it is there. Returns the directory for [`Release::env_var`].
    pub fn ensure(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir();
        let root = dir.join("root");
        let done = dir.join(".complete");
        if !done.exists() {
            self.make(&root).with_context(|| format!("making the DPDK {} root in {}", self.name, root.display()))?;
            std::fs::write(&done, self.packages.join(" "))?;
        }
        let wrapper = dir.join("dpdk-testpmd");
        if std::fs::read_to_string(&wrapper).ok().as_deref() != Some(WRAPPER) {
            std::fs::write(&wrapper, WRAPPER)?;
            std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        Ok(dir)
    }

    fn make(&self, root: &Path) -> anyhow::Result<()> {
        println!(
            "xtask: making a Debian {} root with DPDK {} in {} (about a minute, once)",
            self.suite,
            self.name,
            root.display()
        );
        let _ = std::fs::remove_dir_all(root);
        run(Command::new("debootstrap").args(["--variant=minbase", self.suite]).arg(root).arg(MIRROR))?;
        // apt inside the root, with /proc, /sys and /dev in a mount namespace that ends with it.
        let script = r#"root=$1; shift
            mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" && mount --rbind /dev "$root/dev" &&
            exec chroot "$root" apt-get install -y -qq --no-install-recommends "$@""#;
        run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(root)
            .args(self.packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        let testpmd = root.join("usr/bin/dpdk-testpmd");
        if !testpmd.is_file() {
            bail!("{} missing after installing {}", testpmd.display(), self.packages.join(" "));
        }
        Ok(())
    }
}

/// Why no other DPDK release can be made here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("making a root and chroot into it need root".into());
    }
    ["debootstrap", "unshare", "chroot"]
        .into_iter()
        .find(|tool| crate::setup::which(tool).is_none())
        .map(|tool| format!("{tool} not found (apt-get install debootstrap)"))
}

/// The roots made, as (variable, directory) for the tests' environment (their tests skip, saying
/// why, without one), and the releases whose root could not be made although it should have.
pub fn environment() -> (Vec<(String, PathBuf)>, Vec<String>) {
    if let Some(why) = unavailable() {
        println!("xtask test: no DPDK {} root: {why}", RELEASES.iter().map(|r| r.name).collect::<Vec<_>>().join(", "));
        return (Vec::new(), Vec::new());
    }
    let mut made = Vec::new();
    let mut failed = Vec::new();
    for release in RELEASES {
        match release.ensure() {
            Ok(dir) => made.push((release.env_var(), dir)),
            Err(err) => failed.push(format!("DPDK {} root: {err:#}", release.name)),
        }
    }
    (made, failed)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
