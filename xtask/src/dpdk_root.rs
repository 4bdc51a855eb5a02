//! DPDK releases other than the host's, each in a root of its own distribution's packages (no
//! change to the host's): Debian trixie's 24.11, the current LTS, made with debootstrap and
//! trixie's apt inside it, cached outside the tree. A wrapper beside the root runs its testpmd
//! in a mount namespace of its own (`/proc`, `/sys`, `/dev` bound in) and chroot, so testpmd
//! shares nothing with the host but the kernel and what a test puts inside the root: the
//! realistic sidecar case of DPDK in another distribution's container, sharing only the FIFO
//! directory. The tests find it through `NETVSC_DPDK_<release>` (netvsc-user/tests/support/testpmd.rs).

use std::path::PathBuf;

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

impl Release {
    /// `<cache>/dpdk-<name>`: `root/` and the wrapper `dpdk-testpmd`.
    pub fn dir(&self) -> PathBuf {
        crate::workspace::cache_root().join(format!("dpdk-{}", self.name))
    }

    /// The environment variable the tests read: `NETVSC_DPDK_24_11`.
    pub fn env_var(&self) -> String {
        format!("NETVSC_DPDK_{}", self.name.replace('.', "_"))
    }

    /// Makes the root once and writes the wrapper beside it; cheap when both are there. Returns
    /// the directory for [`Release::env_var`].
    pub fn ensure(&self) -> anyhow::Result<PathBuf> {
        let dir = self.dir();
        let root = dir.join("root");
        let packages: Vec<String> = self.packages.iter().map(|p| p.to_string()).collect();
        crate::debian::ensure_root(self.suite, &root, &packages)
            .with_context(|| format!("making the DPDK {} root", self.name))?;
        let testpmd = root.join("usr/bin/dpdk-testpmd");
        if !testpmd.is_file() {
            bail!("{} missing after installing {}", testpmd.display(), packages.join(" "));
        }
        let wrapper = dir.join("dpdk-testpmd");
        let text = wrapper_script();
        if std::fs::read_to_string(&wrapper).ok() != Some(text.clone()) {
            std::fs::write(&wrapper, text)?;
            std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        Ok(dir)
    }
}

/// The root's testpmd entered as [`crate::debian::in_root`] enters a root, from a shell script
/// a test (or a user) can run like `dpdk-testpmd`. Descriptors pass through (fail-safe's fd(N)).
fn wrapper_script() -> String {
    format!(
        "#!/bin/sh\n# DPDK's testpmd from the packages in ROOT (beside this script), sharing only the kernel, and\n\
         # what the caller put inside ROOT, with the host. Made by cargo xtask test.\n\
         ROOT=\"$(dirname \"$0\")/root\"\n\
         exec unshare --mount --propagation private sh -c '{}' sh \"$ROOT\" dpdk-testpmd \"$@\"\n",
        crate::debian::ENTER_ROOT
    )
}

/// Why no other DPDK release can be made here, if it cannot.
pub fn unavailable() -> Option<String> {
    crate::debian::roots_unavailable()
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
