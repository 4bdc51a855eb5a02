//! What the agent tells people and programs: the `scan` report and, with `--json`, one JSON
//! line per association change. Human-oriented logs go through `tracing` to stderr.

pub mod first_run;
pub mod health;
pub(crate) mod held;
pub mod lines;
pub(crate) mod measuring;
pub mod metrics;
pub mod timeline;

use std::io::Write;

use tracing::{info, warn};

use crate::decide::pairing::{failsafe_name, Action, Context, Pairing, Release, Vf};
use crate::decide::view::SystemView;
use crate::event::{SourceEvent, SourceName};
use crate::netdev::mac_string;
use crate::output::failsafe::Outputs;
use crate::report::lines::{
    Change, Detail, InterfaceReport, InterfaceState, KernelRecord, Line, SourceTrace, VfReport,
};

/// A context's sidecar FIFO and state file.
pub(crate) type SidecarPaths<'a> = (&'a std::path::Path, &'a std::path::Path);

/// The `--vdev` argument that plugs context `id` into a DPDK application reading `fd`, with
/// fail-safe's hot-plug poll set to `poll_ms`.
pub fn vdev_arg(id: u32, fd: i32, netvsc: &str, poll_ms: u32) -> String {
    format!("{},fd({fd}),dev(net_tap_vsc{id},remote={netvsc}),hotplug_poll={poll_ms}", failsafe_name(id))
}

/// Every NetVSC interface of the view plus forced stand-ins, by ifindex; with `outputs`, the
/// managed ones name their sidecar files.
pub fn interface_reports(pairing: &Pairing, view: &SystemView, outputs: Option<&Outputs>) -> Vec<InterfaceReport> {
    let mut reports: Vec<InterfaceReport> =
        pairing.contexts().iter().map(|ctx| context_report(ctx, view, outputs)).collect();
    for link in view.links().filter(|l| l.is_netvsc()) {
        if pairing.contexts().iter().any(|ctx| ctx.ifindex == link.ifindex) {
            continue;
        }
        let reason = if pairing.selection().is_auto() && view.is_routed(link.ifindex) {
            Release::Routed.explanation()
        } else {
            "not selected"
        };
        reports.push(InterfaceReport {
            netvsc: link.name.clone(),
            ifindex: link.ifindex,
            mac: mac_string(&link.mac),
            vf: None,
            state: InterfaceState::Skipped,
            reason: Some(reason.to_owned()),
            failsafe: None,
            pipe: None,
            addr: None,
        });
    }
    reports.sort_by_key(|r| r.ifindex);
    reports
}

fn context_report(ctx: &Context, view: &SystemView, outputs: Option<&Outputs>) -> InterfaceReport {
    let released = ctx.is_released(view);
    let paths = outputs.and_then(|o| o.paths(ctx.id));
    InterfaceReport {
        netvsc: ctx.name.clone(),
        ifindex: ctx.ifindex,
        mac: mac_string(&ctx.mac),
        vf: ctx.vf.as_ref().map(VfReport::from),
        state: match (&ctx.vf, released) {
            (_, true) => InterfaceState::Skipped,
            (Some(_), _) => InterfaceState::Paired,
            (None, _) => InterfaceState::Waiting,
        },
        reason: released.then(|| Release::Routed.explanation().to_owned()),
        failsafe: Some(failsafe_name(ctx.id)),
        pipe: paths.map(|(pipe, _)| pipe.display().to_string()),
        addr: paths.map(|(_, addr)| addr.display().to_string()),
    }
}

/// A human line for `scan` without `--json`.
pub fn interface_line(r: &InterfaceReport) -> String {
    let what = match (&r.vf, r.state) {
        (Some(vf), _) => format!("paired with {} ({}, matched by {})", vf.iface, vf.devargs, vf.matched.as_str()),
        (None, InterfaceState::Skipped) => format!("skipped: {}", r.reason.as_deref().unwrap_or("")),
        (None, _) => "waiting for a VF".to_owned(),
    };
    let failsafe = r.failsafe.as_deref().map(|f| format!(" [{f}]")).unwrap_or_default();
    format!("{} (ifindex {}, {}){}: {}", r.netvsc, r.ifindex, r.mac, failsafe, what)
}

/// Logs every action and, with `--json`, prints association changes as JSON lines on stdout.
pub struct Reporter {
    json: bool,
    /// `monitor`: no pipe is written, so the log says what was seen, not what was done.
    observing: bool,
}

impl Reporter {
    pub fn new(json: bool) -> Self {
        Self { json, observing: false }
    }

    /// The reporter of `monitor`, which follows interfaces without feeding them.
    pub fn observing(json: bool) -> Self {
        Self { json, observing: true }
    }

    /// An action carried out at `done_ns` for an event seen at `seen_ns` (CLOCK_MONOTONIC);
    /// `paths` are the sidecar files of the context, if any.
    pub fn action(
        &self,
        action: &Action,
        source: SourceName,
        seen_ns: u64,
        done_ns: u64,
        paths: Option<SidecarPaths<'_>>,
    ) {
        let reaction_us = done_ns.saturating_sub(seen_ns) as f64 / 1e3;
        log_action(action, source, reaction_us, self.observing);
        if self.json {
            if let Some(line) = change_line(action, source, reaction_us, done_ns, paths) {
                self.line(&line);
            }
        }
    }

    /// A source event as a JSON line (`--trace-events`).
    pub(crate) fn source_event(&self, event: &SourceEvent, source: SourceName) {
        self.line(&Line::Source(SourceTrace {
            source,
            seen_at_ns: event.seen_at_ns,
            detail: Detail::from(&event.event),
            kernel: event.kernel.as_ref().map(KernelRecord::from),
        }));
    }

    /// The failover table (stdout, or stderr when stdout carries JSON) and, with `--json`, the
    /// whole report as one line.
    pub fn measurement(&self, report: &crate::report::timeline::Report) {
        if self.json {
            eprint!("{}", report.table());
            self.line(&Line::Measurement { report: report.clone() });
        } else {
            print!("{}", report.table());
        }
    }

    /// One JSON line to `out`, in one write, so that lines of other writers sharing the stream
    /// (a serial port, a pipe) never land inside it. `scan --json` sees a closed stdout here.
    pub fn line_to(out: &mut impl Write, line: &Line) -> std::io::Result<()> {
        out.write_all(&line.to_json())?;
        out.flush()
    }

    /// Prints one JSON line on stdout (when `--json`); a reader that went away is not an error.
    pub fn line(&self, line: &Line) {
        if self.json {
            let _ = Self::line_to(&mut std::io::stdout().lock(), line);
        }
    }
}

/// The JSON line of an association change; none for actions that only go to the log.
fn change_line(
    action: &Action,
    source: SourceName,
    reaction_us: f64,
    at_ns: u64,
    paths: Option<SidecarPaths<'_>>,
) -> Option<Line> {
    let change = |id: u32, netvsc: &str, vf: Option<&Vf>| Change {
        netvsc: netvsc.to_owned(),
        failsafe: failsafe_name(id),
        vf: vf.map(VfReport::from),
        reason: None,
        renamed_from: None,
        pipe: None,
        addr: None,
        source,
        reaction_us,
        at_ns,
    };
    Some(match action {
        Action::Associate { id, netvsc, vf } => Line::Associated(change(*id, netvsc, Some(vf))),
        Action::Dissociate { id, netvsc, vf, reason } => {
            Line::Dissociated(Change { reason: Some(*reason), ..change(*id, netvsc, Some(vf)) })
        }
        Action::Manage { id, netvsc, .. } => Line::Managed(Change {
            pipe: paths.map(|(pipe, _)| pipe.display().to_string()),
            addr: paths.map(|(_, addr)| addr.display().to_string()),
            ..change(*id, netvsc, None)
        }),
        Action::Renamed { id, from, to } => {
            Line::Renamed(Change { renamed_from: Some(from.clone()), ..change(*id, to, None) })
        }
        Action::Ambiguous { .. } | Action::Attached { .. } => return None,
    })
}

fn log_action(action: &Action, source: SourceName, reaction_us: f64, observing: bool) {
    let source = source.as_str();
    match action {
        Action::Manage { netvsc, .. } if observing => info!(netvsc = %netvsc, "following interface"),
        Action::Manage { id, netvsc, .. } => {
            info!(netvsc = %netvsc, failsafe = %failsafe_name(*id), "managing interface")
        }
        Action::Associate { netvsc, vf, .. } => {
            info!(netvsc = %netvsc, vf = %vf.name, line = %vf.devargs, matched = vf.matched.as_str(), source, reaction_us, "VF associated")
        }
        Action::Dissociate { netvsc, vf, reason, .. } if observing => {
            info!(netvsc = %netvsc, vf = %vf.name, pci = %vf.pci, reason = ?reason, source, "VF dissociated")
        }
        Action::Dissociate { netvsc, vf, reason, .. } => {
            info!(netvsc = %netvsc, vf = %vf.name, pci = %vf.pci, reason = ?reason, source, reaction_us, "VF dissociated, pipe emptied")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::selection::{Selection, Spec};
    use crate::netdev::{Netdev, NetdevKind};

    fn netvsc(ifindex: u32, name: &str, last: u8) -> Netdev {
        let mac = macaddr::MacAddr6::new(0, 0x15, 0x5d, 0, 0, last);
        Netdev { ifindex, name: name.into(), mac, kind: NetdevKind::NetVsc, master: None }
    }

    #[test]
    fn an_interface_left_out_says_why_by_the_rule_in_force() {
        // eth1 carries the VM's own addresses; eth2 does not.
        let view = SystemView::from_netdevs([netvsc(3, "eth1", 1), netvsc(4, "eth2", 2)], [3].into());
        let reason_for_eth1 = |selection: Selection| {
            let (pairing, _) = Pairing::start(selection, &view, false).unwrap();
            let reports = interface_reports(&pairing, &view, None);
            let eth1 = reports.into_iter().find(|r| r.netvsc == "eth1").unwrap();
            (eth1.state, eth1.reason)
        };
        assert_eq!(
            reason_for_eth1(Selection::default()),
            (InterfaceState::Skipped, Some("routed: has IP addresses (the VM's own interface)".to_owned())),
            "automatic selection: left out for its addresses"
        );
        let named = Selection { specs: vec![Spec::Name("eth2".into())], ..Default::default() };
        assert_eq!(
            reason_for_eth1(named),
            (InterfaceState::Skipped, Some("not selected".to_owned())),
            "named selection: left out for not being named, addresses or not"
        );
    }
}
