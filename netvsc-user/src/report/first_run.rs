//! What a first run off Azure says. Without a NetVSC interface there is nothing to manage, and a
//! new user trying the agent on a laptop or another cloud would otherwise see only the line on
//! DPDK's auto-probe and take silence for a fault. One wording for `scan`, `watch` and `exec`.

use std::path::Path;

use crate::decide::view::SystemView;
use crate::output::dpdk_probe::AutoProbe;

/// The lines to show when the start-up scan of `view` found no NetVSC interface and nothing is
/// managed (no `--force` stand-in either); `None` when there is something to manage.
pub fn no_netvsc_hint(sysfs_root: &Path, view: &SystemView, managed: usize, probe: &AutoProbe) -> Option<[String; 2]> {
    let netvsc_found = view.links().any(|link| link.is_netvsc());
    (!netvsc_found && managed == 0).then(|| hint_lines(sysfs_root, probe.hyperv))
}

/// The wording, apart from reading the machine. `hyperv`: CPUID says Hyper-V all the same, so
/// the likelier cause is the driver, not the machine.
pub fn hint_lines(sysfs_root: &Path, hyperv: bool) -> [String; 2] {
    let class_net = sysfs_root.join("class/net");
    let first = if hyperv {
        format!(
            "no NetVSC interface found under {}, though CPUID says Hyper-V: is the hv_netvsc driver loaded \
             (modprobe hv_netvsc)? Until one appears there is nothing to manage",
            class_net.display()
        )
    } else {
        format!(
            "no NetVSC interface found under {}: this looks like a machine other than a Hyper-V/Azure VM, \
             so there is nothing to manage",
            class_net.display()
        )
    };
    let second = "to try it anyway: `sudo -E cargo xtask demo` in the source tree shows it at work in a private \
                  network namespace, or `--force --iface NAME` manages another interface (a virtio NIC, say) as \
                  if it were NetVSC"
        .to_owned();
    [first, second]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_hyperv_the_hint_names_the_directory_and_both_ways_to_try_it() {
        let [first, second] = hint_lines(Path::new("/tmp/fake"), false);
        assert_eq!(
            first,
            "no NetVSC interface found under /tmp/fake/class/net: this looks like a machine other than a \
             Hyper-V/Azure VM, so there is nothing to manage"
        );
        assert!(second.contains("cargo xtask demo") && second.contains("--force --iface NAME"), "{second}");
    }

    #[test]
    fn on_hyperv_without_netvsc_the_hint_points_at_the_driver() {
        let [first, _] = hint_lines(Path::new("/sys"), true);
        assert!(first.starts_with("no NetVSC interface found under /sys/class/net, though CPUID says Hyper-V"));
        assert!(first.contains("modprobe hv_netvsc"), "{first}");
    }

    #[test]
    fn something_managed_or_a_netvsc_present_means_no_hint() {
        let probe = AutoProbe::decide(None, None, false, false);
        let empty = SystemView::default();
        assert!(no_netvsc_hint(Path::new("/sys"), &empty, 0, &probe).is_some());
        assert_eq!(no_netvsc_hint(Path::new("/sys"), &empty, 1, &probe), None, "a --force stand-in is managed");
    }
}
