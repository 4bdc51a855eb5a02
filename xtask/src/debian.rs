//! Debian's packages beyond the host's own release, without touching the host's package state:
//! lists of bookworm, trixie and bullseye kept in a private apt directory (for `apt-get
//! download` of guest kernels), and roots of a whole release made with debootstrap, where that
//! release's own apt installs packages and its own tools run (DPDK 24.11, a kernel's kbuild).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

const MIRROR: &str = "http://deb.debian.org/debian";
const SECURITY: &str = "http://deb.debian.org/debian-security";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The releases whose kernels the rig boots.
const SUITES: &[&str] = &["bookworm", "trixie", "bullseye"];

/// `<cache>/debian`: the private apt directory (sources, lists, downloads).
fn apt_dir() -> PathBuf {
    crate::workspace::cache_root().join("debian")
}

/// apt options that point at the private directory and nothing of the host's.
fn apt_options() -> Vec<String> {
    let dir = apt_dir();
    [
        format!("Dir::Etc::sourcelist={}", dir.join("sources.list").display()),
        "Dir::Etc::sourceparts=-".to_owned(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        format!("Dir::Cache={}", dir.join("cache").display()),
        // `_apt` cannot write to most directories; downloading as root is what we want here.
        "APT::Sandbox::User=root".to_owned(),
    ]
    .into_iter()
    .flat_map(|option| ["-o".to_owned(), option])
    .collect()
}

/// The private lists, updated when older than a day.
fn ensure_lists() -> anyhow::Result<()> {
    let dir = apt_dir();
    let stamp = dir.join("lists/.updated");
    let fresh = std::fs::metadata(&stamp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < std::time::Duration::from_secs(24 * 3600));
    if fresh {
        return Ok(());
    }
    for sub in ["lists/partial", "cache/archives/partial"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let sources: String = SUITES
        .iter()
        .flat_map(|suite| {
            [
                format!("deb [signed-by={KEYRING}] {MIRROR} {suite} main\n"),
                format!("deb [signed-by={KEYRING}] {SECURITY} {suite}-security main\n"),
            ]
        })
        .collect();
    std::fs::write(dir.join("sources.list"), sources)?;
    run(Command::new("apt-get").args(apt_options()).args(["update", "-qq"]))?;
    std::fs::write(stamp, "")?;
    Ok(())
}

/// The newest package of the private lists whose name matches `pattern` (a regex for
/// `apt-cache search --names-only`), by the numbers in its name.
pub fn newest_package(pattern: &str) -> anyhow::Result<String> {
    ensure_lists()?;
    let out = Command::new("apt-cache")
        .args(apt_options())
        .args(["search", "--names-only", pattern])
        .output()
        .context("running apt-cache (is this Debian?)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|line| line.split_whitespace().next())
        .max_by_key(|name| version_key(name))
        .map(str::to_owned)
        .with_context(|| format!("no package named like {pattern} in Debian's {} lists", SUITES.join(", ")))
}

/// The numbers in `name`, in order: `linux-image-6.12.117+deb13-amd64` → [6, 12, 117, 13, 64].
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty()).filter_map(|n| n.parse().ok()).collect()
}

/// Downloads `packages` from the private lists into `dir`.
pub fn download(packages: &[&str], dir: &Path) -> anyhow::Result<()> {
    ensure_lists()?;
    std::fs::create_dir_all(dir)?;
    run(Command::new("apt-get").args(apt_options()).arg("download").args(packages).current_dir(dir))
}

/// A root of Debian `suite` at `root` with `packages` installed by its own apt, made once (a
/// `.complete` file records it); cheap when it is there.
pub fn ensure_root(suite: &str, root: &Path, packages: &[String]) -> anyhow::Result<()> {
    let done = root.join(".complete");
    if std::fs::read_to_string(&done).ok().as_deref() == Some(packages.join(" ").as_str()) {
        return Ok(());
    }
    println!(
        "xtask: making a Debian {suite} root in {} with {} (about a minute, once)",
        root.display(),
        packages.join(" ")
    );
    if !root.join("usr/bin/apt-get").exists() {
        let _ = std::fs::remove_dir_all(root);
        run(Command::new("debootstrap").args(["--variant=minbase", suite]).arg(root).arg(MIRROR))
            .with_context(|| format!("debootstrap of {suite} into {}", root.display()))?;
    }
    // The release's security suite too: its newest kernels (and their headers) are there.
    let sources = format!("deb {MIRROR} {suite} main\ndeb {SECURITY} {suite}-security main\n");
    let sources_file = root.join("etc/apt/sources.list");
    if std::fs::read_to_string(&sources_file).ok().as_deref() != Some(sources.as_str()) {
        std::fs::write(&sources_file, sources)?;
        in_root(root, &["apt-get", "update", "-qq"])
            .with_context(|| format!("apt-get update in {}", root.display()))?;
    }
    let mut install = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
    install.extend(packages.iter().map(String::as_str));
    in_root(root, &install).with_context(|| format!("installing {} in {}", packages.join(" "), root.display()))?;
    std::fs::write(done, packages.join(" "))?;
    Ok(())
}

/// Runs `argv` inside `root`: a mount namespace of its own (gone with the command) with /proc,
/// /sys and /dev bound in, then chroot.
pub fn in_root(root: &Path, argv: &[&str]) -> anyhow::Result<()> {
    run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", ENTER_ROOT, "sh"])
        .arg(root)
        .args(argv)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `sh -c` script: `$1` the root, the rest the command run in it.
pub const ENTER_ROOT: &str = r#"root=$1; shift
mount -t proc proc "$root/proc" && mount --rbind /sys "$root/sys" && mount --rbind /dev "$root/dev" || exit 125
exec chroot "$root" "$@""#;

/// Why no root of another release can be made here, if it cannot.
pub fn roots_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("making a root and chroot into it need root".into());
    }
    ["debootstrap", "unshare", "chroot"]
        .into_iter()
        .find(|tool| crate::setup::which(tool).is_none())
        .map(|tool| format!("{tool} not found (apt-get install debootstrap)"))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output().with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        let tail: Vec<&str> = std::str::from_utf8(&out.stderr).unwrap_or("").lines().rev().take(15).collect();
        bail!("{command:?} failed ({}): {}", out.status, tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_newest_kernel_is_found_by_the_numbers_in_its_name() {
        let mut names =
            ["linux-image-6.12.9+deb13-amd64", "linux-image-6.12.117+deb13-amd64", "linux-image-6.12.73+deb13-amd64"];
        names.sort_by_key(|name| super::version_key(name));
        assert_eq!(names.last(), Some(&"linux-image-6.12.117+deb13-amd64"));
        assert_eq!(super::version_key("linux-image-6.1.0-57-amd64"), [6, 1, 0, 57, 64]);
    }
}
