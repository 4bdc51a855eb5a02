//! The test kit: what the agent's integration tests, its benchmark and `cargo xtask` share, kept
//! out of the agent itself. A fake sysfs tree, the test doubles of the kernel queries, and a
//! follower of the agent's JSON lines that reads them as the typed [`Line`]s the agent writes.
//!
//! [`Line`]: netvsc_user::report::lines::Line

pub mod doubles;
pub mod dpdk_log;
pub mod fake_sysfs;
pub mod follow;
pub mod fuzz;
pub mod netns;
pub mod openmetrics;

pub use doubles::{StaticDump, StaticIfindexes};

/// Says that `test` skips and why, as `SKIP <test>: <reason>` on stderr, which `cargo xtask
/// test` counts and groups by reason. Written to the stderr handle itself: libtest captures
/// `print!` and `eprint!` of passing tests, so a skip said with them would pass silently.
pub fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {reason}");
}
pub use fake_sysfs::FakeSysfs;
pub use follow::{JsonLines, Output, WaitError};
