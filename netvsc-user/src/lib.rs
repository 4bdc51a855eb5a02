//! netvsc-watch: feeds the PCI address of each NetVSC interface's SR-IOV VF to DPDK fail-safe
//! instances, driven by kernel link events instead of the original vdev_netvsc's 1 s rescan.
//!
//! Data flows one way: a [`source`] reports an event, [`system`] re-reads only what it concerns
//! into the [`view`], [`pairing`] decides, [`failsafe`] writes the pipes, [`report`] tells.

pub mod addresses;
pub mod agent;
pub mod cli;
pub mod clock;
pub mod deferred;
pub mod dpdk_probe;
pub mod exec;
pub mod failsafe;
pub mod lines;
pub mod link;
pub mod link_list;
pub mod measuring;
pub mod metrics;
pub mod pairing;
pub mod realtime;
pub mod report;
pub mod selection;
pub mod service;
pub mod signals;
pub mod source;
pub mod sysfs;
pub mod system;
pub mod timeline;
pub mod usage;
pub mod view;
