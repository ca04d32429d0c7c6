//! cargo-fuzz target: see `elfmap_fuzz::ld_cache`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| elfmap_fuzz::ld_cache(data));
