//! For `cargo xtask test`: deploy/kubernetes/daemonset.yaml played by `podman kube play` as a
//! cluster would run it: the agent's image with the manifest's security context (all
//! capabilities dropped but BPF and PERFMON, read-only root, hostNetwork), its `/healthz`
//! answering 200 on the node's port 9479, its lock file in the node's /run/netvsc-watch, and the
//! manifest's consumer pod seeing that directory. Only the consumer's image and command are
//! replaced (the manifest names a placeholder DPDK image): a static busybox that waits for the
//! agent's lock file. deploy/kubernetes/monitor-daemonset.yaml is played as well: monitor
//! answering /healthz on port 9480 and reading the node's /dev/kmsg through the manifest's
//! mount (privileged). The sidecar pod cannot be played by podman 4.3 (docs/deployment.md).
//!
//! How podman runs here at all: runc with cgroupfs (crun refuses this machine's hybrid cgroup
//! tree), and rlimits no higher than conmon's own (no CAP_SYS_RESOURCE: podman's defaults of
//! 1048576 open files are refused), set through a containers.conf of the check's own.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde::Deserialize as _;
use serde_yaml::Value;

use crate::toolchain::output;

const MANIFEST: &str = "deploy/kubernetes/daemonset.yaml";
const MONITOR_MANIFEST: &str = "deploy/kubernetes/monitor-daemonset.yaml";
/// The manifests' metrics ports on the node (hostNetwork): the sidecar DaemonSet's, monitor's.
const PORT: u16 = 9479;
const MONITOR_PORT: u16 = 9480;
const CONSUMER_IMAGE: &str = "localhost/netvsc-consumer:test";
const FIFO_DIR: &str = "/run/netvsc-watch";
/// conmon's process limit under podman 4.3 here; a container may not ask for more.
const NPROC: u64 = 32768;

/// Why the manifests cannot be played here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (podman kube play with hostNetwork)".into());
    }
    let missing: Vec<&str> =
        [("podman", "podman"), ("runc", "runc"), ("catatonit", "catatonit"), ("busybox", "busybox-static")]
            .into_iter()
            .filter(|(program, _)| crate::setup::which(program).is_none())
            .map(|(_, package)| package)
            .collect();
    if !missing.is_empty() {
        return Some(format!("missing {} (apt-get install {})", missing.join(", "), missing.join(" ")));
    }
    let busy = [PORT, MONITOR_PORT].into_iter().find(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
    busy.map(|port| format!("port {port} is in use here (a manifest's metrics port on hostNetwork)"))
}

pub fn check() -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new().prefix("netvsc-kube.").tempdir()?;
    let played = scratch.path().join("daemonset.yaml");
    build_agent(MANIFEST, &played)?;
    build_consumer(scratch.path())?;
    let conf = scratch.path().join("containers.conf");
    std::fs::write(&conf, containers_conf()?).with_context(|| format!("writing {}", conf.display()))?;
    let made_dir = !Path::new(FIFO_DIR).exists();
    let _down = Down { manifest: played.clone(), conf: conf.clone(), made_dir, consumer: true };
    // The consumer pod's hostPath is `type: Directory`: on a node the DaemonSet's agent made it.
    std::fs::create_dir_all(FIFO_DIR).with_context(|| format!("creating {FIFO_DIR}"))?;
    play(&conf, &played)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    await_healthy(&conf, "netvsc-watch", PORT, deadline)?;
    let lock = Path::new(FIFO_DIR).join(".netvsc-watch.lock");
    ensure!(lock.is_file(), "{} not made by the agent in the node's directory", lock.display());
    let seen = loop {
        let log = logs(&conf, "app");
        if log.contains("consumer: found") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(seen.contains("consumer: found"), "the consumer pod did not see the agent's directory: {seen}");
    println!("kube: the consumer pod sees the agent's lock file in its /run/netvsc");
    never_restarted(&conf, "netvsc-watch")?;
    check_monitor()
}

/// monitor-daemonset.yaml: healthy on its port, the node's /dev/kmsg read through its mount.
fn check_monitor() -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new().prefix("netvsc-kube.").tempdir()?;
    let played = scratch.path().join("monitor-daemonset.yaml");
    build_agent(MONITOR_MANIFEST, &played)?;
    let conf = scratch.path().join("containers.conf");
    std::fs::write(&conf, containers_conf()?).with_context(|| format!("writing {}", conf.display()))?;
    let _down = Down { manifest: played.clone(), conf: conf.clone(), made_dir: false, consumer: false };
    play(&conf, &played)?;
    let name = "netvsc-watch-monitor";
    await_healthy(&conf, name, MONITOR_PORT, Instant::now() + Duration::from_secs(30))?;
    let log = logs(&conf, name);
    ensure!(
        log.contains("reading the kernel's log") && !log.contains("cannot read the kernel's log"),
        "monitor did not read the node's /dev/kmsg: {log}"
    );
    println!("kube: the monitor DaemonSet reads the node's /dev/kmsg through its mount");
    never_restarted(&conf, name)
}

/// Writes `manifest` as podman plays it to `played` and builds the agent's image it names,
/// which must be this version's.
fn build_agent(manifest: &str, played: &Path) -> anyhow::Result<()> {
    let version = crate::workspace::agent_metadata()?.version;
    let agent_image = pod_manifest(manifest, played)?;
    ensure!(
        agent_image == format!("localhost/netvsc-watch:{version}"),
        "{manifest} runs {agent_image}, not this version"
    );
    crate::image::build(&agent_image).map(drop)
}

fn play(conf: &Path, played: &Path) -> anyhow::Result<()> {
    let play = podman(conf).args(["kube", "play"]).arg(played).output().context("running podman kube play")?;
    ensure!(play.status.success(), "podman kube play: {}", String::from_utf8_lossy(&play.stderr).trim());
    Ok(())
}

/// Waits for container `name`'s /healthz on the node's `port` to answer 200.
fn await_healthy(conf: &Path, name: &str, port: u16, deadline: Instant) -> anyhow::Result<()> {
    loop {
        match healthz(port) {
            Ok(200) => break,
            _ if Instant::now() > deadline => bail!("{name}'s /healthz never answered 200: {}", logs(conf, name)),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    println!("kube: {name} answers /healthz 200 on the node's port {port}");
    Ok(())
}

/// A restart would mean it was killed on the way (its memory limit, say), not a clean start.
fn never_restarted(conf: &Path, name: &str) -> anyhow::Result<()> {
    let container = container(conf, name)?;
    let restarts = output(podman(conf).args(["inspect", "--format", "{{.RestartCount}}", &container]))?;
    ensure!(restarts.trim() == "0", "{name} restarted {} time(s): {}", restarts.trim(), logs(conf, name));
    Ok(())
}

/// Writes `manifest` with each DaemonSet as its pod and each Pod's (the consumer's) image and
/// command replaced to `to`; returns the agent's image as the manifest names it.
fn pod_manifest(manifest: &str, to: &Path) -> anyhow::Result<String> {
    let path = crate::workspace::root().join(manifest);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut docs = Vec::new();
    let mut agent_image = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut doc = Value::deserialize(doc).with_context(|| format!("parsing {}", path.display()))?;
        match doc["kind"].as_str() {
            Some("DaemonSet") => {
                // podman 4.3 skips DaemonSets without a word; on one node a DaemonSet is its pod
                // template, played as that Pod.
                let template = doc["spec"]["template"].clone();
                agent_image = template["spec"]["containers"][0]["image"].as_str().map(str::to_owned);
                // With hostNetwork a containerPort only documents the port; podman 4.3 refuses it
                // ("PortMappings can only be used with Bridge or slirp4netns networking").
                let mut template = template;
                if let Some(agent) = template["spec"]["containers"][0].as_mapping_mut() {
                    agent.remove("ports");
                }
                let mut metadata = template["metadata"].clone();
                metadata["name"] = doc["metadata"]["name"].clone();
                doc = serde_yaml::to_value(serde_yaml::Mapping::from_iter([
                    ("apiVersion".into(), "v1".into()),
                    ("kind".into(), "Pod".into()),
                    ("metadata".into(), metadata),
                    ("spec".into(), template["spec"].clone()),
                ]))?;
            }
            Some("Pod") => {
                let app = &mut doc["spec"]["containers"][0];
                app["image"] = CONSUMER_IMAGE.into();
                let wait = "for i in $(busybox seq 100); do if busybox test -e /run/netvsc/.netvsc-watch.lock; then \
                            echo consumer: found; exec busybox sleep 3600; fi; busybox sleep 0.2; done; \
                            echo consumer: missing; busybox ls -la /run/netvsc";
                app["command"] = serde_yaml::to_value(["/bin/sh", "-c", wait])?;
            }
            _ => {}
        }
        docs.push(serde_yaml::to_string(&doc)?);
    }
    std::fs::write(to, docs.join("---\n")).with_context(|| format!("writing {}", to.display()))?;
    agent_image.with_context(|| format!("no DaemonSet image in {}", path.display()))
}

/// The consumer's image: busybox alone, as /bin/sh and /bin/busybox.
fn build_consumer(scratch: &Path) -> anyhow::Result<()> {
    let context = scratch.join("consumer");
    std::fs::create_dir_all(&context)?;
    let busybox = crate::setup::which("busybox").context("busybox")?;
    std::fs::copy(&busybox, context.join("busybox")).with_context(|| format!("copying {}", busybox.display()))?;
    std::fs::write(context.join("Containerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\n")?;
    let status = Command::new("podman")
        .args(["build", "--pull=never", "-q", "-t", CONSUMER_IMAGE])
        .arg(&context)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running podman build")?;
    ensure!(status.success(), "building {CONSUMER_IMAGE} failed ({status})");
    Ok(())
}

/// runc with cgroupfs, and rlimits this machine lets a container set.
fn containers_conf() -> anyhow::Result<String> {
    let nofile = hard_limit("Max open files")?;
    let nproc = NPROC.min(hard_limit("Max processes")?);
    Ok(format!(
        "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
         [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\n"
    ))
}

/// This process's hard limit `name` as /proc/self/limits words it ("unlimited" as u64::MAX).
fn hard_limit(name: &str) -> anyhow::Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name:?} limit"))?;
    let hard = line[name.len()..].split_whitespace().nth(1).with_context(|| format!("limit line {line:?}"))?;
    Ok(if hard == "unlimited" { u64::MAX } else { hard.parse().with_context(|| format!("limit line {line:?}"))? })
}

fn podman(conf: &Path) -> Command {
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", conf);
    command
}

/// The played container whose name ends with `-<name>`.
fn container(conf: &Path, name: &str) -> anyhow::Result<String> {
    let names = output(podman(conf).args(["ps", "-a", "--format", "{{.Names}}"]))?;
    let found = names.lines().find(|n| n.ends_with(&format!("-{name}")));
    found.map(str::to_owned).with_context(|| format!("no container *-{name} among {names:?}"))
}

/// Its logs, or why there are none.
fn logs(conf: &Path, name: &str) -> String {
    let container = match container(conf, name) {
        Ok(container) => container,
        Err(err) => return format!("{err:#}"),
    };
    podman(conf)
        .args(["logs", &container])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
        .unwrap_or_else(|err| err.to_string())
}

/// The status code of GET /healthz on the node's metrics port.
fn healthz(port: u16) -> anyhow::Result<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let status = reply.split_whitespace().nth(1).context("no status line")?;
    Ok(status.parse()?)
}

/// Takes the pods down and removes what the check made, on every way out.
struct Down {
    manifest: PathBuf,
    conf: PathBuf,
    made_dir: bool,
    /// Whether the consumer's image was built.
    consumer: bool,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = podman(&self.conf).args(["kube", "down"]).arg(&self.manifest).output();
        if self.consumer {
            let _ = Command::new("podman").args(["rmi", "-f", CONSUMER_IMAGE]).output();
        }
        if self.made_dir {
            let _ = std::fs::remove_dir_all(FIFO_DIR);
        }
    }
}
