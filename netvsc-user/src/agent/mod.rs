//! The event loop: event → re-read what changed → pairing decision → pipe write → report.

pub mod cli;
pub mod exec;
mod kernel_log;
pub mod realtime;
pub mod signals;

use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, error, info, warn};

use crate::clock::monotonic_ns;
use crate::decide::deferred::Deferred;
use crate::decide::pairing::{Action, Pairing};
use crate::decide::selection::Selection;
use crate::decide::view::SystemView;
use crate::event::{NetdevEvent, SourceEvent, SourceName};
use crate::output::failsafe::Outputs;
use crate::report::lines::{Line, Stats};
use crate::report::measuring::Measuring;
use crate::report::metrics::{Metrics, Observer};
use crate::report::timeline::kernel::Noted;
use crate::report::timeline::Report;
use crate::report::Reporter;
use crate::source::kmsg::Logged;
use crate::source::Source;
use crate::system::SystemReader;
use kernel_log::KernelLog;

/// Timers of the loop.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// How often a pipe line consumed while the VF is present is restored (the original's 1 s
    /// guarantee). Costs one ioctl per pipe.
    pub refill: Duration,
    /// Safety full rescan for event sources, so a lost event cannot leave a stale pairing.
    pub resync: Option<Duration>,
    /// Print every source event as a JSON line (diagnostics, and tests of event fields).
    pub trace_events: bool,
}

pub struct Agent {
    /// Failover timelines, when `--measure` asked for them.
    measuring: Option<Measuring>,
    /// Prometheus metrics, when `--metrics-listen` asked for them.
    observer: Option<Observer>,
    /// MACs of the managed interfaces last handed to the source (the eBPF one filters on them).
    watched: Vec<macaddr::MacAddr6>,
    stats: Stats,
    /// Events that cannot change a pipe, handled when the source is quiet.
    deferred: Deferred,
    reader: SystemReader,
    view: SystemView,
    pairing: Pairing,
    outputs: Outputs,
    reporter: Reporter,
    /// `monitor`: hv_netvsc's moments read from the kernel's log.
    kmsg: Option<KernelLog>,
}

impl Agent {
    /// Scans the system, admits the selected interfaces, creates their outputs and publishes the
    /// VFs already present. A bad selection comes back as a [`crate::usage::UsageError`].
    pub async fn start(
        mut reader: SystemReader,
        selection: Selection,
        admit_later: bool,
        mut outputs: Outputs,
        reporter: Reporter,
    ) -> anyhow::Result<Self> {
        let started = monotonic_ns();
        let scanned = async {
            let view = reader.full_scan().await?;
            let (pairing, actions) = Pairing::start(selection, &view, admit_later)?;
            anyhow::Ok((view, pairing, actions))
        };
        let (view, pairing, actions) = match scanned.await {
            Ok(scanned) => scanned,
            Err(err) => {
                outputs.rollback();
                return Err(err);
            }
        };
        // At start-up any output failure is fatal (the user is there to see it), and undoes
        // what this run made.
        for action in &actions {
            if let Err(err) = outputs.apply(action) {
                outputs.rollback();
                return Err(err);
            }
            reporter.action(action, SourceName::Startup, started, monotonic_ns(), outputs.paths(action.id()));
        }
        reader.close_retired();
        Ok(Agent {
            measuring: None,
            observer: None,
            watched: Vec::new(),
            stats: Stats::default(),
            deferred: Deferred::default(),
            reader,
            view,
            pairing,
            outputs,
            reporter,
            kmsg: None,
        })
    }

    pub fn pairing(&self) -> &Pairing {
        &self.pairing
    }

    pub fn view(&self) -> &SystemView {
        &self.view
    }

    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    pub fn reader(&self) -> &SystemReader {
        &self.reader
    }

    /// What `scan` would report, with the sidecar files of the managed interfaces.
    pub fn interface_reports(&self) -> Vec<crate::report::lines::InterfaceReport> {
        crate::report::interface_reports(&self.pairing, &self.view, Some(&self.outputs))
    }

    /// Starts recording failover timelines; `source` names the clock of events without kernel times.
    pub fn measure(&mut self, source: SourceName) {
        self.measuring = Some(Measuring::new(source));
    }

    /// Starts feeding `metrics`; `source` names the clock of events without kernel times.
    pub fn observe(&mut self, metrics: Metrics, source: SourceName) {
        let observer = Observer::new(metrics, source);
        observer.interfaces(&self.pairing, &self.view);
        self.observer = Some(observer);
    }

    /// Takes the kernel's moments from `kmsg` into the timelines and metrics (`monitor`); a
    /// switch from the VF within `flap_window_us` of the switch to it is a flap. Outages are kept
    /// for the report when [`Agent::measure`] was called first.
    pub fn kernel_log(&mut self, kmsg: mpsc::Receiver<Logged>, flap_window_us: u64) {
        self.kmsg = Some(KernelLog::new(kmsg, flap_window_us, self.measuring.is_some()));
    }

    /// One moment of the kernel's log, for the followed interface it is about (see
    /// [`KernelLog::interface`]); lines about other interfaces are passed over.
    fn kernel_moment(&mut self, logged: &Logged) {
        let Some(kmsg) = &mut self.kmsg else { return };
        let Some(netvsc) = kmsg.interface(&logged.moment, &self.pairing, &self.reader) else {
            debug!(moment = ?logged.moment, "kernel moment of an interface not followed");
            return;
        };
        info!(netvsc, at_us = logged.at_us, moment = ?logged.moment, "kernel log");
        for noted in kmsg.record(logged.at_us, &logged.moment, netvsc) {
            if let Some(observer) = &self.observer {
                observer.kernel(&noted);
            }
            if let Noted::Ended(outage) = noted {
                self.reporter.line(&Line::KernelOutage { outage });
            }
        }
    }

    /// The failovers recorded so far, and the kernel's outages (`None` unless
    /// [`Agent::measure`] was called).
    pub fn timeline(&self) -> Option<Report> {
        let report = self.measuring.as_ref().map(Measuring::report)?;
        let kernel_outages = self.kmsg.as_ref().map(KernelLog::outages).unwrap_or_default();
        Some(Report { kernel_outages, ..report })
    }

    /// Handles one event; returns the actions decided (empty when it concerned nothing managed).
    /// An error here means the system could not be read; an output that cannot be written is
    /// logged and skipped so that the other interfaces keep being served.
    pub async fn handle(&mut self, event: &SourceEvent, source: SourceName) -> anyhow::Result<Vec<Action>> {
        // The descriptors of what was read are closed after the pipes are written; a read that
        // failed leaves its few to the next event's close.
        let touched = self.reader.apply(&mut self.view, event).await?;
        if touched.is_nothing() {
            self.reader.close_retired();
            self.note_event(event);
            return Ok(Vec::new());
        }
        let actions = self.pairing.reconcile(&self.view, &touched);
        // Fail-safe waits on the pipes: every pipe of this event is written (and its time taken)
        // before any state file, log line, JSON line, timeline or metrics bookkeeping.
        let written: Vec<(anyhow::Result<()>, u64)> =
            actions.iter().map(|action| (self.outputs.apply_channel(action), monotonic_ns())).collect();
        self.reader.close_retired();
        self.note_event(event);
        for (action, (written, done_ns)) in actions.iter().zip(written) {
            if let Err(err) = written.and_then(|()| self.outputs.apply_files(action)) {
                error!(error = %format!("{err:#}"), "could not carry out {action:?}");
            }
            self.reporter.action(action, source, event.seen_at_ns, done_ns, self.outputs.paths(action.id()));
            if let Some(line) = self.measuring.as_mut().and_then(|m| m.action(action, event, done_ns)) {
                self.reporter.line(&line);
            }
            if let Some(observer) = &mut self.observer {
                observer.action(action, event, done_ns, source);
            }
        }
        if let Some(measuring) = &mut self.measuring {
            measuring.joined(&self.pairing, event.seen_at_ns);
        }
        if let (Some(observer), false) = (&self.observer, actions.is_empty()) {
            observer.changed(source, &self.pairing, &self.view);
        }
        Ok(actions)
    }

    /// Tells the timelines and metrics when things appeared and went: after the pipes are
    /// written, before the actions taken for the event are recorded.
    fn note_event(&mut self, event: &SourceEvent) {
        if let Some(measuring) = &mut self.measuring {
            measuring.source_event(event);
        }
        if let Some(observer) = &mut self.observer {
            observer.source_event(event);
        }
    }

    /// Restores pipe lines consumed while their VF is present; returns how many.
    pub fn refill(&mut self) -> usize {
        self.outputs.refill()
    }

    /// Runs until `stop` completes and returns its output. Source errors end the loop.
    pub async fn run<T: Send + 'static>(
        &mut self,
        source: &mut dyn Source,
        timers: Timers,
        stop: impl Future<Output = T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let name = source.name();
        // The stop condition (a dozen signal handlers, the application's exit) and the statistics
        // signal run as tasks of their own: the loop polls every branch each time it turns, twice
        // or more per plug before the VF's message is read, and polling a task's handle or a
        // channel costs far less than polling a dozen signal streams.
        let mut stop = AbortOnDropHandle::new(tokio::spawn(stop));
        let (statistics, mut statistics_requested) = mpsc::channel::<()>(1);
        let mut usr1 = signal(SignalKind::user_defined1()).context("installing the SIGUSR1 handler")?;
        let _usr1 = AbortOnDropHandle::new(tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                // A request already waiting covers this one.
                let _ = statistics.try_send(());
            }
        }));
        let mut refill = interval_at(Instant::now() + timers.refill, timers.refill);
        refill.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A zero-length period means "never": an interval needs a non-zero one.
        let resync_period = timers.resync.unwrap_or(Duration::from_secs(86_400 * 365));
        let mut resync = interval_at(Instant::now() + resync_period, resync_period);
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        info!(source = name.as_str(), contexts = self.pairing.contexts().len(), "watching");
        loop {
            self.sync_watched(source)?;
            // Biased: the rare timers and signals first (cheap, and never starved by a flood of
            // events), then the kernel log's moments (monitor only), then the source, and only
            // when nothing else is ready an event that waited.
            tokio::select! {
                biased;
                result = &mut stop => return result.context("the stop condition's task failed"),
                Some(()) = statistics_requested.recv() => {
                    info!(stats = ?self.stats, "statistics");
                    let waiting = self.deferred.len() + self.measuring.as_ref().map_or(0, Measuring::awaiting_reads);
                    let held = crate::report::held::now(waiting);
                    self.reporter.line(&Line::Stats { source: name, stats: self.stats, held });
                    if let Some(report) = self.timeline() {
                        self.reporter.measurement(&report);
                    }
                }
                _ = Measuring::read_check_due(&mut self.measuring) => {
                    let measuring = self.measuring.as_mut().expect("due only while measuring");
                    for line in measuring.check_reads(&self.outputs) {
                        self.reporter.line(&line);
                    }
                }
                _ = refill.tick() => {
                    self.stats.refill_ticks += 1;
                    let restored = self.refill();
                    if restored > 0 {
                        debug!(restored, "restored consumed pipe lines");
                    }
                }
                _ = resync.tick(), if timers.resync.is_some() => {
                    let event = SourceEvent::now(NetdevEvent::Resync { reason: "safety resync", lost: false });
                    self.deferred.offer(&event, &self.view, &self.watched);
                    match self.handle(&event, SourceName::Resync).await {
                        Ok(actions) if !actions.is_empty() => {
                            info!(changes = actions.len(), "safety resync found changes the events had not shown")
                        }
                        Ok(_) => {}
                        Err(err) => warn!(error = %format!("{err:#}"), "safety resync failed"),
                    }
                }
                logged = KernelLog::next(&mut self.kmsg) => self.kernel_moment(&logged),
                event = source.next() => {
                    let event = event.with_context(|| format!("{name} event source failed"))?;
                    self.stats.events += 1;
                    if let Some(observer) = &mut self.observer {
                        observer.delivered(name, source.ring_drops());
                    }
                    if timers.trace_events {
                        self.reporter.source_event(&event, name);
                    }
                    if let NetdevEvent::Resync { reason, .. } = event.event {
                        debug!(source = name.as_str(), reason, "full rescan");
                        self.stats.resyncs += 1;
                        if !name.always_rescans() {
                            self.reporter.line(&Line::Resync { source: name, reason: reason.to_owned() });
                        }
                    }
                    if !self.deferred.offer(&event, &self.view, &self.watched) {
                        self.handle_logged(&event, name).await;
                    }
                }
                // (Popped in the handler: select! builds every enabled branch's future up front.)
                _ = std::future::ready(()), if !self.deferred.is_empty() => {
                    if let Some(event) = self.deferred.pop() {
                        self.handle_logged(&event, name).await;
                    }
                }
            }
        }
    }

    /// [`Agent::handle`] for the loop: a failure is logged (the next resync retries).
    async fn handle_logged(&mut self, event: &SourceEvent, name: SourceName) {
        match self.handle(event, name).await {
            Ok(actions) if !actions.is_empty() => self.stats.relevant += 1,
            Ok(_) => {}
            Err(err) => {
                warn!(source = name.as_str(), error = %format!("{err:#}"), "could not handle an event; the next resync retries")
            }
        }
    }

    /// Hands the managed MACs to the source when they changed.
    fn sync_watched(&mut self, source: &mut dyn Source) -> anyhow::Result<()> {
        // Compared in place: this runs before every wait, and nothing is allocated unless it changed.
        let contexts = self.pairing.contexts();
        if !contexts.iter().map(|ctx| &ctx.mac).eq(self.watched.iter()) {
            let macs: Vec<macaddr::MacAddr6> = contexts.iter().map(|ctx| ctx.mac).collect();
            source.watch_macs(&macs).context("updating the watched MACs")?;
            self.watched = macs;
        }
        Ok(())
    }

    /// Closes the pipes and removes the files this run created.
    pub fn shutdown(self) {
        self.outputs.close();
    }
}
