//! netvsc-watch: feeds the PCI address of each NetVSC interface's SR-IOV VF to DPDK fail-safe
//! instances, driven by kernel link events instead of the original vdev_netvsc's 1 s rescan.
//!
//! Data flows one way, one folder per layer: a [`source`] reports an [`event`], [`system`]
//! re-reads only what it concerns into the view, the pure core in [`decide`] decides,
//! [`output`] writes the fail-safe pipes, [`report`] tells people, programs and Prometheus;
//! [`agent`] is the glue (the event loop, the command line, the launcher, signals).

// Shared leaves: every layer may use them, they use nothing of the agent.
pub mod clock;
pub mod event;
pub mod netdev;
pub mod usage;

// The layers, in the order data flows through them.
pub mod agent;
pub mod decide;
pub mod output;
pub mod report;
pub mod source;
pub mod system;

// Entry points for fuzzing and its corpus replay; never in what users install.
#[cfg(feature = "test-tools")]
pub mod fuzz;
