//! For `cargo xtask test`: the packages as a user gets them. The .deb is installed on this
//! machine (`dpkg -i`), its files, user, unit (`systemd-analyze verify`), binary, man pages and
//! completions checked, then removed and purged, leaving nothing of it; the RPM's file list,
//! metadata and scripts are read with `rpm -qp` and it is installed into, and erased from, a
//! scratch root; the tarball's checksums are verified. Whatever fails, the .deb is purged.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context as _};

use super::NAME;
use crate::toolchain::output;
use crate::workspace::Metadata;

/// Files both packages install.
const COMMON: &[&str] = &[
    "/usr/bin/netvsc-watch",
    "/usr/lib/systemd/system/netvsc-watch.service",
    "/usr/lib/sysusers.d/netvsc-watch.conf",
    "/usr/share/man/man1/netvsc-watch.1.gz",
    "/usr/share/man/man1/netvsc-watch-scan.1.gz",
    "/usr/share/man/man1/netvsc-watch-watch.1.gz",
    "/usr/share/man/man1/netvsc-watch-exec.1.gz",
    "/usr/share/man/man1/netvsc-watch-monitor.1.gz",
    "/usr/share/bash-completion/completions/netvsc-watch",
    "/usr/share/fish/vendor_completions.d/netvsc-watch.fish",
    "/usr/share/doc/netvsc-watch/README.md",
    "/usr/share/doc/netvsc-watch/deployment.md",
    "/usr/share/doc/netvsc-watch/kubernetes/sidecar-pod.yaml",
    "/usr/share/doc/netvsc-watch/kubernetes/daemonset.yaml",
    "/usr/share/doc/netvsc-watch/kubernetes/grafana-dashboard.json",
];
/// Where each distribution family looks for the rest.
const DEB_ONLY: &[&str] = &[
    "/usr/share/zsh/vendor-completions/_netvsc-watch",
    "/usr/share/doc/netvsc-watch/copyright",
    "/usr/share/doc/netvsc-watch/LICENSE-GPL-2.0",
];
const RPM_ONLY: &[&str] = &[
    "/usr/share/zsh/site-functions/_netvsc-watch",
    "/usr/share/licenses/netvsc-watch/LICENSE-MIT",
    "/usr/share/licenses/netvsc-watch/LICENSE-GPL-2.0",
];

/// Why the check cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (dpkg -i of the .deb)".into());
    }
    let missing: Vec<&str> = [("dpkg", "dpkg"), ("rpm", "rpm"), ("systemd-analyze", "systemd"), ("man", "man-db")]
        .into_iter()
        .filter(|(program, _)| crate::setup::which(program).is_none())
        .map(|(_, package)| package)
        .collect();
    if !missing.is_empty() {
        return Some(format!("missing {} (apt-get install {})", missing.join(", "), missing.join(" ")));
    }
    installed().then(|| format!("{NAME} is installed on this machine: the check would replace and purge it"))
}

/// Whether dpkg knows the package in any state but "not-installed" (half-installed and
/// config-files count: the check must not clobber them).
fn installed() -> bool {
    let Ok(out) = Command::new("dpkg-query").args(["-W", "-f=${Status}", NAME]).output() else { return false };
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    out.status.success() && status.split_whitespace().last().is_some_and(|state| state != "not-installed")
}

pub fn run() -> anyhow::Result<()> {
    let out = tempfile::Builder::new().prefix("netvsc-package.").tempdir()?;
    let built = super::build(out.path())?;
    let meta = crate::workspace::agent_metadata()?;
    let sums = Command::new("sha256sum").args(["--check", "--quiet", "SHA256SUMS"]).current_dir(out.path()).status()?;
    ensure!(sums.success(), "SHA256SUMS does not match the artifacts");
    check_tarball(&built.tarball, out.path())?;
    println!("packages: the tarball's checksums hold and its binary runs");
    check_rpm(&built.rpm, &meta)?;
    println!("packages: the RPM's files, metadata and scripts hold; it installs into and erases from a scratch root");
    check_deb_metadata(&built.deb, &meta)?;
    let user_existed = user_exists();
    let guard = Purge { user_existed };
    install_and_purge(&built.deb, &meta)?;
    drop(guard);
    println!("packages: the .deb installed (files, user, unit verified, --version, man, bash completion), removed and purged");
    ensure!(!installed(), "{NAME} still known to dpkg after the check");
    Ok(())
}

/// Purges the .deb and removes the user it created, on every way out of the check.
struct Purge {
    user_existed: bool,
}

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", NAME]).output();
        if !self.user_existed {
            let _ = Command::new("userdel").arg(NAME).output();
            let _ = Command::new("groupdel").arg(NAME).output();
        }
    }
}

fn user_exists() -> bool {
    Command::new("getent").args(["passwd", NAME]).output().is_ok_and(|out| out.status.success())
}

fn check_deb_metadata(deb: &Path, meta: &Metadata) -> anyhow::Result<()> {
    let field = |name: &str| output(Command::new("dpkg-deb").args(["--field"]).arg(deb).arg(name));
    ensure!(field("Package")?.trim() == NAME, "Package: {}", field("Package")?);
    let version = field("Version")?;
    ensure!(version.trim().starts_with(&meta.version), "Version {version:?} is not the crate's {}", meta.version);
    let description = field("Description")?;
    ensure!(description.lines().next() == Some(meta.description.as_str()), "Description: {description}");
    let listing = output(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    for path in COMMON.iter().chain(DEB_ONLY) {
        ensure!(listing.contains(&format!(".{path}")), "the .deb lacks {path}:\n{listing}");
    }
    let control = tempfile::tempdir()?;
    let status = Command::new("dpkg-deb").arg("--control").arg(deb).arg(control.path()).status()?;
    ensure!(status.success(), "dpkg-deb --control failed");
    let read = |name: &str| std::fs::read_to_string(control.path().join(name)).unwrap_or_default();
    ensure!(read("postinst").contains("systemd-sysusers"), "postinst does not create the user:\n{}", read("postinst"));
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        guarded_by_running_systemd(script, &read(script))?;
    }
    Ok(())
}

/// Every command that talks to systemd's manager is inside `if [ -d /run/systemd/system ]`
/// (systemd as PID 1), and none starts or enables the service.
fn guarded_by_running_systemd(script: &str, text: &str) -> anyhow::Result<()> {
    /// What would start or enable the service (debhelper's start fragment sets `_dh_action`).
    const STARTS: &[&str] =
        &["systemctl start", "systemctl enable", "--system start", "invoke start", "_dh_action=start"];
    // The conditions of the `if`s the current line is inside.
    let mut open: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.starts_with('#')) {
        if line.starts_with("if ") {
            open.push(line);
        } else if line == "fi" {
            open.pop();
        }
        ensure!(!STARTS.iter().any(|s| line.contains(s)), "{script}: `{line}` starts or enables the service");
        if line.contains("systemctl") || line.contains("deb-systemd-invoke") {
            let guarded = open.iter().any(|condition| condition.contains("[ -d /run/systemd/system ]"));
            ensure!(guarded, "{script}: `{line}` runs without systemd as PID 1");
        }
    }
    Ok(())
}

fn install_and_purge(deb: &Path, meta: &Metadata) -> anyhow::Result<()> {
    let install = Command::new("dpkg").arg("-i").arg(deb).env("DEBIAN_FRONTEND", "noninteractive").output()?;
    ensure!(install.status.success(), "dpkg -i: {}", String::from_utf8_lossy(&install.stderr));
    let files: Vec<String> = output(Command::new("dpkg").args(["-L", NAME]))?.lines().map(str::to_owned).collect();
    for path in COMMON.iter().chain(DEB_ONLY) {
        ensure!(Path::new(path).is_file(), "{path} not installed");
    }
    let passwd = output(Command::new("getent").args(["passwd", NAME]))?;
    ensure!(passwd.trim_end().ends_with("/usr/sbin/nologin") || passwd.contains("nologin"), "user: {passwd}");
    ensure!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/netvsc-watch.service").exists(),
        "the service was enabled on install"
    );
    let unit = "/usr/lib/systemd/system/netvsc-watch.service";
    let verify = Command::new("systemd-analyze").args(["verify", unit]).output()?;
    let complaints = String::from_utf8_lossy(&verify.stderr);
    ensure!(verify.status.success() && complaints.trim().is_empty(), "systemd-analyze verify {unit}: {complaints}");
    let version = output(Command::new("/usr/bin/netvsc-watch").arg("--version"))?;
    ensure!(version.trim() == format!("{NAME} {}", meta.version), "--version: {version:?}");
    for (page, must) in [("netvsc-watch", "netvsc-watch-scan(1)"), ("netvsc-watch-scan", "--sysfs-root")] {
        let path = format!("/usr/share/man/man1/{page}.1.gz");
        let man = Command::new("man").args(["-l", "-P", "cat", &path]).env("MANWIDTH", "100").output()?;
        let text = String::from_utf8_lossy(&man.stdout).replace('\u{2010}', "-");
        let warnings = String::from_utf8_lossy(&man.stderr);
        ensure!(man.status.success() && warnings.trim().is_empty(), "man -l {path}: {warnings}");
        ensure!(text.contains("NAME") && text.contains(must), "man -l {path} lacks {must:?}:\n{text}");
    }
    let bash = "source /usr/share/bash-completion/completions/netvsc-watch && complete -p netvsc-watch";
    let completion = output(Command::new("bash").args(["-c", bash]))?;
    ensure!(completion.contains("netvsc-watch"), "bash completion registers nothing: {completion}");

    let remove = Command::new("dpkg").args(["--remove", NAME]).output()?;
    ensure!(remove.status.success(), "dpkg --remove: {}", String::from_utf8_lossy(&remove.stderr));
    let purge = Command::new("dpkg").args(["--purge", NAME]).output()?;
    ensure!(purge.status.success(), "dpkg --purge: {}", String::from_utf8_lossy(&purge.stderr));
    let left: Vec<&String> = files.iter().filter(|f| Path::new(f).is_file()).collect();
    ensure!(left.is_empty(), "files left after purge: {left:?}");
    for trace in [
        "/etc/systemd/system/netvsc-watch.service",
        "/var/lib/systemd/deb-systemd-helper-enabled/netvsc-watch.service.dsh-also",
        "/var/lib/systemd/deb-systemd-helper-masked/netvsc-watch.service",
    ] {
        ensure!(std::fs::symlink_metadata(trace).is_err(), "{trace} left after purge");
    }
    // System users stay on purge (Debian policy: files may still be theirs): documented.
    ensure!(user_exists(), "the user went with the package, unlike what docs/deployment.md says");
    Ok(())
}

fn check_rpm(rpm: &Path, meta: &Metadata) -> anyhow::Result<()> {
    let query = |format: &str| output(Command::new("rpm").args(["-qp", "--queryformat", format]).arg(rpm));
    let fields = query("%{NAME}|%{VERSION}|%{LICENSE}|%{SUMMARY}")?;
    let expected = format!("{NAME}|{}|{}|{}", meta.version, meta.shipped_license, meta.description);
    ensure!(fields == expected, "RPM metadata {fields:?}, the crate's {expected:?}");
    let listing = output(Command::new("rpm").arg("-qlp").arg(rpm))?;
    let files: Vec<&str> = listing.lines().collect();
    for path in COMMON.iter().chain(RPM_ONLY) {
        ensure!(files.contains(path), "the RPM lacks {path}:\n{listing}");
    }
    let scripts = output(Command::new("rpm").args(["-qp", "--scripts"]).arg(rpm))?;
    for part in ["postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "systemd-sysusers"] {
        ensure!(scripts.contains(part), "the RPM's scripts lack {part:?}:\n{scripts}");
    }
    guarded_by_running_systemd("rpm scripts", &scripts)?;
    // A scratch root: rpm's own database there, no scripts (the root has no shell to run them).
    let root = tempfile::Builder::new().prefix("netvsc-rpmroot.").tempdir()?;
    let rpm_in = |args: &[&str]| {
        let out = Command::new("rpm").arg("--root").arg(root.path()).args(args).output().context("running rpm")?;
        if !out.status.success() {
            bail!("rpm {args:?} in a scratch root: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    rpm_in(&["--initdb"])?;
    let rpm_path = rpm.to_str().context("the RPM's path")?;
    rpm_in(&["-i", "--nodeps", "--noscripts", rpm_path])?;
    for path in &files {
        let inside = root.path().join(path.trim_start_matches('/'));
        ensure!(inside.is_file(), "{path} not in the scratch root after rpm -i");
    }
    rpm_in(&["-e", "--noscripts", NAME])?;
    let left: Vec<&&str> =
        files.iter().filter(|path| root.path().join(path.trim_start_matches('/')).exists()).collect();
    ensure!(left.is_empty(), "rpm -e left {left:?}");
    Ok(())
}

/// Unpacked, the tarball's own SHA256SUMS holds, and it carries the binary, unit and manifests.
fn check_tarball(tarball: &Path, scratch: &Path) -> anyhow::Result<()> {
    let into = scratch.join("unpacked");
    std::fs::create_dir_all(&into)?;
    let status = Command::new("tar").arg("-xzf").arg(tarball).arg("-C").arg(&into).status()?;
    ensure!(status.success(), "tar -xzf {} failed", tarball.display());
    let top = std::fs::read_dir(&into)?.next().context("an empty tarball")??.path();
    let status = Command::new("sha256sum").args(["--check", "--quiet", "SHA256SUMS"]).current_dir(&top).status()?;
    ensure!(status.success(), "the tarball's SHA256SUMS does not match its files");
    for file in ["netvsc-watch", "systemd/netvsc-watch.service", "kubernetes/sidecar-pod.yaml", "man/netvsc-watch.1.gz"]
    {
        ensure!(top.join(file).is_file(), "the tarball lacks {file}");
    }
    let version = output(Command::new(top.join("netvsc-watch")).arg("--version"))?;
    ensure!(version.starts_with("netvsc-watch "), "the tarball's binary says {version:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::guarded_by_running_systemd;

    #[test]
    fn systemd_calls_must_be_guarded_and_must_not_start_the_service() {
        let guarded = "if [ \"$1\" = configure ]; then\n\tif [ -d /run/systemd/system ]; then\n\t\tif [ -n \"$2\" ]; then\n\t\t\tdeb-systemd-invoke try-restart x\n\t\tfi\n\t\tsystemctl daemon-reload\n\tfi\nfi\n";
        assert!(guarded_by_running_systemd("postinst", guarded).is_ok());
        let bare = "if [ \"$1\" = configure ]; then\n\tsystemctl daemon-reload\nfi\n";
        assert!(guarded_by_running_systemd("postinst", bare).is_err(), "unguarded");
        let after = "if [ -d /run/systemd/system ]; then\n\ttrue\nfi\nsystemctl daemon-reload\n";
        assert!(guarded_by_running_systemd("postinst", after).is_err(), "after the guard closed");
        let starts =
            "if [ -d /run/systemd/system ]; then\n\t_dh_action=start\n\tdeb-systemd-invoke $_dh_action x\nfi\n";
        assert!(guarded_by_running_systemd("postinst", starts).is_err(), "starts the service");
    }
}
