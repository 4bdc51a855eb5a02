//! Command line: what users of DPDK's vdev_netvsc know (`iface`, `mac`, `force`, `ignore`, or the
//! devargs string verbatim), and the three ways to use the agent.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use macaddr::MacAddr6;

use crate::decide::selection::{parse_mac, Selection, Spec};
pub use crate::source::ebpf::{AttachMode, EbpfOptions};
pub(crate) use crate::source::SourceKind;
use crate::usage::UsageError;

const EXAMPLES: &str = "\
Examples:
  # What would be managed, and which VF each NetVSC interface has now
  netvsc-watch scan --json

  # Launch testpmd with one fail-safe port per unrouted NetVSC interface
  netvsc-watch exec -- dpdk-testpmd -l 0-1 -- -i

  # Sidecar next to a DPDK pod: FIFOs and state files in a shared directory
  netvsc-watch watch --fifo-dir /run/netvsc --iface eth1 --json

  # Failover timelines and metrics of every accelerated NIC, DPDK or not
  netvsc-watch monitor --metrics-listen 127.0.0.1:9480 --measure /tmp/outages.json

  # The original driver's arguments, verbatim
  netvsc-watch watch --fifo-dir /run/netvsc --devargs 'iface=eth1,force=1'

Logging: RUST_LOG=debug (default info), to stderr.";

/// Feeds the PCI address of each NetVSC interface's SR-IOV VF to DPDK fail-safe, on kernel events.
///
/// On Hyper-V/Azure every accelerated NIC appears twice: a NetVSC netdevice and an SR-IOV VF with
/// the same MAC that comes and goes (live migration, host servicing). netvsc-watch pairs them
/// like DPDK's vdev_netvsc and writes the VF's PCI address (`0002:00:02.0\n`) into the pipe a
/// fail-safe instance reads (`net_failsafe_vsc<id>,fd(N),dev(net_tap_vsc<id>,remote=<if>)`),
/// emptying it when the VF goes away.
#[derive(Debug, Parser)]
#[command(name = "netvsc-watch", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report every NetVSC interface once: managed or skipped (and why), and its VF
    ///
    /// Example: netvsc-watch scan --iface eth1 --json
    Scan(ScanArgs),
    /// Sidecar mode: keep a FIFO and a state file per managed interface in a shared directory
    ///
    /// In the DPDK container: `exec 9<>DIR/eth1.pipe` then
    /// `--vdev 'net_failsafe_vsc0,fd(9),dev(net_tap_vsc0,remote=eth1),hotplug_poll=100'`, or
    /// `--vdev 'net_failsafe_vsc0,exec(cat DIR/eth1.addr),dev(net_tap_vsc0,remote=eth1),hotplug_poll=100'`, plus on
    /// Hyper-V `--vdev net_vdev_netvsc0,ignore=1`. Interfaces that appear later are picked up.
    /// FIFOs outlive the agent (emptied at exit and at start); one agent per directory.
    ///
    /// Example: netvsc-watch watch --fifo-dir /run/netvsc --json
    Watch(WatchArgs),
    /// Launcher mode: run a DPDK application with one fail-safe port per managed interface
    ///
    /// Inserts `--vdev net_failsafe_vsc<id>,fd(<N>),dev(net_tap_vsc<id>,remote=<if>)` right after
    /// the program name (on Hyper-V first `--vdev net_vdev_netvsc0,ignore=1`, so that DPDK's own
    /// vdev_netvsc does not probe the same interfaces), feeds the pipes while it runs, forwards
    /// terminating signals to it and exits with its status.
    ///
    /// Example: netvsc-watch exec --iface eth1 -- dpdk-testpmd -l 0-1 -- -i
    Exec(ExecArgs),
    /// Observe every NetVSC interface and its VF, DPDK or not: failover timelines and metrics
    ///
    /// Writes no pipe and creates no file but --measure's. Every NetVSC interface is followed,
    /// the VM's own routed one too (--iface/--mac: the named ones, by the usual rules), and
    /// hv_netvsc's own lines in the kernel's log (data path switched to or from the VF, VF
    /// registering and unregistering, VF slot added and removed) are added to each outage with
    /// their kernel times. Reading the log needs root or CAP_SYSLOG; without it, one warning.
    ///
    /// Example: netvsc-watch monitor --metrics-listen 127.0.0.1:9480 --measure /tmp/outages.json
    Monitor(MonitorArgs),
}

#[derive(Debug, Args)]
pub struct SelectionArgs {
    /// Manage this interface even if it has IP addresses (repeatable). Default: every NetVSC
    /// interface without an IPv4/IPv6 address.
    #[arg(long = "iface", value_name = "NAME")]
    pub ifaces: Vec<String>,
    /// Like --iface, locating the interface by MAC address, any case (repeatable)
    #[arg(long = "mac", value_name = "MAC", value_parser = mac_arg)]
    pub macs: Vec<MacAddr6>,
    /// Accept a named interface that is not NetVSC as if it were (e.g. a virtio stand-in)
    #[arg(long)]
    pub force: bool,
    /// Do nothing and exit 0, like vdev_netvsc's ignore=1 (exec runs the application unchanged)
    #[arg(long)]
    pub ignore: bool,
    /// vdev_netvsc device arguments verbatim, e.g. 'iface=eth1,force=1' (keys: iface, mac, force,
    /// ignore)
    #[arg(long, value_name = "KVARGS")]
    pub devargs: Option<String>,
    /// Root of the sysfs tree to read interfaces from (a fake tree in tests)
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// What says a link exists in a full rescan: the kernel's own link list (rtnetlink dump) or
    /// the sysfs tree alone. auto: the kernel's with /sys, the tree's with another --sysfs-root
    #[arg(long, value_enum, default_value_t = NetdevListKind::Auto)]
    pub link_list: NetdevListKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetdevListKind {
    /// kernel with --sysfs-root /sys, sysfs otherwise
    Auto,
    /// an rtnetlink link dump: a link sysfs still shows after its removal stays removed
    Kernel,
    /// the sysfs tree alone (for a fake tree that mirrors nothing)
    Sysfs,
}

impl SelectionArgs {
    /// Whether full rescans consult the kernel's link list.
    pub fn kernel_link_list(&self) -> bool {
        match self.link_list {
            NetdevListKind::Auto => self.sysfs_root == std::path::Path::new("/sys"),
            NetdevListKind::Kernel => true,
            NetdevListKind::Sysfs => false,
        }
    }
}

impl SelectionArgs {
    /// The selection in effect: flags first, then the devargs string.
    pub fn selection(&self) -> Result<Selection, UsageError> {
        let mut selection = Selection {
            specs: self
                .ifaces
                .iter()
                .cloned()
                .map(Spec::Name)
                .chain(self.macs.iter().copied().map(Spec::Mac))
                .collect(),
            force: self.force,
            ignore: self.ignore,
            routed_too: false,
        };
        if let Some(devargs) = &self.devargs {
            selection.add_devargs(devargs)?;
        }
        Ok(selection)
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where change events come from
    #[arg(long, value_enum, default_value_t = SourceKind::Auto)]
    pub source: SourceKind,
    /// Rescan period of the poll source, in milliseconds (1000 is the original's)
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_interval: u64,
    /// Safety full rescan period of event sources, in milliseconds; 0 turns it off
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub resync_interval: u64,
    /// How soon a pipe line consumed while the VF is still present is restored, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub refill_interval: u64,
    /// Print one JSON line per association change on stdout (with source and reaction time)
    #[arg(long)]
    pub json: bool,
    /// Also print every event the source delivers as a JSON line (with --json)
    #[arg(long)]
    pub trace_events: bool,
    /// Record a timeline of every VF failover (PCI device and netdevice gone, pipe emptied; back,
    /// address written, read by the consumer); print a table with p50/p99/max on SIGUSR1 and at
    /// exit, and write it as JSON to FILE. Example: --measure /tmp/failovers.json
    #[arg(long, value_name = "FILE")]
    pub measure: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics (`/metrics`, OpenMetrics text, all named netvsc_watch_*) and
    /// `/healthz` (200 once ready, 503 while starting or stopping) on this address.
    /// Example: --metrics-listen 127.0.0.1:9479 (port 0: any free port, logged)
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Run the agent at SCHED_FIFO with this priority (1–99), so that other work on its CPU
    /// cannot delay its wake-up when a VF comes or goes. Needs CAP_SYS_NICE; threads and the
    /// application it starts keep the normal policy. Example: --realtime-priority 10
    #[arg(long, value_name = "1-99", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub realtime_priority: Option<u8>,
    /// eBPF: pass only NetVSC, PCI-parented and managed-MAC devices to the agent (in the kernel)
    #[arg(long, default_value = "on", value_name = "on|off", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub ebpf_filter: bool,
    /// eBPF: kernel-side diagnostics through aya-log (shown at RUST_LOG=debug)
    #[arg(long)]
    pub ebpf_log: bool,
    /// eBPF: ring buffer size in bytes, a power-of-two multiple of the page size
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024, value_parser = ring_bytes)]
    pub ebpf_ring_bytes: u32,
    /// eBPF: attach types allowed (auto: fentry/fexit, else kprobes)
    #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
    pub ebpf_attach: AttachMode,
}

impl RunArgs {
    pub fn ebpf_options(&self) -> EbpfOptions {
        EbpfOptions {
            filter: self.ebpf_filter,
            log: self.ebpf_log,
            ring_bytes: self.ebpf_ring_bytes,
            attach: self.ebpf_attach,
        }
    }

    pub fn timers(&self) -> crate::agent::Timers {
        crate::agent::Timers {
            refill: Duration::from_millis(self.refill_interval),
            resync: (self.resync_interval > 0).then(|| Duration::from_millis(self.resync_interval)),
            trace_events: self.trace_events,
        }
    }
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// Directory for `<if>.pipe` (FIFO) and `<if>.addr` (state file); must exist
    #[arg(long, value_name = "DIR")]
    pub fifo_dir: PathBuf,
    /// Permissions of the files created there, in octal (0000–0777); applied to reused FIFOs too
    #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = octal_mode)]
    pub file_mode: u32,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// The kernel's log, or a stand-in in its format (a file or FIFO of /dev/kmsg records, one
    /// record per line)
    #[arg(long, value_name = "PATH", default_value = "/dev/kmsg")]
    pub kmsg: PathBuf,
    /// A data-path switch away from the VF sooner than this many seconds after the switch to it
    /// is a flap (the VF came back and failed again): 0.001–3600
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = flap_window)]
    pub flap_window: Duration,
}

fn flap_window(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| (0.001..=3600.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{value:?} is not a number of seconds from 0.001 to 3600"))
}

/// `exec --failsafe-poll` unless given: a written address waits 50 ms on average instead of
/// fail-safe's 1 s, for about 2 µs of fail-safe's interrupt thread per poll (README, "fail-safe's poll").
pub(crate) const DEFAULT_FAILSAFE_POLL_MS: u32 = 100;

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub run: RunArgs,
    /// On Hyper-V, do not add `--vdev net_vdev_netvsc0,ignore=1` (which keeps DPDK's own
    /// vdev_netvsc from auto-probing the same interfaces). It is not added anyway when the
    /// application's arguments name net_vdev_netvsc
    #[arg(long)]
    pub keep_dpdk_vdev_netvsc: bool,
    /// fail-safe's hot-plug poll in milliseconds, added to every inserted port as
    /// `hotplug_poll=MS` (1–60000). While a port has no VF, fail-safe reads its pipe only this
    /// often, so this bounds how long a written address waits; DPDK's own default is 2000
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_FAILSAFE_POLL_MS,
          value_parser = clap::value_parser!(u32).range(1..=60_000))]
    pub failsafe_poll: u32,
    /// The DPDK application and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "APP")]
    pub command: Vec<OsString>,
}

fn mac_arg(value: &str) -> Result<MacAddr6, String> {
    parse_mac(value).map_err(|e| e.to_string())
}

fn ring_bytes(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| n.is_power_of_two() && *n >= 4096)
        .ok_or_else(|| format!("{value:?} is not a power of two of at least 4096"))
}

/// 0–0777 in octal digits only: no sign, no setuid/setgid/sticky bits on files root makes.
fn octal_mode(value: &str) -> Result<u32, String> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    (!digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(digits, 8).ok())
        .flatten()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("{value:?} is not a file mode from 0000 to 0777 in octal, such as 0600"))
}

#[cfg(test)]
mod tests {
    use super::octal_mode;

    #[test]
    fn file_modes_are_plain_permission_bits() {
        for (text, mode) in [("0600", 0o600), ("600", 0o600), ("0o640", 0o640), ("0777", 0o777), ("0", 0)] {
            assert_eq!(octal_mode(text), Ok(mode), "{text}");
        }
        for bad in ["7777", "1600", "+644", "-600", "0o", "", "999", "0x1ff", "06000", " 600"] {
            let err = octal_mode(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}
