//! The agent as a service: systemd's notify protocol against a test NOTIFY_SOCKET, `/healthz`
//! and `/metrics` scraped after VF cycles (polling a fake sysfs tree without root; real
//! rtnetlink events in a network namespace as root), and `--metrics-listen` refusing an address
//! in use.

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use netvsc_testkit::openmetrics::sample;
use netvsc_testkit::FakeSysfs;
use nix::sys::signal::Signal;

mod support;
use support::stage::{Stage, StageExt as _, MAC};
use support::{skip_unless_root, JsonProcess, NETVSC_WATCH};

/// `(status, body)` of `GET http://addr/path`, from inside network namespace `netns` if given
/// (a thread that joins it: a network namespace is per thread).
fn get(addr: SocketAddr, path: &str, netns: Option<&str>) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let netns = netns.map(|name| format!("/run/netns/{name}"));
    std::thread::spawn(move || {
        if let Some(netns) = netns {
            let fd = std::fs::File::open(&netns).unwrap();
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut response = agent.get(&url).call().unwrap_or_else(|err| panic!("GET {url}: {err}"));
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
    })
    .join()
    .unwrap()
}

/// Two VF cycles have moved every failover metric, timed by `source`.
fn assert_two_failovers(text: &str, source: &str) {
    let iface = r#"{netvsc="eth1",failsafe="net_failsafe_vsc0"}"#;
    assert_eq!(sample(text, &format!("netvsc_watch_failovers_total{iface}")), Some(2.0), "{text}");
    assert_eq!(sample(text, &format!("netvsc_watch_vf_absent_seconds_count{iface}")), Some(2.0), "{text}");
    let absent = sample(text, &format!("netvsc_watch_vf_absent_seconds_sum{iface}")).unwrap();
    assert!(absent > 0.0 && absent < 60.0, "{absent}");
    for histogram in ["vf_registered_to_pipe", "vf_gone_to_pipe_emptied"] {
        let count = format!(r#"netvsc_watch_{histogram}_seconds_count{{source="{source}"}}"#);
        assert_eq!(sample(text, &count), Some(2.0), "{count}: {text}");
    }
    let events = sample(text, &format!(r#"netvsc_watch_events_total{{source="{source}"}}"#)).unwrap_or(0.0);
    let relevant = sample(text, &format!(r#"netvsc_watch_events_relevant_total{{source="{source}"}}"#)).unwrap();
    assert!(relevant >= 4.0 && events >= relevant, "events {events}, relevant {relevant}: {text}");
    assert_eq!(sample(text, "netvsc_watch_managed_interfaces"), Some(1.0), "{text}");
    let vf = r#"netvsc_watch_interface_state{netvsc="eth1",failsafe="net_failsafe_vsc0",state="vf"}"#;
    assert_eq!(sample(text, vf), Some(1.0), "{text}");
}

fn notify_socket(dir: &std::path::Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (socket, path)
}

fn notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notification within 10 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_sidecar_tells_systemd_and_serves_metrics_that_move_with_vf_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth1", 10, MAC).unwrap();
    sys.add_vf("enP0", 20, MAC, "0002:00:02.0").unwrap();
    let (socket, socket_path) = notify_socket(dir.path());
    let fifo_dir = dir.path().join("run");
    std::fs::create_dir(&fifo_dir).unwrap();
    let root = sys.root().to_str().unwrap().to_owned();
    let mut command = std::process::Command::new(NETVSC_WATCH);
    command.args(["watch", "--source", "poll", "--poll-interval", "20", "--sysfs-root", &root, "--json"]);
    command.args(["--fifo-dir", fifo_dir.to_str().unwrap(), "--metrics-listen", "127.0.0.1:0"]);
    command.env("NOTIFY_SOCKET", &socket_path).env("RUST_LOG", "warn");
    let mut agent = JsonProcess::spawn(command);
    let ready = agent.ready();
    let addr = ready.metrics_listen.expect("the ready line says where metrics are served");
    assert_ne!(addr.port(), 0, "port 0 resolved");
    let told = notification(&socket);
    assert!(told.lines().any(|l| l == "READY=1"), "{told:?}");
    assert!(told.contains("STATUS=watching 1 interface(s) with the poll source"), "{told:?}");
    assert_eq!(get(addr, "/healthz", None), (200, "ready\n".to_owned()));

    for cycle in 0..2u32 {
        sys.remove(&format!("enP{cycle}")).unwrap();
        agent.change("dissociated", |_| true);
        sys.add_vf(&format!("enP{}", cycle + 1), 21 + cycle, MAC, &format!("0003:00:0{cycle}.0")).unwrap();
        agent.change("associated", |_| true);
    }
    let (status, text) = get(addr, "/metrics", None);
    assert_eq!(status, 200);
    assert_two_failovers(&text, "poll");

    agent.signal(Signal::SIGTERM);
    let told = notification(&socket);
    assert!(told.lines().any(|l| l == "STOPPING=1"), "{told:?}");
    assert_eq!(agent.wait().code(), Some(0));
}

#[test]
fn netlink_failovers_reach_the_metrics_in_a_network_namespace() {
    if skip_unless_root("netlink_failovers_reach_the_metrics_in_a_network_namespace") {
        return;
    }
    let stage = Stage::new("metrics").unwrap();
    stage.netvsc("eth1", 10, MAC).unwrap();
    stage.plug_vf("enP0", 20, MAC, "0002:00:02.0").unwrap();
    let (mut agent, ready) = stage.watch_ready(&["--metrics-listen", "127.0.0.1:0"]);
    // Served on the namespace's loopback.
    let addr = ready.metrics_listen.expect("the ready line names the metrics address");
    for cycle in 0..2u32 {
        stage.unplug(&format!("enP{cycle}")).unwrap();
        agent.change("dissociated", |_| true);
        stage.plug_vf(&format!("enP{}", cycle + 1), 21 + cycle, MAC, &format!("0003:00:0{cycle}.0")).unwrap();
        agent.change("associated", |_| true);
    }
    let (status, text) = get(addr, "/metrics", Some(stage.netns.name()));
    assert_eq!(status, 200);
    assert_two_failovers(&text, "netlink");
    agent.signal(Signal::SIGTERM);
    assert_eq!(agent.wait().code(), Some(0));
}

#[test]
fn an_address_in_use_is_refused_before_anything_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let sys = FakeSysfs::create(&dir.path().join("sys")).unwrap();
    sys.add_netvsc("eth1", 10, MAC).unwrap();
    let root = sys.root().to_str().unwrap().to_owned();
    let fifo_dir = dir.path().to_str().unwrap().to_owned();
    let out = std::process::Command::new(NETVSC_WATCH)
        .args(["watch", "--source", "poll", "--sysfs-root", &root, "--fifo-dir", &fifo_dir])
        .args(["--metrics-listen", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("--metrics-listen \"{addr}\"")) && stderr.contains("in use"), "{stderr}");
    assert!(!dir.path().join("eth1.pipe").exists(), "nothing created");
}
