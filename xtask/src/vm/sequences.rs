//! Azure's captured sequences (shared/reference/azure-captures.md) on the guest's real kernel:
//! udev's rename right after registration, two VFs with one MAC, removal through sysfs `remove`
//! and return through `rescan` (how Microsoft's own test harness hot-plugs), the NetVSC
//! interface renamed while its VF is away, and an eject while the VF is still being probed.
//! Played after "the VF never returns", with no VF plugged; they leave none plugged.

use std::time::Duration;

use anyhow::{ensure, Context as _};
use netvsc_user::report::lines::Line;

use super::guest::{emptied, pci_of, plug, unplug, Guest, Side, MAC_A};
use super::scenarios::Check;

/// The checks, in the order they play.
pub(super) fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("udev renames the VF 15 ms after it registers", Box::new(renamed_after_registration)),
        ("two VFs with one MAC", Box::new(two_vfs_one_mac)),
        ("removal through sysfs remove, return through rescan", Box::new(sysfs_remove_and_rescan)),
        ("the NetVSC renamed while its VF is away", Box::new(netvsc_renamed_while_away)),
        ("an eject during the VF's probe", Box::new(unplug_during_probe)),
    ]
}

/// What udev does to a new VF (`renamed from eth1` ~15 ms after `VF registering`): a watcher in
/// the guest renames the netdevice as soon as the function shows one.
fn renamed_after_registration(guest: &mut Guest) -> anyhow::Result<()> {
    let pci = pci_of(2);
    guest.vm.guest_run(&format!(
        "(d=/sys/bus/pci/devices/{pci}/net; until [ -n \"$(ls $d 2>/dev/null)\" ]; do usleep 1000; done; \
         usleep 15000; ip link set dev \"$(ls $d)\" name enP2s1) &"
    ))?;
    plug(guest, Side::A, 2)?;
    let renamed = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        guest.vm.guest_run("[ -e /sys/class/net/enP2s1 ]").is_ok()
    });
    ensure!(renamed, "the watcher did not rename the VF to enP2s1");
    let ctx = guest.ctx_a.clone();
    let after = guest.vm.collect_for(Duration::from_secs(1));
    let dropped = after.iter().any(|o| matches!(o.line(), Some(Line::Dissociated(c)) if c.failsafe == ctx));
    ensure!(!dropped, "the rename took the VF from {ctx}: {after:?}");
    // The renamed VF's removal is still followed.
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    unplug(guest, &id, Side::A)?;
    Ok(())
}

/// A second VF with the same MAC: the newest serves; when it goes, the older one takes over.
fn two_vfs_one_mac(guest: &mut Guest) -> anyhow::Result<()> {
    plug(guest, Side::A, 1)?;
    let ctx = guest.ctx_a.clone();
    guest.vm.plug_vf("twin", 3, MAC_A)?;
    served(guest, &ctx, &pci_of(3), "the newest VF")?;
    guest.vm.unplug("twin")?;
    served(guest, &ctx, &pci_of(1), "the older VF")
}

/// Waits until `pci` is written to `ctx`'s pipe and the reader reads it.
fn served(guest: &mut Guest, ctx: &str, pci: &str, what: &str) -> anyhow::Result<()> {
    guest.vm.change(&format!("{what} ({pci}) in {ctx}'s pipe"), "associated", |c| {
        c.failsafe == ctx && c.vf.as_ref().is_some_and(|vf| vf.pci == pci)
    })?;
    guest.vm.expect(&format!("the reader to read {pci}"), |v| v["failsafe"] == ctx && v["read"] == pci)?;
    Ok(())
}

/// `echo 1 > /sys/bus/pci/devices/<pci>/remove`, then `echo 1 > /sys/bus/pci/rescan`: the
/// kernel's own removal and re-probe, no QMP.
fn sysfs_remove_and_rescan(guest: &mut Guest) -> anyhow::Result<()> {
    let (id, port) = guest.vf_a.clone().context("VF A present")?;
    let (pci, ctx) = (pci_of(port), guest.ctx_a.clone());
    guest.vm.guest_run(&format!("echo 1 > /sys/bus/pci/devices/{pci}/remove"))?;
    emptied(guest, &ctx, &pci)?;
    guest.vm.guest_run("echo 1 > /sys/bus/pci/rescan")?;
    served(guest, &ctx, &pci, "the rescanned VF")?;
    unplug(guest, &id, Side::A)?;
    Ok(())
}

/// The NetVSC stand-in is renamed while its VF is away; the VF returns to it under its new name.
fn netvsc_renamed_while_away(guest: &mut Guest) -> anyhow::Result<()> {
    let ctx = guest.ctx_a.clone();
    let old = guest.ready.interfaces.iter().find(|i| i.mac == MAC_A).context("MAC A's interface")?.netvsc.clone();
    let rename = |from: &str, to: &str| {
        format!("ip link set dev {from} down && ip link set dev {from} name {to} && ip link set dev {to} up")
    };
    guest.vm.guest_run(&rename(&old, "vsc9"))?;
    let renamed = guest.vm.change(&format!("{old} renamed vsc9"), "renamed", |c| c.failsafe == ctx)?;
    ensure!(renamed.netvsc == "vsc9" && renamed.renamed_from.as_deref() == Some(old.as_str()), "{renamed:?}");
    plug(guest, Side::A, 1)?;
    let (id, _) = guest.vf_a.clone().context("VF A present")?;
    unplug(guest, &id, Side::A)?;
    guest.vm.guest_run(&rename("vsc9", &old))?;
    guest.vm.change(&format!("vsc9 renamed back {old}"), "renamed", |c| c.failsafe == ctx)?;
    Ok(())
}

/// device_add and device_del back to back: the guest may see the function go before or after its
/// driver registers a netdevice. Either way the pipe ends empty and the address is never read
/// once it is.
fn unplug_during_probe(guest: &mut Guest) -> anyhow::Result<()> {
    let (ctx, pci) = (guest.ctx_a.clone(), pci_of(4));
    let (lines_before, others_before) = (guest.vm.seen_lines().len(), guest.vm.seen_others().len());
    guest.vm.plug_vf("probe", 4, MAC_A)?;
    guest.vm.unplug("probe")?;
    guest.vm.collect_for(Duration::from_millis(2500));
    let changes: Vec<(bool, u64)> = guest.vm.seen_lines()[lines_before..]
        .iter()
        .filter_map(|line| match line {
            Line::Associated(c) | Line::Dissociated(c)
                if c.failsafe == ctx && c.vf.as_ref().is_some_and(|vf| vf.pci == pci) =>
            {
                Some((matches!(line, Line::Associated(_)), c.at_ns))
            }
            _ => None,
        })
        .collect();
    ensure!(changes.last().is_none_or(|(associated, _)| !associated), "{pci} left in {ctx}'s pipe: {changes:?}");
    let emptied_at = changes.last().map_or(0, |(_, at)| *at);
    let late: Vec<_> = guest.vm.seen_others()[others_before..]
        .iter()
        .filter(|v| v["failsafe"] == ctx.as_str() && v["read"] == pci.as_str())
        .filter(|v| v["t_ns"].as_u64().is_some_and(|t| t > emptied_at))
        .cloned()
        .collect();
    ensure!(late.is_empty(), "the reader read {pci} after it was taken back: {late:?}");
    // What was collected here stays kept for later waits: drop it, so that the next check's wait
    // for an association does not take this probe's.
    let about_probe = |c: &netvsc_user::report::lines::Change| c.vf.as_ref().is_some_and(|vf| vf.pci == pci);
    guest.vm.discard(|line| matches!(line, Line::Associated(c) | Line::Dissociated(c) if about_probe(c)));
    guest.vm.discard_others(|v| v["read"] == pci.as_str());
    Ok(())
}
