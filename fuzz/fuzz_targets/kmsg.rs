#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netvsc_testkit::fuzz::kmsg(data));
