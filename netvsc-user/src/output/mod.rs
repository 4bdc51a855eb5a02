//! What the agent hands DPDK: the fail-safe control channels ([`failsafe`]) and what DPDK's own
//! `vdev_netvsc` auto-probe would do next to them ([`dpdk_probe`]).

pub mod dpdk_probe;
pub mod failsafe;
