//! Empty library target. The agent lists this crate as a build-dependency so that cargo rebuilds
//! the agent's build script, and with it the embedded kernel object, whenever this crate or
//! `netvsc-common` changes (cargo tracks a build-dependency's library and what it depends on;
//! aya-build's `rerun-if-changed` covers the binary's own files).
#![no_std]
