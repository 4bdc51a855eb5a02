//! When the next VF appears. A poll source reacts at its next tick, so a workload that plugs
//! right after the agent reported the unplug (itself at a tick) always waits almost a whole
//! period: phase-locked, it overstates what a poller costs. A VF returning at a random moment
//! waits half a period on average. So every workload waits a random delay, uniform over the
//! longest poll period benchmarked, before each plug; seeded and printed so a run can be
//! reproduced, and the same sequence for every source so that rows compare.

use std::time::Duration;

/// The longest poll period benchmarked (the original's 1 s scan).
pub const PERIOD: Duration = Duration::from_millis(1000);

pub struct Phase {
    rng: fastrand::Rng,
}

impl Phase {
    pub fn new(seed: u64) -> Self {
        Self { rng: fastrand::Rng::with_seed(seed) }
    }

    /// The wait before the next plug: uniform over [0, PERIOD).
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_under(PERIOD)
    }

    /// The wait before the next plug, uniform over [0, `limit`): for a workload of many plugs,
    /// whose plug times still fall evenly across every period of the agent's timers.
    pub fn next_delay_under(&mut self, limit: Duration) -> Duration {
        Duration::from_micros(self.rng.u64(0..limit.as_micros() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_spread_evenly_over_the_period() {
        let mut phase = Phase::new(7);
        let delays: Vec<Duration> = (0..10_000).map(|_| phase.next_delay()).collect();
        assert!(delays.iter().all(|d| *d < PERIOD));
        // Ten equal slices of the period each get about a tenth; none is crowded (as "just after
        // a tick" would be) and none empty.
        let mut slices = [0u32; 10];
        for d in &delays {
            slices[(d.as_micros() * 10 / PERIOD.as_micros()) as usize] += 1;
        }
        assert!(slices.iter().all(|n| (800..=1200).contains(n)), "{slices:?}");
        let mean_ms = delays.iter().map(Duration::as_secs_f64).sum::<f64>() / delays.len() as f64 * 1e3;
        assert!((480.0..=520.0).contains(&mean_ms), "mean {mean_ms} ms");
    }

    #[test]
    fn a_seed_reproduces_its_run() {
        let run = |seed| {
            let mut phase = Phase::new(seed);
            (0..20).map(|_| phase.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }
}
