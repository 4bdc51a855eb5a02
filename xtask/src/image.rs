//! `cargo xtask image`: the container image of deploy/container/Containerfile, built offline
//! (`FROM scratch`, a build context holding only the static agent) with podman, or docker when
//! only a working docker is there. `cargo xtask test` builds it and runs its binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context as _};

use crate::toolchain::output;

const CONTAINERFILE: &str = "deploy/container/Containerfile";
/// The image's size budget: one static binary and nothing else.
const MAX_BYTES: u64 = 10 * 1024 * 1024;

#[derive(clap::Args)]
pub struct ImageArgs {
    /// Image name and tag
    #[arg(long, default_value_t = default_tag())]
    tag: String,
}

fn default_tag() -> String {
    format!("localhost/netvsc-watch:{}", env!("CARGO_PKG_VERSION"))
}

/// podman, or docker with a daemon that answers.
fn engine() -> Option<&'static str> {
    let works = |program: &str, arg: &str| Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success());
    if works("podman", "--version") {
        Some("podman")
    } else if works("docker", "info") {
        Some("docker")
    } else {
        None
    }
}

/// Why no image can be built here, if it cannot.
pub fn unavailable() -> Option<String> {
    engine().is_none().then(|| "neither podman nor a docker with a running daemon (apt-get install podman)".into())
}

pub struct Built {
    pub engine: &'static str,
    pub tag: String,
    pub bytes: u64,
}

pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let built = build(&args.tag)?;
    println!("image: {} ({:.1} MB, built with {})", built.tag, built.bytes as f64 / 1e6, built.engine);
    println!("image: try it with `{} run --rm --network host --cap-drop ALL {} --help`", built.engine, built.tag);
    Ok(())
}

/// Builds the static agent and the image tagged `tag`.
pub fn build(tag: &str) -> anyhow::Result<Built> {
    let engine = engine().context(unavailable().unwrap_or_default())?;
    let binary = crate::toolchain::build_static_agent()?;
    let context = tempfile::Builder::new().prefix("netvsc-image.").tempdir()?;
    let inside = context.path().join("netvsc-watch");
    std::fs::copy(&binary, &inside).with_context(|| format!("copying {}", binary.display()))?;
    // Symbols are for debugging the host build; the image carries the program only.
    let stripped = Command::new("strip").arg(&inside).status().is_ok_and(|s| s.success());
    if !stripped {
        println!("image: strip not available; the binary keeps its symbols");
    }
    let containerfile = crate::workspace::root().join(CONTAINERFILE);
    let status = Command::new(engine)
        .args(["build", "--pull=never", "-f"])
        .arg(&containerfile)
        .args(["-t", tag])
        .arg(context.path())
        .status()
        .with_context(|| format!("running {engine} build"))?;
    ensure!(status.success(), "{engine} build failed ({status})");
    let size = output(Command::new(engine).args(["image", "inspect", "--format", "{{.Size}}", tag]))?;
    let bytes = size.trim().parse().with_context(|| format!("image size {size:?}"))?;
    Ok(Built { engine, tag: tag.to_owned(), bytes })
}

/// For `cargo xtask test`: the image builds within its size budget, and its binary runs: by
/// `podman run` where the machine allows it, and from the mounted image root in any case.
pub fn check() -> anyhow::Result<()> {
    let built = build("localhost/netvsc-watch:test")?;
    println!("image: {} is {:.1} MB", built.tag, built.bytes as f64 / 1e6);
    ensure!(built.bytes <= MAX_BYTES, "image is {} bytes, over the {MAX_BYTES} budget", built.bytes);
    let label = r#"{{index .Labels "org.opencontainers.image.licenses"}}"#;
    let licenses = output(Command::new(built.engine).args(["image", "inspect", "--format", label, &built.tag]))?;
    let shipped = crate::workspace::agent_metadata()?.shipped_license;
    ensure!(licenses.trim() == shipped, "the image's licences label {:?}, the binary's {shipped:?}", licenses.trim());
    let run = Command::new(built.engine).args(["run", "--rm", "--network", "none", &built.tag, "--version"]).output();
    match run {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout);
            ensure!(version.starts_with("netvsc-watch "), "`run --version` printed {version:?}");
            println!("image: `{} run` works: {}", built.engine, version.trim());
        }
        Ok(out) => println!(
            "image: `{} run` refused here ({}); running the binary from the mounted image instead",
            built.engine,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
        ),
        Err(err) => println!("image: `{} run` could not start ({err})", built.engine),
    }
    ensure!(built.engine == "podman", "the mounted-image check needs podman");
    let root = PathBuf::from(output(Command::new("podman").args(["image", "mount", &built.tag]))?.trim());
    let checked = run_from(&root);
    let _ = Command::new("podman").args(["image", "unmount", &built.tag]).output();
    checked
}

/// The image's binary, run from its root: static (no interpreter to find), the same program
/// (its version), and working (a scan of a fake sysfs tree finds its NetVSC interface).
fn run_from(root: &Path) -> anyhow::Result<()> {
    let binary = root.join("usr/bin/netvsc-watch");
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        if !entry.file_type().is_dir() {
            entries.push(entry.path().strip_prefix(root)?.to_string_lossy().into_owned());
        }
    }
    ensure!(entries == ["usr/bin/netvsc-watch"], "the image holds more than the agent: {entries:?}");
    let ldd = Command::new("ldd").arg(&binary).output().context("running ldd")?;
    let says = String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    ensure!(says.contains("not a dynamic executable") || says.contains("statically linked"), "ldd: {says}");
    let version = output(Command::new(&binary).arg("--version"))?;
    ensure!(version.trim() == format!("netvsc-watch {}", env!("CARGO_PKG_VERSION")), "--version: {version:?}");
    let fake = tempfile::tempdir()?;
    let sys = netvsc_testkit::FakeSysfs::create(&fake.path().join("sys"))?;
    sys.add_netvsc("eth1", 10, "00:15:5d:00:00:01")?;
    sys.add_vf("enP1", 11, "00:15:5d:00:00:01", "0002:00:02.0")?;
    let scan = output(Command::new(&binary).args(["scan", "--json", "--sysfs-root"]).arg(sys.root()))?;
    ensure!(scan.contains("\"eth1\"") && scan.contains("0002:00:02.0"), "scan from the image: {scan}");
    // The kernel program is embedded: the eBPF source gets past "no eBPF object" (to running,
    // or to what this kernel or these privileges refuse).
    let fifo_dir = tempfile::tempdir()?;
    let ebpf = Command::new("timeout")
        .arg("5")
        .arg(&binary)
        .args(["watch", "--source", "ebpf", "--sysfs-root"])
        .arg(sys.root())
        .arg("--fifo-dir")
        .arg(fifo_dir.path())
        .output()
        .context("running the image's agent with the eBPF source")?;
    let stderr = String::from_utf8_lossy(&ebpf.stderr);
    ensure!(!stderr.contains("no eBPF object"), "the image's binary lacks the kernel program: {stderr}");
    println!("image: its binary is static, reports {}, scans a tree and embeds the eBPF object", version.trim());
    Ok(())
}
