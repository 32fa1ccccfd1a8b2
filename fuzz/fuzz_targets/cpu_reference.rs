//! Every loss's CPU reference on arbitrary values and options (body:
//! metric_loss::testing::fuzz).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| metric_loss::testing::fuzz::cpu_reference(data));
