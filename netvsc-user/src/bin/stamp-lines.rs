//! Timestamps another program's output for the VM rig: each line of stdin becomes
//! `{"app":"<line>","t_ns":<CLOCK_MONOTONIC>}` on stdout, stamped when it arrives. In the guest
//! it reads DPDK testpmd's log, so fail-safe's own messages ("net_failsafe: <devargs>",
//! "Switching tx_dev to sub_device N") get times on the clock of the agent's and the kernel's.

use std::io::{BufRead as _, Write as _};

use netvsc_user::clock::monotonic_ns;

fn main() -> std::io::Result<()> {
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.split(b'\n') {
        let t_ns = monotonic_ns();
        let line = line?;
        let text = String::from_utf8_lossy(&line);
        writeln!(stdout, "{}", serde_json::json!({ "app": text.trim_end(), "t_ns": t_ns }))?;
        stdout.flush()?;
    }
    Ok(())
}
