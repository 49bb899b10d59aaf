//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) on stable.
//!
//! The target bodies are `fuzz/src/lib.rs`, included here as a module, so
//! every saved input (seeds, and crashes fixed since) runs through exactly
//! the code libFuzzer ran, without libFuzzer or a nightly toolchain. A
//! missing or empty corpus directory fails: it would otherwise turn this
//! test into a silent no-op.

#[allow(unreachable_pub, dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_targets;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("corpus {} missing: {e}", dir.display()));
    let mut files: Vec<_> = entries
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("corpus file");
        // Name the input before running it, so a panic says which one.
        eprintln!("{target}: {}", file.display());
        run(&data);
    }
}

#[test]
fn inflate() {
    replay("inflate", fuzz_targets::inflate);
}

#[test]
fn scan() {
    replay("scan", fuzz_targets::scan);
}

#[test]
fn shard() {
    replay("shard", fuzz_targets::shard);
}

#[test]
fn headers() {
    replay("headers", fuzz_targets::headers);
}

#[test]
fn route() {
    replay("route", fuzz_targets::route);
}

#[test]
fn envelope() {
    replay("envelope", fuzz_targets::envelope);
}

#[test]
fn interaction() {
    replay("interaction", fuzz_targets::interaction);
}
