//! cargo-fuzz target: see `elfmap_fuzz::maps`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| elfmap_fuzz::maps(data));
