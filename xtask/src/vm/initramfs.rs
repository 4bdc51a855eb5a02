//! The guest's root filesystem: busybox, the init script, the NIC modules, and the freshly built
//! agent binaries with the shared libraries they load (found with `ldd`). An uncompressed newc
//! cpio archive, which the kernel accepts as an initramfs.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;
use cpio::newc::ModeFileType;
use cpio::NewcBuilder;

use super::assets::Assets;

const INIT: &str = include_str!("init.sh");

/// Builds `out` from the assets and `binaries` (installed as `/bin/<file name>`).
pub fn build(assets: &Assets, binaries: &[PathBuf], out: &Path) -> anyhow::Result<()> {
    let mut archive = Archive::default();
    for dir in ["bin", "dev", "etc", "lib", "lib/modules", "lib64", "proc", "run", "sys", "tmp", "usr", "usr/lib"] {
        archive.dir(dir);
    }
    archive.file("init", INIT.as_bytes().to_vec(), 0o755);
    archive.file("bin/busybox", read(&assets.busybox)?, 0o755);
    let order: Vec<&str> = assets.modules.iter().map(|(name, _)| name.as_str()).collect();
    archive.file("etc/nvw-modules", format!("{}\n", order.join("\n")).into_bytes(), 0o644);
    for (name, path) in &assets.modules {
        archive.file(&format!("lib/modules/{name}.ko"), read(path)?, 0o644);
    }
    let mut libraries = Vec::new();
    for binary in binaries {
        let name = binary.file_name().and_then(|n| n.to_str()).context("binary name")?;
        archive.file(&format!("bin/{name}"), read(binary)?, 0o755);
        for library in shared_libraries(binary)? {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
    }
    for library in libraries {
        let inside = library.strip_prefix("/").unwrap_or(&library).to_str().context("library path")?.to_owned();
        if let Some(parent) = Path::new(&inside).parent() {
            archive.dir(parent.to_str().context("library dir")?);
        }
        // Libraries are often symlinks; the archive gets the file they point to under this name.
        archive.file(&inside, read(&library)?, 0o755);
    }
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    cpio::write_cpio(archive.entries.into_iter(), file).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Absolute paths of the shared libraries `binary` loads, the dynamic loader included.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = line.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[derive(Default)]
struct Archive {
    entries: Vec<(NewcBuilder, Cursor<Vec<u8>>)>,
    names: Vec<String>,
}

impl Archive {
    fn dir(&mut self, name: &str) {
        let mut path = String::new();
        for part in name.split('/') {
            path = if path.is_empty() { part.to_owned() } else { format!("{path}/{part}") };
            if !self.names.contains(&path) {
                self.add(&path, Vec::new(), 0o755, ModeFileType::Directory);
            }
        }
    }

    fn file(&mut self, name: &str, data: Vec<u8>, mode: u32) {
        self.add(name, data, mode, ModeFileType::Regular);
    }

    fn add(&mut self, name: &str, data: Vec<u8>, mode: u32, kind: ModeFileType) {
        let links = if matches!(kind, ModeFileType::Directory) { 2 } else { 1 };
        let builder =
            NewcBuilder::new(name).ino(self.entries.len() as u32 + 1).mode(mode).set_mode_file_type(kind).nlink(links);
        self.names.push(name.to_owned());
        self.entries.push((builder, Cursor::new(data)));
    }
}
