//! cargo-fuzz target: see `elfmap_fuzz::plan_library`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| elfmap_fuzz::plan_library(data));
