//! `cargo xtask ebpf-rebuild-check`: shows that a change to `netvsc-common` alone (the types the
//! kernel program and the agent share) changes the kernel object embedded in the agent. Without
//! this, cargo would rebuild the agent against the new layout and keep the old object.
//!
//! Works on a copy of the tracked sources (so the checkout is never edited), built into a target
//! directory of its own that later runs reuse.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context as _};

/// The edit: a value the kernel program writes into every registration event.
const SHARED_FILE: &str = "netvsc-common/src/lib.rs";
const BEFORE: &str = "pub const REGISTERED: u32 = 1;";
const AFTER: &str = "pub const REGISTERED: u32 = 101;";

pub fn run() -> anyhow::Result<()> {
    crate::toolchain::ensure()?;
    let root = crate::workspace::root();
    let work = root.join("target/ebpf-rebuild-check");
    let copy = work.join("workspace");
    copy_tracked(&root, &copy)?;
    println!("ebpf-rebuild-check: building the agent with its kernel object (a copy in {})", copy.display());
    let before =
        crate::toolchain::kernel_object(&copy, crate::toolchain::AGENT_OBJECT, &["--lib"], Some(&work.join("target")))?;
    let shared = copy.join(SHARED_FILE);
    let text = std::fs::read_to_string(&shared).with_context(|| format!("reading {}", shared.display()))?;
    ensure!(text.contains(BEFORE), "{SHARED_FILE} no longer contains `{BEFORE}`: update this check");
    std::fs::write(&shared, text.replace(BEFORE, AFTER)).with_context(|| format!("writing {}", shared.display()))?;
    println!("ebpf-rebuild-check: changed only {SHARED_FILE} (`{BEFORE}` → `{AFTER}`), building again");
    let after =
        crate::toolchain::kernel_object(&copy, crate::toolchain::AGENT_OBJECT, &["--lib"], Some(&work.join("target")))?;
    ensure!(!before.is_empty() && !after.is_empty(), "the embedded object is the empty stub: eBPF build skipped");
    if before == after {
        bail!("the embedded kernel object did not change after {SHARED_FILE} changed: the agent would load a stale program");
    }
    println!(
        "ebpf-rebuild-check: ok, the embedded object was rebuilt ({} bytes before, {} after, contents differ)",
        before.len(),
        after.len()
    );
    Ok(())
}

/// Copies every file git tracks or would track (and the lock file) from `root` to `copy`.
fn copy_tracked(root: &Path, copy: &Path) -> anyhow::Result<()> {
    let out = Command::new("git")
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    ensure!(out.status.success(), "git ls-files failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    let mut files: Vec<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).as_ref()))
        .collect();
    files.push(PathBuf::from("Cargo.lock"));
    for file in files {
        let (from, to) = (root.join(&file), copy.join(&file));
        if !from.is_file() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Unchanged files keep their times, so a rerun rebuilds only what the edit touches.
        if std::fs::read(&to).ok() != Some(std::fs::read(&from)?) {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    Ok(())
}
