//! `monitor` in the guest: no pipe and no reader, the agent following the real hot-plug, and
//! hv_netvsc's lines (written to the guest's /dev/kmsg in hv_netvsc's format: the guest has
//! no Hyper-V) read as the kernel's data-path moments of the interface they name.

use anyhow::{ensure, Context as _};
use netvsc_user::report::lines::Line;

use super::guest::{pci_of, Guest, MAC_A};
use super::scenarios::Check;

pub(super) fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("monitor: the VF present at start-up", Box::new(start_up)),
        ("monitor: the VF unplugged and back at another address", Box::new(hot_plug)),
        ("monitor: hv_netvsc's lines in /dev/kmsg make an outage", Box::new(kernel_lines)),
    ]
}

fn start_up(guest: &mut Guest) -> anyhow::Result<()> {
    let ctx = guest.ctx_a.clone();
    let found = guest.vm.change("VF A found at start-up", "associated", |c| c.failsafe == ctx)?;
    let pci = found.vf.map(|vf| vf.pci);
    ensure!(pci.as_deref() == Some(pci_of(1).as_str()), "expected {}, got {pci:?}", pci_of(1));
    let pipes: Vec<_> = guest.ready.interfaces.iter().filter(|i| i.pipe.is_some() || i.addr.is_some()).collect();
    ensure!(pipes.is_empty(), "monitor made pipes or files: {pipes:?}");
    let moments = guest.ready.kernel_moments.as_ref().context("the ready line says where kernel moments come from")?;
    ensure!(moments.from == "kmsg" && moments.path.as_os_str() == "/dev/kmsg", "{moments:?}");
    Ok(())
}

fn hot_plug(guest: &mut Guest) -> anyhow::Result<()> {
    let ctx = guest.ctx_a.clone();
    let (id, _) = guest.vf_a.take().context("VF A present")?;
    guest.vm.unplug(&id)?;
    let gone = guest.vm.change("VF A gone", "dissociated", |c| c.failsafe == ctx)?;
    ensure!(gone.vf.as_ref().map(|vf| vf.pci.as_str()) == Some(pci_of(1).as_str()), "{gone:?}");
    guest.vm.plug_vf("a-back", 2, MAC_A)?;
    let back = guest.vm.change("VF A back", "associated", |c| c.failsafe == ctx)?;
    ensure!(back.vf.as_ref().map(|vf| vf.pci.as_str()) == Some(pci_of(2).as_str()), "{back:?}");
    guest.vf_a = Some(("a-back".into(), 2));
    Ok(())
}

/// A servicing event's six lines, in the order and words hv_netvsc logs them, and the VF
/// driver's line of hv_netvsc's join.
fn kernel_lines(guest: &mut Guest) -> anyhow::Result<()> {
    const VMBUS: &str = "f8615163-0000-1000-2000-525400aa0001";
    let netvsc = guest.ready.interfaces.iter().find(|i| i.mac == MAC_A).context("MAC A followed")?.netvsc.clone();
    let lines = [
        "Data path switched from VF: enP1s1",
        "VF unregistering: enP1s1",
        "VF slot 1 removed",
        "VF slot 2 added",
        "VF registering: eth9",
        "Data path switched to VF: enP2s2",
    ];
    let mut writes: Vec<String> =
        lines.iter().map(|line| format!("echo '<6>hv_netvsc {VMBUS} {netvsc}: {line}' >/dev/kmsg")).collect();
    writes.insert(5, format!("echo '<6>e1000e {} eth9: joined to {netvsc}' >/dev/kmsg", pci_of(2)));
    guest.vm.guest_run(&writes.join("; "))?;
    let outage = guest.vm.line("the kernel outage line", |line| match line {
        Line::KernelOutage { outage } => Some(outage.clone()),
        _ => None,
    })?;
    ensure!(outage.netvsc == netvsc && outage.vmbus_id == VMBUS, "{outage:?}");
    ensure!(outage.vf.as_deref() == Some("enP1s1") && outage.new_vf.as_deref() == Some("enP2s2"), "{outage:?}");
    let moments = [
        outage.data_path_from_vf_us,
        outage.vf_unregistering_us,
        outage.slot_removed_us,
        outage.slot_added_us,
        outage.vf_registering_us,
        outage.vf_joined_us,
        outage.data_path_to_vf_us,
    ];
    ensure!(moments.iter().all(Option::is_some), "a moment missing: {outage:?}");
    ensure!(moments.windows(2).all(|pair| pair[0] <= pair[1]), "moments out of order: {outage:?}");
    ensure!(!outage.flap, "{outage:?}");
    Ok(())
}
