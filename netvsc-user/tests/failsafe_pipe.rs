//! The fail-safe pipe protocol, read back exactly as fail-safe reads it.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use netvsc_user::decide::pairing::{Action, Match, Release, Vf};
use netvsc_user::output::failsafe::reader::read_like_failsafe;
use netvsc_user::output::failsafe::{OutputMode, Outputs};

mod support;
use support::{dir_names as names, open_fifo};

fn mac(n: u8) -> macaddr::MacAddr6 {
    macaddr::MacAddr6::new(0x00, 0x15, 0x5d, 0, 0, n)
}

fn vf(pci: &str) -> Vf {
    Vf { ifindex: 5, name: "enP1".into(), pci: pci.into(), devargs: pci.into(), matched: Match::Mac }
}

fn manage(outputs: &mut Outputs) {
    outputs.apply(&Action::Manage { id: 0, netvsc: "eth1".into(), mac: mac(0) }).unwrap();
}

fn associate(outputs: &mut Outputs, pci: &str) {
    outputs.apply(&Action::Associate { id: 0, netvsc: "eth1".into(), vf: vf(pci) }).unwrap();
}

fn dissociate(outputs: &mut Outputs, pci: &str) {
    let action = Action::Dissociate { id: 0, netvsc: "eth1".into(), vf: vf(pci), reason: Release::VfGone };
    outputs.apply(&action).unwrap();
}

#[test]
fn pipe_holds_at_most_the_current_line() {
    let mut outputs = Outputs::new(OutputMode::Pipes).unwrap();
    manage(&mut outputs);
    let fd = outputs.child_fd(0).unwrap();
    // SAFETY: `outputs` owns the descriptor and lives to the end of the test.
    let pipe = || read_like_failsafe(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).unwrap();
    let pending = |outputs: &Outputs| outputs.channel(0).unwrap().pending_bytes().unwrap();

    assert_eq!(pipe(), None, "empty pipe means: not yet");
    associate(&mut outputs, "0001:00:02.0");
    associate(&mut outputs, "0002:00:02.0");
    assert_eq!(pending(&outputs), "0002:00:02.0\n".len(), "old line replaced, not appended");
    assert_eq!(pipe().as_deref(), Some("0002:00:02.0"));

    // The consumer took the line while the VF is still there: refill restores it, once.
    let restored = outputs.refill();
    assert_eq!(restored, 1);
    assert_eq!(outputs.refill(), 0, "a line still waiting is not written twice");
    assert_eq!(pending(&outputs), "0002:00:02.0\n".len());

    dissociate(&mut outputs, "0002:00:02.0");
    assert_eq!(pending(&outputs), 0, "emptied as soon as the VF goes");
    assert_eq!(outputs.refill(), 0, "nothing is restored without a VF");
    assert_eq!(pipe(), None);
}

#[test]
fn writes_never_block_even_if_the_reader_never_reads() {
    let mut outputs = Outputs::new(OutputMode::Pipes).unwrap();
    manage(&mut outputs);
    for round in 0..10_000 {
        associate(&mut outputs, if round % 2 == 0 { "0001:00:02.0" } else { "0002:00:02.0" });
        outputs.refill();
    }
    assert_eq!(outputs.channel(0).unwrap().pending_bytes().unwrap(), "0002:00:02.0\n".len());
}

#[test]
fn sidecar_fifo_and_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Outputs::new(OutputMode::Sidecar { dir: dir.path().to_owned(), file_mode: 0o640 }).unwrap();
    manage(&mut outputs);
    let fifo = dir.path().join("eth1.pipe");
    let state = dir.path().join("eth1.addr");
    let meta = std::fs::metadata(&fifo).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777, 0o640);

    // The DPDK side: `exec N<>DIR/eth1.pipe`, then fd(N).
    let consumer = open_fifo(&fifo);
    associate(&mut outputs, "0002:00:02.0");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "0002:00:02.0\n");
    assert_eq!(read_like_failsafe(&consumer).unwrap().as_deref(), Some("0002:00:02.0"));
    dissociate(&mut outputs, "0002:00:02.0");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "");
    assert_eq!(read_like_failsafe(&consumer).unwrap(), None);

    associate(&mut outputs, "0002:00:02.0");
    outputs.close();
    assert!(!state.exists(), "the state file goes at exit");
    assert!(fifo.exists(), "the FIFO stays: DPDK holds it open across agent restarts");
    assert_eq!(read_like_failsafe(&consumer).unwrap(), None, "and it is emptied at exit");
}

/// The hot path writes the FIFO first and the state file (a temporary file and a rename) after:
/// the two halves of an action are separate steps.
#[test]
fn the_fifo_is_written_before_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = sidecar(dir.path());
    manage(&mut outputs);
    let consumer = open_fifo(dir.path().join("eth1.pipe"));
    let state = dir.path().join("eth1.addr");
    let action = Action::Associate { id: 0, netvsc: "eth1".into(), vf: vf("0002:00:02.0") };
    outputs.apply_channel(&action).unwrap();
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "", "the state file waits for the second step");
    outputs.apply_files(&action).unwrap();
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "0002:00:02.0\n");
    assert_eq!(read_like_failsafe(&consumer).unwrap().as_deref(), Some("0002:00:02.0"));

    let action = Action::Dissociate { id: 0, netvsc: "eth1".into(), vf: vf("0002:00:02.0"), reason: Release::VfGone };
    outputs.apply_channel(&action).unwrap();
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "0002:00:02.0\n");
    assert_eq!(outputs.channel(0).unwrap().pending_bytes().unwrap(), 0, "the FIFO is emptied at once");
    outputs.apply_files(&action).unwrap();
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "");
    let rename = Action::Renamed { id: 0, from: "eth1".into(), to: "eth9".into() };
    outputs.apply_files(&rename).unwrap();
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "", "only (dis)associations touch the state file");
}

fn sidecar(dir: &std::path::Path) -> Outputs {
    Outputs::new(OutputMode::Sidecar { dir: dir.to_owned(), file_mode: 0o600 }).unwrap()
}

#[test]
fn a_clean_restart_keeps_the_consumers_descriptor_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = sidecar(dir.path());
    manage(&mut first);
    let consumer = open_fifo(dir.path().join("eth1.pipe"));
    associate(&mut first, "0002:00:02.0");
    first.close();
    assert_eq!(read_like_failsafe(&consumer).unwrap(), None, "emptied at exit");

    let mut second = sidecar(dir.path());
    manage(&mut second);
    associate(&mut second, "0003:00:02.0");
    assert_eq!(read_like_failsafe(&consumer).unwrap().as_deref(), Some("0003:00:02.0"), "same FIFO, same descriptor");
}

#[test]
fn a_stale_address_left_by_a_killed_run_never_reaches_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let mut killed = sidecar(dir.path());
    manage(&mut killed);
    let consumer = open_fifo(dir.path().join("eth1.pipe"));
    associate(&mut killed, "0002:00:02.0");
    drop(killed); // as after kill -9: the lock goes, the files stay as they were
    assert_eq!(std::fs::read_to_string(dir.path().join("eth1.addr")).unwrap(), "0002:00:02.0\n");

    // The VF left while no agent ran; the next run finds nothing to write.
    let _restarted = sidecar(dir.path());
    assert_eq!(read_like_failsafe(&consumer).unwrap(), None, "the stale line was emptied at start-up");
    assert!(!dir.path().join("eth1.addr").exists(), "the stale state file was removed");
}

#[test]
fn one_agent_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = sidecar(dir.path());
    manage(&mut first);
    let err = Outputs::new(OutputMode::Sidecar { dir: dir.path().to_owned(), file_mode: 0o600 }).err().unwrap();
    let message = format!("{err:#}");
    assert!(message.contains(&format!("another netvsc-watch (pid {})", std::process::id())), "{message}");
    assert!(err.chain().any(|c| c.is::<netvsc_user::usage::UsageError>()), "a usage error: exit 2");
    assert!(dir.path().join("eth1.addr").exists(), "the refused second agent touched nothing");
}

#[test]
fn a_second_interface_under_a_taken_name_gets_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = sidecar(dir.path());
    outputs.apply(&Action::Manage { id: 0, netvsc: "eth2".into(), mac: mac(0) }).unwrap();
    outputs.apply(&Action::Manage { id: 1, netvsc: "eth2".into(), mac: mac(1) }).unwrap();
    let (pipe0, addr0) = outputs.paths(0).unwrap();
    let (pipe1, addr1) = outputs.paths(1).unwrap();
    assert_eq!((pipe0, addr0), (dir.path().join("eth2.pipe").as_path(), dir.path().join("eth2.addr").as_path()));
    assert_eq!(
        (pipe1, addr1),
        (dir.path().join("eth2-vsc1.pipe").as_path(), dir.path().join("eth2-vsc1.addr").as_path())
    );
    outputs.apply(&Action::Associate { id: 0, netvsc: "eth2".into(), vf: vf("0002:00:02.0") }).unwrap();
    outputs.apply(&Action::Associate { id: 1, netvsc: "eth2".into(), vf: vf("0004:00:02.0") }).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("eth2.addr")).unwrap(), "0002:00:02.0\n");
    assert_eq!(std::fs::read_to_string(dir.path().join("eth2-vsc1.addr")).unwrap(), "0004:00:02.0\n");
}

#[test]
fn files_netvsc_watch_did_not_make_are_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("eth1.addr"), "mine\n").unwrap();
    let mut outputs = sidecar(dir.path());
    let err = outputs.apply(&Action::Manage { id: 0, netvsc: "eth1".into(), mac: mac(0) }).unwrap_err();
    assert!(format!("{err:#}").contains("eth1.addr: exists and was not made by netvsc-watch"), "{err:#}");
    outputs.close();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("eth1.addr")).unwrap(),
        "mine\n",
        "neither overwritten nor removed"
    );
}

#[test]
fn a_reused_fifo_gets_the_configured_mode() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("eth1.pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut outputs = sidecar(dir.path());
    manage(&mut outputs);
    assert_eq!(std::fs::metadata(&fifo).unwrap().permissions().mode() & 0o7777, 0o600);
}

#[test]
fn a_fifo_of_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        netvsc_testkit::skip("a_fifo_of_another_user_is_refused", "needs root to give a FIFO to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("eth1.pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::os::unix::fs::chown(&fifo, Some(65534), Some(65534)).unwrap();
    let mut outputs = sidecar(dir.path());
    let err = outputs.apply(&Action::Manage { id: 0, netvsc: "eth1".into(), mac: mac(0) }).unwrap_err();
    assert!(format!("{err:#}").contains("owned by uid 65534"), "{err:#}");
    assert_eq!(std::fs::metadata(&fifo).unwrap().permissions().mode() & 0o7777, 0o666, "left as it was");
}

#[test]
fn a_failed_start_up_removes_what_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = sidecar(dir.path());
    manage(&mut outputs);
    associate(&mut outputs, "0002:00:02.0");
    outputs.rollback();
    assert_eq!(names(dir.path()), Vec::<String>::new(), "FIFO, state file and lock file all gone");
}

#[test]
fn sidecar_refuses_symlinks_and_non_fifos() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("eth1.pipe")).unwrap();
    let mut outputs = Outputs::new(OutputMode::Sidecar { dir: dir.path().to_owned(), file_mode: 0o600 }).unwrap();
    let err = outputs.apply(&Action::Manage { id: 0, netvsc: "eth1".into(), mac: mac(0) }).unwrap_err();
    assert!(format!("{err:#}").contains("symlink"), "{err:#}");

    std::os::unix::fs::symlink(&target, dir.path().join("eth2.addr")).unwrap();
    let err = outputs.apply(&Action::Manage { id: 1, netvsc: "eth2".into(), mac: mac(1) }).unwrap_err();
    assert!(format!("{err:#}").contains("eth2.addr"), "{err:#}");

    std::fs::write(dir.path().join("eth3.pipe"), "").unwrap();
    let err = outputs.apply(&Action::Manage { id: 2, netvsc: "eth3".into(), mac: mac(2) }).unwrap_err();
    assert!(format!("{err:#}").contains("not a FIFO"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
}

#[test]
fn a_fifo_left_by_an_earlier_run_is_reused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("eth1.pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut outputs = Outputs::new(OutputMode::Sidecar { dir: dir.path().to_owned(), file_mode: 0o600 }).unwrap();
    manage(&mut outputs);
    outputs.rollback();
    assert!(fifo.exists(), "not made by this run: even a failed start-up keeps it");
}

#[test]
fn a_restart_finds_the_fifo_of_a_renamed_interface_by_its_mac() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = sidecar(dir.path());
    first.apply(&Action::Manage { id: 0, netvsc: "eth1".into(), mac: mac(1) }).unwrap();
    first.close();

    // eth1 is now called eth7, and another NIC took the name eth1.
    let mut second = sidecar(dir.path());
    second.apply(&Action::Manage { id: 0, netvsc: "eth1".into(), mac: mac(2) }).unwrap();
    second.apply(&Action::Manage { id: 1, netvsc: "eth7".into(), mac: mac(1) }).unwrap();
    assert_eq!(second.paths(1).unwrap().0, dir.path().join("eth1.pipe"), "the FIFO DPDK opened for this NIC");
    assert_eq!(second.paths(0).unwrap().0, dir.path().join("eth1-vsc0.pipe"), "not the other NIC's FIFO");
}
