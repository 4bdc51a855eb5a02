use super::*;

use proptest::prelude::*;

const AZURE_DMESG: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/azure-dmesg.txt"));
const KMSG_RECORDS: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kmsg-records.txt"));

fn s(text: &str) -> String {
    text.to_owned()
}

fn record(seq: u64, timestamp_us: u64, message: &str) -> Record {
    Record {
        facility: 0,
        level: 6,
        seq,
        timestamp_us,
        fragment: false,
        message: s(message),
        subsystem: None,
        device: None,
    }
}

fn with_dict(record: Record, subsystem: &str, device: &str) -> Record {
    Record { subsystem: Some(s(subsystem)), device: Some(s(device)), ..record }
}

/// The same lines as /dev/kmsg gives them (no prefix, hv_netvsc's VMBus dictionary), through
/// a stand-in file: every record comes back, and its message tells the same moment.
#[test]
fn captured_lines_survive_the_kmsg_format() {
    let captured: Vec<(u64, &str)> =
        AZURE_DMESG.lines().filter(|l| l.starts_with('[')).map(|l| parse_dmesg_line(l).unwrap()).collect();
    let records: Vec<Record> = captured
        .iter()
        .zip(100..)
        .map(|(&(time, message), seq)| {
            let record = record(seq, time, message);
            match message.split(' ').nth(1).filter(|_| message.starts_with("hv_netvsc ")) {
                Some(guid) => with_dict(record, "vmbus", &format!("+vmbus:{guid}")),
                None => record,
            }
        })
        .collect();
    let file: String = records.iter().map(Record::to_kmsg).collect();
    assert!(file.starts_with(
        "6,100,3325036,-;hv_netvsc f8615163-0000-1000-2000-70a8a53148a8 e2: VF registering: eth0\n \
         SUBSYSTEM=vmbus\n DEVICE=+vmbus:f8615163-0000-1000-2000-70a8a53148a8\n6,101,3326212,-;mana 7870:00:00.0 eth0: joined to e2\n"
    ));
    let read: Vec<Entry> = Records::new(file.as_bytes()).map(Result::unwrap).collect();
    assert_eq!(read, records.iter().cloned().map(Entry::Record).collect::<Vec<_>>());
    for (record, (_, message)) in records.iter().zip(&captured) {
        assert_eq!(Moment::parse(&record.message), Moment::parse(message));
    }
}

/// Records read from a real /dev/kmsg, byte for byte: dictionary lines, a `\x09` escape, a `;`
/// inside the text, a netdevice without a parent renamed (no moment).
#[test]
fn real_kmsg_records_parse_exactly() {
    let acpi = |seq, time, text| with_dict(record(seq, time, text), "acpi", "+acpi:PNP0A08:00");
    let expected = [
        record(90, 250_756, "rcu: \tRCU restricting CPUs from NR_CPUS=256 to nr_cpu_ids=2."),
        acpi(193, 309_157, "acpi PNP0A08:00: _OSC: OS supports [ExtendedConfig ASPM ClockPM Segments MSI HPX-Type3]"),
        acpi(194, 309_160, "acpi PNP0A08:00: PCIe port services disabled; not requesting _OSC control"),
        with_dict(
            record(203, 309_496, "pci 0000:00:00.0: [8086:0d57] type 00 class 0x060000 conventional PCI endpoint"),
            "pci",
            "+pci:0000:00:00.0",
        ),
        record(343, 639_149_216, "lan1: renamed from eth1"),
    ];
    let read: Vec<Entry> = Records::new(KMSG_RECORDS).map(Result::unwrap).collect();
    assert_eq!(read, expected.iter().cloned().map(Entry::Record).collect::<Vec<_>>());
    // Written back, they are the kernel's bytes again.
    assert_eq!(expected.iter().map(Record::to_kmsg).collect::<String>().as_bytes(), KMSG_RECORDS);
    assert_eq!(expected.iter().map(|r| Moment::parse(&r.message)).collect::<Vec<_>>(), vec![None; 5]);
}

/// Headers and bodies the kernel never writes are typed errors; what it may write is exact.
#[test]
fn hostile_records() {
    let ok = |r: Record| Ok(r);
    let cases: Vec<(&[u8], Result<Record, RecordError>)> = vec![
        (b"", Err(RecordError::Empty)),
        (b"\n", Err(RecordError::Empty)),
        (b"6,1,2,-", Err(RecordError::NoText)),
        (b"6,1,2,-\n SUBSYSTEM=pci\n", Err(RecordError::NoText)),
        (b";text", Err(RecordError::Field("priority"))),
        (b"x,1,2,-;text", Err(RecordError::Field("priority"))),
        (b"-6,1,2,-;text", Err(RecordError::Field("priority"))),
        (b"+6,1,2,-;text", Err(RecordError::Field("priority"))),
        (b" 6,1,2,-;text", Err(RecordError::NotContinuation)),
        (b"2048,1,2,-;text", Err(RecordError::Field("priority"))),
        (b"6,,2,-;text", Err(RecordError::Field("sequence"))),
        (b"6,18446744073709551616,2,-;text", Err(RecordError::Field("sequence"))),
        (b"6,1,2.5,-;text", Err(RecordError::Field("timestamp"))),
        (b"6,1,2;text", Err(RecordError::Field("flags"))),
        (b"6,1,2,;text", Err(RecordError::Field("flags"))),
        (b"6,1,2,x;text", Err(RecordError::Field("flags"))),
        (b"6,1,2,--;text", Err(RecordError::Field("flags"))),
        (b"6\xff,1,2,-;text", Err(RecordError::Field("priority"))),
        (b"6,1,2,-;text\nSUBSYSTEM=pci", Err(RecordError::NotContinuation)),
        (b"6,1,2,-;text\n\n SUBSYSTEM=pci", Err(RecordError::NotContinuation)),
        (b" SUBSYSTEM=pci\n", Err(RecordError::NotContinuation)),
        (
            b"2047,18446744073709551615,18446744073709551615,c;",
            ok(Record { facility: 255, level: 7, seq: u64::MAX, fragment: true, ..record(u64::MAX, u64::MAX, "") }),
        ),
        // A userspace write (facility 1, `user`), and further fields such as the caller's id.
        (b"14,7,9,-,caller=T123,more;hi\n", ok(Record { facility: 1, level: 6, ..record(7, 9, "hi") })),
        (b"6,1,2,+;a", ok(Record { fragment: true, ..record(1, 2, "a") })),
        (b"6,1,2,*;a", ok(record(1, 2, "a"))),
        // Escapes undone (a UTF-8 name too); raw or escaped bytes that are not UTF-8 are U+FFFD.
        (b"6,1,2,-;a\\x5cb \\xc3\\xa9 \\x0a\\x09", ok(record(1, 2, "a\\b \u{e9} \n\t"))),
        (b"6,1,2,-;\\xff raw \xff\xfe", ok(record(1, 2, "\u{fffd} raw \u{fffd}\u{fffd}"))),
        (b"6,1,2,-;not escapes: \\q \\x4 \\xg0 \\", ok(record(1, 2, "not escapes: \\q \\x4 \\xg0 \\"))),
        (b"6,1,2,-;semi;colons;", ok(record(1, 2, "semi;colons;"))),
        // Unknown keys and lines without `=` are ignored; values are unescaped; the last wins.
        (
            b"6,1,2,-;t\n SUBSYSTEM=net\n DEVICE=n3\n DEVICE=+pci:0000:00:02.\\x30\n NEW=1\n odd\n",
            ok(with_dict(record(1, 2, "t"), "net", "+pci:0000:00:02.0")),
        ),
        // An empty value is none, as the kernel and `to_kmsg` write none (found by fuzzing:
        // fuzz/regressions/kmsg/), even after a value.
        (b"6,1,8,-;\n SUBSYSTEM=", ok(record(1, 8, ""))),
        (
            b"6,1,2,-;t\n DEVICE=n3\n SUBSYSTEM=pci\n DEVICE=\n",
            ok(Record { subsystem: Some(s("pci")), ..record(1, 2, "t") }),
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(Record::parse(input), expected, "{:?}", String::from_utf8_lossy(input));
    }
}

/// dmesg's and journalctl's prefix: exact microseconds, or no line.
#[test]
fn dmesg_lines() {
    let cases: Vec<(&str, Option<(u64, &str)>)> = vec![
        ("[    3.325036] kernel: hv_netvsc x\n", Some((3_325_036, "hv_netvsc x"))),
        ("[ 1485.730637] hv_netvsc x ", Some((1_485_730_637, "hv_netvsc x"))),
        ("  [0.5] a", Some((500_000, "a"))),
        ("[1.123456789] a", Some((1_123_456, "a"))),
        ("[1.000000] kernel: kernel: a", Some((1_000_000, "kernel: a"))),
        ("[1.000000] ", Some((1_000_000, ""))),
        ("[18446744073709.551615] a", Some((u64::MAX, "a"))),
        ("[18446744073709.551616] a", None),
        ("[18446744073710.000000] a", None),
        ("[99999999999999999999.0] a", None),
        ("[1.1234567890] a", None),
        ("[1] a", None),
        ("[1.] a", None),
        ("[.5] a", None),
        ("[-1.5] a", None),
        ("[1.5]a", None),
        ("[1.2.3] a", None),
        ("[abc] a", None),
        ("1.5] a", None),
        ("", None),
        ("hv_netvsc x", None),
    ];
    for (line, expected) in cases {
        assert_eq!(parse_dmesg_line(line), expected, "{line:?}");
    }
}

/// A reader giving scripted results, one per read.
struct Script(VecDeque<io::Result<Vec<u8>>>);

impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.pop_front() {
            None => Ok(0),
            Some(Ok(bytes)) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(bytes.len())
            }
            Some(Err(err)) => Err(err),
        }
    }
}

/// /dev/kmsg's reads: one record each, EPIPE when records were overwritten, EINTR retried;
/// another error is handed on and reading goes on after it.
#[test]
fn kmsg_reads_one_record_each_and_survives_overwrites() {
    let os = io::Error::from_raw_os_error;
    let reads = Script(VecDeque::from([
        Ok(b"6,1,10,-;hv_netvsc a: one\n SUBSYSTEM=vmbus\n".to_vec()),
        Err(os(libc::EPIPE)),
        Ok(b"6,9,20,-;two\n".to_vec()),
        Err(os(libc::EINTR)),
        Err(os(libc::EAGAIN)),
        Ok(b"6,10,30,-;three\n".to_vec()),
        Ok(b"junk\n".to_vec()),
    ]));
    let read: Vec<Result<Entry, i32>> = Records::new(reads).map(|r| r.map_err(|e| e.raw_os_error().unwrap())).collect();
    assert_eq!(
        read,
        vec![
            Ok(Entry::Record(Record { subsystem: Some(s("vmbus")), ..record(1, 10, "hv_netvsc a: one") })),
            Ok(Entry::Overwritten),
            Ok(Entry::Record(record(9, 20, "two"))),
            Err(libc::EAGAIN),
            Ok(Entry::Record(record(10, 30, "three"))),
            Ok(Entry::Malformed(RecordError::NoText)),
        ]
    );
}

/// A stand-in's writer that splits a record from its continuation lines across two writes
/// loses the dictionary (the reader cannot wait for lines that may never come); one line
/// longer than a record is dropped whole and the next record still read.
#[test]
fn splitter_rules() {
    let mut splitter = RecordSplitter::default();
    assert_eq!(splitter.push(b"6,1,2,-;a\n", true), vec![Ok(record(1, 2, "a"))]);
    assert_eq!(splitter.push(b" SUBSYSTEM=pci\n", true), vec![Err(RecordError::NotContinuation)]);
    // Not short: the continuation may follow, and does.
    assert_eq!(splitter.push(b"6,1,2,-;a\n", false), vec![]);
    assert_eq!(
        splitter.push(b" SUBSYSTEM=pci\n6,2,3,-;b", false),
        vec![Ok(Record { subsystem: Some(s("pci")), ..record(1, 2, "a") })]
    );
    assert_eq!(splitter.push(b"c\n\n", true), vec![Ok(record(2, 3, "bc"))]);
    let long = [b"6,3,4,-;".as_slice(), &[b'x'; RECORD_MAX], b"\n"].concat();
    assert_eq!(splitter.push(&long[..RECORD_MAX + 1], false), vec![Err(RecordError::TooLong)]);
    assert_eq!(splitter.push(&long[RECORD_MAX + 1..], false), vec![]);
    assert_eq!(splitter.push(b"6,4,5,-;d\n", true), vec![Ok(record(4, 5, "d"))]);
    assert_eq!(splitter.finish(), None);
}

/// A FIFO as the stand-in for /dev/kmsg: a writer writing one record per write, some with
/// dictionary lines; the reader gets them all, in order, and ends when the writer closes.
#[test]
fn fifo_stand_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kmsg");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let records: Vec<Record> = (0..200)
        .map(|seq| match seq % 3 {
            0 => with_dict(record(seq, seq * 1000, "hv_netvsc x eth0: VF slot 1 added"), "vmbus", "+vmbus:x"),
            _ => record(seq, seq * 1000, &"y".repeat(seq as usize * 20)),
        })
        .collect();
    let writing = records.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        let mut fifo = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        for record in writing {
            fifo.write_all(record.to_kmsg().as_bytes()).unwrap();
        }
    });
    let fifo = std::fs::File::open(dir.path().join("kmsg")).unwrap();
    let read: Vec<Entry> = Records::new(fifo).map(Result::unwrap).collect();
    writer.join().unwrap();
    assert_eq!(read, records.into_iter().map(Entry::Record).collect::<Vec<_>>());
}

fn any_record() -> impl Strategy<Value = Record> {
    let value = proptest::option::of(".{1,40}");
    (any::<u8>(), 0u8..8, any::<u64>(), any::<u64>(), any::<bool>(), ".{0,200}", value.clone(), value).prop_map(
        |(facility, level, seq, timestamp_us, fragment, message, subsystem, device)| Record {
            facility,
            level,
            seq,
            timestamp_us,
            fragment,
            message,
            subsystem,
            device,
        },
    )
}

proptest! {
    /// Any record, written as the kernel writes it, reads back the same, however the reads cut
    /// the bytes (only the last read short).
    #[test]
    fn records_round_trip(records in proptest::collection::vec(any_record(), 1..8), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
        let bytes: Vec<u8> = records.iter().flat_map(|r| r.to_kmsg().into_bytes()).collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
        cuts.extend([0, bytes.len()]);
        cuts.sort_unstable();
        let mut splitter = RecordSplitter::default();
        let mut read = Vec::new();
        for (i, pair) in cuts.windows(2).enumerate() {
            read.extend(splitter.push(&bytes[pair[0]..pair[1]], i == cuts.len() - 2));
        }
        read.extend(splitter.finish());
        prop_assert_eq!(read, records.into_iter().map(Ok).collect::<Vec<_>>());
    }

    /// No bytes make the parsers panic.
    #[test]
    fn nothing_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Record::parse(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Moment::parse(&text);
        let _ = parse_dmesg_line(&text);
        let mut splitter = RecordSplitter::default();
        let _ = splitter.push(&bytes, true);
        let _ = splitter.finish();
    }
}
