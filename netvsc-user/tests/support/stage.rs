//! The test kit's stage (a network namespace whose veths play NetVSC interfaces and VFs, and the
//! fake sysfs tree that says which is which), with what the tests do with it: run the sidecar in
//! it and follow its JSON lines.

use netvsc_user::report::lines::Ready;

use super::JsonProcess;
pub use netvsc_testkit::netns::Stage;

pub const MAC: &str = "00:15:5d:00:00:01";
pub const MAC2: &str = "00:15:5d:00:00:02";

/// The stage as the tests' command lines want it: paths as text, and the sidecar started.
pub trait StageExt {
    /// The agent's `--sysfs-root`.
    fn root(&self) -> &str;
    /// The sidecar's `--fifo-dir`, made if missing.
    fn fifos(&self) -> String;
    /// `watch` with events only: the safety resync is off, so events alone must do the job.
    fn watch(&self, extra: &[&str]) -> JsonProcess {
        self.watch_ready(extra).0
    }
    /// [`StageExt::watch`], and its `ready` line.
    fn watch_ready(&self, extra: &[&str]) -> (JsonProcess, Ready);
}

impl StageExt for Stage {
    fn root(&self) -> &str {
        self.sysfs_root().to_str().expect("a UTF-8 temporary path")
    }

    fn fifos(&self) -> String {
        self.fifo_dir().unwrap().to_str().expect("a UTF-8 temporary path").to_owned()
    }

    fn watch_ready(&self, extra: &[&str]) -> (JsonProcess, Ready) {
        let fifo_dir = self.fifos();
        let mut args =
            vec!["watch", "--source", "netlink", "--sysfs-root", self.root(), "--fifo-dir", &fifo_dir, "--json"];
        args.extend_from_slice(&["--resync-interval", "0"]);
        args.extend_from_slice(extra);
        let mut agent = JsonProcess::agent(Some(self.netns.name()), &args);
        let ready = agent.ready();
        (agent, ready)
    }
}
