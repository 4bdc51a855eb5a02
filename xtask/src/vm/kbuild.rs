//! A driver the kernel package lacks, built for that exact kernel: Debian's cloud kernels carry
//! no driver for any NIC QEMU emulates as a plain PCI function (virtio-net's netdevice hangs off
//! a virtio device, which the product rightly refuses as a VF), so the VF stand-in's e1000e is
//! compiled as a module from Debian's `linux-source-<series>` (the same version as the kernel)
//! against that kernel's `linux-headers-*`, with the kernel release's own compiler and kbuild, in
//! a root of that release. Offline apart from Debian's packages; cached beside the kernel.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

/// (driver, its directory in the kernel's source, the Kconfig symbol that builds it).
const DRIVERS: &[(&str, &str, &str)] = &[("e1000e", "drivers/net/ethernet/intel/e1000e", "CONFIG_E1000E")];

/// The Debian release that carries a kernel series.
fn suite_of(series: &str) -> Option<&'static str> {
    match series {
        "6.12" => Some("trixie"),
        "6.1" => Some("bookworm"),
        "5.10" => Some("bullseye"),
        _ => None,
    }
}

/// `6.12` of `6.12.117+deb13-cloud-amd64`, `6.1` of `6.1.0-57-amd64`.
fn series_of(kernel_version: &str) -> Option<String> {
    let mut numbers = kernel_version.split(|c: char| !c.is_ascii_digit());
    Some(format!("{}.{}", numbers.next()?, numbers.next()?))
}

/// Where a build happens and what it starts from: the kernel's package and its downloaded .deb
/// (whose version is the source's), and the directory for the build roots.
pub struct Kernel<'a> {
    pub package: &'a str,
    pub version: &'a str,
    pub debs: &'a Path,
    pub roots: &'a Path,
}

/// Builds `driver` for `kernel` into `out_dir/<driver>.ko`.
pub fn build_module(kernel: &Kernel<'_>, driver: &str, out_dir: &Path) -> anyhow::Result<()> {
    let Kernel { package, version: kernel_version, debs, roots } = *kernel;
    let (_, source_dir, symbol) =
        DRIVERS.iter().find(|(name, _, _)| *name == driver).with_context(|| format!("no recipe to build {driver}"))?;
    let series = series_of(kernel_version).with_context(|| format!("no kernel series in {kernel_version:?}"))?;
    let suite = suite_of(&series).with_context(|| format!("no Debian release known for Linux {series}"))?;
    if let Some(why) = crate::debian::roots_unavailable() {
        bail!("{package} has no {driver} and it cannot be built here: {why}");
    }
    let version = package_version(package, debs)?;
    println!("vm: {package} has no {driver}; building it from linux-source-{series} {version} (once)");
    let root = roots.join(format!("kbuild-{suite}/root"));
    let packages = vec![
        format!("linux-headers-{kernel_version}"),
        format!("linux-source-{series}={version}"),
        "make".into(),
        "xz-utils".into(),
    ];
    crate::debian::ensure_root(suite, &root, &packages)?;
    let work = format!("/tmp/kbuild-{kernel_version}");
    let _ = std::fs::remove_dir_all(root.join(work.trim_start_matches('/')));
    let tarball = format!("/usr/src/linux-source-{series}.tar.xz");
    let member = format!("linux-source-{series}/{source_dir}");
    crate::debian::in_root(&root, &["mkdir", "-p", &work])?;
    crate::debian::in_root(&root, &["tar", "-xJf", &tarball, "-C", &work, &member])
        .with_context(|| format!("extracting {member} from {tarball}"))?;
    let module_dir = format!("{work}/{member}");
    crate::debian::in_root(
        &root,
        &[
            "make",
            "-s",
            "-C",
            &format!("/usr/src/linux-headers-{kernel_version}"),
            &format!("M={module_dir}"),
            &format!("{symbol}=m"),
            "modules",
        ],
    )
    .with_context(|| format!("building {driver} for {kernel_version}"))?;
    let built = root.join(module_dir.trim_start_matches('/')).join(format!("{driver}.ko"));
    std::fs::create_dir_all(out_dir)?;
    std::fs::copy(&built, out_dir.join(format!("{driver}.ko")))
        .with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}

/// The version of the downloaded kernel package (its .deb in `debs`).
fn package_version(package: &str, debs: &Path) -> anyhow::Result<String> {
    let deb = std::fs::read_dir(debs)
        .with_context(|| format!("reading {}", debs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("no .deb of {package} in {}", debs.display()))?;
    let out = Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version").output().context("running dpkg-deb")?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || version.is_empty() {
        bail!("no version in {}", deb.display());
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_kernel_release_names_its_series_and_debian_release() {
        assert_eq!(super::series_of("6.12.117+deb13-cloud-amd64").as_deref(), Some("6.12"));
        assert_eq!(super::series_of("6.1.0-57-amd64").as_deref(), Some("6.1"));
        assert_eq!(super::series_of("5.10.0-32-cloud-amd64").as_deref(), Some("5.10"));
        assert_eq!(super::suite_of("6.12"), Some("trixie"));
        assert_eq!(super::suite_of("4.19"), None);
    }
}
