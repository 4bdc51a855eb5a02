//! The fuzz targets' bodies over every checked-in input (fuzz/corpus/<target>/ and the saved
//! crashes of fuzz/regressions/<target>/), on stable Rust: the corpus is exercised by every
//! `cargo test`, and a fixed crash stays fixed, without nightly or cargo-fuzz.

use std::path::Path;

use netvsc_testkit::fuzz::{body, TARGETS};

fn fuzz_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz"))
}

#[test]
fn every_checked_in_input_passes_its_target() {
    for target in TARGETS {
        let mut run = body(target).expect("a body for every target");
        let mut inputs = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else { continue };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
                run(&data);
                inputs += 1;
            }
        }
        assert!(inputs >= 5, "{target}: only {inputs} seeds in fuzz/corpus/{target}/");
    }
}

#[test]
fn every_target_has_its_fuzz_target_file_and_nothing_else_is_one() {
    let mut files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|entry| entry.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut targets: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    targets.sort();
    assert_eq!(files, targets);
    assert!(body("no-such-target").is_none());
}
