//! The release tarball, for machines that take neither package: the static binary, the unit and
//! sysusers file, the Kubernetes manifests, man pages, completions, docs and licences, with a
//! SHA256SUMS of its own contents. The same inputs give the same bytes (fixed owners, the last
//! commit's time, sorted entries, gzip without a timestamp).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::Digest as _;

/// (path in the archive below its top directory, file in the tree, mode).
fn contents(binary: &Path, generated: &Path) -> anyhow::Result<Vec<(String, PathBuf, u32)>> {
    let root = crate::workspace::root();
    let mut files = vec![("netvsc-watch".to_owned(), binary.to_owned(), 0o755)];
    for (inside, source) in [
        ("systemd/netvsc-watch.service", "deploy/systemd/netvsc-watch.service"),
        ("systemd/netvsc-watch.sysusers", "deploy/systemd/netvsc-watch.sysusers"),
        ("README.md", "README.md"),
        ("docs/deployment.md", "docs/deployment.md"),
        ("LICENSE-MIT", "LICENSE-MIT"),
        ("LICENSE-APACHE", "LICENSE-APACHE"),
        // The embedded kernel program's licence (Dual MIT/GPL).
        ("LICENSE-GPL-2.0", "LICENSE-GPL-2.0"),
    ] {
        files.push((inside.to_owned(), root.join(source), 0o644));
    }
    for (inside, dir) in [
        ("kubernetes", root.join("deploy/kubernetes")),
        ("man", generated.join("man")),
        ("completions", generated.join("completions")),
    ] {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().context("a file name")?.to_string_lossy().into_owned();
            files.push((format!("{inside}/{name}"), path, 0o644));
        }
    }
    files.sort();
    Ok(files)
}

/// Writes `out_dir/netvsc-watch-<version>-x86_64-linux.tar.gz` and returns its path.
pub fn write(out_dir: &Path, version: &str, binary: &Path, generated: &Path) -> anyhow::Result<PathBuf> {
    let top = format!("netvsc-watch-{version}-x86_64-linux");
    let path = out_dir.join(format!("{top}.tar.gz"));
    let mtime = super::source_date();
    let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let gzip = flate2::GzBuilder::new().mtime(0).write(file, flate2::Compression::best());
    let mut archive = tar::Builder::new(gzip);
    let mut sums = String::new();
    for (inside, source, mode) in contents(binary, generated)? {
        let data = std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?;
        sums += &format!("{}  {inside}\n", super::hex(&sha2::Sha256::digest(&data)));
        append(&mut archive, &format!("{top}/{inside}"), &data, mode, mtime)
            .with_context(|| format!("adding {} to {}", source.display(), path.display()))?;
    }
    append(&mut archive, &format!("{top}/SHA256SUMS"), sums.as_bytes(), 0o644, mtime)?;
    archive.into_inner()?.finish().with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn append<W: std::io::Write>(
    archive: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
    mode: u32,
    mtime: u64,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    archive.append_data(&mut header, name, data)?;
    Ok(())
}
