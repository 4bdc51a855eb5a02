//! The kernel's log as /dev/kmsg serves it: its records, and (in [`moment`]) the lines in them
//! that say what hv_netvsc did.
//!
//! A record is `<facility*8+level>,<seq>,<usec>,<flags>[,<more>...];<text>\n`, then one
//! ` KEY=value\n` line per dictionary entry (kernel/printk/printk.c `info_print_ext_header`,
//! `msg_add_dict_text`); bytes below `' '`, from 127 up, and `\` itself are written `\xHH`, so a
//! record never holds a raw newline. `usec` is the kernel's `local_clock()` (sched_clock) when
//! the line was logged, in microseconds: like CLOCK_MONOTONIC it counts from about boot, but it
//! is another clock (not slewed by NTP, per CPU); on this project's development VM it ran 2.4 ms
//! ahead of CLOCK_MONOTONIC after 5 hours. Kmsg times compare with each other, not with
//! `clock_gettime`.

use std::collections::VecDeque;
use std::io::{self, Read};

mod moment;
#[cfg(test)]
mod tests;

pub use moment::{Moment, NetvscEvent};

/// The longest record one read of /dev/kmsg returns (the kernel's `CONSOLE_EXT_LOG_MAX`); a
/// read into a smaller buffer fails with EINVAL, and a longer line in a stand-in is no record.
pub(crate) const RECORD_MAX: usize = 8192;

/// One record of the kernel's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// syslog facility: 0 is the kernel; what userspace writes into /dev/kmsg carries 1 or more.
    pub facility: u8,
    /// syslog level, 0 (emergency) to 7 (debug): netdev_info logs at 6, netdev_err at 3.
    pub level: u8,
    /// The kernel's sequence number: a gap means records were overwritten before being read.
    pub seq: u64,
    /// Microseconds of the kernel's `local_clock()` when logged (see the module's docs).
    pub timestamp_us: u64,
    /// Flag `c`: the line goes on in a later record.
    pub fragment: bool,
    /// The text with its `\xHH` escapes undone; bytes that are not UTF-8 become U+FFFD.
    pub message: String,
    /// ` SUBSYSTEM=` of the device that logged: `vmbus` for hv_netvsc, `pci` for a VF's driver.
    pub subsystem: Option<String>,
    /// ` DEVICE=`: `+vmbus:<GUID>`, `+pci:<address>`, `n<ifindex>` for a netdevice.
    pub device: Option<String>,
}

/// Why bytes are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RecordError {
    #[error("empty record")]
    Empty,
    #[error("no ';' ends the record's header")]
    NoText,
    #[error("the record's {0} field is missing or not a number the kernel writes")]
    Field(&'static str),
    #[error("a line after the record's first does not start with a space")]
    NotContinuation,
    #[error("a line longer than a record can be ({RECORD_MAX} bytes)")]
    TooLong,
}

impl Record {
    /// Parses one record: what one read of /dev/kmsg returns, with or without its last newline.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Record, RecordError> {
        let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
        if bytes.is_empty() {
            return Err(RecordError::Empty);
        }
        if bytes.starts_with(b" ") {
            return Err(RecordError::NotContinuation);
        }
        let mut lines = bytes.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        let semicolon = first.iter().position(|&b| b == b';').ok_or(RecordError::NoText)?;
        let mut fields = first[..semicolon].split(|&b| b == b',');
        let mut field = |name| fields.next().and_then(number).ok_or(RecordError::Field(name));
        let prefix = field("priority")?;
        let seq = field("sequence")?;
        let timestamp_us = field("timestamp")?;
        // `c` (and 3.x kernels' `+`) leaves the line open; `-` (and `*`) ends it.
        let fragment = match fields.next() {
            Some(b"c" | b"+") => true,
            Some(b"-" | b"*") => false,
            _ => return Err(RecordError::Field("flags")),
        };
        // Later fields (`caller=T123`) are ignored, as dev-kmsg asks.
        let facility = u8::try_from(prefix >> 3).map_err(|_| RecordError::Field("priority"))?;
        let mut record = Record {
            facility,
            level: (prefix & 7) as u8,
            seq,
            timestamp_us,
            fragment,
            message: unescape(&first[semicolon + 1..]),
            subsystem: None,
            device: None,
        };
        for line in lines {
            let entry = line.strip_prefix(b" ").ok_or(RecordError::NotContinuation)?;
            let Some(equals) = entry.iter().position(|&b| b == b'=') else { continue };
            // The kernel writes no entry for an empty value (`msg_add_dict_text`), nor does
            // `to_kmsg`: an empty one says there is none.
            let value = Some(unescape(&entry[equals + 1..])).filter(|value| !value.is_empty());
            match &entry[..equals] {
                b"SUBSYSTEM" => record.subsystem = value,
                b"DEVICE" => record.device = value,
                _ => {}
            }
        }
        Ok(record)
    }

    /// The record as /dev/kmsg writes it, last newline included: what a stand-in file given to
    /// the reader holds, one record after another.
    pub fn to_kmsg(&self) -> String {
        let prefix = (u32::from(self.facility) << 3) | u32::from(self.level & 7);
        let flag = if self.fragment { 'c' } else { '-' };
        let mut text = format!("{prefix},{},{},{flag};{}\n", self.seq, self.timestamp_us, escape(&self.message));
        for (key, value) in [("SUBSYSTEM", &self.subsystem), ("DEVICE", &self.device)] {
            if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                text.push_str(&format!(" {key}={}\n", escape(value)));
            }
        }
        text
    }
}

/// A decimal field as the kernel prints it: digits only, no sign, fitting 64 bits.
fn number(digits: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(digits).ok().filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))?;
    text.parse().ok()
}

/// Undoes the kernel's `\xHH` escapes; a backslash not followed by two hex digits stays.
fn unescape(text: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
        match (byte, tail.first(), hex(tail.get(1)), hex(tail.get(2))) {
            (b'\\', Some(b'x'), Some(high), Some(low)) => {
                bytes.push((high * 16 + low) as u8);
                rest = &tail[3..];
            }
            _ => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The kernel's escaping (`msg_add_ext_text`).
fn escape(text: &str) -> String {
    let escaped = |b: u8| !(b' '..127).contains(&b) || b == b'\\';
    text.bytes().map(|b| if escaped(b) { format!("\\x{b:02x}") } else { char::from(b).to_string() }).collect()
}

/// Cuts what successive reads return into records. A record is a line with the continuation
/// lines (starting with a space) after it, and it is complete once the next line begins or a
/// read that ended short ended with it: each read of /dev/kmsg is one whole record, and a
/// stand-in FIFO's writer writes each record (continuation lines included) in one write(2) of
/// at most PIPE_BUF bytes, which a reader receives whole.
#[derive(Debug, Default)]
pub(crate) struct RecordSplitter {
    /// The record being gathered: its complete lines, then the start of a line.
    pending: Vec<u8>,
    /// Inside a line too long to be a record: dropped up to its end.
    skipping: bool,
}

impl RecordSplitter {
    /// Takes one read's bytes; `short` says the read returned less than it asked for. Gives the
    /// records this completed, in order.
    pub fn push(&mut self, chunk: &[u8], short: bool) -> Vec<Result<Record, RecordError>> {
        let mut done = Vec::new();
        for line in chunk.split_inclusive(|&b| b == b'\n') {
            let ended = line.ends_with(b"\n");
            if self.skipping {
                self.skipping = !ended;
                continue;
            }
            let starts_line = self.pending.is_empty() || self.pending.ends_with(b"\n");
            if starts_line && line != b"\n" && !line.starts_with(b" ") {
                done.extend(self.take());
            }
            if starts_line && line == b"\n" {
                continue;
            }
            self.pending.extend_from_slice(line);
            if self.pending.len() > RECORD_MAX {
                self.pending.clear();
                self.skipping = !ended;
                done.push(Err(RecordError::TooLong));
            }
        }
        if short && self.pending.ends_with(b"\n") {
            done.extend(self.take());
        }
        done
    }

    /// The end of the input: whatever was gathered is the last record.
    pub fn finish(&mut self) -> Option<Result<Record, RecordError>> {
        self.skipping = false;
        self.take()
    }

    fn take(&mut self) -> Option<Result<Record, RecordError>> {
        (!self.pending.is_empty()).then(|| Record::parse(&std::mem::take(&mut self.pending)))
    }
}

/// What reading the log gives next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Record(Record),
    /// Bytes that are no record (only a stand-in file has them); reading goes on.
    Malformed(RecordError),
    /// The kernel overwrote records before they were read (EPIPE); reading goes on, and the
    /// next record's `seq` says how many were lost.
    Overwritten,
}

/// The records of /dev/kmsg or of a stand-in file in its format (see [`RecordSplitter`]), read
/// with blocking reads until the end of the input. An error other than EPIPE and EINTR is
/// handed on, and the next call reads again: a non-blocking source gives `WouldBlock`.
pub(crate) struct Records<R> {
    source: R,
    splitter: RecordSplitter,
    ready: VecDeque<Entry>,
    buf: Box<[u8]>,
    ended: bool,
}

impl<R: Read> Records<R> {
    pub fn new(source: R) -> Self {
        // Twice the longest record: a read that fills the buffer is never a whole kmsg record.
        let buf = vec![0; 2 * RECORD_MAX].into_boxed_slice();
        Self { source, splitter: RecordSplitter::default(), ready: VecDeque::new(), buf, ended: false }
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        let entry = |parsed: Result<Record, RecordError>| parsed.map_or_else(Entry::Malformed, Entry::Record);
        loop {
            if let Some(entry) = self.ready.pop_front() {
                return Some(Ok(entry));
            }
            if self.ended {
                return None;
            }
            match self.source.read(&mut self.buf) {
                Ok(0) => {
                    self.ended = true;
                    self.ready.extend(self.splitter.finish().map(entry));
                }
                Ok(length) => {
                    let short = length < self.buf.len();
                    self.ready.extend(self.splitter.push(&self.buf[..length], short).into_iter().map(entry));
                }
                Err(err) if err.raw_os_error() == Some(libc::EPIPE) => self.ready.push_back(Entry::Overwritten),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Some(Err(err)),
            }
        }
    }
}

/// A line as dmesg or `journalctl -k -o short-monotonic` prints it, `[    3.325036] kernel: text`:
/// its time in microseconds and its message, the `kernel: ` tag dropped and trailing white space
/// trimmed. For captures used as fixtures: /dev/kmsg has neither prefix.
pub fn parse_dmesg_line(line: &str) -> Option<(u64, &str)> {
    let (stamp, message) = line.trim_start().strip_prefix('[')?.split_once("] ")?;
    let (seconds, fraction) = stamp.trim_start().split_once('.')?;
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    if !digits(seconds) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    let nanos: u64 = format!("{fraction:0<9}").parse().ok()?;
    let micros = seconds.parse::<u64>().ok()?.checked_mul(1_000_000)?.checked_add(nanos / 1000)?;
    let message = message.trim_end();
    Some((micros, message.strip_prefix("kernel: ").unwrap_or(message)))
}
