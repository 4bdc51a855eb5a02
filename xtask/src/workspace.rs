//! The workspace as xtask's tasks see it: where it is, running cargo in it, and the cache kept
//! outside it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};

/// The workspace root (this crate lives in `<root>/xtask`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_owned()
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

pub fn cargo_with_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// `$XDG_CACHE_HOME/netvsc-watch`, else `~/.cache/netvsc-watch`: outside the source tree.
pub fn cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"));
    base.join("netvsc-watch")
}

/// The crate's metadata the packages carry, as cargo reads it.
pub struct Metadata {
    pub version: String,
    /// What the shipped binary is under: the agent's licence and that of the eBPF object it
    /// embeds (the RPM's `License`, the image's `licenses` label).
    pub shipped_license: String,
    pub description: String,
}

/// netvsc-user's version, the shipped licence and the description, from `cargo metadata`.
pub fn agent_metadata() -> anyhow::Result<Metadata> {
    let meta = cargo_metadata::MetadataCommand::new()
        .manifest_path(root().join("Cargo.toml"))
        .no_deps()
        .exec()
        .context("running cargo metadata")?;
    let package = |name: &str| {
        meta.packages.iter().find(|p| p.name.as_str() == name).with_context(|| format!("no {name} package"))
    };
    let license = |name: &str| package(name)?.license.clone().with_context(|| format!("{name} has no licence"));
    let agent = package("netvsc-user")?;
    Ok(Metadata {
        version: agent.version.to_string(),
        shipped_license: format!("({}) AND ({})", license("netvsc-user")?, license("netvsc-ebpf")?),
        description: agent.description.clone().context("netvsc-user has no description")?,
    })
}
