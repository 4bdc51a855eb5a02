//! Entry points for the fuzz targets (fuzz/) and their corpus replay in `cargo test`: the
//! decoders and parsers that take what comes from outside the agent, several of which are
//! `pub(crate)`. Built only with feature `test-tools`, so nothing here becomes part of the
//! agent's interface or of what users install; the target bodies are netvsc-testkit's `fuzz`.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use macaddr::MacAddr6;
use netvsc_common::KernelEvent;

use crate::decide::selection::Selection;
use crate::event::{NetdevEvent, Parent};
use crate::system::kmsg::{Entry, Record, Records};
use crate::usage::UsageError;

pub use crate::system::rtnetlink::{decode_link, events, messages, DecodedLink};

/// The interface an `RTM_NEWADDR` payload names, when it carries an address.
pub fn decode_address(payload: &[u8]) -> Option<u32> {
    crate::system::rtnetlink::decode_address(payload)
}

/// How many bytes a ring-buffer record takes.
pub const RECORD_BYTES: usize = size_of::<KernelEvent>();

/// One ring-buffer item as the eBPF source reads it, and the event and parent it stands for.
pub fn kernel_record(item: &[u8]) -> Option<(KernelEvent, Option<NetdevEvent>, Option<Parent>)> {
    use crate::source::ebpf::{parent, record, translate};
    record(item).map(|event| (event, translate(&event), parent(&event)))
}

/// A vdev_netvsc devargs string (`iface=eth1,force=1`) as `--devargs` parses it.
pub fn parse_devargs(devargs: &str) -> Result<Selection, UsageError> {
    let mut selection = Selection::default();
    selection.add_devargs(devargs).map(|()| selection)
}

/// A sysfs `vendor`/`device` attribute's content.
pub fn parse_pci_id(text: &str) -> Option<u16> {
    crate::netdev::PciId::parse_attribute(text)
}

/// One sysfs attribute file read as the agent reads them.
pub fn read_attribute(path: &Path) -> io::Result<String> {
    crate::system::sysfs::read_attribute(path)
}

/// The files a sidecar lock file's text lists, with the MAC each FIFO serves.
pub fn lock_file_list(text: &str) -> BTreeMap<String, Option<MacAddr6>> {
    crate::output::failsafe::sidecar::listed_files(text)
}

/// Opens (locks and sanitizes) sidecar directory `dir` as `watch --fifo-dir` does, then closes it.
pub fn open_sidecar_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    crate::output::failsafe::sidecar::SidecarDir::open(dir, mode).map(|dir| dir.close(Vec::new()))
}

/// The longest record the kernel log's reader takes (the kernel's `CONSOLE_EXT_LOG_MAX`).
pub const KMSG_RECORD_MAX: usize = crate::system::kmsg::RECORD_MAX;

/// What `monitor`'s reader of the kernel's log (source::kmsg) takes from `source` until it
/// ends, in order: each record, or why bytes were none (`Err`, the reason). Overwritten records
/// (EPIPE) are left out, as the reader only warns of them; a failed read ends the reading, as it
/// ends the reader.
pub fn kmsg_records(source: impl Read) -> io::Result<Vec<Result<Record, String>>> {
    let mut read = Vec::new();
    for entry in Records::new(source) {
        match entry? {
            Entry::Record(record) => read.push(Ok(record)),
            Entry::Malformed(err) => read.push(Err(err.to_string())),
            Entry::Overwritten => {}
        }
    }
    Ok(read)
}

/// One record's bytes (one read of /dev/kmsg) parsed as the reader parses them.
pub fn parse_kmsg_record(bytes: &[u8]) -> Result<Record, String> {
    Record::parse(bytes).map_err(|err| err.to_string())
}

/// Whether the kernel can give a netdevice this name (the check every source applies).
pub fn is_kernel_name(name: &str) -> bool {
    crate::netdev::is_kernel_name(name)
}
