//! The deployable forms in deploy/ agree with the agent, with each other, with the README and
//! with docs/deployment.md: command lines parsed by the agent's own CLI, FIFO paths shared between
//! agent and application, probes on the metrics port, capabilities as documented per source,
//! `systemd-analyze verify` and the documented security rating, and a dashboard that graphs only
//! metrics the agent exports.

use std::collections::BTreeSet;
use std::process::Command;

use clap::Parser as _;
use netvsc_user::agent::cli::{Cli, Command as Mode, WatchArgs};
use netvsc_user::report::metrics::Metrics;
use serde::Deserialize as _;
use serde_yaml::Value;

mod support;
use support::NETVSC_WATCH;

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{full}: {err}"))
}

/// The agent's own parse of `args` (without the program name), which must be `watch`.
fn watch_args<S: AsRef<str>>(args: &[S]) -> WatchArgs {
    let argv = std::iter::once("netvsc-watch").chain(args.iter().map(AsRef::as_ref));
    match Cli::try_parse_from(argv).unwrap_or_else(|err| panic!("{err}")).command {
        Mode::Watch(watch) => watch,
        other => panic!("not the sidecar: {other:?}"),
    }
}

/// The capabilities docs/deployment.md lists for `source`, as `CAP_*` names.
fn documented_capabilities(source: &str) -> Vec<String> {
    let docs = repo_file("docs/deployment.md");
    let row = docs
        .lines()
        .find(|line| line.starts_with(&format!("| {source} |")))
        .unwrap_or_else(|| panic!("docs/deployment.md has no row for {source}"));
    let cell = row.split('|').nth(2).unwrap().trim();
    if cell == "none" {
        return Vec::new();
    }
    cell.split(", ").map(str::to_owned).collect()
}

/// The README's sidecar example line with the `fd(9)` form (what applications copy).
fn readme_fd_form() -> (String, String) {
    let readme = repo_file("README.md");
    let lines: Vec<&str> = readme.lines().map(str::trim).collect();
    let at =
        lines.iter().position(|l| l.starts_with("dpdk-testpmd") && l.contains("fd(9)")).expect("README fd(9) form");
    (lines[at - 1].to_owned(), lines[at].trim_end_matches(" ...").to_owned())
}

/// `key=value` settings of a systemd unit (repeated keys keep every value).
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting<'a>(settings: &'a [(String, String)], key: &str) -> &'a str {
    settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {key}="))
}

/// A unit's `ExecStart=` in words, which must run netvsc-watch.
fn exec_start(settings: &[(String, String)]) -> Vec<&str> {
    let exec: Vec<&str> = setting(settings, "ExecStart").split_whitespace().collect();
    assert!(exec[0].ends_with("/netvsc-watch"), "{exec:?}");
    exec
}

const UNIT: &str = "deploy/systemd/netvsc-watch.service";

#[test]
fn the_units_command_line_directory_and_capabilities_agree_with_the_docs() {
    let settings = unit_settings(&repo_file(UNIT));
    let exec = exec_start(&settings);
    let args = watch_args(&exec[1..]);
    assert_eq!(setting(&settings, "Type"), "notify");
    let runtime_dir = format!("/run/{}", setting(&settings, "RuntimeDirectory"));
    assert_eq!(args.fifo_dir.to_str(), Some(runtime_dir.as_str()), "the FIFOs live in the runtime directory");
    assert_eq!(setting(&settings, "RuntimeDirectoryPreserve"), "yes", "a restart must keep the FIFOs");
    // Default source auto tries eBPF first: the unit grants what eBPF needs, and nothing else.
    let ebpf = documented_capabilities("ebpf");
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let granted: Vec<&str> = setting(&settings, key).split_whitespace().collect();
        assert_eq!(granted, ebpf, "{key}");
    }
    assert_ne!(setting(&settings, "User"), "root");
    let metrics = args.run.metrics_listen.expect("the unit serves metrics");
    assert!(metrics.ip().is_loopback(), "IPAddressAllow=localhost only lets loopback scrape: {metrics}");
    assert_eq!(setting(&settings, "IPAddressAllow"), "localhost");
    let sysusers = repo_file("deploy/systemd/netvsc-watch.sysusers");
    let user = setting(&settings, "User");
    assert!(sysusers.lines().any(|l| l.starts_with(&format!("u {user} "))), "sysusers creates {user}");
}

const MONITOR_UNIT: &str = "deploy/systemd/netvsc-watch-monitor.service";

#[test]
fn the_monitor_unit_runs_monitor_on_netlink_with_the_kernel_log_only() {
    let settings = unit_settings(&repo_file(MONITOR_UNIT));
    let exec = exec_start(&settings);
    let argv = std::iter::once("netvsc-watch").chain(exec[1..].iter().copied());
    let Mode::Monitor(args) = Cli::try_parse_from(argv).unwrap_or_else(|err| panic!("{err}")).command else {
        panic!("not monitor: {exec:?}")
    };
    assert_eq!(args.run.source, netvsc_user::source::SourceKind::Netlink);
    assert_eq!(args.kmsg.to_str(), Some("/dev/kmsg"));
    // netlink needs nothing; the kernel's log, CAP_SYSLOG, and its device readable.
    assert!(documented_capabilities("netlink").is_empty());
    for key in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        assert_eq!(setting(&settings, key), "CAP_SYSLOG", "{key}");
    }
    assert_eq!(setting(&settings, "DeviceAllow"), "/dev/kmsg r");
    let metrics = args.run.metrics_listen.expect("the unit serves metrics");
    let sidecar =
        watch_args(&setting(&unit_settings(&repo_file(UNIT)), "ExecStart").split_whitespace().collect::<Vec<_>>()[1..]);
    assert_ne!(Some(metrics), sidecar.run.metrics_listen, "both units can run on one VM");
    assert!(metrics.ip().is_loopback() && setting(&settings, "IPAddressAllow") == "localhost");
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        return netvsc_testkit::skip(
            "the_monitor_unit_runs_monitor_on_netlink_with_the_kernel_log_only (systemd-analyze verify)",
            "no systemd-analyze (apt-get install systemd)",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("netvsc-watch-monitor.service");
    std::fs::write(&unit, repo_file(MONITOR_UNIT).replace("/usr/bin/netvsc-watch", NETVSC_WATCH)).unwrap();
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && complaints.trim().is_empty(), "{complaints}");
}

#[test]
fn systemd_analyze_verifies_the_unit_and_rates_it_as_documented() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        netvsc_testkit::skip(
            "systemd_analyze_verifies_the_unit_and_rates_it_as_documented",
            "no systemd-analyze (apt-get install systemd)",
        );
        return;
    }
    // verify wants ExecStart's binary to exist: the unit as installed, pointing at this build.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("netvsc-watch.service");
    std::fs::write(&unit, repo_file(UNIT).replace("/usr/bin/netvsc-watch", NETVSC_WATCH)).unwrap();
    let verify = Command::new("systemd-analyze").arg("verify").arg(&unit).output().unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && complaints.trim().is_empty(), "{complaints}");

    let security = Command::new("systemd-analyze").args(["security", "--offline=true"]).arg(&unit).output().unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let rated = text
        .lines()
        .find_map(|l| l.split("netvsc-watch.service: ").nth(1))
        .unwrap_or_else(|| panic!("no overall rating: {text}"));
    let score = rated.split_whitespace().next().unwrap();
    let docs = repo_file("docs/deployment.md");
    assert!(docs.contains(&format!("exposure: {score} ")), "docs/deployment.md must record exposure {score}");
    let readme = repo_file("README.md");
    assert!(
        readme.contains(&format!("(`systemd-analyze security`: {score})")),
        "the README must quote exposure {score}"
    );
}

/// The named container of a pod spec, among `containers` or `initContainers`.
fn container<'a>(spec: &'a Value, list: &str, name: &str) -> &'a Value {
    spec[list]
        .as_sequence()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name}"))
}

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

/// Where `container` mounts `volume`.
fn mount_path(container: &Value, volume: &str) -> String {
    let mounts = container["volumeMounts"].as_sequence().unwrap();
    let mount = mounts.iter().find(|m| m["name"] == volume).unwrap_or_else(|| panic!("{volume} not mounted"));
    mount["mountPath"].as_str().unwrap().to_owned()
}

/// The agent's container: the image `cargo xtask image` tags, arguments the CLI accepts, its
/// FIFO directory on a shared volume, probes on its metrics port, privileges as documented.
/// Returns the volume name and the parsed arguments.
fn check_agent(pod: &Value, agent: &Value) -> (String, WatchArgs) {
    assert_eq!(agent["image"].as_str(), Some(format!("localhost/netvsc-watch:{}", env!("CARGO_PKG_VERSION")).as_str()));
    let args = watch_args(&strings(&agent["args"]));
    let containerfile = repo_file("deploy/container/Containerfile");
    let cmd = containerfile.lines().find_map(|l| l.strip_prefix("CMD ")).expect("CMD");
    let default: Vec<String> = serde_json::from_str(cmd).unwrap();
    assert_eq!(strings(&agent["args"]), default, "the manifest runs the image's default command");
    let port = args.run.metrics_listen.expect("metrics for the probes").port();
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(agent[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(agent[probe]["httpGet"]["port"].as_u64(), Some(u64::from(port)), "{probe}");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"].as_str(), Some(port.to_string().as_str()));
    assert_eq!(pod["spec"]["hostNetwork"], true, "the agent must see the VM's interfaces");
    let security = &agent["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert!(security.get("privileged").is_none(), "capabilities, not privileged");
    assert_eq!(strings(&security["capabilities"]["drop"]), ["ALL"]);
    let added: Vec<String> = strings(&security["capabilities"]["add"]).iter().map(|c| format!("CAP_{c}")).collect();
    assert_eq!(added, documented_capabilities("ebpf"), "source auto starts with eBPF");
    let volume = agent["volumeMounts"][0]["name"].as_str().unwrap().to_owned();
    assert_eq!(args.fifo_dir.to_str(), Some(mount_path(agent, &volume).as_str()), "FIFOs on the shared volume");
    (volume, args)
}

/// The application opens the FIFO as the README shows, at the path where it mounts `volume`.
fn check_application(app: &Value, volume: &str) {
    let (open, dpdk) = readme_fd_form();
    let dir = mount_path(app, volume);
    let script = strings(&app["command"]).join(" ");
    let localized = |line: &str| line.replace("/run/netvsc", &dir);
    assert!(script.contains(&localized(&open)), "the README's `{open}` at {dir}: {script}");
    assert!(script.contains(&localized(&dpdk)), "the README's fail-safe arguments: {script}");
}

#[test]
fn the_sidecar_pod_starts_the_application_after_the_agent_is_ready() {
    let pod: Value = serde_yaml::from_str(&repo_file("deploy/kubernetes/sidecar-pod.yaml")).unwrap();
    let spec = &pod["spec"];
    let agent = container(spec, "initContainers", "netvsc-watch");
    assert_eq!(agent["restartPolicy"], "Always", "a native sidecar");
    let (volume, _) = check_agent(&pod, agent);
    let volumes = spec["volumes"].as_sequence().unwrap();
    assert!(volumes.iter().any(|v| v["name"] == volume.as_str() && v.get("emptyDir").is_some()), "{volumes:?}");
    check_application(container(spec, "containers", "app"), &volume);
}

#[test]
fn the_daemonset_and_its_consumer_share_the_nodes_fifo_directory() {
    let text = repo_file("deploy/kubernetes/daemonset.yaml");
    let documents: Vec<Value> =
        serde_yaml::Deserializer::from_str(&text).map(|doc| Value::deserialize(doc).unwrap()).collect();
    assert_eq!(documents.len(), 2, "the DaemonSet and an example consumer");
    let daemonset = &documents[0];
    assert_eq!(daemonset["kind"], "DaemonSet");
    let template = &daemonset["spec"]["template"];
    let (volume, _) = check_agent(template, container(&template["spec"], "containers", "netvsc-watch"));
    let host_path = |spec: &Value, name: &str| {
        let volumes = spec["volumes"].as_sequence().unwrap();
        let found = volumes.iter().find(|v| v["name"] == name).unwrap();
        found["hostPath"]["path"].as_str().expect("a hostPath volume").to_owned()
    };
    let consumer = &documents[1];
    let consumer_volume = "netvsc";
    assert_eq!(host_path(&template["spec"], &volume), host_path(&consumer["spec"], consumer_volume));
    check_application(container(&consumer["spec"], "containers", "app"), consumer_volume);
}

#[test]
fn the_monitor_daemonset_reads_the_nodes_kernel_log_beside_the_sidecar() {
    let daemonset: Value = serde_yaml::from_str(&repo_file("deploy/kubernetes/monitor-daemonset.yaml")).unwrap();
    assert_eq!(daemonset["kind"], "DaemonSet");
    let template = &daemonset["spec"]["template"];
    let agent = container(&template["spec"], "containers", "netvsc-watch-monitor");
    assert_eq!(agent["image"].as_str(), Some(format!("localhost/netvsc-watch:{}", env!("CARGO_PKG_VERSION")).as_str()));
    let argv = std::iter::once("netvsc-watch".to_owned()).chain(strings(&agent["args"]));
    let Mode::Monitor(args) = Cli::try_parse_from(argv).unwrap_or_else(|err| panic!("{err}")).command else {
        panic!("not monitor: {:?}", agent["args"])
    };
    assert_eq!(args.run.source, netvsc_user::source::SourceKind::Netlink);
    assert_eq!(template["spec"]["hostNetwork"], true, "monitor must see the node's interfaces");
    // The log it is told to read is the node's, mounted where it looks.
    assert_eq!(args.kmsg.to_str(), Some(mount_path(agent, "kmsg").as_str()));
    let volumes = template["spec"]["volumes"].as_sequence().unwrap();
    let kmsg = volumes.iter().find(|v| v["name"] == "kmsg").expect("the kmsg volume");
    assert_eq!(
        (kmsg["hostPath"]["path"].as_str(), kmsg["hostPath"]["type"].as_str()),
        (Some("/dev/kmsg"), Some("CharDevice"))
    );
    assert_eq!(agent["securityContext"]["readOnlyRootFilesystem"], true);
    let port = args.run.metrics_listen.expect("metrics for the probes").port();
    for probe in ["startupProbe", "readinessProbe"] {
        assert_eq!(agent[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(agent[probe]["httpGet"]["port"].as_u64(), Some(u64::from(port)), "{probe}");
    }
    assert_eq!(template["metadata"]["annotations"]["prometheus.io/port"].as_str(), Some(port.to_string().as_str()));
    // Both DaemonSets run on the host's network: their ports must differ.
    let sidecar_text = repo_file("deploy/kubernetes/daemonset.yaml");
    let sidecar: Value =
        serde_yaml::Deserializer::from_str(&sidecar_text).map(|d| Value::deserialize(d).unwrap()).next().unwrap();
    let sidecar_args =
        watch_args(&strings(&container(&sidecar["spec"]["template"]["spec"], "containers", "netvsc-watch")["args"]));
    assert_ne!(sidecar_args.run.metrics_listen.map(|a| a.port()), Some(port));
}

#[test]
fn the_dashboard_and_the_docs_name_only_metrics_the_agent_exports() {
    let exported: BTreeSet<String> = exported_families();
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/kubernetes/grafana-dashboard.json")).unwrap();
    let mut graphed = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            graphed.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    let unknown: Vec<&String> = graphed.iter().filter(|name| !exported.contains(*name)).collect();
    assert!(unknown.is_empty(), "the dashboard graphs {unknown:?}; the agent exports {exported:?}");
    let docs = repo_file("docs/deployment.md");
    let documented: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .map(|name| format!("netvsc_watch_{name}"))
        .collect();
    let exported_names: BTreeSet<String> = exported.iter().cloned().collect();
    assert_eq!(documented, exported_names, "docs/deployment.md's metrics table");
    assert!(graphed.len() >= 8, "the dashboard graphs most of them: {graphed:?}");
}

/// `netvsc_watch_*` names in a PromQL expression, without histogram and counter suffixes
/// added by the exposition (`_bucket`, `_sum`, `_count`); counters keep `_total`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in expr.match_indices("netvsc_watch_") {
        let name: String = expr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .fold(name, |n, suffix| n.strip_suffix(suffix).map_or(n.clone(), str::to_owned));
        names.push(base);
    }
    names
}

/// Every metric name the agent exports (counters with `_total`), read from its own exposition
/// after one of everything has been recorded.
fn exported_families() -> BTreeSet<String> {
    let metrics = Metrics::new();
    exercise(&metrics);
    let text = metrics.encode();
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            }
        })
        .collect()
}

fn exercise(metrics: &Metrics) {
    use netvsc_user::event::SourceName;
    use netvsc_user::netdev::{Netdev, NetdevKind};
    let failover = netvsc_user::report::timeline::Failover {
        netdev_registered_ns: Some(2),
        written_ns: Some(3),
        ..Default::default()
    };
    metrics.departed(&failover, SourceName::Ebpf);
    metrics.returned(&failover, SourceName::Ebpf);
    metrics.event(SourceName::Ebpf);
    metrics.relevant(SourceName::Ebpf);
    metrics.resync("safety resync");
    metrics.ring_drops(1);
    use netvsc_user::report::timeline::kernel::{KernelOutage, Noted};
    metrics.kernel(&Noted::Switched { netvsc: "eth1".into(), to_vf: false });
    metrics.kernel(&Noted::Began { netvsc: "eth1".into() });
    metrics.kernel(&Noted::Flapped { netvsc: "eth1".into() });
    metrics.kernel(&Noted::SwitchFailed { netvsc: "eth1".into(), to_vf: true });
    let outage = KernelOutage { vf_registering_us: Some(2), data_path_to_vf_us: Some(3), ..Default::default() };
    metrics.kernel(&Noted::Returned(outage.clone()));
    metrics.kernel(&Noted::Ended(outage));
    let netvsc = Netdev {
        ifindex: 2,
        name: "eth1".into(),
        mac: macaddr::MacAddr6::new(0, 0x15, 0x5d, 0, 0, 1),
        kind: NetdevKind::NetVsc,
        master: None,
    };
    let view = netvsc_user::decide::view::SystemView::from_netdevs(vec![netvsc], Default::default());
    let (pairing, _) = netvsc_user::decide::pairing::Pairing::start(Default::default(), &view, true).unwrap();
    metrics.interfaces(&pairing, &view);
}
