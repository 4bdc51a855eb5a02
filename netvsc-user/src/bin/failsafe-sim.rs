//! Stand-in for a DPDK application with fail-safe ports, for tests, the demo and benchmarks.
//!
//! Takes the `--vdev net_failsafe_vsc<id>,fd(<N>),dev(...)` arguments netvsc-watch inserts (and
//! ignores any other argument, as EAL would pass them on), then every `--poll-ms` reads each fd
//! exactly as fail-safe does (dup, non-blocking, drain, keep the last line) and prints one JSON
//! line per successful read: `{"failsafe":..,"read":"0002:00:02.0","t_ns":..}`, where `t_ns` is
//! CLOCK_MONOTONIC taken just before the read. It first prints `{"argv":[...]}`.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use clap::Parser;
use netvsc_user::clock::monotonic_ns;
use netvsc_user::output::failsafe::reader::read_like_failsafe;

#[derive(Parser)]
#[command(about = "Reads fail-safe control pipes like DPDK fail-safe does, printing JSON lines")]
struct Args {
    /// fail-safe vdev specs; only those with fd(N) are read
    #[arg(long = "vdev")]
    vdevs: Vec<String>,
    /// Read period in milliseconds (fail-safe's hotplug_poll)
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// Stop after this many milliseconds (default: run until killed)
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Exit with this status
    #[arg(long, default_value_t = 0)]
    exit_code: u8,
    /// Anything else the application would get
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    rest: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    println!("{}", serde_json::json!({ "argv": argv }));
    let args = Args::parse();
    let pipes: Vec<(String, i32)> = args.vdevs.iter().filter_map(|v| parse_vdev(v)).collect();
    let deadline = args.duration_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
    while deadline.is_none_or(|d| Instant::now() < d) {
        for (name, fd) in &pipes {
            // SAFETY: the fd was inherited from netvsc-watch and stays open for our whole life.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            let t_ns = monotonic_ns();
            match read_like_failsafe(fd) {
                Ok(Some(line)) => println!("{}", serde_json::json!({ "failsafe": name, "read": line, "t_ns": t_ns })),
                Ok(None) => {}
                Err(err) => eprintln!("failsafe-sim: reading {name}: {err}"),
            }
        }
        std::thread::sleep(Duration::from_millis(args.poll_ms));
    }
    std::process::ExitCode::from(args.exit_code)
}

/// `net_failsafe_vsc0,fd(12),dev(...)` → ("net_failsafe_vsc0", 12).
fn parse_vdev(vdev: &str) -> Option<(String, i32)> {
    let (name, rest) = vdev.split_once(',')?;
    let fd = rest.strip_prefix("fd(")?.split_once(')')?.0.parse().ok()?;
    Some((name.to_owned(), fd))
}
