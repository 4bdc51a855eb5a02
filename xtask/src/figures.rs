//! What `cargo xtask bench` measures, shared by its host workload (bench/) and its VM workload
//! (vm/bench.rs) and written out by bench/report.rs.

use netvsc_user::report::timeline::Spread;

/// Reaction latencies of one source in one workload, in µs.
#[derive(Clone, Debug)]
pub struct Latencies {
    pub source: String,
    pub samples_us: Vec<f64>,
}

impl Latencies {
    pub fn spread(&self) -> Spread {
        Spread::of(self.samples_us.iter().copied())
    }

    /// The mean: with plugs at a random phase, what a poller costs on average.
    pub fn mean(&self) -> f64 {
        if self.samples_us.is_empty() {
            return f64::NAN;
        }
        self.samples_us.iter().sum::<f64>() / self.samples_us.len() as f64
    }
}

/// One writer's row of the host failover table.
#[derive(Clone, Debug)]
pub struct FailoverRow {
    /// The bench's listener received the broadcast → the writer wrote the address.
    pub latencies: Latencies,
    /// The same plugs timed from the listener's receive of the message (the reference before
    /// the kernel's stamps), for comparison with earlier runs.
    pub from_receive_us: Vec<f64>,
    /// The writer's own share of each plug, by its own clock: it received the message → it wrote.
    /// The rest of a sample is the kernel waking it.
    pub own_us: Vec<f64>,
    /// The shares (%) of plugs in the fullest and emptiest tenth of a second.
    pub phase: (f64, f64),
    /// The minimal reactor's row: the floor the others of its scheduling policy are compared with.
    pub floor: bool,
    /// Writer at SCHED_FIFO (`--realtime-priority`).
    pub realtime: bool,
    /// Timed from the kernel's stamp of the broadcast, not the listener's receive.
    pub kernel_reference: bool,
}

/// CPU time and wakeups of the agent over some period.
#[derive(Clone, Debug)]
pub struct Cost {
    pub source: String,
    /// What was going on: "idle, 10 interfaces", "1000 veth pairs".
    pub workload: String,
    pub cpu_ms: f64,
    pub wakeups: u64,
    /// Events the source delivered to the agent (its own count).
    pub events: Option<u64>,
    /// Per minute when the period is a stretch of idleness, else the whole workload.
    pub per_minute: bool,
}

/// How long a full rescan of `interfaces` interfaces takes (ms, criterion's median).
#[derive(Clone, Debug)]
pub struct ScanTimes {
    pub interfaces: u32,
    /// Walking a sysfs tree (poll without a kernel link list; the original's way).
    pub sysfs_walk_ms: f64,
    /// An event source's resync: the kernel's dump of that many veths, sysfs about parents only
    /// (needs root; `None` without).
    pub kernel_dump_ms: Option<f64>,
}

#[derive(Default)]
pub struct Results {
    /// Seed of the plug delays (bench/phase.rs).
    pub seed: u64,
    pub host_latency: Vec<Latencies>,
    /// Kernel broadcast (the bench's own listener) → address written: the agent in both modes
    /// and the minimal reactor (the floor), at the normal policy and at SCHED_FIFO.
    pub host_failover: Vec<FailoverRow>,
    pub host_costs: Vec<Cost>,
    /// Rescan times per interface count.
    pub scale: Vec<ScanTimes>,
    pub vm_latency: Vec<Latencies>,
    pub vm_costs: Vec<Cost>,
    /// Machine, kernel, accelerator.
    pub environment: Vec<String>,
}
