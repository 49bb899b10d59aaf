//! libFuzzer entry point; the body is `arrakis_fuzz::envelope`, shared with the
//! stable corpus replay in `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arrakis_fuzz::envelope(data));
