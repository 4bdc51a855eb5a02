//! DPDK's own `vdev_netvsc` probes itself on Hyper-V (CPUID "Microsoft Hv") and creates
//! `net_failsafe_vsc<N>` for every unrouted NetVSC interface: the same names and interfaces
//! `exec` hands the application. So on Hyper-V `exec` switches it off with
//! `--vdev net_vdev_netvsc0,ignore=1`, unless the user named `net_vdev_netvsc` themselves.

use serde::{Deserialize, Serialize};

use crate::decide::view::SystemView;

/// The argument that keeps DPDK's auto-probe quiet (vdev_netvsc's own `ignore` switch).
pub(crate) const IGNORE_VDEV: &str = "net_vdev_netvsc0,ignore=1";

/// What was found out about the hypervisor, and what `exec` inserts because of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoProbe {
    /// DPDK would auto-probe vdev_netvsc here.
    pub hyperv: bool,
    /// How that was decided: a NetVSC interface, or CPUID's hypervisor vendor.
    pub evidence: String,
    /// The `--vdev` value `exec` inserts (none off Hyper-V, when the application's arguments
    /// already name `net_vdev_netvsc`, or with `--keep-dpdk-vdev-netvsc`).
    pub vdev: Option<String>,
    /// Why nothing is inserted on Hyper-V.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_inserted: Option<String>,
}

impl AutoProbe {
    /// A NetVSC interface exists only on Hyper-V, so one decides; without one, CPUID does.
    pub fn detect(view: &SystemView, app_args: &[std::ffi::OsString], keep: bool) -> Self {
        let netvsc = view.links().find(|link| link.is_netvsc()).map(|link| link.name.as_str());
        let named = app_args.iter().any(|arg| arg.to_string_lossy().contains("net_vdev_netvsc"));
        Self::decide(netvsc, cpuid_hypervisor_vendor().as_deref(), named, keep)
    }

    /// The rule, apart from reading the machine.
    pub fn decide(netvsc: Option<&str>, cpuid_vendor: Option<&str>, user_named: bool, keep: bool) -> Self {
        let (hyperv, evidence) = match (netvsc, cpuid_vendor) {
            (Some(name), _) => (true, format!("NetVSC interface {name}")),
            (None, Some(vendor)) => (vendor == "Microsoft Hv", format!("CPUID hypervisor vendor {vendor:?}")),
            (None, None) => (false, "no NetVSC interface and no hypervisor in CPUID".to_owned()),
        };
        let not_inserted = match (hyperv, user_named, keep) {
            (false, _, _) => None,
            (true, true, _) => Some("the application's arguments name net_vdev_netvsc"),
            (true, false, true) => Some("--keep-dpdk-vdev-netvsc"),
            (true, false, false) => None,
        };
        let vdev = (hyperv && not_inserted.is_none()).then(|| IGNORE_VDEV.to_owned());
        Self { hyperv, evidence, vdev, not_inserted: not_inserted.map(str::to_owned) }
    }

    /// One line for people (`scan`, the log).
    pub fn summary(&self) -> String {
        match (self.hyperv, self.vdev.as_deref(), self.not_inserted.as_deref()) {
            (true, Some(vdev), _) => format!("Hyper-V ({}): exec adds --vdev {vdev}", self.evidence),
            (true, None, why) => {
                format!("Hyper-V ({}): exec leaves DPDK's vdev_netvsc alone ({})", self.evidence, why.unwrap_or(""))
            }
            (false, _, _) => format!("not Hyper-V ({}): DPDK does not auto-probe vdev_netvsc", self.evidence),
        }
    }
}

/// CPUID leaf 0x40000000's vendor string when CPUID says a hypervisor is present.
fn cpuid_hypervisor_vendor() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        // The hypervisor-present bit: CPUID.1:ECX[31].
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86_64 CPU and only reads.
        let (features, leaf) = unsafe { (__cpuid(1), __cpuid(0x4000_0000)) };
        if features.ecx & (1 << 31) == 0 {
            return None;
        }
        let bytes: Vec<u8> = [leaf.ebx, leaf.ecx, leaf.edx].iter().flat_map(|r| r.to_le_bytes()).collect();
        Some(String::from_utf8_lossy(&bytes).trim_end_matches('\0').to_owned())
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netvsc_decides_then_cpuid() {
        let cases = [
            (Some("eth1"), Some("KVMKVMKVM"), false, false, true, Some(IGNORE_VDEV)),
            (None, Some("Microsoft Hv"), false, false, true, Some(IGNORE_VDEV)),
            (None, Some("KVMKVMKVM"), false, false, false, None),
            (None, None, false, false, false, None),
            (Some("eth1"), None, true, false, true, None),
            (Some("eth1"), None, false, true, true, None),
            (None, Some("KVMKVMKVM"), true, true, false, None),
        ];
        for (netvsc, vendor, named, keep, hyperv, vdev) in cases {
            let probe = AutoProbe::decide(netvsc, vendor, named, keep);
            assert_eq!(
                (probe.hyperv, probe.vdev.as_deref()),
                (hyperv, vdev),
                "{netvsc:?} {vendor:?} named={named} keep={keep}"
            );
        }
        let probe = AutoProbe::decide(Some("eth1"), None, false, false);
        assert_eq!(probe.evidence, "NetVSC interface eth1");
        assert_eq!(probe.summary(), "Hyper-V (NetVSC interface eth1): exec adds --vdev net_vdev_netvsc0,ignore=1");
        let probe = AutoProbe::decide(None, Some("Microsoft Hv"), true, false);
        assert_eq!(probe.not_inserted.as_deref(), Some("the application's arguments name net_vdev_netvsc"));
        assert_eq!(
            AutoProbe::decide(None, Some("KVMKVMKVM"), false, false).evidence,
            "CPUID hypervisor vendor \"KVMKVMKVM\""
        );
    }
}
