//! The fail-safe pipe protocol, read back exactly as fail-safe reads it.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use netvsc_user::failsafe::reader::read_like_failsafe;
use netvsc_user::failsafe::{OutputMode, Outputs};
use netvsc_user::pairing::{Action, Release, Vf};

fn vf(pci: &str) -> Vf {
    Vf { ifindex: 5, name: "enP1".into(), pci: pci.into() }
}

fn manage(outputs: &mut Outputs) {
    outputs.apply(&Action::Manage { id: 0, netvsc: "eth1".into() }).unwrap();
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
    let mut outputs = Outputs::new(OutputMode::Pipes);
    manage(&mut outputs);
    let fd = outputs.child_fd(0).unwrap();
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
    let mut outputs = Outputs::new(OutputMode::Pipes);
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
    let mut outputs = Outputs::new(OutputMode::Sidecar { dir: dir.path().to_owned(), file_mode: 0o640 });
    manage(&mut outputs);
    let fifo = dir.path().join("eth1.pipe");
    let state = dir.path().join("eth1.addr");
    let meta = std::fs::metadata(&fifo).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777, 0o640);

    // The DPDK side: `exec N<>DIR/eth1.pipe`, then fd(N).
    let consumer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    associate(&mut outputs, "0002:00:02.0");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "0002:00:02.0\n");
    assert_eq!(read_like_failsafe(&consumer).unwrap().as_deref(), Some("0002:00:02.0"));
    dissociate(&mut outputs, "0002:00:02.0");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "");
    assert_eq!(read_like_failsafe(&consumer).unwrap(), None);

    outputs.close();
    assert!(!fifo.exists() && !state.exists(), "files this run created are removed");
}

#[test]
fn sidecar_refuses_symlinks_and_non_fifos() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("eth1.pipe")).unwrap();
    let mut outputs = Outputs::new(OutputMode::Sidecar { dir: dir.path().to_owned(), file_mode: 0o600 });
    let err = outputs.apply(&Action::Manage { id: 0, netvsc: "eth1".into() }).unwrap_err();
    assert!(format!("{err:#}").contains("symlink"), "{err:#}");

    std::os::unix::fs::symlink(&target, dir.path().join("eth2.addr")).unwrap();
    let err = outputs.apply(&Action::Manage { id: 1, netvsc: "eth2".into() }).unwrap_err();
    assert!(format!("{err:#}").contains("eth2.addr"), "{err:#}");

    std::fs::write(dir.path().join("eth3.pipe"), "").unwrap();
    let err = outputs.apply(&Action::Manage { id: 2, netvsc: "eth3".into() }).unwrap_err();
    assert!(format!("{err:#}").contains("not a FIFO"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
}

#[test]
fn a_fifo_left_by_an_earlier_run_is_reused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("eth1.pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut outputs = Outputs::new(OutputMode::Sidecar { dir: dir.path().to_owned(), file_mode: 0o600 });
    manage(&mut outputs);
    outputs.close();
    assert!(fifo.exists(), "not ours to remove: the DPDK side may hold it open");
}
