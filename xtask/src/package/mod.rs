//! `cargo xtask package`: the .deb, the RPM and a release tarball of the static agent with its
//! eBPF object, from the metadata in netvsc-user/Cargo.toml (`[package.metadata.deb]`,
//! `[package.metadata.generate-rpm]`; version, licence and description are the crate's own).
//! cargo-deb and cargo-generate-rpm are installed with `cargo install --locked` the first time;
//! after that nothing here needs the network. `cargo xtask test` installs and purges the .deb
//! (check.rs).

pub mod check;
pub mod generated;
mod tarball;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context as _};
use sha2::Digest as _;

use crate::toolchain::STATIC_TARGET;

/// The package both tools read their metadata from.
const CRATE: &str = "netvsc-user";
/// The name users install and the binary's.
pub const NAME: &str = "netvsc-watch";

#[derive(clap::Args)]
pub struct PackageArgs {
    /// Directory for the .deb, the RPM, the tarball and SHA256SUMS (emptied of older ones)
    #[arg(long, value_name = "DIR", default_value_os_t = crate::workspace::root().join("target/package"))]
    out_dir: PathBuf,
    /// Instead: build into a temporary directory and run the suite's package check (installs
    /// the .deb on this machine, checks it and purges it; needs root)
    #[arg(long)]
    check: bool,
}

/// What one build made, all in one directory.
pub struct Artifacts {
    pub deb: PathBuf,
    pub rpm: PathBuf,
    pub tarball: PathBuf,
    /// `sha256sum -c` format, for the three above.
    pub sums: PathBuf,
}

pub fn run(args: PackageArgs) -> anyhow::Result<()> {
    if args.check {
        if let Some(reason) = check::unavailable() {
            anyhow::bail!("the package check cannot run here: {reason}");
        }
        check::run()?;
        println!("package: check ok");
        match crate::kube::unavailable() {
            Some(reason) => println!("package: the manifests' podman kube play check cannot run here: {reason}"),
            None => crate::kube::check().map(|()| println!("package: kube play check ok"))?,
        }
        return Ok(());
    }
    let built = build(&args.out_dir)?;
    for path in [&built.deb, &built.rpm, &built.tarball, &built.sums] {
        let bytes = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        println!("package: {} ({:.1} MB)", path.display(), bytes as f64 / 1e6);
    }
    println!("package: install with `apt install {}` or `dnf install {}`", built.deb.display(), built.rpm.display());
    Ok(())
}

/// Builds the static agent, generates the man pages and completions beside it, and makes the
/// three artifacts and their checksums in `out_dir`.
pub fn build(out_dir: &Path) -> anyhow::Result<Artifacts> {
    crate::toolchain::ensure_cargo_tool("cargo-deb", "^3.8")?;
    crate::toolchain::ensure_cargo_tool("cargo-generate-rpm", "^0.21")?;
    let binary = crate::toolchain::build_static_agent()?;
    // cargo-deb strips on its own; the RPM and the tarball take the binary as it is.
    let strip =
        Command::new("strip").arg(&binary).status().with_context(|| format!("stripping {}", binary.display()))?;
    ensure!(strip.success(), "strip {} failed ({strip})", binary.display());
    // Where both tools look for `target/release/...` when given --target.
    let release_dir = binary.parent().context("the binary's directory")?;
    generated::write(&release_dir.join("generated"))?;
    clear(out_dir)?;
    let root = crate::workspace::root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // The same commit gives the same bytes: both tools date the package by SOURCE_DATE_EPOCH.
    let epoch = source_date().to_string();
    let status = Command::new(&cargo)
        .env("SOURCE_DATE_EPOCH", &epoch)
        .args(["deb", "--package", CRATE, "--no-build", "--target", STATIC_TARGET, "--output"])
        .arg(out_dir)
        .current_dir(&root)
        .status()
        .context("running cargo deb")?;
    ensure!(status.success(), "cargo deb failed ({status})");
    let status = Command::new(&cargo)
        .env("SOURCE_DATE_EPOCH", &epoch)
        .args(["generate-rpm", "--package", CRATE, "--target", STATIC_TARGET, "--output"])
        .arg(out_dir)
        .current_dir(&root)
        .status()
        .context("running cargo generate-rpm")?;
    ensure!(status.success(), "cargo generate-rpm failed ({status})");
    let deb = only(out_dir, ".deb")?;
    let rpm = only(out_dir, ".rpm")?;
    let meta = crate::workspace::agent_metadata()?;
    let tarball = tarball::write(out_dir, &meta.version, &binary, &release_dir.join("generated"))?;
    let sums = out_dir.join("SHA256SUMS");
    write_sums(&sums, &[&deb, &rpm, &tarball])?;
    Ok(Artifacts { deb, rpm, tarball, sums })
}

/// Removes earlier artifacts from `dir` (so `apt install ./netvsc-watch_*.deb` finds one).
fn clear(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_file() && (name.starts_with(NAME) || name == "SHA256SUMS") {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The one file in `dir` whose name ends with `suffix`.
fn only(dir: &Path, suffix: &str) -> anyhow::Result<PathBuf> {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    ensure!(found.len() == 1, "expected one *{suffix} in {}, found {found:?}", dir.display());
    Ok(found.into_iter().next().expect("one"))
}

/// `<sha256>  <file name>` per file, as `sha256sum -c` reads it in the files' directory.
pub fn write_sums(sums: &Path, files: &[&Path]) -> anyhow::Result<()> {
    let mut text = String::new();
    for file in files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let name = file.file_name().context("a file name")?.to_string_lossy();
        text += &format!("{}  {name}\n", hex(&sha2::Sha256::digest(&bytes)));
    }
    std::fs::write(sums, text).with_context(|| format!("writing {}", sums.display()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SOURCE_DATE_EPOCH if set (the reproducible-builds convention), else the last commit's time.
pub fn source_date() -> u64 {
    if let Some(epoch) = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse().ok()) {
        return epoch;
    }
    Command::new("git")
        .args(["log", "-1", "--format=%ct"])
        .current_dir(crate::workspace::root())
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(0)
}
