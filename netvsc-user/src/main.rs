//! netvsc-watch entry point: parse the command line, wire the modules, map errors to exit codes
//! (2 for bad input, 1 for everything else).

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use netvsc_user::agent::cli::{Cli, Command, ExecArgs, MonitorArgs, RunArgs, ScanArgs, SelectionArgs, WatchArgs};
use netvsc_user::agent::exec::{dpdk_argv, exec_unchanged, exit_code, spawn, CannotRun, Forwarder};
use netvsc_user::agent::signals::Terminations;
use netvsc_user::agent::Agent;
use netvsc_user::decide::pairing::Pairing;
use netvsc_user::output::dpdk_probe::AutoProbe;
use netvsc_user::output::failsafe::{OutputMode, Outputs};
use netvsc_user::report::first_run::no_netvsc_hint;
use netvsc_user::report::health::{Health, Phase};
use netvsc_user::report::lines::{KernelMoments, Line, PassedOver, Ready};
use netvsc_user::report::metrics::{self, Metrics};
use netvsc_user::report::{interface_line, interface_reports, vdev_arg, Reporter};
use netvsc_user::source::Opened;
use netvsc_user::system::addresses::KernelAddresses;
use netvsc_user::system::netdev_list::{KernelNetdevList, NetdevList};
use netvsc_user::system::sysfs::Sysfs;
use netvsc_user::system::SystemReader;
use netvsc_user::usage::UsageError;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            eprintln!("netvsc-watch: {err:#}");
            if let Some(cannot_run) = err.chain().find_map(|cause| cause.downcast_ref::<CannotRun>()) {
                return ExitCode::from(cannot_run.exit_code());
            }
            let usage = err.chain().any(|cause| cause.is::<UsageError>());
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Scan(args) => scan(args).await,
        Command::Watch(args) => watch(args).await,
        Command::Exec(args) => exec(args).await,
        Command::Monitor(args) => monitor(args).await,
    }
}

async fn scan(args: ScanArgs) -> anyhow::Result<i32> {
    let selection = args.selection.selection()?;
    if selection.ignore {
        info!("ignore set: nothing to do");
        return Ok(0);
    }
    let mut reader = system_reader(&args.selection)?;
    let view = reader.full_scan().await?;
    let (pairing, _) = Pairing::start(selection, &view, false)?;
    // One line per interface, then what `exec` would add for DPDK's own vdev_netvsc.
    let auto_probe = AutoProbe::detect(&view, &[], false);
    let reports = interface_reports(&pairing, &view, None);
    let hint = no_netvsc_hint(&args.selection.sysfs_root, &view, reports.len(), &auto_probe);
    let mut out = std::io::stdout().lock();
    for report in reports {
        let written = if args.json {
            Reporter::line_to(&mut out, &Line::Interface(report))
        } else {
            writeln!(out, "{}", interface_line(&report))
        };
        stop_on_closed_stdout(written)?;
    }
    // People read the text report, so the hint goes there; JSON lines stay machine-readable and
    // the hint goes to the log.
    for line in hint.iter().flatten() {
        if args.json {
            warn!("{line}");
        } else {
            stop_on_closed_stdout(writeln!(out, "{line}"))?;
        }
    }
    let written = if args.json {
        Reporter::line_to(&mut out, &Line::DpdkAutoProbe { dpdk_auto_probe: auto_probe })
    } else {
        writeln!(out, "{}", auto_probe.summary())
    };
    stop_on_closed_stdout(written)?;
    Ok(0)
}

/// `scan | head -1`: a reader that went away has what it wanted; end quietly with 0.
fn stop_on_closed_stdout(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => other.context("writing the report to stdout"),
    }
}

async fn watch(args: WatchArgs) -> anyhow::Result<i32> {
    let selection = args.selection.selection()?;
    if selection.ignore {
        info!("ignore set: nothing to do");
        return Ok(0);
    }
    if !args.fifo_dir.is_dir() {
        return Err(UsageError::FifoDir { path: args.fifo_dir.clone(), why: "not a directory".into() }.into());
    }
    let Prelude { served, reader, mut opened } = prelude(&args.run, &args.selection)?;
    let signals = Terminations::install()?;
    // From here on every exit path leaves the directory in order (Agent::start undoes its own).
    let outputs = Outputs::new(OutputMode::Sidecar { dir: args.fifo_dir.clone(), file_mode: args.file_mode })?;
    let mut agent = Agent::start(reader, selection, true, outputs, Reporter::new(args.run.json)).await?;
    start_recording(&args.run, &opened, &mut agent, &served);
    // What DPDK containers next to the sidecar need on their command line.
    let auto_probe = AutoProbe::detect(agent.view(), &[], false);
    if warn_no_netvsc(&args.selection, &agent, &auto_probe) == 0 {
        warn!("watching for NetVSC interfaces to appear: they are picked up when they do");
    }
    announce_ready(&args.run, &opened, &agent, &auto_probe, &served, None);
    let signal =
        run_until_signal(agent, &mut opened, &args.run, &served, signals, "stopping: emptying the FIFOs").await?;
    info!(signal = signal.as_str(), "stopped; FIFOs emptied and kept, state files removed");
    Ok(0)
}

/// Observes without outputs: the loop of `watch` with no pipe, every NetVSC interface, and the
/// kernel's own log.
async fn monitor(args: MonitorArgs) -> anyhow::Result<i32> {
    let mut selection = args.selection.selection()?;
    if selection.ignore {
        info!("ignore set: nothing to do");
        return Ok(0);
    }
    selection.routed_too = true;
    let Prelude { served, reader, mut opened } = prelude(&args.run, &args.selection)?;
    let signals = Terminations::install()?;
    let outputs = Outputs::new(OutputMode::None)?;
    // The log is opened at its end before the start-up scan, so nothing logged meanwhile is lost.
    let kmsg = netvsc_user::source::kmsg::start(&args.kmsg);
    let mut agent = Agent::start(reader, selection, true, outputs, Reporter::observing(args.run.json)).await?;
    start_recording(&args.run, &opened, &mut agent, &served);
    let kernel_moments = KernelMoments {
        from: if kmsg.is_ok() { "kmsg" } else { "none" }.into(),
        path: args.kmsg.clone(),
        error: kmsg.as_ref().err().cloned(),
    };
    if let Ok(kmsg) = kmsg {
        agent.kernel_log(kmsg, args.flap_window.as_micros() as u64);
    }
    let auto_probe = AutoProbe::detect(agent.view(), &[], false);
    warn_no_netvsc(&args.selection, &agent, &auto_probe);
    announce_ready(&args.run, &opened, &agent, &auto_probe, &served, Some(kernel_moments));
    let signal = run_until_signal(agent, &mut opened, &args.run, &served, signals, "stopping").await?;
    info!(signal = signal.as_str(), "stopped");
    Ok(0)
}

/// Warns when no NetVSC interface is there to follow (and why, if it can tell); how many are.
fn warn_no_netvsc(selection: &SelectionArgs, agent: &Agent, auto_probe: &AutoProbe) -> usize {
    let followed = agent.pairing().contexts().len();
    for line in no_netvsc_hint(&selection.sysfs_root, agent.view(), followed, auto_probe).iter().flatten() {
        warn!("{line}");
    }
    followed
}

/// `watch` and `monitor` after start-up: the loop until a terminating signal, then the
/// `--measure` report and the outputs closed, whatever the loop ended with.
async fn run_until_signal(
    mut agent: Agent,
    opened: &mut Opened,
    args: &RunArgs,
    served: &Served,
    signals: Terminations,
    stopping: &str,
) -> anyhow::Result<nix::sys::signal::Signal> {
    let result = agent.run(opened.source.as_mut(), args.timers(), signals.into_recv()).await;
    served.health.enter(Phase::Stopping, stopping);
    let measured = finish_measuring(args, &agent);
    agent.shutdown();
    let signal = result?;
    measured?;
    Ok(signal)
}

async fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    let selection = args.selection.selection()?;
    if selection.ignore {
        return Err(exec_unchanged(&args.command));
    }
    let Prelude { served, reader, mut opened } = prelude(&args.run, &args.selection)?;
    let forwarder = Forwarder::install()?;
    let mut agent =
        Agent::start(reader, selection, false, Outputs::new(OutputMode::Pipes)?, Reporter::new(args.run.json)).await?;
    let auto_probe = AutoProbe::detect(agent.view(), &args.command, args.keep_dpdk_vdev_netvsc);
    info!(hyperv = auto_probe.hyperv, evidence = %auto_probe.evidence, vdev = ?auto_probe.vdev, "DPDK's own vdev_netvsc: {}", auto_probe.summary());
    let mut vdevs: Vec<String> = auto_probe.vdev.iter().map(|vdev| vdev.to_string()).collect();
    let mut inherit = Vec::new();
    for ctx in agent.pairing().contexts() {
        let fd = agent.outputs().child_fd(ctx.id).context("control pipe missing")?;
        vdevs.push(vdev_arg(ctx.id, fd, &ctx.name, args.failsafe_poll));
        inherit.push(fd);
    }
    let hint = no_netvsc_hint(&args.selection.sysfs_root, agent.view(), inherit.len(), &auto_probe);
    for line in hint.iter().flatten() {
        warn!("{line}");
    }
    if inherit.is_empty() {
        warn!("no NetVSC interface selected: the application runs without fail-safe ports");
    }
    let argv = dpdk_argv(&args.command, &vdevs);
    info!(argv = ?argv, "starting the application");
    start_recording(&args.run, &opened, &mut agent, &served);
    let child = match spawn(&argv, inherit) {
        Ok(child) => child,
        Err(err) => {
            agent.shutdown();
            return Err(err);
        }
    };
    announce_ready(&args.run, &opened, &agent, &auto_probe, &served, None);
    let result = agent.run(opened.source.as_mut(), args.run.timers(), forwarder.wait(child)).await;
    served.health.enter(Phase::Stopping, "stopping: the application exited");
    let measured = finish_measuring(&args.run, &agent);
    agent.shutdown();
    let status = result??;
    measured?;
    info!(%status, "application exited");
    Ok(exit_code(status))
}

/// `--measure FILE` must be writable; checked before anything is created, without touching FILE.
/// What `watch`, `monitor` and `exec` set up before the agent starts, in this order.
struct Prelude {
    served: Served,
    reader: SystemReader,
    opened: Opened,
}

/// `--measure`'s path checked, real time entered, `/metrics` served, sysfs opened, the event
/// source opened.
fn prelude(run: &RunArgs, selection: &SelectionArgs) -> anyhow::Result<Prelude> {
    check_measure_path(run)?;
    enter_realtime(run)?;
    let served = start_metrics(run)?;
    let reader = system_reader(selection)?;
    let opened = event_source(run)?;
    Ok(Prelude { served, reader, opened })
}

fn check_measure_path(args: &RunArgs) -> anyhow::Result<()> {
    let Some(path) = &args.measure else { return Ok(()) };
    let bad = |why: String| UsageError::Measure { path: path.clone(), why };
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(bad("not a regular file".into()).into()),
        Ok(_) => std::fs::OpenOptions::new().append(true).open(path).map(drop).map_err(|err| bad(err.to_string()))?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            nix::unistd::access(parent, nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK)
                .map_err(|err| bad(format!("cannot create it in {}: {err}", parent.display())))?;
        }
        Err(err) => return Err(bad(err.to_string()).into()),
    }
    Ok(())
}

/// `--realtime-priority`: before anything is created, so that a refusal leaves nothing behind.
fn enter_realtime(args: &RunArgs) -> anyhow::Result<()> {
    let Some(priority) = args.realtime_priority else { return Ok(()) };
    netvsc_user::agent::realtime::run_at_fifo(priority)?;
    info!(priority, "running at SCHED_FIFO");
    Ok(())
}

/// The agent's health, and its metrics when `--metrics-listen` asked for them.
struct Served {
    health: Health,
    metrics: Option<Metrics>,
    /// The address bound (port 0 resolved).
    addr: Option<std::net::SocketAddr>,
}

/// Binds `--metrics-listen` before anything is created (an address in use is the user's to fix)
/// and serves `/metrics` and `/healthz` from then on.
fn start_metrics(args: &RunArgs) -> anyhow::Result<Served> {
    let health = Health::default();
    let Some(addr) = args.metrics_listen else { return Ok(Served { health, metrics: None, addr: None }) };
    let listener = metrics::bind(addr)?;
    let addr = listener.addr;
    let served = Metrics::new();
    metrics::serve(listener, served.clone(), health.clone()).context("serving metrics")?;
    Ok(Served { health, metrics: Some(served), addr: Some(addr) })
}

/// With `--measure FILE` (already checked): starts recording; with metrics, starts feeding them.
fn start_recording(args: &RunArgs, opened: &Opened, agent: &mut Agent, served: &Served) {
    if args.measure.is_some() {
        agent.measure(opened.source.name());
    }
    if let Some(metrics) = &served.metrics {
        agent.observe(metrics.clone(), opened.source.name());
    }
}

/// Prints the failover table and writes the JSON report.
fn finish_measuring(args: &RunArgs, agent: &Agent) -> anyhow::Result<()> {
    let (Some(path), Some(report)) = (&args.measure, agent.timeline()) else { return Ok(()) };
    Reporter::new(args.json).measurement(&report);
    let json = serde_json::to_vec_pretty(&report).context("encoding the failover report")?;
    std::fs::write(path, json).with_context(|| format!("writing the failover report to {}", path.display()))?;
    info!(path = %path.display(), failovers = report.failovers.len(), "failover report written");
    Ok(())
}

fn system_reader(args: &SelectionArgs) -> anyhow::Result<SystemReader> {
    let sysfs = Sysfs::open(&args.sysfs_root)
        .map_err(|err| UsageError::SysfsRoot { path: args.sysfs_root.clone(), why: err.to_string() })?;
    let links: Option<Box<dyn NetdevList>> =
        args.kernel_link_list().then(|| Box::new(KernelNetdevList) as Box<dyn NetdevList>);
    let real_sysfs = args.sysfs_root == std::path::Path::new("/sys");
    Ok(SystemReader::new(sysfs, Box::new(KernelAddresses), links).trust_event_parents(real_sysfs))
}

/// Opened before the start-up scan so that nothing between the two is missed.
fn event_source(args: &RunArgs) -> anyhow::Result<Opened> {
    let interval = std::time::Duration::from_millis(args.poll_interval);
    netvsc_user::source::open(args.source, &args.ebpf_options(), interval)
}

/// Tells scripts (and tests) that start-up is done and events are being watched, by which
/// source, and why sources tried before it were passed over.
fn announce_ready(
    args: &RunArgs,
    opened: &Opened,
    agent: &Agent,
    auto_probe: &AutoProbe,
    served: &Served,
    kernel_moments: Option<KernelMoments>,
) {
    let contexts = agent.interface_reports().into_iter().filter(|r| r.failsafe.is_some()).collect();
    let passed_over = opened
        .passed_over
        .iter()
        .map(|(source, reason)| PassedOver { source: *source, reason: reason.clone() })
        .collect();
    Reporter::new(args.json).line(&Line::Ready(Ready {
        source: opened.source.name(),
        details: opened.source.details(),
        passed_over,
        interfaces: contexts,
        dpdk_auto_probe: auto_probe.clone(),
        metrics_listen: served.addr,
        kernel_moments,
    }));
    let managed = agent.pairing().contexts().len();
    served
        .health
        .enter(Phase::Ready, &format!("watching {managed} interface(s) with the {} source", opened.source.name()));
}
