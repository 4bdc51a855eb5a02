//! The guest's ingredients, from Debian packages: a kernel (bookworm's 6.1 by default; any
//! generic or cloud kernel of bookworm, trixie or bullseye by name or alias) and a static
//! busybox. Downloaded with `apt-get download` from private lists and unpacked (not installed)
//! into a cache outside the source tree, reused across runs. A kernel without the VF stand-in's
//! driver (Debian's cloud kernels have no e1000e) gets it built for that exact kernel (kbuild.rs).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// Drivers the guest needs: virtio-net (the NetVSC stand-in) on virtio-pci, e1000e (the VF
/// stand-in), veth, and bridge (a master to enslave a VF to, as hv_netvsc does). Their
/// dependencies are found from the modules themselves; a driver built into the kernel needs
/// nothing.
///
/// For DPDK in the guest (`vm dpdk`): uio_pci_generic, which DPDK's e1000 PMD drives the VF
/// stand-in through; tun and the traffic-control modules fail-safe's tap fallback
/// (`net_tap,remote=`) builds its redirection from.
const WANTED: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "e1000e",
    "veth",
    "bridge",
    "uio_pci_generic",
    "tun",
    "sch_multiq",
    "sch_ingress",
    "cls_flower",
    "act_mirred",
    "act_gact",
    "act_skbedit",
    "cls_bpf",
    "act_bpf",
];

/// The VF stand-in's driver, built for kernels that lack it.
pub(super) const VF_DRIVER: &str = "e1000e";

/// Names for the newest kernel of a release and flavour, as `--kernel` takes them.
const ALIASES: &[(&str, &str)] = &[
    ("bookworm", r"^linux-image-6\.1\.0-[0-9]+-amd64$"),
    ("bookworm-cloud", r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64$"),
    ("trixie", r"^linux-image-6\.12\.[0-9]+\+deb13-amd64$"),
    ("trixie-cloud", r"^linux-image-6\.12\.[0-9]+\+deb13-cloud-amd64$"),
    ("bullseye", r"^linux-image-5\.10\.0-[0-9]+-amd64$"),
    ("bullseye-cloud", r"^linux-image-5\.10\.0-[0-9]+-cloud-amd64$"),
];

/// The kernel the rig boots when none is named.
pub const DEFAULT_KERNEL: &str = "bookworm";

pub struct Assets {
    pub kernel: PathBuf,
    pub kernel_version: String,
    /// The Debian package the kernel came from.
    pub package: String,
    /// (name, file) of every module to load, dependencies first; uncompressed.
    pub modules: Vec<(String, PathBuf)>,
    pub busybox: PathBuf,
}

/// `$NETVSC_VM_CACHE`, else `<cache root>/vm`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("NETVSC_VM_CACHE").map(PathBuf::from).unwrap_or_else(|| crate::workspace::cache_root().join("vm"))
}

/// The package `kernel` names: an alias of [`ALIASES`] (the newest such package), or a package
/// name as it is.
pub fn kernel_package(kernel: &str) -> anyhow::Result<String> {
    match ALIASES.iter().find(|(alias, _)| *alias == kernel) {
        Some((_, pattern)) => crate::debian::newest_package(pattern),
        None if kernel.starts_with("linux-image-") => Ok(kernel.to_owned()),
        None => bail!(
            "unknown kernel {kernel:?}: give a linux-image-* package or one of {}",
            ALIASES.iter().map(|(alias, _)| *alias).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Reuses what the cache holds for `kernel` (an alias or package); fetches what it lacks.
pub fn ensure(kernel: &str) -> anyhow::Result<Assets> {
    let package = kernel_package(kernel)?;
    let cache = cache_dir();
    // The newest busybox-static of the lists (trixie's installs under usr/).
    let find_busybox =
        || ["bin/busybox", "usr/bin/busybox"].map(|p| cache.join("busybox").join(p)).into_iter().find(|p| p.exists());
    let busybox = match find_busybox() {
        Some(found) => found,
        None => {
            unpack(&["busybox-static"], &cache.join("busybox"))?;
            find_busybox().context("busybox-static unpacked without a busybox")?
        }
    };
    let dir = cache.join("kernels").join(&package);
    let root = dir.join("root");
    if modules_dir(&root).is_none() {
        println!("vm: fetching {package} into {}", dir.display());
        unpack(&[&package], &root)?;
    }
    let modules = modules_dir(&root).with_context(|| format!("no kernel modules in {}", root.display()))?;
    let kernel_version = std::fs::read_dir(&modules)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max()
        .context("no kernel in the cache")?;
    let kernel = root.join(format!("boot/vmlinuz-{kernel_version}"));
    if !kernel.exists() {
        bail!("{} missing from the cache", kernel.display());
    }
    let tree = Tree { dir: modules.join(&kernel_version), unpacked: dir.join("modules"), extra: dir.join("extra") };
    if !tree.has(VF_DRIVER)? {
        let kernel = super::kbuild::Kernel {
            package: &package,
            version: &kernel_version,
            debs: &root.with_extension("debs"),
            roots: &cache,
        };
        super::kbuild::build_module(&kernel, VF_DRIVER, &tree.extra)?;
    }
    let mut wanted = Vec::new();
    for name in WANTED {
        tree.add_with_dependencies(name, &mut wanted)?;
    }
    Ok(Assets { kernel, kernel_version, package, modules: wanted, busybox })
}

/// `lib/modules` or, on merged-/usr releases (trixie), `usr/lib/modules`.
fn modules_dir(root: &Path) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"].into_iter().map(|d| root.join(d)).find(|d| d.is_dir())
}

fn unpack(packages: &[&str], root: &Path) -> anyhow::Result<()> {
    let debs = root.with_extension("debs");
    let _ = std::fs::remove_dir_all(&debs);
    crate::debian::download(packages, &debs)?;
    let _ = std::fs::remove_dir_all(root);
    for deb in std::fs::read_dir(&debs)? {
        let deb = deb?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
        }
    }
    Ok(())
}

/// One kernel's modules: its tree, where compressed ones are unpacked, and built ones.
struct Tree {
    dir: PathBuf,
    unpacked: PathBuf,
    extra: PathBuf,
}

impl Tree {
    /// Whether `name` is built in or available as a module.
    fn has(&self, name: &str) -> anyhow::Result<bool> {
        Ok(self.builtin(name) || self.module(name)?.is_some())
    }

    /// Listed in `modules.builtin` (`kernel/drivers/virtio/virtio_pci.ko`).
    fn builtin(&self, name: &str) -> bool {
        let list = std::fs::read_to_string(self.dir.join("modules.builtin")).unwrap_or_default();
        list.lines().any(|line| module_name(line).as_deref() == Some(name))
    }

    /// The module's uncompressed file: built for this kernel, or from the tree (`.ko`, or
    /// `.ko.xz` unpacked once: busybox's insmod takes plain modules only).
    fn module(&self, name: &str) -> anyhow::Result<Option<PathBuf>> {
        let built = self.extra.join(format!("{name}.ko"));
        if built.exists() {
            return Ok(Some(built));
        }
        let Some(found) = find_module(&self.dir.join("kernel"), name)? else { return Ok(None) };
        if found.extension().is_some_and(|e| e == "ko") {
            return Ok(Some(found));
        }
        let plain = self.unpacked.join(format!("{name}.ko"));
        if !plain.exists() {
            std::fs::create_dir_all(&self.unpacked)?;
            let out =
                Command::new("xz").arg("-dc").arg(&found).output().context("running xz (apt-get install xz-utils)")?;
            if !out.status.success() {
                bail!("xz -dc {} failed: {}", found.display(), String::from_utf8_lossy(&out.stderr).trim());
            }
            std::fs::write(&plain, out.stdout)?;
        }
        Ok(Some(plain))
    }

    /// Appends `name` after the modules it depends on (its `.modinfo` `depends=` list); a
    /// built-in driver adds nothing.
    fn add_with_dependencies(&self, name: &str, modules: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
        if modules.iter().any(|(known, _)| known == name) || self.builtin(name) {
            return Ok(());
        }
        let path = self.module(name)?.with_context(|| format!("module {name} not in {}", self.dir.display()))?;
        let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        for dependency in modinfo_depends(&data) {
            self.add_with_dependencies(&dependency, modules)?;
        }
        modules.push((name.to_owned(), path));
        Ok(())
    }
}

/// `virtio_pci` of `kernel/drivers/virtio/virtio_pci.ko[.xz]` (modules use `_` where files may
/// use `-`).
fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem =
        file.strip_suffix(".ko").or_else(|| file.strip_suffix(".ko.xz")).or_else(|| file.strip_suffix(".ko.zst"))?;
    Some(stem.replace('-', "_"))
}

/// The `depends=` entry of a module's `.modinfo` (NUL-separated `key=value` strings).
fn modinfo_depends(module: &[u8]) -> Vec<String> {
    module
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .map(|list| String::from_utf8_lossy(list).split(',').filter(|d| !d.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn find_module(dir: &Path, name: &str) -> anyhow::Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if let Some(found) = find_module(&path, name)? {
                return Ok(Some(found));
            }
        } else if path.to_str().and_then(module_name).as_deref() == Some(name) {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output().with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn modinfo_depends_reads_the_list() {
        let module = b"\x7fELF...\0license=GPL\0depends=virtio_ring,virtio\0vermagic=6.1\0";
        assert_eq!(super::modinfo_depends(module), ["virtio_ring", "virtio"]);
        assert!(super::modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn module_names_come_from_plain_and_compressed_files() {
        assert_eq!(super::module_name("kernel/drivers/virtio/virtio_pci.ko").as_deref(), Some("virtio_pci"));
        assert_eq!(super::module_name("kernel/net/sched/act-bpf.ko.xz").as_deref(), Some("act_bpf"));
        assert_eq!(super::module_name("kernel/drivers/net/virtio_net.c"), None);
    }

    #[test]
    fn an_unknown_kernel_name_is_refused_with_the_aliases() {
        let err = super::kernel_package("jammy").unwrap_err().to_string();
        assert!(err.contains("\"jammy\"") && err.contains("trixie-cloud"), "{err}");
    }
}
