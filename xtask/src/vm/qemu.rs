//! One QEMU guest: q35 with PCIe root ports for hot-plug, a QMP socket to plug and unplug VF
//! stand-ins, and a second serial port carrying the guest's JSON lines back to the host.

use std::io::{BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use netvsc_testkit::follow::Order;
use netvsc_testkit::{JsonLines, Output};
use netvsc_user::report::lines::{Change, Line, Ready};
use qapi::qmp;
use serde_json::Value;

/// A NIC present from boot: `virtio` plays NetVSC; `vf` an e1000e in a root port.
pub enum Nic {
    Virtio {
        mac: String,
    },
    /// A virtio NIC whose frames leave the guest as UDP datagrams to `127.0.0.1:<to>`.
    VirtioUdp {
        mac: String,
        to: u16,
    },
    Vf {
        id: String,
        port: u32,
        mac: String,
    },
}

/// QEMU's UDP socket backend sending a NIC's frames to `127.0.0.1:<to>` (and receiving on an
/// ephemeral-looking port next to it, which nothing sends to).
fn udp_backend(to: u16) -> qmp::NetdevSocketOptions {
    qmp::NetdevSocketOptions {
        udp: Some(format!("127.0.0.1:{to}")),
        localaddr: Some(format!("127.0.0.1:{}", to + 1)),
        ..Default::default()
    }
}

pub struct BootConfig {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// What the guest runs (space-separated; becomes `nvw.args=`).
    pub command: Vec<String>,
    pub nics: Vec<Nic>,
    /// Free PCIe root ports (`rp1`..`rpN`) for hot-plug.
    pub root_ports: u32,
    pub work_dir: PathBuf,
    pub memory_mib: u32,
    pub cpus: u32,
    /// More kernel command line (`nvw.hugepages=N`).
    pub append: Vec<String>,
    /// CPU properties after the model (`hv-vendor-id=...`).
    pub cpu_properties: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "KVM",
            Accel::Tcg => "TCG (software emulation)",
        }
    }
}

pub struct Vm {
    child: Child,
    /// Host-to-guest command lines, on the results port.
    commands: UnixStream,
    next_command: u32,
    qmp: qapi::Qmp<qapi::Stream<BufReader<UnixStream>, UnixStream>>,
    /// The guest's lines: two processes write to the port, so an expected line may arrive
    /// after one expected later (the follower keeps lines no wait has taken).
    lines: JsonLines,
    pub accel: Accel,
    /// From starting QEMU to the guest's first line.
    pub boot_time: Duration,
    pub console_log: PathBuf,
}

impl Vm {
    /// Boots with KVM if it works here within a short time, else with TCG; says which ran.
    /// Once KVM has failed, later boots of this run go straight to TCG.
    pub fn boot(config: &BootConfig) -> anyhow::Result<Vm> {
        static KVM_FAILED: AtomicBool = AtomicBool::new(false);
        if !Path::new("/dev/kvm").exists() {
            println!("vm: no /dev/kvm; using TCG");
        } else if !KVM_FAILED.load(Ordering::Relaxed) {
            match Self::boot_with(config, Accel::Kvm, Duration::from_secs(20)) {
                Ok(vm) => return Ok(vm),
                Err(err) => {
                    KVM_FAILED.store(true, Ordering::Relaxed);
                    let reason = format!("{err:#}");
                    println!(
                        "vm: KVM did not boot the guest ({}); falling back to TCG",
                        reason.lines().next().unwrap_or("")
                    );
                }
            }
        }
        Self::boot_with(config, Accel::Tcg, Duration::from_secs(120))
    }

    fn boot_with(config: &BootConfig, accel: Accel, timeout: Duration) -> anyhow::Result<Vm> {
        let tag = match accel {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        };
        let qmp_path = config.work_dir.join(format!("qmp-{tag}.sock"));
        let results_path = config.work_dir.join(format!("results-{tag}.sock"));
        let console_log = config.work_dir.join(format!("console-{tag}.log"));
        for path in [&qmp_path, &results_path] {
            let _ = std::fs::remove_file(path);
        }
        let mut command = Command::new("qemu-system-x86_64");
        let (machine, cpu) = match accel {
            Accel::Kvm => ("q35,accel=kvm", "host"),
            Accel::Tcg => ("q35,accel=tcg", "max"),
        };
        let cpu = std::iter::once(cpu.to_owned()).chain(config.cpu_properties.iter().cloned()).collect::<Vec<_>>();
        command.args(["-machine", machine, "-cpu", &cpu.join(",")]);
        let nics = config.nics.len();
        let mut append = format!("console=ttyS0 panic=-1 nvw.nics={nics} nvw.args={}", config.command.join(","));
        for extra in &config.append {
            append = format!("{append} {extra}");
        }
        command
            .args(["-m", &config.memory_mib.to_string(), "-smp", &config.cpus.to_string()])
            .args(["-nodefaults", "-no-reboot", "-display", "none"])
            .arg("-kernel")
            .arg(&config.kernel)
            .arg("-initrd")
            .arg(&config.initramfs)
            .args(["-append", &append])
            .arg("-serial")
            .arg(format!("file:{}", console_log.display()))
            .arg("-serial")
            .arg(format!("unix:{},server=on,wait=off", results_path.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        for port in 1..=config.root_ports {
            command.args([
                "-device",
                &format!("pcie-root-port,id=rp{port},bus=pcie.0,chassis={port},addr=0x{:x}", 0x10 + port),
            ]);
        }
        for (i, nic) in config.nics.iter().enumerate() {
            match nic {
                // A hub with nothing else on it: the NIC exists, no traffic leaves the guest.
                Nic::Virtio { mac } => command.args([
                    "-netdev",
                    &format!("hubport,id=net{i},hubid={i}"),
                    "-device",
                    &format!("virtio-net-pci,netdev=net{i},mac={mac},addr=0x{:x}", 0x3 + i),
                ]),
                Nic::VirtioUdp { mac, to } => command.args([
                    "-netdev",
                    &format!("socket,id=net{i},udp=127.0.0.1:{to},localaddr=127.0.0.1:{}", to + 1),
                    "-device",
                    &format!("virtio-net-pci,netdev=net{i},mac={mac},addr=0x{:x}", 0x3 + i),
                ]),
                Nic::Vf { id, port, mac } => {
                    command.args(["-device", &format!("e1000e,id={id},bus=rp{port},mac={mac}")])
                }
            };
        }
        let started = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting qemu-system-x86_64")?;
        let mut vm = Self::attach(child, &qmp_path, &results_path, accel, console_log.clone())?;
        vm.expect_within("the guest to boot", timeout, |v| v["guest"] == "booted").inspect_err(|_| vm.kill())?;
        vm.boot_time = started.elapsed();
        Ok(vm)
    }

    fn attach(
        mut child: Child,
        qmp_path: &Path,
        results_path: &Path,
        accel: Accel,
        console_log: PathBuf,
    ) -> anyhow::Result<Vm> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (qmp_stream, results) = loop {
            if let Some(status) = child.try_wait()? {
                let mut stderr = String::new();
                let _ = std::io::Read::read_to_string(child.stderr.as_mut().expect("piped"), &mut stderr);
                bail!("qemu exited at once ({status}): {}", stderr.trim());
            }
            if let (Ok(q), Ok(r)) = (UnixStream::connect(qmp_path), UnixStream::connect(results_path)) {
                break (q, r);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("qemu did not open its sockets");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let reader = BufReader::new(qmp_stream.try_clone().context("cloning the QMP socket")?);
        let mut qmp = qapi::Qmp::new(qapi::Stream::new(reader, qmp_stream));
        qmp.handshake().context("QMP handshake")?;
        let commands = results.try_clone().context("cloning the results socket")?;
        let lines = JsonLines::follow(results, Order::Any);
        Ok(Vm { child, commands, next_command: 0, qmp, lines, accel, boot_time: Duration::ZERO, console_log })
    }

    /// How long a wait for the guest lasts: 10 s under KVM, 60 s under TCG.
    fn timeout(&self) -> Duration {
        Duration::from_secs(if self.accel == Accel::Kvm { 10 } else { 60 })
    }

    /// Waits for the next line of the guest's own or failsafe-sim's that `pred` accepts (the
    /// agent's lines are read typed, with the methods below).
    pub fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        self.expect_within(what, self.timeout(), pred)
    }

    /// The agent's `ready` line.
    pub fn ready(&mut self) -> anyhow::Result<Ready> {
        Ok(self.lines.wait_ready(self.timeout())?)
    }

    /// The agent's next `event` change line that `pred` accepts.
    pub fn change(&mut self, what: &str, event: &str, pred: impl Fn(&Change) -> bool) -> anyhow::Result<Change> {
        self.lines.wait_change(event, self.timeout(), pred).with_context(|| format!("waiting for {what}"))
    }

    /// The agent's next line that `pick` accepts, and what it picked.
    pub fn line<T>(&mut self, what: &str, pick: impl FnMut(&Line) -> Option<T>) -> anyhow::Result<T> {
        let mut pick = pick;
        Ok(self.lines.wait_for(what, self.timeout(), |o| o.line().and_then(&mut pick))?)
    }

    pub fn expect_within(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        Ok(self.lines.wait_other(what, timeout, pred)?)
    }

    /// Everything the guest says within `period`.
    pub fn collect_for(&mut self, period: Duration) -> Vec<Output> {
        self.lines.collect_for(period)
    }

    /// Forgets the agent's kept lines `pred` accepts, so the next wait for one sees a new one.
    pub fn discard(&mut self, pred: impl Fn(&Line) -> bool) {
        self.lines.discard(|output| output.line().is_some_and(&pred));
    }

    /// Forgets the kept lines of the guest and its programs (not the agent's) `pred` accepts.
    pub fn discard_others(&mut self, pred: impl Fn(&Value) -> bool) {
        self.lines.discard(|output| output.other().is_some_and(&pred));
    }

    /// The agent's lines received so far, in order.
    pub fn seen_lines(&self) -> Vec<Line> {
        self.lines.seen_lines().cloned().collect()
    }

    /// The lines of the guest and of failsafe-sim received so far, in order.
    pub fn seen_others(&self) -> Vec<Value> {
        self.lines.seen.iter().filter_map(Output::other).cloned().collect()
    }

    /// Runs a shell command in the guest (`$AGENT` is the agent's pid) and waits for it.
    pub fn guest_run(&mut self, command: &str) -> anyhow::Result<()> {
        self.next_command += 1;
        let id = self.next_command;
        writeln!(self.commands, "{id} {command}").context("sending a command to the guest")?;
        let done = self.expect(&format!("the guest to run `{command}`"), |v| v["guest"] == "done" && v["id"] == id)?;
        if done["status"] != 0 {
            bail!("`{command}` failed in the guest (status {})", done["status"]);
        }
        Ok(())
    }

    /// Hot-plugs an e1000e (the VF stand-in) into root port `rp<port>`.
    pub fn plug_vf(&mut self, id: &str, port: u32, mac: &str) -> anyhow::Result<()> {
        self.add_vf(id, port, mac, None)
    }

    /// Hot-plugs an e1000e like [`Vm::plug_vf`] whose frames leave the guest as UDP datagrams
    /// to `127.0.0.1:<to>` (backend `<id>-udp`, removed with [`Vm::unplug_with_backend`]).
    pub fn plug_vf_udp(&mut self, id: &str, port: u32, mac: &str, to: u16) -> anyhow::Result<()> {
        let backend = format!("{id}-udp");
        let netdev = qmp::Netdev::socket { id: backend.clone(), socket: udp_backend(to) };
        self.qmp.execute(&qmp::netdev_add(netdev)).with_context(|| format!("netdev_add {backend}"))?;
        self.add_vf(id, port, mac, Some(&backend))
    }

    /// `device_add` of an e1000e into root port `rp<port>`, on `netdev` if given.
    fn add_vf(&mut self, id: &str, port: u32, mac: &str, netdev: Option<&str>) -> anyhow::Result<()> {
        let mut props = vec![("mac".to_owned(), qapi::Any::from(mac))];
        props.extend(netdev.map(|n| ("netdev".to_owned(), qapi::Any::from(n))));
        let add = qmp::device_add::new("e1000e", Some(id.to_owned()), Some(format!("rp{port}")), props);
        self.qmp.execute(&add).with_context(|| format!("device_add {id}"))?;
        Ok(())
    }

    /// [`Vm::unplug`], then removes the device's UDP backend.
    pub fn unplug_with_backend(&mut self, id: &str) -> anyhow::Result<Duration> {
        let released = self.unplug(id)?;
        let backend = format!("{id}-udp");
        self.qmp.execute(&qmp::netdev_del { id: backend.clone() }).with_context(|| format!("netdev_del {backend}"))?;
        Ok(released)
    }

    /// Sets the carrier of NIC backend `netdev` (`net<i>` for the i-th boot NIC).
    pub fn set_link(&mut self, netdev: &str, up: bool) -> anyhow::Result<()> {
        self.qmp
            .execute(&qmp::set_link { name: netdev.to_owned(), up })
            .with_context(|| format!("set_link {netdev}"))?;
        Ok(())
    }

    /// Hot-unplugs device `id` and waits until QEMU reports it gone (the guest released it).
    pub fn unplug(&mut self, id: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.qmp.execute(&qmp::device_del { id: id.to_owned() }).with_context(|| format!("device_del {id}"))?;
        let deadline = started + Duration::from_secs(30);
        loop {
            for event in self.qmp.events() {
                if let qmp::Event::DEVICE_DELETED { ref data, .. } = event {
                    if data.device.as_deref() == Some(id) {
                        return Ok(started.elapsed());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("{id} was not released by the guest within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
            self.qmp.nop().context("polling QMP events")?;
        }
    }

    /// The end of the guest console, for failure reports.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.console_log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}
