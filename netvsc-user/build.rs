//! Builds the kernel program (`netvsc-ebpf`, nightly, `bpfel-unknown-none`) into `OUT_DIR/netvsc`
//! when `NETVSC_BUILD_EBPF=1` (as `cargo xtask build` sets it); otherwise writes an empty stub so
//! that `cargo check`, `clippy` and plain `cargo test` stay fast and need only stable Rust. An
//! agent built with the stub says so when the eBPF source is asked for.
//!
//! Rebuilds: `netvsc-ebpf` is a build-dependency, so any change to it or to `netvsc-common`
//! reruns this script (see netvsc-user/Cargo.toml); `cargo xtask ebpf-rebuild-check` proves it.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=NETVSC_BUILD_EBPF");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if std::env::var("NETVSC_BUILD_EBPF").as_deref() != Ok("1") {
        std::fs::write(out_dir.join("netvsc"), [])?;
        return Ok(());
    }
    // aya-build relays everything the inner cargo prints on stderr as a build warning: keep its
    // progress lines ("Compiling core …") out of every build, while compiler diagnostics still
    // come through (they travel on stdout as JSON).
    std::env::set_var("CARGO_TERM_QUIET", "true");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root_dir = manifest_dir.join("../netvsc-ebpf");
    let root_dir = root_dir.to_str().ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", root_dir.display()))?;
    let package = aya_build::Package { name: "netvsc-ebpf", root_dir, ..Default::default() };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
