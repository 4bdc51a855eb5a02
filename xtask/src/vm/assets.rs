//! The guest's ingredients, from Debian packages: a 6.1 kernel (BTF, kprobes, fentry allowed) and
//! a static busybox. Downloaded once with `apt-get download` and unpacked (not installed) into a
//! cache outside the source tree, reused across runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// Drivers the guest needs: virtio-net (the NetVSC stand-in) on virtio-pci, e1000e (the VF
/// stand-in), veth, and bridge (a master to enslave a VF to, as hv_netvsc does). Their
/// dependencies are found from the modules themselves.
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

pub struct Assets {
    pub kernel: PathBuf,
    pub kernel_version: String,
    /// (name, file) of every module to load, dependencies first.
    pub modules: Vec<(String, PathBuf)>,
    pub busybox: PathBuf,
}

/// `$NETVSC_VM_CACHE`, else `<cache root>/vm`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("NETVSC_VM_CACHE").map(PathBuf::from).unwrap_or_else(|| crate::workspace::cache_root().join("vm"))
}

/// Reuses what the cache holds; fetches what it lacks.
pub fn ensure() -> anyhow::Result<Assets> {
    let cache = cache_dir();
    let root = cache.join("root");
    if find(&root).is_err() {
        fetch(&cache)?;
    }
    find(&root)
}

fn find(root: &Path) -> anyhow::Result<Assets> {
    let modules_dir = root.join("lib/modules");
    let kernel_version = std::fs::read_dir(&modules_dir)
        .with_context(|| format!("reading {}", modules_dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max()
        .context("no kernel in the cache")?;
    let kernel = root.join(format!("boot/vmlinuz-{kernel_version}"));
    let busybox = root.join("bin/busybox");
    let tree = modules_dir.join(&kernel_version).join("kernel");
    let mut modules = Vec::new();
    for name in WANTED {
        add_with_dependencies(&tree, name, &mut modules)?;
    }
    for path in [&kernel, &busybox] {
        if !path.exists() {
            bail!("{} missing from the cache", path.display());
        }
    }
    Ok(Assets { kernel, kernel_version, modules, busybox })
}

/// Appends `name` after the modules it depends on (its `.modinfo` `depends=` list).
fn add_with_dependencies(tree: &Path, name: &str, modules: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    if modules.iter().any(|(known, _)| known == name) {
        return Ok(());
    }
    let path = find_module(tree, name)?.with_context(|| format!("module {name} not in {}", tree.display()))?;
    let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    for dependency in modinfo_depends(&data) {
        add_with_dependencies(tree, &dependency, modules)?;
    }
    modules.push((name.to_owned(), path));
    Ok(())
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
        } else if path.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.replace('-', "_") == format!("{name}.ko"))
        {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

fn fetch(cache: &Path) -> anyhow::Result<()> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs)?;
    let kernel = newest_kernel_package()?;
    println!("vm: fetching {kernel} and busybox-static into {}", cache.display());
    // `_apt` cannot write to most directories; downloading as root is what we want here.
    run(Command::new("apt-get")
        .args(["download", "-o", "APT::Sandbox::User=root", &kernel, "busybox-static"])
        .current_dir(&debs))?;
    let root = cache.join("root");
    let _ = std::fs::remove_dir_all(&root);
    for deb in std::fs::read_dir(&debs)? {
        let deb = deb?.path();
        if deb.extension().is_some_and(|e| e == "deb") {
            run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        }
    }
    Ok(())
}

/// The newest `linux-image-6.1.0-N-amd64` the package lists know (updating them once if empty).
fn newest_kernel_package() -> anyhow::Result<String> {
    let search = || -> anyhow::Result<Option<String>> {
        let out = Command::new("apt-cache")
            .args(["search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"])
            .output()
            .context("running apt-cache (is this Debian?)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut names: Vec<(u32, String)> = text
            .lines()
            .filter_map(|line| {
                let name = line.split_whitespace().next()?;
                let n = name.strip_prefix("linux-image-6.1.0-")?.strip_suffix("-amd64")?.parse().ok()?;
                Some((n, name.to_owned()))
            })
            .collect();
        names.sort();
        Ok(names.pop().map(|(_, name)| name))
    };
    if let Some(name) = search()? {
        return Ok(name);
    }
    run(Command::new("apt-get").arg("update").arg("-qq"))?;
    search()?.context("no linux-image-6.1.0-*-amd64 package found in Debian's lists")
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
}
