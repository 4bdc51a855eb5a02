//! The pure core: the agent's picture of the system ([`view`]), which NetVSC interfaces to
//! manage ([`selection`]), which VF belongs to each ([`pairing`]), and which events can wait
//! ([`deferred`]). No I/O: state and what changed go in, actions come out.

pub mod deferred;
pub mod pairing;
pub mod selection;
pub mod view;
