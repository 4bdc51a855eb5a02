//! `stamp-lines`, the VM rig's timestamper of testpmd's log: one JSON line per input line, in
//! order, stamped on CLOCK_MONOTONIC (the agent's clock) when the line arrived.

use std::io::Write as _;
use std::process::{Command, Stdio};

use netvsc_user::clock::monotonic_ns;

#[test]
fn every_line_becomes_json_with_its_arrival_time() {
    let before = monotonic_ns();
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_stamp-lines")).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"net_failsafe: 0002:00:02.0\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    // A "quoted" line, a bad byte, and a last line without its newline.
    stdin.write_all(b"say \"hi\"\r\nbad \xff byte\nlast").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let after = monotonic_ns();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let texts: Vec<&str> = lines.iter().map(|v| v["app"].as_str().unwrap()).collect();
    assert_eq!(texts, ["net_failsafe: 0002:00:02.0", "say \"hi\"", "bad \u{fffd} byte", "last"]);
    let times: Vec<u64> = lines.iter().map(|v| v["t_ns"].as_u64().unwrap()).collect();
    assert!(times.iter().all(|t| (before..=after).contains(t)), "{times:?} not within {before}..{after}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Stamped on arrival: the second write came 30 ms after the first.
    assert!(times[1] - times[0] >= 25_000_000, "{times:?}");
}
