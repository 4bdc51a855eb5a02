//! What building the kernel program needs, installed on demand: nightly with `rust-src` (for
//! `-Z build-std=core`), and `bpf-linker` built against the LLVM that nightly itself ships
//! (no system LLVM of the right version exists here). Version strings come from the toolchain.
//! And the release build of the agent that needs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context as _};
use cargo_metadata::Message;

/// Release build of the agent with the kernel program embedded, and of the test stand-ins
/// (failsafe-sim, stamp-lines: feature `test-tools`) the demo, bench and VM rig run beside it;
/// returns the directory holding them.
pub fn build_agent() -> anyhow::Result<PathBuf> {
    ensure()?;
    crate::workspace::cargo_with_env(
        &["build", "--release", "--package", "netvsc-user", "--bins", "--features", "test-tools"],
        &[("NETVSC_BUILD_EBPF", "1")],
    )?;
    Ok(crate::workspace::root().join("target/release"))
}

/// The agent's kernel program, the one object the agent embeds.
pub const AGENT_OBJECT: &str = "netvsc";
/// The bench's reference clock (netvsc-ebpf/src/bin/broadcast-stamp.rs), built beside it.
pub const BROADCAST_STAMP_OBJECT: &str = "broadcast-stamp";

/// Builds the agent's library in `workspace` with the kernel objects (`profile_args`: `--lib`, or
/// `--lib --release`; into `target_dir` when given) and returns the bytes of object `name`, found
/// through the build script's `OUT_DIR` as cargo reports it.
pub fn kernel_object(
    workspace: &Path,
    name: &str,
    profile_args: &[&str],
    target_dir: Option<&Path>,
) -> anyhow::Result<Vec<u8>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--quiet", "--package", "netvsc-user", "--message-format=json"])
        .args(profile_args)
        .env("NETVSC_BUILD_EBPF", "1")
        .current_dir(workspace)
        .stderr(Stdio::inherit());
    if let Some(target_dir) = target_dir {
        command.env("CARGO_TARGET_DIR", target_dir);
    }
    let out = command.output().with_context(|| format!("running {cargo} build"))?;
    ensure!(out.status.success(), "building the agent in {} failed ({})", workspace.display(), out.status);
    let out_dir = Message::parse_stream(out.stdout.as_slice())
        .filter_map(Result::ok)
        .find_map(|message| match message {
            Message::BuildScriptExecuted(script) if script.package_id.repr.contains("netvsc-user") => {
                Some(script.out_dir)
            }
            _ => None,
        })
        .context("cargo did not report netvsc-user's build script")?;
    let object = out_dir.join(name);
    std::fs::read(&object).with_context(|| format!("reading {object}"))
}

/// The target of the container image's binary: static, no C library to bring along.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the agent as one static binary with its eBPF object (for the container image);
/// installs the musl target with rustup if missing. Returns the binary's path.
pub fn build_static_agent() -> anyhow::Result<PathBuf> {
    ensure()?;
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|line| line.trim() == STATIC_TARGET) {
        run(Command::new("rustup").args(["target", "add", STATIC_TARGET]))?;
    }
    crate::workspace::cargo_with_env(
        &["build", "--release", "--package", "netvsc-user", "--bin", "netvsc-watch", "--target", STATIC_TARGET],
        &[("NETVSC_BUILD_EBPF", "1")],
    )?;
    Ok(crate::workspace::root().join("target").join(STATIC_TARGET).join("release/netvsc-watch"))
}

/// Ensures nightly, its rust-src and a working bpf-linker; cheap when all are there.
pub fn ensure() -> anyhow::Result<()> {
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        run(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))?;
    }
    let installed =
        output(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))?;
    if !installed.lines().any(|line| line.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    install_bpf_linker()
}

/// `cargo install bpf-linker` with `LLVM_PREFIX` pointing at a directory that presents
/// nightly's own libLLVM under the names the build looks for. The directory must outlive the
/// binary (its rpath points there), so it lives in the cache, named after the LLVM it serves.
fn install_bpf_linker() -> anyhow::Result<()> {
    let verbose = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    let llvm_version = verbose
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .context("rustc -vV does not say its LLVM version")?;
    let major = llvm_version.split('.').next().unwrap_or_default();
    let sysroot =
        PathBuf::from(output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?.trim());
    let library = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("libLLVM.so.{major}")))
        })
        .with_context(|| format!("no libLLVM.so.{major}* in {}", sysroot.join("lib").display()))?;
    let prefix = crate::workspace::cache_root().join(format!("llvm-prefix-{llvm_version}"));
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib)?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), library.file_name().expect("a file")] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&library, &link).with_context(|| format!("linking {}", link.display()))?;
    }
    println!("xtask: building bpf-linker against nightly's LLVM {llvm_version} (about a minute, once)");
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--version", "^0.13", "--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix))?;
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker installed but does not run (is ~/.cargo/bin on PATH?)");
    }
    Ok(())
}

/// cargo-fuzz's release, installed with `cargo install --locked` when missing (the suite's
/// fuzz step and `cargo xtask fuzz`).
pub const CARGO_FUZZ: (&str, &str) = ("cargo-fuzz", "^0.13");

/// A cargo subcommand the packaging uses (cargo-deb, cargo-generate-rpm), installed with
/// `cargo install --locked` the first time, as bpf-linker is: the versions its lock file names,
/// so a new release of a dependency cannot change the package build. `version` is a semver
/// requirement (`^3.8`).
pub fn ensure_cargo_tool(name: &str, version: &str) -> anyhow::Result<()> {
    if succeeds(Command::new(name).arg("--version")) {
        return Ok(());
    }
    println!("xtask: installing {name} {version} with cargo install --locked (a few minutes, once)");
    run(Command::new("cargo").args(["install", "--locked", name, "--version", version]))?;
    if !succeeds(Command::new(name).arg("--version")) {
        bail!("{name} installed but does not run (is ~/.cargo/bin on PATH?)");
    }
    Ok(())
}

fn succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|out| out.status.success())
}

pub(crate) fn output(command: &mut Command) -> anyhow::Result<String> {
    let out = command.output().with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
