//! netvsc-watch entry point: parse the command line, wire the modules, map errors to exit codes
//! (2 for bad input, 1 for everything else).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use netvsc_user::addresses::KernelAddresses;
use netvsc_user::agent::Agent;
use netvsc_user::cli::{Cli, Command, ExecArgs, RunArgs, ScanArgs, SelectionArgs, WatchArgs};
use netvsc_user::exec::{dpdk_argv, exec_unchanged, exit_code, spawn, Forwarder};
use netvsc_user::failsafe::{OutputMode, Outputs};
use netvsc_user::pairing::Pairing;
use netvsc_user::report::{interface_line, interface_reports, vdev_arg, Reporter};
use netvsc_user::selection::UsageError;
use netvsc_user::source::Opened;
use netvsc_user::sysfs::Sysfs;
use netvsc_user::system::SystemReader;
use tokio::signal::unix::{signal, SignalKind};
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
    let reporter = Reporter::new(args.json);
    for report in interface_reports(&pairing, &view) {
        if args.json {
            reporter.line(&report);
        } else {
            println!("{}", interface_line(&report));
        }
    }
    Ok(0)
}

async fn watch(args: WatchArgs) -> anyhow::Result<i32> {
    let selection = args.selection.selection()?;
    if selection.ignore {
        info!("ignore set: nothing to do");
        return Ok(0);
    }
    if !args.fifo_dir.is_dir() {
        return Err(UsageError::BadPath(format!("--fifo-dir {}: not a directory", args.fifo_dir.display())).into());
    }
    let reader = system_reader(&args.selection)?;
    let mut opened = event_source(&args.run)?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let outputs = Outputs::new(OutputMode::Sidecar { dir: args.fifo_dir.clone(), file_mode: args.file_mode });
    let mut agent = Agent::start(reader, selection, true, outputs, Reporter::new(args.run.json)).await?;
    start_measuring(&args.run, &opened, &mut agent)?;
    announce_ready(&args.run, &opened, &agent);
    let stop = async {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    };
    let result = agent.run(opened.source.as_mut(), args.run.timers(), stop).await;
    finish_measuring(&args.run, &agent)?;
    agent.shutdown();
    let signal = result?;
    info!(signal, "stopped; removed the files this run created");
    Ok(0)
}

async fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    let selection = args.selection.selection()?;
    if selection.ignore {
        return Err(exec_unchanged(&args.command));
    }
    let reader = system_reader(&args.selection)?;
    let mut opened = event_source(&args.run)?;
    let forwarder = Forwarder::install()?;
    let mut agent =
        Agent::start(reader, selection, false, Outputs::new(OutputMode::Pipes), Reporter::new(args.run.json)).await?;
    let mut vdevs = Vec::new();
    let mut inherit = Vec::new();
    for ctx in agent.pairing().contexts() {
        let fd = agent.outputs().child_fd(ctx.id).context("control pipe missing")?;
        vdevs.push(vdev_arg(ctx.id, fd, &ctx.name));
        inherit.push(fd);
    }
    if vdevs.is_empty() {
        warn!("no NetVSC interface selected: the application runs without fail-safe ports");
    }
    let argv = dpdk_argv(&args.command, &vdevs);
    info!(argv = ?argv, "starting the application");
    start_measuring(&args.run, &opened, &mut agent)?;
    let child = spawn(&argv, inherit)?;
    announce_ready(&args.run, &opened, &agent);
    let result = agent.run(opened.source.as_mut(), args.run.timers(), forwarder.wait(child)).await;
    finish_measuring(&args.run, &agent)?;
    agent.shutdown();
    let status = result??;
    info!(%status, "application exited");
    Ok(exit_code(status))
}

/// With `--measure FILE`: checks that FILE can be written before anything runs, then records.
fn start_measuring(args: &RunArgs, opened: &Opened, agent: &mut Agent) -> anyhow::Result<()> {
    if let Some(path) = &args.measure {
        std::fs::write(path, b"").map_err(|err| UsageError::BadPath(format!("--measure {}: {err}", path.display())))?;
        agent.measure(opened.source.name());
    }
    Ok(())
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
    let sysfs = Sysfs::open(&args.sysfs_root).map_err(|err| UsageError::BadPath(format!("--sysfs-root: {err}")))?;
    Ok(SystemReader::new(sysfs, Box::new(KernelAddresses::connect()?)))
}

/// Opened before the start-up scan so that nothing between the two is missed.
fn event_source(args: &RunArgs) -> anyhow::Result<Opened> {
    let interval = std::time::Duration::from_millis(args.poll_interval);
    netvsc_user::source::open(args.source, &args.ebpf_options(), interval)
}

/// Tells scripts (and tests) that start-up is done and events are being watched, by which
/// source, and why sources tried before it were passed over.
fn announce_ready(args: &RunArgs, opened: &Opened, agent: &Agent) {
    let contexts: Vec<_> =
        interface_reports(agent.pairing(), agent.view()).into_iter().filter(|r| r.failsafe.is_some()).collect();
    let passed_over: Vec<_> = opened
        .passed_over
        .iter()
        .map(|(source, reason)| serde_json::json!({ "source": source, "reason": reason }))
        .collect();
    Reporter::new(args.json).line(&serde_json::json!({
        "event": "ready",
        "source": opened.source.name(),
        "details": opened.source.details(),
        "passed_over": passed_over,
        "interfaces": contexts,
    }));
}
