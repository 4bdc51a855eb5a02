//! The kernel's log as `monitor` reads it: what reads of /dev/kmsg, or of a stand-in file or
//! FIFO in its format, return, cut into records by the agent's own reader (netvsc-user's
//! `system::kmsg::Records`), and the moments hv_netvsc's lines in them tell.

use std::io::{self, Cursor, Read};

use netvsc_user::fuzz;
use netvsc_user::system::kmsg::{parse_dmesg_line, Moment, NetvscEvent, Record};

/// The first byte picks the size of the reads that hand the rest to the reader, as a FIFO's
/// reads may cut it anywhere: `1 + b²/4` bytes (1 to 16,257, each read short of the reader's
/// 16 KiB). The same bytes are also read as a file (whole reads) and as /dev/kmsg gives them (one
/// record a read). Every record must write back (`to_kmsg`) and parse again the same; the file
/// and the one-record reads must agree; the records of the file read must all be among those of
/// the cut reads, in order (cuts may only lose dictionary lines, or let a record's head through
/// where the whole was too long); written back, the records must read back the same whole or one
/// a read; and a moment read from any message may only name interfaces as the kernel names them.
pub fn kmsg(data: &[u8]) {
    let Some((&size, input)) = data.split_first() else { return };
    let size = 1 + usize::from(size) * usize::from(size) / 4;
    let cut = read(Reads::chunks(input, size));
    let whole = read(Cursor::new(input));
    let one_a_read = read(Reads::records(input));
    assert_eq!(whole, one_a_read, "a file read whole and /dev/kmsg's one record a read disagree");
    for record in cut.iter().chain(&whole).filter_map(|entry| entry.as_ref().ok()) {
        check_record(record);
    }
    assert!(cut.len() >= whole.len(), "{} entries in {size}-byte reads, {} whole", cut.len(), whole.len());
    let lines = input.split(|&b| b == b'\n').count();
    assert!(whole.len() <= lines && cut.len() <= lines, "more entries than the {lines} lines");
    let mut heads = cut.iter().filter_map(|entry| entry.as_ref().ok()).map(head);
    for record in whole.iter().filter_map(|entry| entry.as_ref().ok()) {
        assert!(heads.any(|h| h == head(record)), "{record:?} was lost by {size}-byte reads");
    }
    // The records, written back one after another as a stand-in file holds them: those a
    // record may hold (the others are too long to be read as one, by design).
    let kept: Vec<Result<Record, String>> = cut
        .into_iter()
        .filter(|entry| entry.as_ref().is_ok_and(|r| r.to_kmsg().len() <= fuzz::KMSG_RECORD_MAX))
        .collect();
    let file: String = kept.iter().flatten().map(Record::to_kmsg).collect();
    assert_eq!(read(Cursor::new(file.as_bytes())), kept, "written back and read whole");
    assert_eq!(read(Reads::records(file.as_bytes())), kept, "written back and read one record a read");
    for line in String::from_utf8_lossy(input).lines() {
        if let Some((_, message)) = parse_dmesg_line(line) {
            assert!(line.contains(message) && message.trim_end() == message, "{message:?} from {line:?}");
            check_moment(message);
        }
    }
}

fn read(source: impl Read) -> Vec<Result<Record, String>> {
    fuzz::kmsg_records(source).expect("reads from memory do not fail")
}

/// A record's header and text: what reads that cut its dictionary lines off leave of it.
fn head(record: &Record) -> (u8, u8, u64, u64, bool, &str) {
    (record.facility, record.level, record.seq, record.timestamp_us, record.fragment, &record.message)
}

/// A record read is one the kernel could have written: written back as /dev/kmsg gives it, it
/// parses to the same record; and its message's moment names only kernel interface names.
fn check_record(record: &Record) {
    let written = record.to_kmsg();
    assert_eq!(fuzz::parse_kmsg_record(written.as_bytes()).as_ref(), Ok(record), "written as {written:?}");
    check_moment(&record.message);
}

/// Moment::parse of any text: the interfaces it names are names the kernel can give (no `/`,
/// no `:`, no white space, 1 to 15 bytes, nothing that was not UTF-8), its devices are a VMBus
/// instance GUID or a PCI function's address, its driver one word.
fn check_moment(message: &str) {
    let Some(moment) = Moment::parse(message) else { return };
    let names: Vec<&String> = match &moment {
        Moment::Netvsc { vmbus_id, netvsc, event } => {
            let guid = vmbus_id.len() == 36 && vmbus_id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
            assert!(guid, "{vmbus_id:?} is no VMBus id, in {message:?}");
            let named = match event {
                NetvscEvent::DataPathToVf { vf }
                | NetvscEvent::DataPathFromVf { vf }
                | NetvscEvent::DataPathSwitchFailed { vf, .. }
                | NetvscEvent::VfRegistering { vf }
                | NetvscEvent::VfUnregistering { vf } => Some(vf),
                NetvscEvent::Renamed { from } => Some(from),
                NetvscEvent::VfSlotAdded { .. } | NetvscEvent::VfSlotRemoved { .. } => None,
            };
            std::iter::once(netvsc).chain(named).collect()
        }
        Moment::VfJoined { driver, pci, vf, netvsc } => {
            check_pci(driver, pci, message);
            vec![vf, netvsc]
        }
        Moment::VfRenamed { driver, pci, from, to } => {
            check_pci(driver, pci, message);
            vec![from, to]
        }
    };
    for name in names {
        let kernel = fuzz::is_kernel_name(name) && !name.contains(char::REPLACEMENT_CHARACTER);
        assert!(kernel, "{name:?} is no interface name, in {message:?} ({moment:?})");
    }
}

fn check_pci(driver: &str, pci: &str, message: &str) {
    assert!(!driver.is_empty() && !driver.contains(' '), "{driver:?} is no driver, in {message:?}");
    let address = pci.contains(':') && pci.bytes().all(|b| b == b':' || b == b'.' || b.is_ascii_hexdigit());
    assert!(address, "{pci:?} is no PCI address, in {message:?}");
}

/// The input handed out in reads: of at most `size` bytes each, or each up to the next line
/// that starts a record (neither a dictionary line nor empty), as /dev/kmsg gives one record a
/// read; then the end of the input.
struct Reads<'a> {
    rest: &'a [u8],
    size: Option<usize>,
}

impl<'a> Reads<'a> {
    fn chunks(input: &'a [u8], size: usize) -> Self {
        Self { rest: input, size: Some(size) }
    }

    fn records(input: &'a [u8]) -> Self {
        Self { rest: input, size: None }
    }
}

impl Read for Reads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let piece = match self.size {
            Some(size) => size,
            None => (1..self.rest.len())
                .find(|&i| self.rest[i - 1] == b'\n' && !matches!(self.rest[i], b' ' | b'\n'))
                .unwrap_or(self.rest.len()),
        };
        let length = piece.min(buf.len()).min(self.rest.len());
        let (taken, rest) = self.rest.split_at(length);
        buf[..length].copy_from_slice(taken);
        self.rest = rest;
        Ok(length)
    }
}
