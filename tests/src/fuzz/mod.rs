//! The bodies of the fuzz targets (fuzz/fuzz_targets/ calls each in one line) and the list of
//! them, which the corpus replay of `cargo test` (netvsc-user/tests/fuzz_corpus.rs) and `cargo
//! xtask fuzz` share. Each takes what reaches the agent from outside, feeds it to the agent's own
//! decoder or parser, and checks that it never panics and that what it returns holds: a bad input
//! is refused or ignored, never half-read. The entry points are netvsc-user's `fuzz` module.

use netvsc_user::event::{NetdevEvent, Parent};
use netvsc_user::fuzz;

mod files;
mod kmsg;

pub use files::{sidecar_lock, sysfs_attribute, sysfs_tree, SysfsTree};
pub use kmsg::kmsg;

/// Every target by name, as fuzz/Cargo.toml names its binaries and fuzz/corpus/ its folders.
/// `sysfs_tree` builds a fake tree once per process; the others need nothing.
pub const TARGETS: &[&str] =
    &["rtnetlink", "ebpf_record", "devargs", "sysfs_attribute", "sysfs_tree", "sidecar_lock", "kmsg"];

/// One target's body, ready to take inputs.
pub type Body = Box<dyn FnMut(&[u8])>;

/// The body of target `name`, for a replay that runs them all; `None` for an unknown name.
pub fn body(name: &str) -> Option<Body> {
    Some(match name {
        "rtnetlink" => Box::new(rtnetlink),
        "ebpf_record" => Box::new(ebpf_record),
        "devargs" => Box::new(devargs),
        "sysfs_attribute" => Box::new(sysfs_attribute),
        "sysfs_tree" => {
            let tree = SysfsTree::new().expect("building the fake sysfs tree");
            Box::new(move |data| tree.run(data))
        }
        "sidecar_lock" => Box::new(sidecar_lock),
        "kmsg" => Box::new(kmsg),
        _ => return None,
    })
}

/// An rtnetlink datagram as a netlink socket delivers it: split into messages, each decoded as a
/// link and as an address message, and turned into events; the two decoders also straight on the
/// input, so that their own parsing is reached where the framing would end the datagram.
pub fn rtnetlink(data: &[u8]) {
    let mut messages = 0;
    let mut payloads = 0;
    for (_, payload) in fuzz::messages(data) {
        // Every message takes at least its 16-byte header: the walk always advances.
        messages += 1;
        payloads += payload.len();
        assert!(messages * 16 + payloads <= data.len() + 3 * messages, "messages overlap");
        check_link(payload);
        let _ = fuzz::decode_address(payload);
    }
    for (event, parent) in fuzz::events(data) {
        if let NetdevEvent::Changed { name: Some(name), .. } = &event {
            assert!(!name.contains('\0'), "a name with a NUL: {name:?}");
        }
        if let Some(Parent::Pci { address, .. }) = parent {
            assert!(!address.contains('\0'), "an address with a NUL: {address:?}");
        }
    }
    check_link(data);
    let _ = fuzz::decode_address(data);
}

fn check_link(payload: &[u8]) {
    if let Some(link) = fuzz::decode_link(payload) {
        assert!(link.mac.is_none() || link.ethernet, "a MAC hint from a link that is not Ethernet: {link:?}");
    }
}

/// One eBPF ring-buffer item: a record is read only from an item that holds a whole one, and the
/// names it yields stop at the record's NUL padding and its fields' ends.
pub fn ebpf_record(data: &[u8]) {
    let Some((record, event, parent)) = fuzz::kernel_record(data) else {
        assert!(data.len() < fuzz::RECORD_BYTES, "a whole record of {} bytes was refused", data.len());
        return;
    };
    assert!(data.len() >= fuzz::RECORD_BYTES, "a record read from {} bytes", data.len());
    let bounded = |text: &str, field: &[u8]| {
        assert!(text.len() <= field.len() && !text.contains('\0') && !text.is_empty(), "{text:?}");
    };
    match &event {
        Some(NetdevEvent::Changed { name: Some(name), .. }) => bounded(name, &record.name),
        Some(NetdevEvent::PciDevice { address, .. }) => bounded(address, &record.pci),
        _ => {}
    }
    if let Some(Parent::Pci { address, .. }) = &parent {
        bounded(address, &record.pci);
    }
}

/// The longest a usage error may be: each value it names is clipped to 64 characters, which
/// Debug-escaping may widen to ten bytes each.
const MAX_USAGE_ERROR: usize = 2 * 64 * 10 + 200;

/// A devargs string as `--devargs` takes it (vdev_netvsc's `iface`/`mac`/`force`/`ignore`), and
/// the same text as a MAC address: accepted, or refused with a short error naming the value.
pub fn devargs(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match fuzz::parse_devargs(text) {
        Ok(selection) => {
            let items = text.split(',').filter(|item| !item.is_empty()).count();
            assert!(selection.specs.len() <= items, "{} specs from {items} items", selection.specs.len());
        }
        Err(err) => {
            let message = err.to_string();
            assert!(message.len() <= MAX_USAGE_ERROR, "an unclipped error of {} bytes", message.len());
        }
    }
    if let Ok(mac) = netvsc_user::decide::selection::parse_mac(text) {
        let again = netvsc_user::decide::selection::parse_mac(&mac.to_string()).expect("a MAC's own text");
        assert_eq!(again, mac, "{text:?}");
    }
}
