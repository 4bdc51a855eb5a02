//! What the agent tells people and programs: the `scan` report and, with `--json`, one JSON
//! line per association change. Human-oriented logs go through `tracing` to stderr.

use std::io::Write;

use serde::Serialize;
use tracing::{info, warn};

use crate::link::mac_string;
use crate::pairing::{Action, Context, Pairing, Vf};
use crate::view::SystemView;

/// A context's sidecar FIFO and state file.
pub type SidecarPaths<'a> = (&'a std::path::Path, &'a std::path::Path);

/// fail-safe instance name of a context, as the original names it.
pub fn failsafe_name(id: u32) -> String {
    format!("net_failsafe_vsc{id}")
}

/// The `--vdev` argument that plugs context `id` into a DPDK application reading `fd`.
pub fn vdev_arg(id: u32, fd: i32, netvsc: &str) -> String {
    format!("{},fd({fd}),dev(net_tap_vsc{id},remote={netvsc})", failsafe_name(id))
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VfReport {
    pub iface: String,
    pub pci: String,
}

impl From<&Vf> for VfReport {
    fn from(vf: &Vf) -> Self {
        Self { iface: vf.name.clone(), pci: vf.pci.clone() }
    }
}

/// One line of `scan`: a NetVSC interface (or a forced stand-in) and what would be done with it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct InterfaceReport {
    pub netvsc: String,
    pub ifindex: u32,
    pub mac: String,
    pub vf: Option<VfReport>,
    /// `paired`, `waiting` (managed, no VF yet) or `skipped`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failsafe: Option<String>,
    /// Sidecar mode: the FIFO and state file this interface's fail-safe reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The context, for managed interfaces.
    #[serde(skip)]
    pub id: Option<u32>,
}

/// Every NetVSC interface of the view plus forced stand-ins, by ifindex.
pub fn interface_reports(pairing: &Pairing, view: &SystemView) -> Vec<InterfaceReport> {
    let mut reports: Vec<InterfaceReport> = pairing.contexts().iter().map(|ctx| context_report(ctx, view)).collect();
    for link in view.links().filter(|l| l.is_netvsc()) {
        if pairing.contexts().iter().any(|ctx| ctx.ifindex == link.ifindex) {
            continue;
        }
        let reason = if pairing.selection().is_auto() && view.is_routed(link.ifindex) {
            "routed: has IP addresses (the VM's own interface)"
        } else {
            "not selected"
        };
        reports.push(InterfaceReport {
            netvsc: link.name.clone(),
            ifindex: link.ifindex,
            mac: mac_string(&link.mac),
            vf: None,
            state: "skipped",
            reason: Some(reason.to_owned()),
            failsafe: None,
            pipe: None,
            addr: None,
            id: None,
        });
    }
    reports.sort_by_key(|r| r.ifindex);
    reports
}

fn context_report(ctx: &Context, view: &SystemView) -> InterfaceReport {
    let released = ctx.auto && view.is_routed(ctx.ifindex);
    InterfaceReport {
        netvsc: ctx.name.clone(),
        ifindex: ctx.ifindex,
        mac: mac_string(&ctx.mac),
        vf: ctx.vf.as_ref().map(VfReport::from),
        state: match (&ctx.vf, released) {
            (_, true) => "skipped",
            (Some(_), _) => "paired",
            (None, _) => "waiting",
        },
        reason: released.then(|| "routed: has IP addresses (the VM's own interface)".to_owned()),
        failsafe: Some(failsafe_name(ctx.id)),
        pipe: None,
        addr: None,
        id: Some(ctx.id),
    }
}

/// A human line for `scan` without `--json`.
pub fn interface_line(r: &InterfaceReport) -> String {
    let what = match (&r.vf, r.state) {
        (Some(vf), _) => format!("paired with {} ({})", vf.iface, vf.pci),
        (None, "skipped") => format!("skipped: {}", r.reason.as_deref().unwrap_or("")),
        (None, _) => "waiting for a VF".to_owned(),
    };
    let failsafe = r.failsafe.as_deref().map(|f| format!(" [{f}]")).unwrap_or_default();
    format!("{} (ifindex {}, {}){}: {}", r.netvsc, r.ifindex, r.mac, failsafe, what)
}

/// One association change, as a JSON line.
#[derive(Debug, Serialize)]
struct ChangeRecord<'a> {
    event: &'static str,
    netvsc: &'a str,
    failsafe: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vf: Option<VfReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renamed_from: Option<&'a str>,
    /// Sidecar mode, on `managed`: the files this interface's fail-safe reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pipe: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
    source: &'a str,
    /// From the moment the source saw the event to the pipe being written.
    reaction_us: f64,
    /// CLOCK_MONOTONIC just after the write, to line up with other processes' timelines.
    at_ns: u64,
}

/// Logs every action and, with `--json`, prints association changes as JSON lines on stdout.
pub struct Reporter {
    json: bool,
}

impl Reporter {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// An action carried out at `done_ns` for an event seen at `seen_ns` (CLOCK_MONOTONIC);
    /// `paths` are the sidecar files of the context, if any.
    pub fn action(&self, action: &Action, source: &str, seen_ns: u64, done_ns: u64, paths: Option<SidecarPaths>) {
        let reaction_us = done_ns.saturating_sub(seen_ns) as f64 / 1e3;
        log_action(action, source, reaction_us);
        if !self.json {
            return;
        }
        let record = match action {
            Action::Associate { id, netvsc, vf } => ChangeRecord::new("associated", *id, netvsc, Some(vf)),
            Action::Dissociate { id, netvsc, vf, reason } => ChangeRecord {
                reason: Some(reason.as_str()),
                ..ChangeRecord::new("dissociated", *id, netvsc, Some(vf))
            },
            Action::Manage { id, netvsc, .. } => ChangeRecord::new("managed", *id, netvsc, None),
            Action::Renamed { id, from, to } => {
                ChangeRecord { renamed_from: Some(from), ..ChangeRecord::new("renamed", *id, to, None) }
            }
            Action::Ambiguous { .. } | Action::Attached { .. } => return,
        };
        let (pipe, addr) = match (action, paths) {
            (Action::Manage { .. }, Some((pipe, addr))) => {
                (Some(pipe.display().to_string()), Some(addr.display().to_string()))
            }
            _ => (None, None),
        };
        let record = ChangeRecord { source, reaction_us, at_ns: done_ns, pipe, addr, ..record };
        self.line(&record);
    }

    /// A source event as a JSON line (`--trace-events`).
    pub fn source_event(&self, event: &crate::source::SourceEvent, source: &str) {
        use crate::source::LinkEvent;
        let detail = match &event.event {
            LinkEvent::Changed { ifindex, name, mac } => serde_json::json!({
                "kind": "changed", "ifindex": ifindex, "name": name, "mac": mac.as_ref().map(mac_string),
            }),
            LinkEvent::Removed { ifindex } => serde_json::json!({ "kind": "removed", "ifindex": ifindex }),
            LinkEvent::AddressChanged { ifindex } => serde_json::json!({ "kind": "address", "ifindex": ifindex }),
            LinkEvent::Resync { reason, lost } => {
                serde_json::json!({ "kind": "resync", "reason": reason, "lost": lost })
            }
            LinkEvent::PciDevice { address, added } => {
                serde_json::json!({ "kind": "pci", "pci": address, "added": added })
            }
        };
        let kernel = event.kernel.as_ref().map(kernel_event_json);
        self.line(&serde_json::json!({
            "event": "source", "source": source, "seen_at_ns": event.seen_at_ns, "detail": detail, "kernel": kernel,
        }));
    }

    /// The failover table (stdout, or stderr when stdout carries JSON) and, with `--json`, the
    /// whole report as one line.
    pub fn measurement(&self, report: &crate::timeline::Report) {
        if self.json {
            eprint!("{}", report.table());
            self.line(&serde_json::json!({ "event": "measurement", "report": report }));
        } else {
            print!("{}", report.table());
        }
    }

    /// One JSON line to `out` (`scan --json`), so the caller sees a closed stdout.
    pub fn line_to(&self, out: &mut impl Write, record: &impl Serialize) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        out.write_all(&bytes)?;
        out.flush()
    }

    /// Prints any serialisable record as one JSON line (when `--json`).
    /// The line goes out in one write, so that lines of other writers sharing the stream (a
    /// serial port, a pipe) never land inside it.
    pub fn line(&self, record: &impl Serialize) {
        if self.json {
            let Ok(mut bytes) = serde_json::to_vec(record) else { return };
            bytes.push(b'\n');
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&bytes);
            let _ = out.flush();
        }
    }
}

impl<'a> ChangeRecord<'a> {
    fn new(event: &'static str, id: u32, netvsc: &'a str, vf: Option<&Vf>) -> Self {
        Self {
            event,
            netvsc,
            failsafe: failsafe_name(id),
            vf: vf.map(VfReport::from),
            reason: None,
            renamed_from: None,
            pipe: None,
            addr: None,
            source: "",
            reaction_us: 0.0,
            at_ns: 0,
        }
    }
}

fn log_action(action: &Action, source: &str, reaction_us: f64) {
    match action {
        Action::Manage { id, netvsc, .. } => {
            info!(netvsc = %netvsc, failsafe = %failsafe_name(*id), "managing interface")
        }
        Action::Associate { netvsc, vf, .. } => {
            info!(netvsc = %netvsc, vf = %vf.name, pci = %vf.pci, source, reaction_us, "VF associated")
        }
        Action::Dissociate { netvsc, vf, reason, .. } => {
            info!(netvsc = %netvsc, vf = %vf.name, pci = %vf.pci, reason = reason.as_str(), source, reaction_us, "VF dissociated, pipe emptied")
        }
        Action::Renamed { from, to, .. } => info!(from = %from, to = %to, "NetVSC interface renamed"),
        Action::Ambiguous { netvsc, chosen, others, .. } => {
            let others: Vec<String> = others.iter().map(|o| format!("{} ({})", o.name, o.pci)).collect();
            warn!(netvsc = %netvsc, chosen = %chosen.name, pci = %chosen.pci, others = ?others, "several VFs share the MAC; using the newest")
        }
        Action::Attached { netvsc, attached, .. } => {
            if *attached {
                info!(netvsc = %netvsc, "NetVSC interface is back")
            } else {
                warn!(netvsc = %netvsc, "NetVSC interface disappeared; still watching for its MAC")
            }
        }
    }
}

/// The eBPF program's record as the kernel wrote it, decoded for traces.
fn kernel_event_json(event: &netvsc_common::KernelEvent) -> serde_json::Value {
    use netvsc_common::{bus, kind};
    serde_json::json!({
        "kind": kind::name(event.kind),
        "timestamp_ns": event.timestamp_ns,
        "ifindex": event.ifindex,
        "name": String::from_utf8_lossy(event.name_bytes()),
        "mac": mac_string(&macaddr::MacAddr6::from(event.mac)),
        "netns": event.netns,
        "dev_type": event.dev_type,
        "parent_bus": bus::name(event.parent_bus),
        "pci": String::from_utf8_lossy(event.pci_bytes()),
    })
}
