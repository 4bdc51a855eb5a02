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

/// What goes into the guest besides busybox, init and the modules.
#[derive(Default)]
pub struct Contents {
    /// Installed as `/bin/<file name>`, with the shared libraries they load.
    pub binaries: Vec<PathBuf>,
    /// Host files installed at their own path, with the shared libraries they load (DPDK's
    /// testpmd and the PMD plugins it is told to load with `-d`).
    pub host_files: Vec<PathBuf>,
    /// (path, text, mode): scripts and configuration written for the guest.
    pub texts: Vec<(String, String, u32)>,
}

/// Builds `out` from the assets and `contents`.
pub fn build(assets: &Assets, contents: &Contents, out: &Path) -> anyhow::Result<()> {
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
    let mut add_libraries = |of: &Path| -> anyhow::Result<()> {
        for library in shared_libraries(of)? {
            if !libraries.contains(&library) {
                libraries.push(library);
            }
        }
        Ok(())
    };
    for binary in &contents.binaries {
        let name = binary.file_name().and_then(|n| n.to_str()).context("binary name")?;
        archive.file(&format!("bin/{name}"), read(binary)?, 0o755);
        add_libraries(binary)?;
    }
    for file in &contents.host_files {
        add_libraries(file)?;
        archive.file_at(file, 0o755)?;
    }
    for (path, text, mode) in &contents.texts {
        let inside = path.trim_start_matches('/');
        if let Some(parent) = Path::new(inside).parent().and_then(|p| p.to_str()).filter(|p| !p.is_empty()) {
            archive.dir(parent);
        }
        archive.file(inside, text.clone().into_bytes(), *mode);
    }
    for library in libraries {
        // Libraries are often symlinks; the archive gets the file they point to under this name.
        if !archive.has(&library) {
            archive.file_at(&library, 0o755)?;
        }
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

    /// Host file `path` at the same path inside, its directories made.
    fn file_at(&mut self, path: &Path, mode: u32) -> anyhow::Result<()> {
        let inside = path.strip_prefix("/").unwrap_or(path).to_str().context("non-UTF-8 path")?.to_owned();
        if let Some(parent) = Path::new(&inside).parent().and_then(|p| p.to_str()).filter(|p| !p.is_empty()) {
            self.dir(parent);
        }
        self.file(&inside, read(path)?, mode);
        Ok(())
    }

    fn has(&self, path: &Path) -> bool {
        path.to_str().is_some_and(|p| self.names.iter().any(|n| n == p.trim_start_matches('/')))
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
