//! cargo-fuzz target: see `elfmap_fuzz::explain_maps`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| elfmap_fuzz::explain_maps(data));
