//! Failover timelines (`--measure`): for each managed interface, when its VF's PCI device went,
//! its netdevice went, the pipe was emptied; when a PCI device came, its netdevice registered, the
//! address was written and the consumer read it. Pure: fed source events, applied actions and
//! observed reads, with their CLOCK_MONOTONIC times.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::decide::pairing::{Action, Match};
use crate::event::{NetdevEvent, SourceEvent, SourceName};

pub mod kernel;

/// What a failover's times were taken from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// The kernel's own timestamp (`bpf_ktime_get_ns` in the eBPF record).
    Kernel,
    /// When the eBPF source received an event without a kernel record (address changes).
    Ebpf,
    /// The receive time of the rtnetlink message.
    Netlink,
    /// The scan that noticed (polling, or the agent's own rescans).
    #[default]
    Poll,
}

impl Clock {
    /// The clock of events from `source` that carry no kernel timestamp.
    pub fn of(source: SourceName) -> Clock {
        match source {
            SourceName::Ebpf => Clock::Ebpf,
            SourceName::Netlink => Clock::Netlink,
            SourceName::Poll | SourceName::Startup | SourceName::Resync => Clock::Poll,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Clock::Kernel => "kernel",
            Clock::Ebpf => "ebpf",
            Clock::Netlink => "netlink",
            Clock::Poll => "poll",
        }
    }
}

/// One VF outage of one interface, from the VF leaving to its address being read again.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Failover {
    pub netvsc: String,
    pub failsafe: String,
    pub clock: Clock,
    pub old_pci: String,
    pub pci_removed_ns: Option<u64>,
    pub netdev_gone_ns: u64,
    pub pipe_emptied_ns: u64,
    pub new_pci: Option<String>,
    pub pci_added_ns: Option<u64>,
    pub netdev_registered_ns: Option<u64>,
    /// When the agent first saw the kernel make the new VF a slave of its NetVSC (`master`).
    #[serde(default)]
    pub vf_joined_ns: Option<u64>,
    pub written_ns: Option<u64>,
    pub read_ns: Option<u64>,
}

fn micros(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1e3
}

impl Failover {
    /// From the VF netdevice leaving to the new one registering.
    pub fn absent_s(&self) -> Option<f64> {
        self.netdev_registered_ns.map(|back| micros(self.netdev_gone_ns, back) / 1e6)
    }

    /// Kernel (or source) event of the registration to the address in the pipe.
    pub fn event_to_pipe_us(&self) -> Option<f64> {
        Some(micros(self.netdev_registered_ns?, self.written_ns?))
    }

    /// VF netdevice gone to the pipe emptied.
    pub(crate) fn gone_to_emptied_us(&self) -> f64 {
        micros(self.netdev_gone_ns, self.pipe_emptied_ns)
    }

    pub fn write_to_read_us(&self) -> Option<f64> {
        Some(micros(self.written_ns?, self.read_ns?))
    }
}

/// p50/p99/max of one measure over every failover that has it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// Quantiles of `values` (kept to three significant digits).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        // Recorded in thousandths so that sub-unit values keep their digits.
        let mut histogram = Histogram::<u64>::new(3).expect("three significant digits is valid");
        for value in values {
            // `new` histograms resize themselves, so recording cannot fail.
            let _ = histogram.record((value * 1e3).max(0.0) as u64);
        }
        if histogram.is_empty() {
            return Spread::default();
        }
        let centre = |v: u64| histogram.median_equivalent(v) as f64 / 1e3;
        let at = |q: f64| centre(histogram.value_at_quantile(q));
        Spread { count: histogram.len(), p50: at(0.5), p99: at(0.99), max: centre(histogram.max()) }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub absent_s: Spread,
    pub event_to_pipe_us: Spread,
    pub gone_to_emptied_us: Spread,
    pub write_to_read_us: Spread,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub failovers: Vec<Failover>,
    pub summary: Summary,
    /// `monitor`: the outages hv_netvsc logged, ended ones first (kmsg times).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_outages: Vec<kernel::KernelOutage>,
}

#[derive(Debug)]
pub(crate) struct Recorder {
    /// The clock of events without a kernel timestamp.
    clock: Clock,
    /// Latest PCI add/remove time per PCI address.
    pci: HashMap<String, (bool, u64)>,
    /// Latest appearance/removal time per ifindex.
    netdev: HashMap<u32, (bool, u64)>,
    /// Outages in progress, by context id.
    open: BTreeMap<u32, Failover>,
    done: Vec<Failover>,
    /// Completed failovers whose address has not been seen read yet: context id → index in `done`.
    unread: BTreeMap<u32, usize>,
    /// Completed failovers whose VF the kernel has not been seen joining yet: the same.
    unjoined: BTreeMap<u32, usize>,
    /// Whether completed failovers are kept for the report (`--measure`), or only the latest
    /// (metrics, for as long as the agent runs).
    history: bool,
}

/// Past this many remembered PCI addresses or ifindexes, those older than [`FORGET_AFTER_NS`]
/// are forgotten: on a busy node (containers' veths with the netlink source) the maps would
/// otherwise grow for as long as the agent runs.
const REMEMBERED: usize = 512;
const FORGET_AFTER_NS: u64 = 600 * 1_000_000_000;

fn forget_old<K>(map: &mut HashMap<K, (bool, u64)>, now_ns: u64) {
    if map.len() > REMEMBERED {
        map.retain(|_, (_, at)| now_ns.saturating_sub(*at) < FORGET_AFTER_NS);
    }
}

impl Recorder {
    /// `source` names the clock when an event carries no kernel timestamp.
    pub fn new(source: SourceName) -> Self {
        Self {
            clock: Clock::of(source),
            pci: HashMap::new(),
            netdev: HashMap::new(),
            open: BTreeMap::new(),
            done: Vec::new(),
            unread: BTreeMap::new(),
            unjoined: BTreeMap::new(),
            history: true,
        }
    }

    /// A recorder that keeps only the latest completed failover (for metrics: bounded memory).
    pub(crate) fn without_history(source: SourceName) -> Self {
        Self { history: false, ..Self::new(source) }
    }

    /// The outage in progress for context `id` (its VF gone, no successor yet).
    pub(crate) fn outage(&self, id: u32) -> Option<&Failover> {
        self.open.get(&id)
    }

    /// Notes when things appeared and went, before the actions taken for the event are recorded.
    pub(crate) fn source_event(&mut self, event: &SourceEvent) {
        let at = event.seen_at_ns;
        match &event.event {
            NetdevEvent::PciDevice { address, added } => {
                self.pci.insert(address.clone(), (*added, at));
            }
            NetdevEvent::Changed { ifindex, .. } => {
                // The first sighting is the registration; later changes (flags, carrier) are not.
                let seen = self.netdev.entry(*ifindex).or_insert((false, at));
                if !seen.0 {
                    *seen = (true, at);
                }
            }
            NetdevEvent::Removed { ifindex } => {
                self.netdev.insert(*ifindex, (false, at));
            }
            NetdevEvent::AddressChanged { .. } | NetdevEvent::Resync { .. } => {}
        }
        forget_old(&mut self.pci, at);
        forget_old(&mut self.netdev, at);
    }

    /// Records an action the agent carried out at `at_ns` while handling `event`. Returns the
    /// failover an association completed.
    pub fn action(&mut self, action: &Action, event: &SourceEvent, at_ns: u64) -> Option<&Failover> {
        let clock = if event.kernel.is_some() { Clock::Kernel } else { self.clock };
        match action {
            Action::Dissociate { id, netvsc, vf, .. } => {
                let gone = match self.netdev.get(&vf.ifindex) {
                    Some((false, at)) => *at,
                    _ => event.seen_at_ns,
                };
                let failover = Failover {
                    netvsc: netvsc.clone(),
                    failsafe: crate::decide::pairing::failsafe_name(*id),
                    clock,
                    old_pci: vf.pci.clone(),
                    pci_removed_ns: self.pci.get(&vf.pci).filter(|(added, _)| !added).map(|(_, at)| *at),
                    netdev_gone_ns: gone,
                    pipe_emptied_ns: at_ns,
                    ..Failover::default()
                };
                self.unread.remove(id);
                self.unjoined.remove(id);
                self.open.insert(*id, failover);
                None
            }
            Action::Associate { id, vf, .. } => {
                let mut failover = self.open.remove(id)?;
                failover.new_pci = Some(vf.pci.clone());
                failover.pci_added_ns = self.pci.get(&vf.pci).filter(|(added, _)| *added).map(|(_, at)| *at);
                failover.netdev_registered_ns = Some(match self.netdev.get(&vf.ifindex) {
                    Some((true, at)) => *at,
                    _ => event.seen_at_ns,
                });
                failover.written_ns = Some(at_ns);
                if clock == Clock::Kernel {
                    failover.clock = clock;
                }
                if !self.history {
                    self.done.clear();
                    self.unread.clear();
                    self.unjoined.clear();
                }
                if vf.matched == Match::Kernel {
                    failover.vf_joined_ns = Some(event.seen_at_ns);
                } else {
                    self.unjoined.insert(*id, self.done.len());
                }
                self.unread.insert(*id, self.done.len());
                self.done.push(failover);
                self.done.last()
            }
            _ => None,
        }
    }

    /// The event seen at `at_ns` showed the kernel's association: the latest failover of each
    /// context whose VF `joined` says is now its NetVSC's slave gets its join time.
    pub(crate) fn joined(&mut self, joined: impl Fn(u32) -> bool, at_ns: u64) {
        let done = &mut self.done;
        self.unjoined.retain(|id, index| {
            if !joined(*id) {
                return true;
            }
            done[*index].vf_joined_ns = Some(at_ns);
            false
        });
    }

    /// Whether a failover waits for its VF's join (see [`Recorder::joined`]).
    pub(crate) fn awaiting_join(&self) -> bool {
        !self.unjoined.is_empty()
    }

    /// Contexts whose newly written address the consumer has not read yet.
    pub(crate) fn awaiting_read(&self) -> impl Iterator<Item = u32> + '_ {
        self.unread.keys().copied()
    }

    /// The consumer read context `id`'s address (its pipe was found empty) at `at_ns`.
    pub fn read(&mut self, id: u32, at_ns: u64) -> Option<&Failover> {
        let index = self.unread.remove(&id)?;
        let failover = &mut self.done[index];
        failover.read_ns = Some(at_ns);
        Some(failover)
    }

    /// Context `id`'s address will never be read (it has no pipe): no longer awaited.
    pub(crate) fn unawait(&mut self, id: u32) {
        self.unread.remove(&id);
    }

    /// Completed failovers, and outages still in progress (no new VF yet) after them.
    pub fn report(&self) -> Report {
        let failovers: Vec<Failover> = self.done.iter().chain(self.open.values()).cloned().collect();
        let summary = Summary {
            absent_s: Spread::of(failovers.iter().filter_map(Failover::absent_s)),
            event_to_pipe_us: Spread::of(failovers.iter().filter_map(Failover::event_to_pipe_us)),
            gone_to_emptied_us: Spread::of(failovers.iter().map(Failover::gone_to_emptied_us)),
            write_to_read_us: Spread::of(failovers.iter().filter_map(Failover::write_to_read_us)),
        };
        Report { failovers, summary, kernel_outages: Vec::new() }
    }
}

impl Report {
    /// The human table: one row per failover, then the summary.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<10} {:<14} {:<8} {:>9} {:>14} {:>14} {:>14}  {}\n",
            "interface", "VF", "clock", "absent s", "gone→empty µs", "event→pipe µs", "write→read µs", "new VF"
        );
        let opt = |v: Option<f64>, precision: usize| v.map_or("-".to_owned(), |v| format!("{v:.precision$}"));
        for f in &self.failovers {
            out += &format!(
                "{:<10} {:<14} {:<8} {:>9} {:>14.1} {:>14} {:>14}  {}\n",
                f.netvsc,
                f.old_pci,
                f.clock.as_str(),
                opt(f.absent_s(), 3),
                f.gone_to_emptied_us(),
                opt(f.event_to_pipe_us(), 1),
                opt(f.write_to_read_us(), 1),
                f.new_pci.as_deref().unwrap_or("(not back)"),
            );
        }
        let s = &self.summary;
        for (name, spread, unit, digits) in [
            ("VF absent", &s.absent_s, "s", 3),
            ("VF gone → pipe emptied", &s.gone_to_emptied_us, "µs", 1),
            ("VF registered → address in pipe", &s.event_to_pipe_us, "µs", 1),
            ("address written → read", &s.write_to_read_us, "µs", 1),
        ] {
            // A measure without samples has no quantiles: "-", not a made-up 0.
            let value = |v: f64| if spread.count == 0 { "-".to_owned() } else { format!("{v:.digits$} {unit}") };
            out += &format!(
                "{name:<32} n={:<4} p50 {}, p99 {}, max {}\n",
                spread.count,
                value(spread.p50),
                value(spread.p99),
                value(spread.max)
            );
        }
        if !self.kernel_outages.is_empty() {
            out += &kernel_table(&self.kernel_outages);
        }
        out
    }
}

/// The kernel's outages: when each began (kmsg seconds), how long the VF was away, how soon the
/// data path followed the VF back.
fn kernel_table(outages: &[kernel::KernelOutage]) -> String {
    let mut out = format!(
        "{:<10} {:<16} {:>14} {:>9} {:>16}  {}\n",
        "interface", "VF (kernel)", "began s", "absent s", "back→switched s", "new VF"
    );
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.6}"));
    for o in outages {
        out += &format!(
            "{:<10} {:<16} {:>14.6} {:>9} {:>16}  {}\n",
            o.netvsc,
            o.vf.as_deref().unwrap_or("-"),
            o.start_us() as f64 / 1e6,
            opt(o.absent_s()),
            opt(o.back_to_data_path_s()),
            o.new_vf.as_deref().unwrap_or("(not back)"),
        );
    }
    out
}

#[cfg(test)]
mod tests;
